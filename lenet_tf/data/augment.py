"""On-the-fly augmentation of digit batches inside the graph: small random affine and elastic distortions.

Digits tolerate small shifts, rotations, shears and scalings, and the smooth local wobble of an
*elastic distortion* (Simard, Steinkraus & Platt, 2003: a random displacement field smoothed by a
Gaussian), but not flips (a mirrored 2 is no digit), so no flips are made. Randomness is *stateless*,
drawn from a ``[2]`` seed tensor (the trainer passes ``[seed, global_step]``), so a resumed or
repeated run sees exactly the same distortions. Each image is resampled once, for both distortions.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from lenet_tf.core import native_ops
from lenet_tf.core.shards import concat, shard_batch
from lenet_tf.core.tf import session_config, tf, tf1
from lenet_tf.data.sampling import bilinear_sample  # noqa: F401 (also part of this module's API)


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


def affine_sample(images: tf.Tensor, maps: tf.Tensor, shards: int = 1, native: bool = False) -> tf.Tensor:
    """Samples ``images`` ``[N, H, W, 1]`` bilinearly where the affine ``maps`` ``[N, 6]`` send each output pixel:
    output ``(x, y)`` reads the input at ``(m0*x + m1*y + m2, m3*x + m4*y + m5)``, 0 outside the image.

    The same values as :func:`bilinear_sample` on those coordinates (tested bit for bit), from one native kernel
    (``ImageProjectiveTransformV3``) instead of four gathers and the coordinate arithmetic. ``shards`` > 1 splits
    the batch into that many independent kernels (one per core when ops get one thread each, as in training);
    the values do not depend on it. ``native``: the vectorised op of :mod:`lenet_tf.core.native_ops` instead,
    the same values to float rounding (training uses it where it was measured faster).
    """
    height, width = images.shape[1], images.shape[2]

    def warp(part: tf.Tensor, part_maps: tf.Tensor) -> tf.Tensor:
        if native:
            return native_ops.affine_warp(part, part_maps)
        # A projective transform with a zero projective row is the affine map.
        transforms = tf.concat([part_maps, tf.zeros([tf.shape(part_maps)[0], 2], part_maps.dtype)], axis=1)
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=part, transforms=transforms, output_shape=[height, width], fill_value=0.0,
            interpolation="BILINEAR", fill_mode="CONSTANT")

    warped = concat([warp(part, part_maps)
                     for part, part_maps in zip(shard_batch(images, shards), shard_batch(maps, shards))])
    warped.set_shape(images.shape)
    return warped


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
    max_aspect: float = 0.0,
    shards: int = 1,
    native: bool = False,
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
      max_aspect: largest change of the aspect ratio: the width is scaled by ``exp(u)``, ``u`` uniform in
        ``[-max_aspect, max_aspect]`` (0: the aspect ratio is kept; drawn from its own stream, so adding it
        leaves the other draws unchanged).
      shards, native: how :func:`affine_sample` resamples (without ``elastic_alpha``).

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
    if max_aspect > 0:  # the sampled x divided by the width's factor: the output is that much wider
        widen = tf.exp(_uniform(tf.random.experimental.stateless_fold_in(seeds[5], 1), [count],
                                strength * max_aspect))
        a00, a01 = a00 / widen, a01 / widen
    centre_y, centre_x = (height - 1) / 2.0, (width - 1) / 2.0
    if elastic_alpha <= 0:  # x = a00 (gx - cx) + a01 (gy - cy) + cx + shift_x, and y alike: one affine map
        return affine_sample(images, tf.stack([
            a00, a01, centre_x + shift_x - a00 * centre_x - a01 * centre_y,
            a10, a11, centre_y + shift_y - a10 * centre_x - a11 * centre_y], axis=1), shards, native)
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    grid_x, grid_y = grid_x - centre_x, grid_y - centre_y

    def per_image(v: tf.Tensor) -> tf.Tensor:
        return v[:, tf.newaxis, tf.newaxis]

    field = elastic_field(seeds[5], count, height, width, elastic_alpha, elastic_sigma) * strength
    x = per_image(a00) * grid_x + per_image(a01) * grid_y + per_image(centre_x + shift_x) + field[0]
    y = per_image(a10) * grid_x + per_image(a11) * grid_y + per_image(centre_y + shift_y) + field[1]
    warped = bilinear_sample(images, x, y)
    warped.set_shape(images.shape)
    return warped


def _per_image(values: tf.Tensor) -> tf.Tensor:
    return values[:, tf.newaxis, tf.newaxis, tf.newaxis]


def dilate(images: tf.Tensor) -> tf.Tensor:
    """Thicker pen: each pixel becomes the brightest of its 3x3 neighbourhood (max pooling, stride 1)."""
    return tf.nn.max_pool2d(images, ksize=3, strides=1, padding="SAME")


def erode(images: tf.Tensor) -> tf.Tensor:
    """Thinner pen: each pixel becomes the darkest of its 3x3 neighbourhood (min pooling, stride 1)."""
    return -tf.nn.max_pool2d(-images, ksize=3, strides=1, padding="SAME")


def gaussian_blur(images: tf.Tensor, sigma: float) -> tf.Tensor:
    """``images`` ``[N, H, W, 1]`` smoothed by a normalised Gaussian of ``sigma`` pixels (zeros beyond the border)."""
    radius = max(1, math.ceil(2 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    rows = tf.nn.conv2d(images, taps.reshape(-1, 1, 1, 1), strides=1, padding="SAME")
    return tf.nn.conv2d(rows, taps.reshape(1, -1, 1, 1), strides=1, padding="SAME")


def low_resolution(images: tf.Tensor, size: int) -> tf.Tensor:
    """``images`` averaged down to ``size`` x ``size`` pixels, then bilinearly up again (a coarse scan)."""
    height, width = images.shape[1], images.shape[2]
    small = tf.image.resize(images, [size, size], method="area")
    return tf.image.resize(small, [height, width], method="bilinear")


def ink_box(images: tf.Tensor, threshold: float = 0.1) -> tf.Tensor:
    """float32 ``[N, H, W, 1]``: 1 inside each image's bounding box of pixels above ``threshold``, else 0."""
    def inside(any_ink: tf.Tensor) -> tf.Tensor:  # [N, L] bool -> between the first and last True
        seen = tf.cast(any_ink, tf.float32)
        return tf.minimum(tf.cumsum(seen, axis=1), tf.cumsum(seen, axis=1, reverse=True)) > 0

    ink = images[..., 0] > threshold
    rows, columns = inside(tf.reduce_any(ink, axis=2)), inside(tf.reduce_any(ink, axis=1))
    return tf.cast(rows[:, :, tf.newaxis] & columns[:, tf.newaxis, :], tf.float32)[..., tf.newaxis]


