"""On-the-fly augmentation of digit batches inside the graph: small random affine and elastic distortions.

Digits tolerate small shifts, rotations, shears and scalings, and the smooth local wobble of an
*elastic distortion* (Simard, Steinkraus & Platt, 2003: a random displacement field smoothed by a
Gaussian), but not flips (a mirrored 2 is no digit), so no flips are made. Randomness is *stateless*,
drawn from a ``[2]`` seed tensor (the trainer passes ``[seed, global_step]``), so a resumed or
repeated run sees exactly the same distortions. Each image is resampled once, for both distortions.
"""

from __future__ import annotations

import math

import numpy as np

from lenet_tf._tf import tf


def _uniform(seed: tf.Tensor, shape, limit: float) -> tf.Tensor:
    return tf.random.stateless_uniform(shape, seed=seed, minval=-limit, maxval=limit)


def gaussian_matrix(size: int, sigma: float) -> np.ndarray:
    """``[size, size]`` matrix whose product with a vector smooths it by a normalised Gaussian of
    ``sigma`` pixels, reading zeros beyond both ends."""
    offsets = np.arange(size)[:, None] - np.arange(size)[None, :]
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    full = np.exp(-0.5 * (np.arange(-size, size + 1) / sigma) ** 2).sum()
    return (taps / full).astype(np.float32)


def elastic_field(seed: tf.Tensor, count: tf.Tensor, height: int, width: int, alpha: float,
                  sigma: float) -> tf.Tensor:
    """Random displacements ``[2, count, height, width]`` in pixels (x, then y): uniform noise in
    [-1, 1] per pixel, smoothed by a Gaussian of ``sigma`` pixels (zeros beyond the border), times ``alpha``."""
    noise = _uniform(seed, tf.stack([2, count, height, width]), 1.0)
    # The Gaussian is separable: smooth the columns, then the rows, as two small matrix products.
    smooth = tf.matmul(gaussian_matrix(height, sigma), noise)
    return alpha * tf.matmul(smooth, gaussian_matrix(width, sigma))


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


def augment_images(
    images: tf.Tensor,
    seed: tf.Tensor,
    strength: float | tf.Tensor = 1.0,
    max_shift: float = 2.5,
    max_rotation_degrees: float = 12.0,
    max_shear: float = 0.15,
    max_scale: float = 0.1,
    elastic_alpha: float = 0.0,
    elastic_sigma: float = 4.0,
) -> tf.Tensor:
    """Applies an independent random affine map, then an optional elastic distortion, to each image.

    Args:
      images: float32 ``[N, H, W, 1]``, background 0.
      seed: int ``[2]`` tensor seeding the stateless random draws.
      strength: factor applied to every limit below and to ``elastic_alpha``, a float or a scalar
        tensor (0 leaves the images unchanged).
      max_shift: largest translation in pixels along each axis.
      max_rotation_degrees: largest rotation either way.
      max_shear: largest horizontal shear factor either way.
      max_scale: largest relative zoom in or out.
      elastic_alpha: scale of the elastic displacement field in pixels (0: no elastic distortion).
      elastic_sigma: smoothness of the elastic field (Gaussian stddev in pixels).

    Returns:
      float32 ``[N, H, W, 1]``, bilinearly resampled, zero outside the original image.
    """
    count = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=6)
    angle = _uniform(seeds[0], [count], strength * math.radians(max_rotation_degrees))
    shear = _uniform(seeds[1], [count], strength * max_shear)
    scale = 1.0 + _uniform(seeds[2], [count], strength * max_scale)
    shift_x = _uniform(seeds[3], [count], strength * max_shift)
    shift_y = _uniform(seeds[4], [count], strength * max_shift)
    # Each output pixel samples the input at: rotate and shear about the image centre, divide by
    # the zoom, shift, then displace by the elastic field.
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    a00, a01 = cos, cos * shear - sin
    a10, a11 = sin, sin * shear + cos
    centre_y, centre_x = (height - 1) / 2.0, (width - 1) / 2.0
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    grid_x, grid_y = grid_x - centre_x, grid_y - centre_y

    def per_image(v: tf.Tensor) -> tf.Tensor:
        return v[:, tf.newaxis, tf.newaxis]

    x = per_image(a00) * grid_x + per_image(a01) * grid_y + per_image(centre_x + shift_x)
    y = per_image(a10) * grid_x + per_image(a11) * grid_y + per_image(centre_y + shift_y)
    if elastic_alpha > 0:
        field = elastic_field(seeds[5], count, height, width, elastic_alpha, elastic_sigma) * strength
        x, y = x + field[0], y + field[1]
    warped = bilinear_sample(images, x, y)
    warped.set_shape(images.shape)
    return warped
