"""On-the-fly augmentation of digit batches inside the graph: small random affine distortions.

Digits tolerate small shifts, rotations, shears and scalings, but not flips (a mirrored 2 is no digit),
so no flips are made. Randomness is *stateless*, drawn from a ``[2]`` seed tensor (the trainer passes
``[seed, global_step]``), so a resumed or repeated run sees exactly the same distortions.
"""

from __future__ import annotations

import math

from lenet_tf._tf import tf


def _uniform(seed: tf.Tensor, count: tf.Tensor, limit: float) -> tf.Tensor:
    return tf.random.stateless_uniform([count], seed=seed, minval=-limit, maxval=limit)


def augment_images(
    images: tf.Tensor,
    seed: tf.Tensor,
    strength: float = 1.0,
    max_shift: float = 2.5,
    max_rotation_degrees: float = 12.0,
    max_shear: float = 0.15,
    max_scale: float = 0.1,
) -> tf.Tensor:
    """Applies an independent random affine map to each image of a batch.

    Args:
      images: float32 ``[N, H, W, 1]``, background 0.
      seed: int ``[2]`` tensor seeding the stateless random draws.
      strength: factor applied to every limit below (0 leaves the images unchanged).
      max_shift: largest translation in pixels along each axis.
      max_rotation_degrees: largest rotation either way.
      max_shear: largest horizontal shear factor either way.
      max_scale: largest relative zoom in or out.

    Returns:
      float32 ``[N, H, W, 1]``, bilinearly resampled, zero outside the original image.
    """
    count = tf.shape(images)[0]
    seed = tf.cast(seed, tf.int64)
    seeds = tf.random.experimental.stateless_split(seed, num=5)
    angle = _uniform(seeds[0], count, strength * math.radians(max_rotation_degrees))
    shear = _uniform(seeds[1], count, strength * max_shear)
    scale = 1.0 + _uniform(seeds[2], count, strength * max_scale)
    shift_x = _uniform(seeds[3], count, strength * max_shift)
    shift_y = _uniform(seeds[4], count, strength * max_shift)
    # The transform maps each output pixel to the input pixel it samples: rotate and shear about
    # the image centre, divide by the zoom, then shift.
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    a00, a01 = cos, cos * shear - sin
    a10, a11 = sin, sin * shear + cos
    centre_y, centre_x = (images.shape[1] - 1) / 2.0, (images.shape[2] - 1) / 2.0
    b0 = centre_x - a00 * centre_x - a01 * centre_y + shift_x
    b1 = centre_y - a10 * centre_x - a11 * centre_y + shift_y
    zeros = tf.zeros_like(angle)
    transforms = tf.stack([a00, a01, b0, a10, a11, b1, zeros, zeros], axis=1)
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        interpolation="BILINEAR", fill_mode="CONSTANT", fill_value=0.0)
    warped.set_shape(images.shape)
    return warped
