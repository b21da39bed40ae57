"""Classifying the user's own digit images with a trained checkpoint."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from lenet_tf.core.errors import LeNetError
from lenet_tf.data.images import image_files, load_picture, to_mnist
from lenet_tf.rejection import NOT_A_DIGIT
from lenet_tf.trained import TrainedModel


@dataclass
class FilePrediction:
    """The digit predicted for one file, or why there is none: ``error`` (the file cannot be read or holds no
    digit) or ``reason`` (it was classified, but is not a digit: ``digit`` is ``None``, the probabilities stay)."""

    file: str
    digit: int | None = None
    probability: float | None = None
    top3: list[tuple[int, float]] = field(default_factory=list)
    error: str | None = None
    note: str | None = None  # what of the file was not read, e.g. "3 frames: read the first"
    reason: str | None = None  # e.g. "not a digit (novelty 14.20 > 10.16)"
    probabilities: list[float] = field(default_factory=list)


def rejection_reason(novelty: float | None, threshold: float | None) -> str | None:
    """"not a digit (novelty S > T)" when the novelty score is over the threshold, else ``None``."""
    if novelty is None or threshold is None or not novelty > threshold:
        return None
    return f"{NOT_A_DIGIT} (novelty {novelty:.2f} > {threshold:.2f})"


def top_k(probabilities: np.ndarray, k: int = 3) -> list[tuple[int, float]]:
    """The ``k`` most probable classes with their probabilities, best first."""
    best = np.argsort(probabilities)[::-1][:k]
    return [(int(c), float(probabilities[c])) for c in best]


def predict_files(paths: list[str | os.PathLike], model: TrainedModel) -> list[FilePrediction]:
    """Prepares each image (or each image in a folder) like MNIST and classifies it.

    A file that cannot be read or holds no digit gets ``error`` set; the others are still classified. One the
    model's rejection statistics find is not a digit gets ``digit`` ``None`` and a ``reason``, with its
    probabilities. Of a multi-frame file the first frame is read, and ``note`` says so.
    """
    results, digits = [], []
    for path in image_files(paths):
        try:
            picture = load_picture(path)
            digits.append(to_mnist(picture.gray, str(path)))
            results.append(FilePrediction(str(path), note=picture.note))
        except LeNetError as err:
            results.append(FilePrediction(str(path), error=str(err)))
    if digits:
        predictions = model.predict(np.stack(digits))
        novelty = predictions.novelty if predictions.novelty is not None else [None] * len(digits)
        for result, p, score in zip([r for r in results if r.error is None], predictions.probabilities, novelty):
            result.top3, result.probabilities = top_k(p), p.tolist()
            result.reason = rejection_reason(score, predictions.threshold)
            if result.reason is None:
                result.digit, result.probability = result.top3[0]
    return results
