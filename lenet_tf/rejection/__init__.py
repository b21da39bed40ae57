""""I can't read this": a small head on the trained network's own features, with a calibrated threshold.

The head is the mean of :data:`BAGGED` small perceptrons (one hidden layer of :data:`HIDDEN` ReLU units each,
stored as one layer of their units) on the features LeNet5 computes anyway (member 0 of an ensemble): its conv1
maps averaged over 2x2 cells, its flattened conv2 maps, fc1 and fc2 activations (:data:`FEATURE_LAYERS`, 898
values), standardised. It is fitted (:func:`fit_head`) to tell digits
(MNIST training digits, synthetic digits of other styles) from synthetic non-digits
(:mod:`lenet_tf.data.nondigits`: letters, scribbles, textures); its logit is the novelty score. The threshold is
chosen on the validation side (:func:`choose_threshold`) so that at most a given share of every set of real
validation digits is flagged. Nothing is added to the network: checkpoints, ``LeNet5`` and its reuse are
unchanged, and a run without the file rejects nothing.

The head lives beside the run as ``rejection.npz`` (:data:`STATS_FILE`), naming the epoch folder it was fitted
on and the features it reads (:data:`FEATURES`); a checkpoint of another epoch does not use it, nor does a
lenet_tf that computes other features. :mod:`lenet_tf.rejection.calibration` fits and calibrates it
for a trained run (``lenet-tf calibrate``, and training with ``--calibrate``).
"""

from __future__ import annotations

import os
import shlex
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lenet_tf.core.errors import CheckpointError
from lenet_tf.core.outputs import describe_os_error, warn, write_atomic
from lenet_tf.core.tf import tf

STATS_FILE = "rejection.npz"
NOT_A_DIGIT = "not a digit"  # the reason given with ``digit: null``
# LeNet5 endpoints the head reads; maps averaged over CONV_CELL x CONV_CELL cells. conv1's maps added on 2026-12-06:
# held-out non-digits flagged 90.3% -> 92.0% (scribbles 73% -> 78%), mean of 6 runs, 1,200 pictures of an unseen seed.
FEATURE_LAYERS, CONV_CELL = ("conv1", "flatten", "fc1", "fc2"), 2
FEATURES = f"{'+'.join(FEATURE_LAYERS)}/{CONV_CELL}"  # recorded with a head: one fitted on other features is not used
# The head's hidden units: letters flagged 82% against a linear head's 63%. 128 (2026-12-07) lifted the weakest
# of seven runs but not the mean, flagged less on robust seed 0 and took 47% longer to fit: not adopted.
HIDDEN = 64
# Perceptrons fitted with consecutive seeds whose logits the head averages (one head of BAGGED * HIDDEN units), each
# for _FIT_ITERATIONS passes. 3 of 20 passes against 1 of 60, in the same fit time (2026-12-07, AMD EPYC with AVX2
# only, 3 runs x 2 fits, 4,800 held-out non-digits of seeds 3-6): flagged 91.8% against 90.8%, from 88.8-92.9% to
# 90.5-93.9% per fit (docs/history/accuracy-2026-12-07.md).
BAGGED = 3
_L2 = 1e-2  # the head's weight penalty (scikit-learn's alpha)
_FIT_ITERATIONS = 20  # passes at most per perceptron (it stops earlier once the loss stops falling)
_FIT_BATCH, _FIT_LEARNING_RATE = 1000, 3e-3  # in float32: 2.3 s instead of 9.8 s (float64, batches of 200 at
# 1e-3) on 2 cores, flagging 89.5% of the held-out non-digits instead of 89.8% (AMD EPYC, 2026-12-06)


def feature_tensor(endpoints: dict[str, tf.Tensor]) -> tf.Tensor:
    """The head's input: :data:`FEATURE_LAYERS` of a LeNet5 call's endpoints (maps ``[N, H, W, C]`` averaged over
    :data:`CONV_CELL`-square cells), flattened and concatenated: float32 ``[N, 898]``."""
    def flat(tensor: tf.Tensor) -> tf.Tensor:
        if tensor.shape.rank == 4:
            tensor = tf.nn.avg_pool2d(tensor, CONV_CELL, CONV_CELL, "VALID")
        return tf.reshape(tf.cast(tensor, tf.float32), [-1, int(np.prod(tensor.shape[1:]))])
    return tf.concat([flat(endpoints[name]) for name in FEATURE_LAYERS], axis=1)


