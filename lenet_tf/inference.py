"""Batched inference on uint8 images with a LeNet5 built in the current graph."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lenet_tf.core.tf import tf, tf1
from lenet_tf.data.mnist import INPUT_SHAPE
from lenet_tf.model import LeNet5
from lenet_tf.objectives import cross_entropy, scale_images

EVAL_BATCH_SIZE = 2500  # large batches: fewer session calls, and the conv kernels run near full speed


@dataclass(frozen=True)
class Predictions:
    """Softmax probabilities ``[N, C]`` and, when labels were given, per-example losses ``[N]``."""

    probabilities: np.ndarray
    losses: np.ndarray | None = None

    @property
    def classes(self) -> np.ndarray:
        """The predicted class of each example, int ``[N]``."""
        return self.probabilities.argmax(axis=1)

    def accuracy(self, labels: np.ndarray) -> float:
        """Fraction of examples whose predicted class equals ``labels``."""
        return float(np.mean(self.classes == labels))

    @property
    def loss(self) -> float:
        """Mean cross-entropy over the examples."""
        return float(np.mean(self.losses))


class InferenceGraph:
    """Placeholders for uint8 images ``[N, 32, 32, 1]`` and int32 labels ``[N]`` feeding ``net`` in inference mode.

    With ``towers`` > 1 the batch is split into that many shards that run in parallel (see
    :func:`lenet_tf.core.tf.default_towers`).
    """

    def __init__(self, net: LeNet5, towers: int = 1) -> None:
        self.images = tf1.placeholder(tf.uint8, [None, *INPUT_SHAPE], name="eval_images")
        self.labels = tf1.placeholder(tf.int32, [None], name="eval_labels")
        self.towers = towers
        images = scale_images(self.images)
        self.logits = net(images, training=False, shards=towers)
        self.probabilities = tf.nn.softmax(self.logits)
        self.losses = cross_entropy(self.logits, self.labels)

    def run(
        self, session: tf1.Session, images: np.ndarray, labels: np.ndarray | None = None,
        batch_size: int = EVAL_BATCH_SIZE,
    ) -> Predictions:
        """Runs the network over ``images`` in batches; adds per-example losses when ``labels`` are given."""
        probabilities, losses = [], []
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            count = len(batch)
            if count < self.towers:  # every tower needs at least one image: pad with blank ones
                batch = np.concatenate([batch, np.zeros((self.towers - count, *batch.shape[1:]), batch.dtype)])
            feed = {self.images: batch}
            if labels is None:
                probabilities.append(session.run(self.probabilities, feed)[:count])
            else:
                feed[self.labels] = np.resize(labels[start:start + batch_size], len(batch))
                batch_probabilities, batch_losses = session.run([self.probabilities, self.losses], feed)
                probabilities.append(batch_probabilities[:count])
                losses.append(batch_losses[:count])
        width = self.probabilities.shape[-1]
        return Predictions(
            np.concatenate(probabilities) if probabilities else np.zeros((0, width), np.float32),
            np.concatenate(losses) if losses else None,
        )