def capture_distort(
    images: tf.Tensor,
    seed: tf.Tensor,
    strength: float | tf.Tensor = 1.0,
    pen_width: float = 0.0,
    blur: float = 0.0,
    low_res: float = 0.0,
    gamma: float = 0.0,
    paper: float = 0.0,
) -> tf.Tensor:
    """Random changes of how a digit was captured, drawn independently per image (0 turns each one off).

    Args:
      images: float32 ``[N, H, W, 1]`` in [0, 1], background 0.
      seed: int ``[2]`` tensor seeding the stateless random draws.
      strength: factor on every amount below, a float or scalar tensor (0 leaves the images unchanged).
      pen_width: largest pen change, in [0, 1]: each image blends towards its dilation (thicker) or erosion
        (thinner) by a uniform amount in [-pen_width, pen_width].
      blur: Gaussian sigma in pixels; each image blends towards its blurred self by a uniform weight in [0, 1].
      low_res: probability of a coarse scan, down-sampled to 16 or 12 pixels (equally likely) and back.
      gamma: ink profile: pixel values are raised to ``exp(u)``, ``u`` uniform in [-gamma, gamma].
      paper: largest grey level of the paper inside the digit's bounding box (what ``to_mnist`` leaves of a
        grey page); each image gets a uniform level in [0, paper].

    Each image is then rescaled to its original brightest value, as ``to_mnist`` rescales every file.

    Returns:
      float32 ``[N, H, W, 1]`` in [0, 1].
    """
    count = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=6)
    peak = tf.reduce_max(images, axis=[1, 2, 3], keepdims=True)
    if pen_width > 0:
        amount = _per_image(_uniform(seeds[0], [count], strength * pen_width))
        thicker, thinner = dilate(images) - images, erode(images) - images
        images = images + tf.nn.relu(amount) * thicker + tf.nn.relu(-amount) * thinner
    if blur > 0:
        weight = _per_image(tf.random.stateless_uniform([count], seed=seeds[1]) * strength)
        images = images + weight * (gaussian_blur(images, blur) - images)
    if low_res > 0:
        draw = _per_image(tf.random.stateless_uniform([count], seed=seeds[2]))
        probability = strength * low_res
        coarse16 = tf.cast(draw < probability / 2, tf.float32)
        coarse12 = tf.cast((draw >= probability / 2) & (draw < probability), tf.float32)
        images = (images + coarse16 * (low_resolution(images, 16) - images)
                  + coarse12 * (low_resolution(images, 12) - images))
    if gamma > 0:
        exponent = tf.exp(_per_image(_uniform(seeds[3], [count], strength * gamma)))
        images = tf.pow(tf.maximum(images, 0.0), exponent)
    if paper > 0:
        level = _per_image(tf.random.stateless_uniform([count], seed=seeds[4]) * (strength * paper))
        images = images + level * ink_box(images) * (1.0 - images)
    # to_mnist rescales every file's darkest ink to full white: restore each image's peak the same way.
    images = images * (peak / tf.maximum(tf.reduce_max(images, axis=[1, 2, 3], keepdims=True), 1e-6))
    return tf.clip_by_value(images, 0.0, 1.0)