@dataclass(frozen=True)
class RejectionStats:
    """The head: feature means and scales float32 ``[D]``; on the standardised features, hidden weights float32
    ``[D, H]`` and biases ``[H]``, output weights ``[H]`` and bias (the logit of "not a digit"); the score above
    which a picture is "not a digit"; the epoch folder (``epoch-0007``) and the run (``run.json``'s ``id``) it
    belongs to; the features it reads (:data:`FEATURES`; ``""`` for a head written before they were recorded)."""

    mean: np.ndarray
    scale: np.ndarray
    hidden_weights: np.ndarray
    hidden_bias: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float
    epoch_folder: str
    run_id: str = ""
    features: str = FEATURES

    def save(self, folder: str | os.PathLike) -> Path:
        """Writes :data:`STATS_FILE` into the training folder ``folder`` atomically, replacing only a head (what
        :func:`_ours` accepts).

        Raises:
          CheckpointError: something else is at :data:`STATS_FILE` (it is left as it is).
        """
        path = Path(folder) / STATS_FILE

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as stream:
                np.savez(stream, mean=self.mean, scale=self.scale, hidden_weights=self.hidden_weights,
                         hidden_bias=self.hidden_bias, weights=self.weights, bias=np.float64(self.bias),
                         threshold=np.float64(self.threshold), epoch_folder=np.str_(self.epoch_folder),
                         run_id=np.str_(self.run_id), features=np.str_(self.features))
            if not _ours(path):  # checked at the last moment, just before the rename
                raise CheckpointError(f"{path}: not a head written by lenet-tf, so it is not replaced (move it "
                                      "away, then run `lenet-tf calibrate`)")
        return write_atomic(path, write)

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
            if not zipfile.is_zipfile(path):  # else numpy tries it as a pickle and suggests loading it unsafely
                raise ValueError("not an .npz file")
            with np.load(path, allow_pickle=False) as stored:
                stats = cls(*(_numbers(stored, key, ndim, np.float32) for key, ndim in _ARRAYS),
                            float(_numbers(stored, "bias", 0)), float(_numbers(stored, "threshold", 0)),
                            *(_text(stored, key) for key in ("epoch_folder", "run_id", "features")))
            _check_head(stats)
        except Exception as err:  # a damaged zip or .npy header raises anything from BadZipFile to TokenError
            reason = " ".join(str(err.args[0] if isinstance(err, KeyError) else err).split())
            raise CheckpointError(f"{path}: unreadable rejection statistics ({reason}); move it aside, then run "
                                  f"`lenet-tf calibrate --checkpoint {shlex.quote(str(folder))}` to fit it "
                                  "again") from None
        return stats

    def belongs_to(self, checkpoint: str | os.PathLike, run: dict) -> bool:
        """Whether the head was fitted on this checkpoint (a Saver prefix ``…/epoch-0007/ckpt``) of the run
        recorded in ``run`` (a head of another run that reused the epoch's name does not belong; one written
        before heads recorded their run matches by its epoch alone)."""
        return (self.epoch_folder == Path(checkpoint).parent.name
                and (not self.run_id or self.run_id == run.get("id")))

    @property
    def current(self) -> bool:
        """Whether the head reads the features this lenet_tf computes (:data:`FEATURES`): an older head is not used
        (``lenet-tf calibrate``, or ``lenet-tf train --resume --calibrate`` of its run, fits it again)."""
        return self.features == FEATURES

    def scores(self, features: np.ndarray) -> np.ndarray:
        """float64 ``[N]``: the head's logit (novelty) of features ``[N, D]``."""
        standardised = (np.asarray(features, np.float64) - self.mean) / self.scale
        hidden = np.maximum(standardised @ self.hidden_weights.astype(np.float64) + self.hidden_bias, 0.0)
        return hidden @ self.weights.astype(np.float64) + self.bias


_ARRAYS = (("mean", 1), ("scale", 1), ("hidden_weights", 2), ("hidden_bias", 1), ("weights", 1))  # name, rank


def _numbers(stored, key: str, ndim: int, dtype: type = np.float64) -> np.ndarray:
    """``stored[key]`` as finite ``dtype`` numbers of rank ``ndim`` (ValueError when it holds anything else)."""
    array = stored[key]
    if array.dtype.kind != "f" or array.ndim != ndim:
        raise ValueError(f"{key} is {array.dtype} of shape {array.shape}, expected floats of rank {ndim}")
    with np.errstate(over="ignore"):
        array = array.astype(dtype)
    if not np.isfinite(array).all():
        raise ValueError(f"{key} is not finite")
    return array


def _text(stored, key: str) -> str:
    """``stored[key]`` as a string (``""`` when absent: a head written before the key existed); ValueError when it
    is something else. ``epoch_folder`` is required."""
    if key not in stored.files and key != "epoch_folder":
        return ""
    array = stored[key]
    if array.dtype.kind != "U" or array.ndim != 0:
        raise ValueError(f"{key} is {array.dtype} of shape {array.shape}, expected a string")
    return str(array)


def _check_head(stats: RejectionStats) -> None:
    """ValueError unless the head's arrays fit together: ``[D]``, ``[D]``, ``[D, H]``, ``[H]``, ``[H]``, and the
    scales are positive."""
    width, hidden = len(stats.mean), len(stats.weights)
    if (stats.scale.shape != (width,) or stats.hidden_weights.shape != (width, hidden)
            or stats.hidden_bias.shape != (hidden,)):
        raise ValueError("arrays of inconsistent shapes")
    if not (stats.scale > 0).all():
        raise ValueError("scale is not positive")


