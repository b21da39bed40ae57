"""Bilinear sampling of a batch of images at given pixel coordinates, from gathers and arithmetic only (no native
module, and ops that TFLite runs): shared by the augmentation and the in-graph deskewing."""

from __future__ import annotations

from lenet_tf.core.tf import tf


def bilinear_sample(images: tf.Tensor, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Samples ``images`` ``[N, H, W, 1]`` at the pixel coordinates ``x``, ``y`` ``[N, H, W]``
    (pixel centres are integers), reading 0 outside the image."""
    count = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    # A one-pixel frame of zeros: every corner clipped into it reads 0.
    padded = tf.reshape(tf.pad(images[..., 0], [[0, 0], [1, 1], [1, 1]]), [-1])
    x0, y0 = tf.floor(x), tf.floor(y)
    wx, wy = x - x0, y - y0
    base = tf.reshape(tf.range(count) * (height + 2) * (width + 2), [-1, 1, 1])

    def corner(cx: tf.Tensor, cy: tf.Tensor) -> tf.Tensor:
        cx = tf.cast(tf.clip_by_value(cx, -1.0, float(width)), tf.int32) + 1
        cy = tf.cast(tf.clip_by_value(cy, -1.0, float(height)), tf.int32) + 1
        return tf.gather(padded, base + cy * (width + 2) + cx)

    top = corner(x0, y0) * (1 - wx) + corner(x0 + 1, y0) * wx
    bottom = corner(x0, y0 + 1) * (1 - wx) + corner(x0 + 1, y0 + 1) * wx
    return (top * (1 - wy) + bottom * wy)[..., tf.newaxis]
