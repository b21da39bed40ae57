""""I can't read this": a small head on the trained network's own features, with a calibrated threshold.

The head is a logistic regression on the features LeNet5 computes anyway (member 0 of an ensemble): its
flattened conv2 maps, fc1 and fc2 activations (:data:`FEATURE_LAYERS`, 604 values), standardised. It is fitted
(:func:`fit_head`) to tell digits (MNIST training digits, synthetic digits of other styles) from synthetic
non-digits (:mod:`lenet_tf.data.nondigits`: letters, scribbles, textures); its logit is the novelty score. The
threshold is chosen on the validation side (:func:`choose_threshold`) so that at most a given share of every set
of real validation digits is flagged. Nothing is added to the network: checkpoints, ``LeNet5`` and its reuse are
unchanged, and a run without the file rejects nothing.

The head lives beside the run as ``rejection.npz`` (:data:`STATS_FILE`), naming the epoch folder it was fitted
on; a checkpoint of another epoch does not use it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lenet_tf.core.errors import CheckpointError
from lenet_tf.core.outputs import write_atomic
from lenet_tf.core.tf import tf

STATS_FILE = "rejection.npz"
NOT_A_DIGIT = "not a digit"  # the reason given with ``digit: null``
FEATURE_LAYERS = ("flatten", "fc1", "fc2")  # LeNet5 endpoints the head reads
_L2 = 1.0  # inverse regularisation strength of the logistic regression (scikit-learn's C)


def feature_tensor(endpoints: dict[str, tf.Tensor]) -> tf.Tensor:
    """The head's input: :data:`FEATURE_LAYERS` of a LeNet5 call's endpoints, concatenated: float32 ``[N, 604]``."""
    return tf.concat([endpoints[name] for name in FEATURE_LAYERS], axis=1)


@dataclass(frozen=True)
class RejectionStats:
    """The head: feature means and scales float32 ``[D]``, weights float32 ``[D]`` and bias of the logistic
    regression on the standardised features; the score above which a picture is "not a digit"; the epoch folder
    (``epoch-0007``) it belongs to."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float
    epoch_folder: str

    def save(self, folder: str | os.PathLike) -> Path:
        """Writes :data:`STATS_FILE` into the training folder ``folder`` atomically."""
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as stream:
                np.savez(stream, mean=self.mean, scale=self.scale, weights=self.weights, bias=np.float64(self.bias),
                         threshold=np.float64(self.threshold), epoch_folder=np.str_(self.epoch_folder))
        return write_atomic(Path(folder) / STATS_FILE, write)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> RejectionStats | None:
        """The head of the training folder ``folder``, or ``None`` when it has none.

        Raises:
          CheckpointError: the file exists but is not a readable head.
        """
        path = Path(folder) / STATS_FILE
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                stats = cls(*(stored[key].astype(np.float32) for key in ("mean", "scale", "weights")),
                            float(stored["bias"]), float(stored["threshold"]), str(stored["epoch_folder"]))
        except (OSError, ValueError, KeyError) as err:
            raise CheckpointError(f"{path}: unreadable rejection statistics ({err})") from None
        if not stats.mean.ndim == 1 or not stats.mean.shape == stats.scale.shape == stats.weights.shape:
            raise CheckpointError(f"{path}: rejection statistics of inconsistent shapes")
        return stats

    def scores(self, features: np.ndarray) -> np.ndarray:
        """float64 ``[N]``: the head's logit (novelty) of features ``[N, D]``."""
        standardised = (np.asarray(features, np.float64) - self.mean) / self.scale
        return standardised @ self.weights.astype(np.float64) + self.bias


def fit_head(digits: np.ndarray, non_digits: np.ndarray, epoch_folder: str) -> RejectionStats:
    """A logistic regression telling features ``[N, D]`` of digits from those ``[M, D]`` of non-digits (classes
    weighted alike), threshold 0 until :func:`choose_threshold` sets it."""
    from sklearn.linear_model import LogisticRegression

    features = np.concatenate([digits, non_digits]).astype(np.float64)
    labels = np.concatenate([np.zeros(len(digits)), np.ones(len(non_digits))])
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-3
    model = LogisticRegression(C=_L2, class_weight="balanced", max_iter=2000)
    model.fit((features - mean) / scale, labels)
    return RejectionStats(mean.astype(np.float32), scale.astype(np.float32), model.coef_[0].astype(np.float32),
                          float(model.intercept_[0]), 0.0, epoch_folder)


def novelty_tensor(features: tf.Tensor, stats: RejectionStats) -> tf.Tensor:
    """The graph form of :meth:`RejectionStats.scores`: float32 features ``[N, D]`` → float32 ``[N]``."""
    standardised = (features - tf.constant(stats.mean)) / tf.constant(stats.scale)
    return tf.linalg.matvec(standardised, tf.constant(stats.weights)) + stats.bias


def choose_threshold(real: dict[str, np.ndarray], max_flagged: float) -> float:
    """The smallest threshold that flags at most ``max_flagged`` of every set of real digits' scores ``[N]``
    (so the strictest set decides)."""
    return float(max(np.quantile(scores, 1.0 - max_flagged, method="higher") for scores in real.values()))
