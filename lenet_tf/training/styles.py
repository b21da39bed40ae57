"""Style-invariant training: the options that change a digit's style, not its capture, applied in the graph.

* ``aspect``: the width scaled by ``exp(u)``, ``u`` uniform in ``[-aspect, aspect]`` (in the affine map of
  :func:`lenet_tf.data.augment.augment_images`, with ``augment``);
* ``fill_box``: that share of the digits stretched to fill a square box (:func:`lenet_tf.data.augment.fill_box`);
* ``restroke``: that share of the digits redrawn along their skeleton with a random round pen
  (:mod:`lenet_tf.data.strokes`; skeletons computed once per training set and cached);
* ``synthetic``: that share of each batch replaced by synthetic digits of the styles MNIST lacks
  (:mod:`lenet_tf.data.synthetic`: fonts and stroke templates; computed once and cached).

All draws are stateless and seeded by ``[seed, global step]``; every share is scaled by the augmentation strength,
so the clean epochs (strength 0) train on MNIST as it is.
"""

from __future__ import annotations

import numpy as np

from lenet_tf.core.shards import select_rows
from lenet_tf.core.tf import tf, tf1
from lenet_tf.data.augment import fill_box
from lenet_tf.data.mnist import pad_images
from lenet_tf.data.strokes import restroke, skeleton_distances
from lenet_tf.data.synthetic import synthetic_digits
from lenet_tf.objectives import scale_images

SYNTHETIC_COUNT = 10000  # the pool of synthetic digits (1,000 per class) batches draw from


class StyleMix:
    """A config's style options, as graph ops on a batch; ``arrays()`` gives the data its variables start from."""

    def __init__(self, config, train_images: np.ndarray, shards: int = 1, native_warp: bool = False) -> None:
        """``config``: a :class:`lenet_tf.training.trainer.TrainConfig`; ``train_images``: uint8 ``[N, 32, 32, 1]``;
        ``shards``, ``native_warp``: how resampling runs (:func:`lenet_tf.data.augment.affine_sample`)."""
        self.config = config
        self.shards, self.native_warp = shards, native_warp
        self._arrays: dict[tf.Tensor, np.ndarray] = {}
        local = [tf1.GraphKeys.LOCAL_VARIABLES]
        if config.restroke:
            distances = skeleton_distances(train_images)
            self.distances = self._variable(distances, "skeleton_distances", local)
        if config.synthetic:
            images, labels = synthetic_digits(SYNTHETIC_COUNT, seed=0)
            self.synthetic_images = self._variable(pad_images(images), "synthetic_images", local)
            self.synthetic_labels = self._variable(labels, "synthetic_labels", local)

    def _variable(self, array: np.ndarray, name: str, collections: list[str]) -> tf.Variable:
        initial = tf1.placeholder(tf.as_dtype(array.dtype), array.shape)
        self._arrays[initial] = array
        return tf1.Variable(initial, trainable=False, collections=collections, name=name)

    def feed(self) -> dict:
        """The initial values of the variables, for the local variables' initialiser."""
        return dict(self._arrays)

    def __call__(self, images: tf.Tensor, labels: tf.Tensor, indices: tf.Tensor, strength: tf.Tensor,
                 global_step: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``images`` float32 ``[N, 32, 32, 1]`` in [0, 1] of the training set's ``indices`` and their ``labels``,
        with the style options applied (``strength`` scales each share)."""
        config = self.config
        seeds = tf.random.experimental.stateless_split(
            tf.cast(tf.stack([config.seed, global_step]), tf.int64) + [0, 7919], num=4)
        share = tf.minimum(tf.cast(strength, tf.float32), 1.0)
        if config.restroke:
            images = restroke(images, tf.gather(self.distances, indices), seeds[0], share * config.restroke)
        if config.synthetic:
            count = tf.shape(images)[0]
            chosen = tf.random.stateless_uniform([count], seed=seeds[1]) < share * config.synthetic
            picks = tf.random.stateless_uniform([count], seed=seeds[2], maxval=SYNTHETIC_COUNT, dtype=tf.int32)
            typed = scale_images(tf.gather(self.synthetic_images, picks))
            images = select_rows(chosen, typed, images)
            labels = tf.where(chosen, tf.gather(self.synthetic_labels, picks), labels)
        if config.fill_box:
            images = fill_box(images, seeds[3], share * config.fill_box, shards=self.shards,
                              native=self.native_warp)
        return images, labels
