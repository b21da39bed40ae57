"""Batched inference on uint8 images with a LeNet5 built in the current graph."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lenet_tf._tf import tf, tf1
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
    """Placeholders for uint8 images ``[N, 32, 32, 1]`` and int32 labels ``[N]`` feeding ``net`` in inference mode."""

    def __init__(self, net: LeNet5) -> None:
        self.images = tf1.placeholder(tf.uint8, [None, 32, 32, 1], name="eval_images")
        self.labels = tf1.placeholder(tf.int32, [None], name="eval_labels")
        self.logits = net(scale_images(self.images), training=False)
        self.probabilities = tf.nn.softmax(self.logits)
        self.losses = cross_entropy(self.logits, self.labels)

    def run(
        self, session: tf1.Session, images: np.ndarray, labels: np.ndarray | None = None,
        batch_size: int = EVAL_BATCH_SIZE,
    ) -> Predictions:
        """Runs the network over ``images`` in batches; adds per-example losses when ``labels`` are given."""
        probabilities, losses = [], []
        for start in range(0, len(images), batch_size):
            feed = {self.images: images[start:start + batch_size]}
            if labels is None:
                probabilities.append(session.run(self.probabilities, feed))
            else:
                feed[self.labels] = labels[start:start + batch_size]
                batch_probabilities, batch_losses = session.run([self.probabilities, self.losses], feed)
                probabilities.append(batch_probabilities)
                losses.append(batch_losses)
        width = self.probabilities.shape[-1]
        return Predictions(
            np.concatenate(probabilities) if probabilities else np.zeros((0, width), np.float32),
            np.concatenate(losses) if losses else None,
        )
