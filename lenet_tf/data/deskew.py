"""Slant removed in the graph: each digit sheared upright by its ink's second moments.

Writers slant their digits by different amounts (italic 6s and 9s, right-leaning 1s and 7s). :func:`deskew`
measures each picture's slant as the covariance of its ink's x and y over the variance of its y (the ink's
second moments, as in the classic moment-based deskewing of MNIST) and shears the picture horizontally about
the ink's centre of mass so that this slant becomes 0. It is part of :class:`lenet_tf.model.LeNet5` with
``deskew``, so training, ``TrainedModel``, serving and the exported models apply it alike.
"""

from __future__ import annotations

from typing import Callable

from lenet_tf.core.tf import tf
from lenet_tf.data.sampling import bilinear_sample

MAX_SLANT = 0.6  # |shear| at most: x moves by 0.6 pixel per pixel of height (about 31 degrees)


def _grid(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Pixel rows and columns float32 ``[H, W]`` of ``images`` ``[N, H, W, 1]``."""
    height, width = images.shape[1], images.shape[2]
    return tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij")


def slant(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """float32 images ``[N, H, W, 1]`` (ink > 0) → each one's slant ``[N]`` (cov(x, y) / var(y) of its ink,
    clipped to ±:data:`MAX_SLANT`; 0 for a blank picture) and its ink's centre row ``[N]``."""
    ink = tf.nn.relu(images[..., 0])
    ys, xs = _grid(images)
    total = tf.reduce_sum(ink, axis=[1, 2])
    safe = tf.maximum(total, 1e-6)

    def mean(values: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(ink * values, axis=[1, 2]) / safe

    cy, cx = mean(ys), mean(xs)
    dy, dx = ys[None] - cy[:, None, None], xs[None] - cx[:, None, None]
    var_y, cov = mean(dy * dy), mean(dx * dy)
    shear = tf.where(total > 0, cov / tf.maximum(var_y, 1e-6), tf.zeros_like(total))
    return tf.clip_by_value(shear, -MAX_SLANT, MAX_SLANT), cy


def deskew(images: tf.Tensor, warp: Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None = None) -> tf.Tensor:
    """float32 images ``[N, H, W, 1]`` (white ink on black) → the same, each sheared horizontally about its ink's
    centre so that its slant (:func:`slant`) is 0: output ``(x, y)`` reads the input at ``(x + s * (y - cy), y)``,
    bilinearly, 0 outside. ``warp(images, maps [N, 6])`` resamples (e.g. :func:`lenet_tf.data.augment.affine_sample`,
    one kernel); ``None``: gathers (:func:`lenet_tf.data.sampling.bilinear_sample`), which TFLite runs too. The same
    values either way."""
    shear, cy = slant(images)
    if warp is not None:
        ones, zeros = tf.ones_like(shear), tf.zeros_like(shear)
        return warp(images, tf.stack([ones, shear, -shear * cy, zeros, ones, zeros], axis=1))
    ys, xs = _grid(images)
    x = xs[None] + shear[:, None, None] * (ys[None] - cy[:, None, None])
    return bilinear_sample(images, x, tf.broadcast_to(ys[None], tf.shape(x)))