def _extent(any_ink: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """First and last index (float32 ``[N]``) of True along axis 1 of bool ``[N, L]`` (0 and L-1 when none)."""
    length = any_ink.shape[1]
    seen = tf.cast(any_ink, tf.int32)
    first = tf.argmax(seen, axis=1, output_type=tf.int32)
    last = length - 1 - tf.argmax(tf.reverse(seen, [1]), axis=1, output_type=tf.int32)
    return tf.cast(first, tf.float32), tf.cast(last, tf.float32)


def fill_box(images: tf.Tensor, seed: tf.Tensor, probability: float | tf.Tensor,
             threshold: float = 0.1, shards: int = 1, native: bool = False) -> tf.Tensor:
    """Stretches a random ``probability`` share of the digits to fill a square box, as scanners that normalise
    each digit to its box do (aspect ratio not kept): the shorter side of the ink's bounding box is stretched
    to the longer one, about the box's centre.

    Args:
      images: float32 ``[N, H, W, 1]``, background 0.
      seed: int ``[2]`` tensor seeding which images are stretched.
      probability: share of stretched images, a float or a scalar tensor (0 leaves the images unchanged).
      threshold: pixel value above which a pixel counts as ink.
      shards, native: how :func:`affine_sample` resamples.

    Returns:
      float32 ``[N, H, W, 1]``, bilinearly resampled where stretched.
    """
    count = tf.shape(images)[0]
    ink = images[..., 0] > threshold
    top, bottom = _extent(tf.reduce_any(ink, axis=2))
    left, right = _extent(tf.reduce_any(ink, axis=1))
    box_h, box_w = bottom - top + 1, right - left + 1
    side = tf.maximum(box_h, box_w)
    chosen = tf.random.stateless_uniform([count], seed=tf.cast(seed, tf.int64)) < probability
    shrink_x = tf.where(chosen, box_w / side, 1.0)  # x = cx + (gx - cx) / stretch, and y alike
    shrink_y = tf.where(chosen, box_h / side, 1.0)
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    zero = tf.zeros_like(shrink_x)
    return affine_sample(images, tf.stack([shrink_x, zero, centre_x * (1 - shrink_x),
                                           zero, shrink_y, centre_y * (1 - shrink_y)], axis=1), shards, native)


def distorted_digits(images: np.ndarray, distort: Callable[[tf.Tensor], tf.Tensor]) -> np.ndarray:
    """uint8 digits ``[N, H, W, 1]`` → uint8 ``[N, H, W, 1]``: ``distort`` (float32 images in [0, 1] → the same
    shape) run once on them, in a graph of its own, and rounded back to grey levels (clipped to [0, 1] first)."""
    with tf.Graph().as_default():
        pixels = tf1.placeholder(tf.float32, [None, *images.shape[1:]])
        distorted = distort(pixels)
        with tf1.Session(config=session_config()) as session:
            out = session.run(distorted, {pixels: images.astype(np.float32) / 255})
    return np.round(np.clip(out, 0.0, 1.0) * 255).astype(np.uint8)
