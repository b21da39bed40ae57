""""I can't read this": a novelty score on the trained network's own features, with a calibrated threshold.

The score of a digit is its squared Mahalanobis distance, under one covariance shared by the classes, from its
``fc2`` features (LeNet5's 84 penultimate activations, member 0 of an ensemble) to the nearest class mean
(Lee et al. 2018's class-conditional Gaussian, without input perturbation). Means and covariance are fitted on
training digits; the threshold is chosen on the validation side (:func:`choose_threshold`): real digits from
MNIST's validation split and other writers against non-digits synthesised by
:mod:`lenet_tf.data.nondigits`. Nothing is added to the network: checkpoints, ``LeNet5`` and its reuse are
unchanged, and a run without the file simply rejects nothing.

The statistics live beside the run as ``rejection.npz`` (:data:`STATS_FILE`), naming the epoch folder they were
fitted on; a checkpoint of another epoch does not use them.
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
_RIDGE = 1e-3  # added to the covariance's diagonal (relative to its mean variance): some fc2 units are dead


@dataclass(frozen=True)
class RejectionStats:
    """Class means float32 ``[C, D]``, the shared precision matrix float32 ``[D, D]``, the score above which a
    picture is "not a digit", and the epoch folder (``epoch-0007``) the statistics belong to."""

    means: np.ndarray
    precision: np.ndarray
    threshold: float
    epoch_folder: str

    def save(self, folder: str | os.PathLike) -> Path:
        """Writes :data:`STATS_FILE` into the training folder ``folder`` atomically."""
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as stream:
                np.savez(stream, means=self.means, precision=self.precision, threshold=np.float64(self.threshold),
                         epoch_folder=np.str_(self.epoch_folder))
        return write_atomic(Path(folder) / STATS_FILE, write)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> RejectionStats | None:
        """The statistics of the training folder ``folder``, or ``None`` when it has none.

        Raises:
          CheckpointError: the file exists but is not readable statistics.
        """
        path = Path(folder) / STATS_FILE
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                stats = cls(stored["means"].astype(np.float32), stored["precision"].astype(np.float32),
                            float(stored["threshold"]), str(stored["epoch_folder"]))
        except (OSError, ValueError, KeyError) as err:
            raise CheckpointError(f"{path}: unreadable rejection statistics ({err})") from None
        if stats.means.ndim != 2 or stats.precision.shape != (stats.means.shape[1],) * 2:
            raise CheckpointError(f"{path}: rejection statistics of inconsistent shapes {stats.means.shape}, "
                                  f"{stats.precision.shape}")
        return stats


def fit_gaussian(features: np.ndarray, labels: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Class means float32 ``[C, D]`` and the shared precision float32 ``[D, D]`` of features ``[N, D]``."""
    features = np.asarray(features, np.float64)
    means = np.stack([features[labels == c].mean(axis=0) for c in range(classes)])
    centred = features - means[labels]
    covariance = centred.T @ centred / len(features)
    covariance += _RIDGE * np.trace(covariance) / len(covariance) * np.eye(len(covariance))
    return means.astype(np.float32), np.linalg.inv(covariance).astype(np.float32)


def novelty(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """float64 ``[N]``: the squared Mahalanobis distance of features ``[N, D]`` to the nearest class mean."""
    diffs = np.asarray(features, np.float64)[:, None, :] - np.asarray(means, np.float64)[None]
    return np.einsum("ncd,de,nce->nc", diffs, np.asarray(precision, np.float64), diffs).min(axis=1)


def novelty_tensor(features: tf.Tensor, stats: RejectionStats) -> tf.Tensor:
    """The graph form of :func:`novelty`: float32 features ``[N, D]`` → float32 ``[N]``."""
    means = tf.constant(stats.means)
    projected = tf.matmul(features, tf.constant(stats.precision))  # [N, D]
    # (f - m)' P (f - m) = f'Pf - 2 f'Pm + m'Pm, for every class at once
    quadratic = tf.reduce_sum(projected * features, axis=1, keepdims=True)
    cross = tf.matmul(projected, means, transpose_b=True)
    constant = tf.reduce_sum(tf.matmul(means, tf.constant(stats.precision)) * means, axis=1)
    return tf.reduce_min(quadratic - 2.0 * cross + constant[None], axis=1)


def choose_threshold(real: dict[str, np.ndarray], max_flagged: float) -> float:
    """The smallest threshold that flags at most ``max_flagged`` of every set of real digits' scores ``[N]``
    (so the strictest set decides)."""
    return float(max(np.quantile(scores, 1.0 - max_flagged, method="higher") for scores in real.values()))
