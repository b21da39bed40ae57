"""Classifying the user's own digit images with a trained checkpoint, and the one result every interface gives."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from lenet_tf.core.errors import LeNetError
from lenet_tf.data.images import BLANK_REASON, image_files, load_picture, mnist_or_blank
from lenet_tf.rejection import NOT_A_DIGIT
from lenet_tf.trained import TrainedModel


@dataclass
class DigitResult:
    """What the model says of one picture: the ``digit`` (``None`` when the picture holds none, ``reason`` then
    says why, e.g. :data:`~lenet_tf.data.images.BLANK_REASON`), its ``probability`` (``None`` likewise), the
    ``top3`` classes and all ten ``probabilities`` (always there: what the network computed for its input)."""

    digit: int | None = None
    probability: float | None = None
    top3: list[tuple[int, float]] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    reason: str | None = None

    @classmethod
    def of(cls, probabilities: np.ndarray, reason: str | None = None) -> DigitResult:
        """The result of float32 ``probabilities`` ``[10]``; with a ``reason`` (blank, not a digit) no digit."""
        top3 = top_k(probabilities)
        if reason:
            return cls(None, None, top3, probabilities.tolist(), reason)
        return cls(top3[0][0], top3[0][1], top3, probabilities.tolist())


@dataclass
class FilePrediction(DigitResult):
    """The :class:`DigitResult` of one file, or the ``error`` that kept it from being read."""

    file: str = ""
    error: str | None = None
    note: str | None = None  # what of the file was not read, e.g. "3 frames: read the first"

    def to_json(self) -> dict:
        """The result as JSON values (``predict --json``), every text in valid Unicode: a file name that is not
        valid UTF-8, which Python holds with lone surrogates that strict JSON parsers refuse, has U+FFFD in place
        of each undecodable byte (in ``file`` and in an ``error`` naming it)."""
        return {key: _valid_unicode(value) if isinstance(value, str) else value for key, value in vars(self).items()}


def _valid_unicode(text: str) -> str:
    """``text`` with the bytes that ``os.fsdecode`` could not decode (lone surrogates) as U+FFFD."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate that is no undecodable byte
        return text.encode("utf-8", "replace").decode("utf-8")


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

    Every file gets a result: a file that cannot be read gets ``error`` set (whatever its decoder raised); a blank
    one, or one the model's rejection statistics find is not a digit, gets ``digit=None`` and a ``reason``, with its
    probabilities; the others are classified. Of a multi-frame file the first frame is read, and ``note`` says so.
    """
    results, digits = [], []
    for path in image_files(paths):
        try:
            picture = load_picture(path)
            digits.append(mnist_or_blank(picture.gray, str(path)))
            results.append(FilePrediction(file=str(path), note=picture.note))
        except LeNetError as err:
            results.append(FilePrediction(file=str(path), error=str(err)))
    if digits:
        predictions = model.predict(np.stack(digits))
        novelty = predictions.novelty if predictions.novelty is not None else [None] * len(digits)
        read = [r for r in results if r.error is None]
        for result, p, blank, score in zip(read, predictions.probabilities, predictions.blank, novelty):
            reason = BLANK_REASON if blank else rejection_reason(score, predictions.threshold)
            vars(result).update(vars(DigitResult.of(p, reason)))
    return results
