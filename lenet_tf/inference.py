"""Batched inference on uint8 images with a LeNet5 (or an ensemble of them) built in the current graph, with
optional test-time augmentation."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lenet_tf.core.tf import tf, tf1
from lenet_tf.data.sampling import bilinear_sample
from lenet_tf.data.mnist import INPUT_SHAPE
from lenet_tf.model import LeNet5
from lenet_tf.objectives import cross_entropy, scale_images
from lenet_tf.rejection import RejectionStats, feature_tensor, novelty_tensor

EVAL_BATCH_SIZE = 2500  # large batches: fewer session calls, and the conv kernels run near full speed
MODEL_SCOPE = "lenet5"  # the variable scope `lenet-tf train` writes a model (an ensemble's first member) under
_MEMBER_SEED_STRIDE = 1_000_003  # member k's op seeds lie far from every other member's (LeNet5 offsets them)
# Test-time augmentation: the digit as given, and a few small affine variants of it (rotation in degrees
# anticlockwise, zoom factor, shift right and down in pixels), whose probabilities are averaged. Chosen on the
# validation-side robustness suite among rotations (±5°, ±8°), zooms (0.9-1.1, 0.95-1.05), shifts (0.5, 1 and
# 1.5 pixels; 4 or 8 neighbours) and their mixes (docs/robustness.md, "Test-time augmentation and ensembles").
TTA_VARIANTS: tuple[tuple[float, float, float, float], ...] = (
    (0.0, 1.0, 0.0, 0.0), (0.0, 1.0, 1.0, 0.0), (0.0, 1.0, -1.0, 0.0), (0.0, 1.0, 0.0, 1.0), (0.0, 1.0, 0.0, -1.0))


def member_scope(index: int, base: str = MODEL_SCOPE) -> str:
    """The variable scope of an ensemble's member ``index``: ``base`` (so that a single model is today's
    checkpoint), then ``base_1``, ``base_2``, …"""
    return base if index == 0 else f"{base}_{index}"


def ensemble_members(model: dict, count: int = 1) -> list[LeNet5]:
    """``count`` :class:`LeNet5` of one configuration (a run record's ``model``), member k named
    :func:`member_scope` of the model's name and, when ``model`` has a seed, seeded apart from the others."""
    seed, base = model.get("seed"), model.get("name", MODEL_SCOPE)
    return [LeNet5(**{**model, "name": member_scope(k, base),
                      "seed": None if seed is None else seed + _MEMBER_SEED_STRIDE * k}) for k in range(count)]


def restore_members(nets: Sequence[LeNet5], session: tf1.Session, checkpoint: str | os.PathLike) -> None:
    """Loads each member of :func:`ensemble_members` from a checkpoint written by ``lenet-tf train``, where each
    was saved under its name (see :meth:`LeNet5.restore`)."""
    for net in nets:
        net.restore(session, checkpoint, checkpoint_scope=net.name)


def _variant_grid(height: int, width: int, variants: Sequence[tuple[float, float, float, float]]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Where each pixel of each variant samples the original: x and y ``[V, H, W]`` (pixel centres at integers)."""
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float64)
    centre_y, centre_x = (height - 1) / 2.0, (width - 1) / 2.0
    xs, ys = [], []
    for degrees, zoom, right, down in variants:
        cos, sin = math.cos(math.radians(degrees)) / zoom, math.sin(math.radians(degrees)) / zoom
        dx, dy = grid_x - centre_x - right, grid_y - centre_y - down
        xs.append(cos * dx - sin * dy + centre_x)
        ys.append(sin * dx + cos * dy + centre_y)
    return np.float32(xs), np.float32(ys)


def tta_variants(images: tf.Tensor, variants: Sequence[tuple[float, float, float, float]]) -> tf.Tensor:
    """float32 images ``[N, H, W, 1]`` → their affine ``variants`` ``[V * N, H, W, 1]``, variant-major
    (bilinear, 0 outside the image; each variant is (rotation in degrees, zoom, shift right, shift down))."""
    height, width = images.shape[1], images.shape[2]
    xs, ys = _variant_grid(height, width, variants)
    count = tf.shape(images)[0]
    tiled = tf.tile(images, [len(variants), 1, 1, 1])
    warped = bilinear_sample(tiled, tf.repeat(xs, count, axis=0), tf.repeat(ys, count, axis=0))
    warped.set_shape([None, height, width, 1])
    return warped


def mean_probabilities(nets: Sequence[LeNet5], images: tf.Tensor, *, shards: int = 1, tta: bool = False,
                       name: str | None = None) -> tf.Tensor:
    """The softmax probabilities ``[N, C]`` of float32 images ``[N, 32, 32, 1]``, averaged over the ensemble's
    members ``nets`` and, with ``tta``, over :data:`TTA_VARIANTS` of each image; one network without TTA is
    ``softmax(net(images))``, as ever."""
    inputs = tta_variants(images, TTA_VARIANTS) if tta else images
    logits = [net(inputs, training=False, shards=shards) for net in nets]
    if len(nets) == 1 and not tta:
        return tf.nn.softmax(logits[0], name=name)
    probabilities = tf.add_n([tf.nn.softmax(x) for x in logits]) * (1.0 / len(nets))
    if tta:
        probabilities = tf.reduce_mean(tf.reshape(probabilities, [len(TTA_VARIANTS), -1, nets[0].num_classes]), 0)
    return tf.identity(probabilities, name=name)


@dataclass(frozen=True)
class Predictions:
    """What a model says of ``N`` examples (returned by :meth:`lenet_tf.trained.TrainedModel.predict`).

    Attributes:
      probabilities: float32 ``[N, C]``, the softmax probabilities (of an ensemble or with TTA, averaged).
      losses: float32 ``[N]`` per-example cross-entropy, when labels were given; else ``None``.
      novelty: float32 ``[N]``, each example's novelty score, when the model has rejection statistics
        (:mod:`lenet_tf.rejection`); else ``None``.
      threshold: the novelty above which an example is "not a digit" (with ``novelty``).
      features: float32 ``[N, 898]``, the features the rejection head reads, when asked for
        (:func:`lenet_tf.rejection.feature_tensor`); else ``None``.
      blank: bool ``[N]``, the examples whose input holds no ink (no digit to classify), when the caller checked
        (``TrainedModel.predict`` does); else ``None``.

    :attr:`classes` is the most probable class of each example (what accuracy counts); :attr:`digits` is the same
    with -1 for blank inputs, as the exported SavedModel and the TF Serving API answer; :attr:`rejected` marks the
    inputs that are not digits.
    """

    probabilities: np.ndarray
    losses: np.ndarray | None = None
    novelty: np.ndarray | None = None
    threshold: float | None = None
    features: np.ndarray | None = None
    blank: np.ndarray | None = None

    @property
    def rejected(self) -> np.ndarray:
        """bool ``[N]``: the examples that are not digits (all False without rejection statistics)."""
        if self.novelty is None:
            return np.zeros(len(self.probabilities), bool)
        return self.novelty > self.threshold

    @property
    def classes(self) -> np.ndarray:
        """The predicted class of each example, int ``[N]``."""
        return self.probabilities.argmax(axis=1)

    @property
    def digits(self) -> np.ndarray:
        """The predicted digit of each example, int ``[N]``, -1 where :attr:`blank`."""
        classes = self.classes
        return classes if self.blank is None else np.where(self.blank, -1, classes)

    def accuracy(self, labels: np.ndarray) -> float:
        """Fraction of examples whose predicted class equals ``labels``."""
        return float(np.mean(self.classes == labels))

    @property
    def loss(self) -> float:
        """Mean cross-entropy over the examples."""
        return float(np.mean(self.losses))


class InferenceGraph:
    """Placeholders for uint8 images ``[N, 32, 32, 1]`` and int32 labels ``[N]`` feeding ``net`` in inference mode.

    ``net`` may be an ensemble's members, whose probabilities are averaged; ``tta`` averages them over
    :data:`TTA_VARIANTS` of each image too (see :func:`mean_probabilities`). :attr:`logits` are then the log of
    the averaged probabilities. With ``towers`` > 1 the batch is split into that many shards that run in parallel
    (see :func:`lenet_tf.core.tf.default_towers`).
    """

    def __init__(self, net: LeNet5 | Sequence[LeNet5], towers: int = 1, tta: bool = False,
                 rejection: RejectionStats | None = None) -> None:
        nets = [net] if isinstance(net, LeNet5) else list(net)
        self.images = tf1.placeholder(tf.uint8, [None, *INPUT_SHAPE], name="eval_images")
        self.labels = tf1.placeholder(tf.int32, [None], name="eval_labels")
        self.towers = towers
        images = scale_images(self.images)
        if len(nets) == 1 and not tta:
            self.logits = nets[0](images, training=False, shards=towers)
        else:  # log-probabilities are logits: their softmax is the averaged probabilities again
            averaged = mean_probabilities(nets, images, shards=towers, tta=tta)
            self.logits = tf.math.log(tf.maximum(averaged, np.finfo(np.float32).tiny))
        self.probabilities = tf.nn.softmax(self.logits)
        self.losses = cross_entropy(self.logits, self.labels)
        # member 0's features of the digits as given (with TTA, the first variant is the identity)
        self.features = feature_tensor(nets[0].endpoints)[:tf.shape(self.images)[0]]
        self.rejection = rejection
        self.novelty = novelty_tensor(self.features, rejection) if rejection else None

    def run(
        self, session: tf1.Session, images: np.ndarray, labels: np.ndarray | None = None,
        batch_size: int = EVAL_BATCH_SIZE, *, features: bool = False,
    ) -> Predictions:
        """Runs the network over ``images`` in batches; adds per-example losses when ``labels`` are given, novelty
        scores when the graph has rejection statistics, and the rejection head's features with ``features``."""
        fetches = {"probabilities": self.probabilities}
        if labels is not None:
            fetches["losses"] = self.losses
        if self.novelty is not None:
            fetches["novelty"] = self.novelty
        if features:
            fetches["features"] = self.features
        parts = {name: [] for name in fetches}
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            count = len(batch)
            if count < self.towers:  # every tower needs at least one image: pad with blank ones
                batch = np.concatenate([batch, np.zeros((self.towers - count, *batch.shape[1:]), batch.dtype)])
            feed = {self.images: batch}
            if labels is not None:
                feed[self.labels] = np.resize(labels[start:start + batch_size], len(batch))
            for name, value in session.run(fetches, feed).items():
                parts[name].append(value[:count])
        joined = {name: np.concatenate(values) if values else  # no images: empty arrays of the fetches' shapes
                  np.zeros((0, *fetches[name].shape[1:].as_list()), fetches[name].dtype.as_numpy_dtype)
                  for name, values in parts.items()}
        return Predictions(joined["probabilities"], joined.get("losses"), joined.get("novelty"),
                           self.rejection.threshold if self.rejection else None, joined.get("features"))
