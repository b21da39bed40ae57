"""Training batches in the graph: the training set held in (local) variables, and everything that distorts a batch
— augmentation, capture distortions and the style options — under one strength that the clean epochs feed 0.

* augmentation (``augment``): random shifts, rotations, shears, zooms, ``aspect`` and elastic distortions
  (:func:`lenet_tf.data.augment.augment_images`), then the capture distortions (pen width, blur, coarse scans,
  gamma, grey paper: :func:`lenet_tf.data.augment.capture_distort`) and damaged captures (``damage``:
  :func:`lenet_tf.data.damage.damage`);
* style options: ``restroke``, that share of the digits redrawn along their skeleton with a random round pen
  (:mod:`lenet_tf.data.strokes`, skeletons computed once per training set and cached); ``synthetic``, that share
  of each batch replaced by synthetic digits of styles MNIST lacks (:mod:`lenet_tf.data.synthetic`);
  ``fill_box``, that share stretched to fill a square box (:func:`lenet_tf.data.augment.fill_box`).

All draws are stateless and seeded by ``[seed, global step]``; every share is scaled by the strength, so the clean
epochs (strength 0) train on MNIST as it is. Resampling runs in ``shards`` parts, with the native affine warp
where it was measured faster here (:func:`choose_warp`).
"""

from __future__ import annotations

import numpy as np

from lenet_tf.core import native_ops
from lenet_tf.core.shards import select_rows
from lenet_tf.core.tf import tf, tf1
from lenet_tf.data.augment import augment_images, capture_distort, fill_box
from lenet_tf.data.damage import damage
from lenet_tf.data.mnist import pad_images
from lenet_tf.data.strokes import restroke, skeleton_distances
from lenet_tf.data.synthetic import SYNTHETIC_POOL, synthetic_digits
from lenet_tf.objectives import scale_images
from lenet_tf.training.config import TrainConfig



def choose_warp(config: TrainConfig, precision: str) -> dict:
    """How resampling runs, and why: the native affine warp where it builds and was measured faster than
    TensorFlow's ImageProjectiveTransformV3 here, else that (``"tf"``); nothing to choose without resampling."""
    if not ((config.augment and not config.elastic_alpha) or config.fill_box or config.model.get("deskew")):
        return {"used": "tf", "reason": "no affine resampling in this configuration"}
    faster, reason = native_ops.faster_than_tf("affine_warp", precision)
    return {"used": "native" if faster else "tf", "reason": reason}


class TrainingBatches:
    """The training set and a config's distortions as graph ops: :meth:`batch` gives the (distorted) images and
    labels at a batch of indices; :meth:`feed` switches the distortions off for a clean step."""

    def __init__(self, config: TrainConfig, images: np.ndarray, labels: np.ndarray, *, shards: int = 1,
                 warp: str = "tf") -> None:
        """``images`` uint8 ``[N, 32, 32, 1]`` and ``labels`` int32 ``[N]``: the training set; ``shards``: parts
        resampling runs in; ``warp``: ``"native"`` or ``"tf"`` (:func:`choose_warp`)."""
        self.config, self.shards, self.native_warp = config, shards, warp == "native"
        self._arrays: dict[tf.Tensor, np.ndarray] = {}
        self.images = self._variable(images, "train_images")
        self.labels = self._variable(labels.astype(np.int32), "train_labels")
        # Fed 0 for the clean epochs, which leaves the images unchanged.
        self.strength = tf1.placeholder_with_default(float(config.augment_strength), [], name="augment_strength")
        if config.restroke:
            self.distances = self._variable(skeleton_distances(images), "skeleton_distances")
        if config.synthetic:
            synthetic, synthetic_labels = synthetic_digits(SYNTHETIC_POOL, seed=0)
            self.synthetic_images = self._variable(pad_images(synthetic), "synthetic_images")
            self.synthetic_labels = self._variable(synthetic_labels, "synthetic_labels")

    def _variable(self, array: np.ndarray, name: str) -> tf.Variable:
        """A local variable (never checkpointed) initialised from ``array`` by :meth:`init_feed`."""
        initial = tf1.placeholder(tf.as_dtype(array.dtype), array.shape)
        self._arrays[initial] = array
        return tf1.Variable(initial, trainable=False, collections=[tf1.GraphKeys.LOCAL_VARIABLES], name=name)

    def init_feed(self) -> dict:
        """The feed of the local variables' initialiser."""
        return dict(self._arrays)

    @property
    def distorts(self) -> bool:
        """Whether any distortion is on (so that clean steps need a feed)."""
        return self.config.augment or self.config.styles

    def feed(self, augment: bool) -> dict:
        """The feed for a step: strength 0 to leave it undistorted, else nothing."""
        return {self.strength: 0.0} if self.distorts and not augment else {}

    def batch(self, indices: tf.Tensor, global_step: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """float32 images ``[N, 32, 32, 1]`` in [0, 1] and int32 labels ``[N]`` of the training set at int32
        ``indices`` ``[N]``, distorted as configured, seeded by ``global_step``."""
        images = scale_images(tf.gather(self.images, indices))
        labels = tf.gather(self.labels, indices)
        if self.config.styles:
            images, labels = self._styles(images, labels, indices, global_step)
        return self._augment(images, global_step), labels

    def _augment(self, images: tf.Tensor, global_step: tf.Tensor) -> tf.Tensor:
        config = self.config
        if not config.augment:
            return images
        seed = tf.stack([config.seed, global_step])
        images = augment_images(images, seed, self.strength, elastic_alpha=config.elastic_alpha,
                                elastic_sigma=config.elastic_sigma, max_aspect=config.aspect, shards=self.shards,
                                native=self.native_warp)
        # The reversed seed gives the capture draws a stream of their own, independent of the affine ones.
        images = capture_distort(images, seed[::-1], self.strength, **config.capture_distortions())
        if config.damage:
            share = tf.minimum(tf.cast(self.strength, tf.float32), 1.0) * config.damage
            images = damage(images, seed[::-1] + [104729, 0], share)
        return images

    def _styles(self, images: tf.Tensor, labels: tf.Tensor, indices: tf.Tensor,
                global_step: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        config = self.config
        seeds = tf.random.experimental.stateless_split(
            tf.cast(tf.stack([config.seed, global_step]), tf.int64) + [0, 7919], num=4)
        share = tf.minimum(tf.cast(self.strength, tf.float32), 1.0)
        if config.restroke:
            images = restroke(images, tf.gather(self.distances, indices), seeds[0], share * config.restroke)
        if config.synthetic:
            count = tf.shape(images)[0]
            chosen = tf.random.stateless_uniform([count], seed=seeds[1]) < share * config.synthetic
            picks = tf.random.stateless_uniform([count], seed=seeds[2], maxval=SYNTHETIC_POOL, dtype=tf.int32)
            typed = scale_images(tf.gather(self.synthetic_images, picks))
            images = select_rows(chosen, typed, images)
            labels = tf.where(chosen, tf.gather(self.synthetic_labels, picks), labels)
        if config.fill_box:
            images = fill_box(images, seeds[3], share * config.fill_box, shards=self.shards,
                              native=self.native_warp)
        return images, labels

