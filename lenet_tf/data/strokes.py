"""Stroke re-rendering: each digit thinned to its skeleton once, then redrawn in the graph with a random round pen.

The skeleton (scikit-image's ``skeletonize`` of the ink above half intensity) is stored as each pixel's distance
to it, in eighths of a pixel (uint8, capped at 255), computed once per training set and cached on disk
(:mod:`lenet_tf.data.array_cache`). Redrawing with a pen of radius ``r`` is then one op per pixel:
ink = clip(r + 0.5 - distance, 0, 1), an anti-aliased round pen of diameter ``2r`` along the skeleton, whatever
the writer's pen was.
"""

from __future__ import annotations

import numpy as np

from lenet_tf.core.shards import select_rows
from lenet_tf.core.tf import tf
from lenet_tf.data.augment import augment_images, distorted_digits
from lenet_tf.data.array_cache import array_key, cached_arrays

DISTANCE_UNIT = 8  # stored distances are in 1/8 pixel
PEN_RADIUS = (0.6, 2.2)  # the redrawn pen's radius in pixels (MNIST's strokes are 2-4 pixels wide)


def skeleton_distances(images: np.ndarray) -> np.ndarray:
    """uint8 ``[N, H, W]``: each pixel's distance to its digit's skeleton in 1/8 pixel (255: 31.9 or more;
    all 255 for a digit without ink) for uint8 digits ``[N, H, W]`` or ``[N, H, W, 1]``; cached on disk."""
    images = np.asarray(images, np.uint8).reshape(len(images), images.shape[1], images.shape[2])
    return cached_arrays("skeletons", array_key("v1", images), lambda: {"distances": _compute(images)})["distances"]


def _compute(images: np.ndarray) -> np.ndarray:
    from scipy import ndimage
    from skimage.morphology import skeletonize

    distances = np.full(images.shape, 255, np.uint8)
    for i, image in enumerate(images):
        skeleton = skeletonize(image > 127)
        if skeleton.any():
            distance = ndimage.distance_transform_edt(~skeleton) * DISTANCE_UNIT
            distances[i] = np.minimum(np.round(distance), 255).astype(np.uint8)
    return distances


def restroke(images: tf.Tensor, distances: tf.Tensor, seed: tf.Tensor, probability: float | tf.Tensor,
             pen_radius: tuple[float, float] = PEN_RADIUS) -> tf.Tensor:
    """Redraws a random ``probability`` share of the digits along their skeletons with a round pen of a random
    radius (uniform in ``pen_radius`` pixels), the rest unchanged.

    Args:
      images: float32 ``[N, H, W, 1]`` in [0, 1].
      distances: uint8 ``[N, H, W]`` from :func:`skeleton_distances` of the same digits.
      seed: int ``[2]`` tensor seeding the draws.
      probability: share of redrawn digits, a float or scalar tensor (0 leaves the images unchanged).

    Returns:
      float32 ``[N, H, W, 1]`` in [0, 1].
    """
    count = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    radius = tf.random.stateless_uniform([count], seed=seeds[0], minval=pen_radius[0], maxval=pen_radius[1])
    distance = tf.cast(distances, tf.float32)[..., tf.newaxis] / DISTANCE_UNIT
    redrawn = tf.clip_by_value(radius[:, tf.newaxis, tf.newaxis, tf.newaxis] + 0.5 - distance, 0.0, 1.0)
    has_skeleton = tf.equal(tf.reduce_min(distances, axis=[1, 2]), 0)  # (== on tensors is identity in graphs)
    chosen = (tf.random.stateless_uniform([count], seed=seeds[1]) < probability) & has_skeleton
    return select_rows(chosen, redrawn, images)


def restyled_digits(images: np.ndarray, seed: int, restroke_share: float, max_aspect: float) -> np.ndarray:
    """Every digit restyled once, with two of the style options' distortions at the caller's shares: a
    ``restroke_share`` of them redrawn along their skeleton with another pen (:func:`restroke`), then each moved,
    turned, sheared, zoomed and narrowed or widened by up to ``exp(±max_aspect)``
    (:func:`lenet_tf.data.augment.augment_images`); none stretched to its box or replaced. uint8 ``[N, 32, 32, 1]``
    (padded MNIST digits) in and out, the same for the same ``seed``."""
    distances = skeleton_distances(images)

    def restyle(pixels: tf.Tensor) -> tf.Tensor:
        # [seed, 1]: damaged_digits splits [seed, 0], whose first draws a split of it would repeat
        seeds = tf.random.experimental.stateless_split(tf.constant([seed, 1], tf.int64), num=2)
        redrawn = restroke(pixels, tf.constant(distances), seeds[0], restroke_share)
        return augment_images(redrawn, seeds[1], max_aspect=max_aspect)

    return distorted_digits(images, restyle)
