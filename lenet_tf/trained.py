"""A trained LeNet5 restored from a training folder into a graph and session of its own."""

from __future__ import annotations

import os

import numpy as np

from lenet_tf import checkpoint
from lenet_tf._tf import default_towers, session_config, tf, tf1
from lenet_tf.data import pad_images
from lenet_tf.errors import CheckpointError
from lenet_tf.inference import EVAL_BATCH_SIZE, InferenceGraph, Predictions
from lenet_tf.model import LeNet5
from lenet_tf.precision import choose


class TrainedModel:
    """Restores the ``best`` (or ``last``) epoch of ``checkpoint_dir`` for inference.

    ``precision`` is ``auto``, ``fp32`` or ``bf16`` (:func:`lenet_tf.precision.choose`; ``None``:
    ``$LENET_TF_PRECISION``, else ``auto``). Use as a context manager, or call :meth:`close`, to free the session.
    """

    def __init__(self, checkpoint_dir: str | os.PathLike = "SavedModel", which: str = "best",
                 precision: str | None = None) -> None:
        self.precision = choose(precision)
        config = self.read_config(checkpoint_dir, which)
        self.run, self.checkpoint = config["run"], config["checkpoint"]
        self.epoch = self.run[which]["epoch"]
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.net = LeNet5(**config["model"])
            self.towers = default_towers(EVAL_BATCH_SIZE)
            self.inference = InferenceGraph(self.net, self.towers)
        self.session = tf1.Session(graph=self.graph, config=session_config(self.towers, self.precision.used))
        try:
            self.net.restore(self.session, self.checkpoint, checkpoint_scope=self.net.name)
        except CheckpointError:
            self.session.close()
            raise
        self.graph.finalize()

    @staticmethod
    def read_config(checkpoint_dir: str | os.PathLike, which: str = "best") -> dict:
        """The run record, the checkpoint prefix and validated :class:`LeNet5` arguments of a training folder."""
        run = checkpoint.read_run(checkpoint_dir)
        prefix = checkpoint.checkpoint_prefix(checkpoint_dir, which, run)
        try:
            LeNet5(**run["model"])
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{checkpoint_dir}: unknown model configuration ({err})") from None
        return {"run": run, "checkpoint": prefix, "model": run["model"]}

    def predict(self, images: np.ndarray, labels: np.ndarray | None = None) -> Predictions:
        """Classifies uint8 digits ``[N, 28, 28]`` or padded ``[N, 32, 32, 1]``."""
        images = np.asarray(images, dtype=np.uint8)
        if images.ndim == 3 and images.shape[1:] == (28, 28):
            images = pad_images(images)
        if images.ndim != 4 or images.shape[1:] != (32, 32, 1):
            raise ValueError(f"images must be [N, 28, 28] or [N, 32, 32, 1], got {images.shape}")
        return self.inference.run(self.session, images, labels)

    def close(self) -> None:
        """Releases the session."""
        self.session.close()

    def __enter__(self) -> TrainedModel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