def usable_head(checkpoint: str | os.PathLike, run: dict) -> RejectionStats | None:
    """The head in the training folder of ``checkpoint`` (a Saver prefix ``…/epoch-0007/ckpt``) of the run
    recorded in ``run``, when it was fitted on that checkpoint and reads :data:`FEATURES`; else ``None`` (a head of
    other features is a printed warning naming the command that fits it again).

    Raises:
      CheckpointError: the folder's :data:`STATS_FILE` is not a readable head.
    """
    stats = RejectionStats.load(Path(checkpoint).parent.parent)
    if stats is None or not stats.belongs_to(checkpoint, run):  # none, or another epoch's or run's
        return None
    if not stats.current:
        warn(f"{Path(checkpoint).parent.parent / STATS_FILE}: \"I can't read this\" was fitted by an older "
             "lenet_tf on other features and is not used; run `lenet-tf calibrate --checkpoint "
             f"{shlex.quote(str(Path(checkpoint).parent))}` to fit it again")
        return None
    return stats


def _ours(path: Path) -> bool:
    """Whether ``path`` may be written over or deleted as a head: absent, or a regular file (not a link) that
    :meth:`RejectionStats.load` reads."""
    if not os.path.lexists(path):
        return True
    try:
        return not path.is_symlink() and RejectionStats.load(path.parent) is not None
    except CheckpointError:
        return False


def remove_foreign_head(folder: str | os.PathLike, run_id: str) -> None:
    """Deletes the head in the training folder ``folder`` unless it is the run ``run_id``'s: a replaced run's, or
    one written before heads recorded their run, which a new run must never use. A file that is not a readable
    head, or a symbolic link, is left alone; a head that cannot be deleted is a printed warning."""
    path = Path(folder) / STATS_FILE
    try:
        stats = RejectionStats.load(folder)
    except CheckpointError:
        return
    if stats is None or stats.run_id == run_id or path.is_symlink():
        return
    try:
        path.unlink()
    except OSError as err:
        warn(f"{path}: the replaced run's \"I can't read this\" could not be deleted ({describe_os_error(err)})")


def fit_head(digits: np.ndarray, non_digits: np.ndarray, epoch_folder: str, seed: int = 0, *,
             run_id: str = "") -> RejectionStats:
    """:data:`BAGGED` one-hidden-layer perceptrons (seeds ``seed``, ``seed + 1``, …) telling features ``[N, D]``
    of digits from those ``[M, D]`` of non-digits (the non-digits repeated to weigh about as much as the digits),
    stored as one head of ``BAGGED * HIDDEN`` units whose logit is the mean of theirs; threshold 0 until
    :func:`choose_threshold` sets it."""
    from sklearn.neural_network import MLPClassifier

    repeats = max(1, round(len(digits) / max(len(non_digits), 1)))
    features = np.concatenate([digits, np.repeat(non_digits, repeats, axis=0)]).astype(np.float32)
    labels = np.concatenate([np.zeros(len(digits)), np.ones(len(non_digits) * repeats)])
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-3
    standardised = (features - mean) / scale
    with warnings.catch_warnings():  # a fixed number of passes: "not converged" is expected
        warnings.simplefilter("ignore", category=UserWarning)
        members = [MLPClassifier((HIDDEN,), alpha=_L2, batch_size=_FIT_BATCH, learning_rate_init=_FIT_LEARNING_RATE,
                                 max_iter=_FIT_ITERATIONS, random_state=seed + member).fit(standardised, labels)
                   for member in range(BAGGED)]
    hidden_weights = np.concatenate([model.coefs_[0] for model in members], axis=1)
    hidden_bias = np.concatenate([model.intercepts_[0] for model in members])
    weights = np.concatenate([model.coefs_[1][:, 0] for model in members]) / BAGGED
    bias = float(np.mean([model.intercepts_[1][0] for model in members]))
    return RejectionStats(mean.astype(np.float32), scale.astype(np.float32), hidden_weights.astype(np.float32),
                          hidden_bias.astype(np.float32), weights.astype(np.float32), bias, 0.0, epoch_folder, run_id)


def novelty_tensor(features: tf.Tensor, stats: RejectionStats) -> tf.Tensor:
    """The graph form of :meth:`RejectionStats.scores`: float32 features ``[N, D]`` → float32 ``[N]``."""
    standardised = (features - tf.constant(stats.mean)) / tf.constant(stats.scale)
    hidden = tf.nn.relu(tf.matmul(standardised, tf.constant(stats.hidden_weights)) + tf.constant(stats.hidden_bias))
    return tf.linalg.matvec(hidden, tf.constant(stats.weights)) + stats.bias


def choose_threshold(real: dict[str, np.ndarray], max_flagged: float) -> float:
    """The smallest threshold that flags at most ``max_flagged`` of every set of real digits' scores ``[N]``
    (so the strictest set decides)."""
    return float(max(np.quantile(scores, 1.0 - max_flagged, method="higher") for scores in real.values()))
