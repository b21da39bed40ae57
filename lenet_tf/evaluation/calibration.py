"""Fitting and calibrating "I can't read this" for a trained run, on the validation side only.

:func:`calibrate` fits the head of :mod:`lenet_tf.rejection` on training data (the run's MNIST training digits,
some of them damaged as :mod:`lenet_tf.data.damage` damages training captures, and the synthetic digits of other
styles, against synthetic non-digits of one seed), chooses the threshold so that
at most ``max_flagged`` of each set of real validation digits is flagged (MNIST's validation split,
scikit-learn's load_digits and pendigits drawn on a canvas, each read as ``predict`` reads a file), measures what
it flags of synthetic non-digits of another seed (:mod:`lenet_tf.data.nondigits`), and writes
:data:`lenet_tf.rejection.STATS_FILE` beside the run.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lenet_tf.core.errors import LeNetError
from lenet_tf.core.options import MAX_FLAGGED
from lenet_tf.data.damage import damaged_digits
from lenet_tf.data.images import to_mnist
from lenet_tf.data.mnist import load_mnist, split, unpad_images
from lenet_tf.data.nondigits import non_digit_pictures
from lenet_tf.data.pendigits import FILE as PENDIGITS_FILE, pendigits_dir
from lenet_tf.data.synthetic import synthetic_digits
from lenet_tf.evaluation.robustness import load_digits_files, pendigits_files
from lenet_tf.rejection import choose_threshold, fit_head
from lenet_tf.trained import TrainedModel

FIT_DIGITS = 8000  # MNIST training digits the head learns from
FIT_DAMAGED = 3000  # further MNIST training digits it learns from, each damaged (specks, lines, fog, outline...)
FIT_SYNTHETIC = 2000  # synthetic digits (fonts, stroke templates) it learns from
FIT_NON_DIGITS = 3000  # synthetic non-digits it learns from (seed FIT_SEED)
REPORT_NON_DIGITS = 600  # synthetic non-digits the report measures (seed REPORT_SEED)
PENDIGITS = 1000
FIT_SEED, REPORT_SEED = 0, 2  # of the non-digits (seed 1 was the one looked at while designing the head)


@dataclass
class Calibration:
    """What :func:`calibrate` chose and measured: the threshold, the share flagged of each real validation set,
    and of the reported non-digits (overall and per kind; blank pictures count as flagged)."""

    checkpoint: str
    threshold: float
    real_flagged: dict[str, float] = field(default_factory=dict)
    non_digits_flagged: float = 0.0
    non_digits_by_kind: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready: every field."""
        return asdict(self)

    def format(self) -> str:
        """A plain-text table."""
        lines = [f"checkpoint {self.checkpoint}: not a digit above novelty {self.threshold:.2f}",
                 f"{'validation set':<28} {'flagged':>8}"]
        lines += [f"{name:<28} {share:>8.2%}" for name, share in self.real_flagged.items()]
        lines.append(f"{'non-digits (held-out seed)':<28} {self.non_digits_flagged:>8.2%}")
        lines += [f"{'  ' + kind:<28} {share:>8.2%}" for kind, share in self.non_digits_by_kind.items()]
        return "\n".join(lines)


def non_digit_inputs(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Synthetic non-digits read as ``predict`` reads a file: uint8 ``[N, 28, 28]`` (blank where the reader
    found no ink), the bool ``[N]`` mask of those it found blank, and each picture's kind."""
    pictures, kinds = non_digit_pictures(count, seed)
    prepared, blank = np.zeros((count, 28, 28), np.uint8), np.zeros(count, bool)
    for i, picture in enumerate(pictures):
        try:
            prepared[i] = to_mnist(np.asarray(picture, np.float32))
        except LeNetError:
            blank[i] = True
    return prepared, blank, kinds


def real_validation_digits(mnist_valid: np.ndarray) -> dict[str, np.ndarray]:
    """The real digits of the validation side, uint8 ``[N, 28, 28]`` per set: MNIST validation (as stored),
    load_digits and pendigits drawn on a canvas (read like ``predict`` files; those the reader refused left out)."""
    sets = {"mnist valid": mnist_valid}
    prepared, _, accepted = load_digits_files()
    sets["load_digits"] = prepared[accepted]
    if (pendigits_dir() / PENDIGITS_FILE).is_file():
        prepared, _, accepted = pendigits_files(PENDIGITS, 777, keep_box=False)
        sets["pendigits canvas"] = prepared[accepted]
    return sets


def calibrate(checkpoint_dir: str | os.PathLike = "SavedModel", data_dir: str | os.PathLike | None = None, *,
              verify_checksums: bool = True, which: str = "best", max_flagged: float = MAX_FLAGGED,
              save: bool = True) -> Calibration:
    """Fits and calibrates the rejection head of a checkpoint; with ``save``, writes it beside its run.

    ``max_flagged``: the share of each real validation set the threshold may flag.
    """
    mnist = load_mnist(data_dir, verify=verify_checksums)
    with TrainedModel(checkpoint_dir, which, reject=False) as model:  # refitted, whatever is there
        train = model.run["train"]
        splits = split(mnist, train["valid_size"], train["seed"])

        def features(images: np.ndarray) -> np.ndarray:
            return model.predict(images, features=True).features

        negatives, blank, _ = non_digit_inputs(FIT_NON_DIGITS, FIT_SEED)
        damaged = damaged_digits(splits.train_images[FIT_DIGITS:FIT_DIGITS + FIT_DAMAGED], FIT_SEED)
        digits = np.concatenate([features(splits.train_images[:FIT_DIGITS]), features(damaged),
                                 features(synthetic_digits(FIT_SYNTHETIC, seed=0)[0])])
        head = fit_head(digits, features(negatives[~blank]), Path(model.checkpoint).parent.name)
        real = {name: head.scores(features(images)) for name, images in
                real_validation_digits(unpad_images(splits.valid_images)).items()}
        head = type(head)(**{**head.__dict__, "threshold": choose_threshold(real, max_flagged)})
        if save:  # chosen: the non-digits below only measure it
            head.save(model.folder)
        images, blank, kinds = non_digit_inputs(REPORT_NON_DIGITS, REPORT_SEED)
        flagged = blank | (head.scores(features(images)) > head.threshold)
    kinds = np.array(kinds)
    return Calibration(model.checkpoint, head.threshold,
                       {name: float((values > head.threshold).mean()) for name, values in real.items()},
                       float(flagged.mean()),
                       {kind: float(flagged[kinds == kind].mean()) for kind in sorted(set(kinds))})
