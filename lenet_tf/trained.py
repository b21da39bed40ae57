"""A trained LeNet5 restored from a training folder into a graph and session of its own."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from lenet_tf.runs import checkpoint, lock
from lenet_tf.core.tf import default_towers, session_config, tf, tf1
from lenet_tf.data.mnist import INPUT_SHAPE, MNIST_SIZE, pad_images
from lenet_tf.core.errors import CheckpointError
from lenet_tf.core.options import ENSEMBLE
from lenet_tf.data.images import blank_digits
from lenet_tf.inference import EVAL_BATCH_SIZE, InferenceGraph, Predictions, ensemble_members, restore_members
from lenet_tf.model import LeNet5
from lenet_tf.core.precision import choose
from lenet_tf.rejection import usable_head


class TrainedModel:
    """Restores a trained LeNet5 (or the ensemble of a ``--ensemble N`` run) for inference, in a graph and session
    of its own.

    ``checkpoint_dir`` is a training folder (its ``which`` epoch, ``"best"`` or ``"last"``), an epoch folder
    (``SavedModel/epoch-0007``) or a Saver prefix (``SavedModel/epoch-0007/ckpt``) inside a training folder, whose
    ``run.json`` gives the model's configuration.
    The run is read under the folder's shared record lock (:func:`lenet_tf.runs.lock.reading`), so a folder
    being trained gives its latest recorded epoch, never a half-updated one.
    ``precision`` is ``auto``, ``fp32`` or ``bf16`` (:func:`lenet_tf.core.precision.choose`; ``None``:
    ``$LENET_TF_PRECISION``, else ``auto``). An ensemble's members' probabilities are averaged in the graph;
    ``tta`` averages them over a few affine variants of each digit too (:data:`lenet_tf.inference.TTA_VARIANTS`).
    :attr:`net` is the (first) member. When the training folder holds rejection statistics of this checkpoint's
    epoch (``lenet-tf calibrate``, :mod:`lenet_tf.rejection`), :meth:`predict` scores each digit's novelty and
    :attr:`Predictions.rejected` marks what is not a digit; :attr:`rejection` holds them (else ``None``;
    ``reject=False`` leaves them out; a head fitted on other features, by an older lenet_tf, is left out with a
    warning).
    Use as a context manager, or call :meth:`close`, to free the session.
    """

    def __init__(self, checkpoint_dir: str | os.PathLike = "SavedModel", which: str = "best",
                 precision: str | None = None, *, tta: bool = False, reject: bool = True,
                 notice: Callable[[str], None] | None = None) -> None:
        self.precision = choose(precision)
        with lock.reading(checkpoint_dir):  # run.json and the checkpoint it names stay together meanwhile
            config = self.read_config(checkpoint_dir, which)
            self.run, self.checkpoint, self.epoch = config["run"], config["checkpoint"], config["epoch"]
            self.folder = Path(self.checkpoint).parent.parent
            self.rejection = usable_head(self.checkpoint, self.run) if reject else None
            self.graph = tf.Graph()
            with self.graph.as_default():
                self.members = ensemble_members(config["model"], config["members"])
                self.net = self.members[0]
                self.towers = default_towers(EVAL_BATCH_SIZE)
                self.inference = InferenceGraph(self.members, self.towers, tta, self.rejection)
            self.session = tf1.Session(graph=self.graph, config=session_config(self.towers, self.precision.used))
            try:
                restore_members(self.members, self.session, self.checkpoint)
            except CheckpointError:
                self.session.close()
                raise
        self.graph.finalize()
        if notice:  # the command line says which precision the work runs in, once its inputs proved usable
            notice(self.precision.describe())

    @staticmethod
    def read_config(checkpoint_dir: str | os.PathLike, which: str = "best") -> dict:
        """The run record, the Saver prefix, its epoch, validated :class:`LeNet5` arguments and the number of
        ensemble members (``members``) of a checkpoint.

        ``checkpoint_dir`` takes the forms of :class:`TrainedModel`; the run record is the ``run.json`` of the
        training folder that holds the checkpoint's epoch folder.
        """
        prefix = Path(checkpoint.resolve_checkpoint(checkpoint_dir, which))
        folder = prefix.parent.parent
        if not (folder / checkpoint.RUN_FILE).is_file():
            raise CheckpointError(f"{checkpoint_dir}: no {checkpoint.RUN_FILE} in {folder} to give the model's "
                                  "configuration (pass a folder written by `lenet-tf train`; LeNet5.restore "
                                  "loads any Saver checkpoint)")
        run = checkpoint.read_run(folder)
        epoch = re.fullmatch(r"epoch-(\d+)(-\d+)?", prefix.parent.name)  # "-2": saved beside a replaced run's
        try:
            LeNet5(**run["model"])
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{folder}: unknown model configuration ({err})") from None
        members = run.get("train", {}).get("ensemble", 1)
        if not isinstance(members, int) or not ENSEMBLE.contains(members):
            raise CheckpointError(f"{folder}: unknown model configuration (ensemble must be {ENSEMBLE.describe()}, "
                                  f"got {members!r})")
        return {"run": run, "checkpoint": str(prefix), "epoch": int(epoch.group(1)) if epoch else None,
                "model": run["model"], "members": members}

    def predict(self, images: np.ndarray, labels: np.ndarray | None = None, *, scaled: bool = False,
                features: bool = False) -> Predictions:
        """Classifies MNIST-style digits (white ink on black): ``[N, 28, 28]``, ``[N, 28, 28, 1]`` or padded
        ``[N, 32, 32, 1]`` grey levels 0..255, checked as the HTTP API checks them (:func:`checked_digits`).

        ``scaled``: the images are floats in [0, 1] (multiplied by 255 and rounded here); without it, floats must
        be whole numbers 0..255, so that an array in [0, 1] is refused rather than classified as near-blank.
        ``labels`` (int ``[N]``) adds per-example losses; ``features`` returns the features the rejection head reads.
        Returns :class:`Predictions` (its ``blank`` marks the digits with no ink, ``rejected`` what is not a digit).

        Raises:
          ValueError: another shape, booleans, values outside 0..255 (or [0, 1] when ``scaled``), NaN.
        """
        images = checked_digits(images, scaled)
        blank = blank_digits(images)
        if images.ndim == 4 and images.shape[1:] == (MNIST_SIZE, MNIST_SIZE, 1):
            images = images[..., 0]
        if images.ndim == 3:
            images = pad_images(images)
        return replace(self.inference.run(self.session, images, labels, features=features), blank=blank)

    def close(self) -> None:
        """Releases the session."""
        self.session.close()

    def __enter__(self) -> TrainedModel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_SHAPES = (f"[N, {MNIST_SIZE}, {MNIST_SIZE}], [N, {MNIST_SIZE}, {MNIST_SIZE}, 1] or "
           f"[N, {', '.join(map(str, INPUT_SHAPE))}]")


def checked_digits(images, scaled: bool = False) -> np.ndarray:
    """``images`` as uint8 grey levels of one of the shapes :meth:`TrainedModel.predict` takes.

    Integers must lie in 0..255; floats must be whole numbers 0..255, or with ``scaled`` lie in [0, 1]; booleans
    are refused (as TF Serving's API refuses them for a uint8 input).

    Raises:
      ValueError: with the reason, in one line.
    """
    images = np.asarray(images)
    shape = images.shape
    if not (len(shape) in (3, 4) and (shape[1:] in ((MNIST_SIZE, MNIST_SIZE), (MNIST_SIZE, MNIST_SIZE, 1),
                                                    INPUT_SHAPE))):
        raise ValueError(f"images must be {_SHAPES}, got {shape}")
    kind = images.dtype.kind
    if kind not in "iuf":
        raise ValueError(f"images must be grey levels 0..255 (uint8), got dtype {images.dtype}")
    if images.size == 0:
        return images.astype(np.uint8)
    low, high = images.min(), images.max()
    if kind == "f":
        if not np.isfinite(images).all():
            raise ValueError("images hold NaN or infinite values")
        if scaled:
            if low < 0 or high > 1:
                raise ValueError(f"scaled images must lie in [0, 1], got {low:g}..{high:g}")
            return np.round(images * 255.0).astype(np.uint8)
        if high <= 1 and high > 0:
            raise ValueError(f"images are floats in [0, 1] ({low:g}..{high:g}): pass scaled=True, or give grey "
                             "levels 0..255")
        if (images != np.round(images)).any():
            raise ValueError("images must be grey levels 0..255: got fractional floats (pass scaled=True for "
                             "floats in [0, 1])")
    elif scaled:
        raise ValueError(f"scaled=True is for floats in [0, 1], got dtype {images.dtype}")
    if low < 0 or high > 255:
        raise ValueError(f"images must be grey levels 0..255, got {low:g}..{high:g}")
    return images.astype(np.uint8)
