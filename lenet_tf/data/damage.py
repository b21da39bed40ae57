"""Damaged captures in the graph, for training: what cameras, scanners and paper do to a digit beyond pen and blur.

Each chosen image gets one kind of damage, drawn uniformly from :data:`KINDS` with its own random amount: scanner
specks (salt and pepper), sensor noise, a lifted or uneven (fog-like or side-lit) background, ruled lines or a line
through the digit, a zig-zag line through it, strokes reduced to their outline, an inverted box or band, dim ink.
Written for this project from those descriptions; it shares no code with the validation conditions
(:mod:`lenet_tf.evaluation.conditions`), whose damage is drawn differently (PIL strokes at 4x, spatter, motion
blur), so that they measure more than what a model was shown; their zig-zag and inverted-band rows are close to
what this draws, so their gains are partly seen in training. All draws are stateless, from one ``[2]`` seed.
"""

from __future__ import annotations

import math

import numpy as np

from lenet_tf.core.tf import tf
from lenet_tf.data.augment import distorted_digits, erode
from lenet_tf.data.mnist import MNIST_SIZE


def _uniform(seed: tf.Tensor, count: tf.Tensor, low: float, high: float) -> tf.Tensor:
    """float32 ``[N, 1, 1, 1]`` uniform in [low, high)."""
    values = tf.random.stateless_uniform([count], seed=seed, minval=low, maxval=high)
    return values[:, tf.newaxis, tf.newaxis, tf.newaxis]


def _smooth_field(seed: tf.Tensor, count: tf.Tensor, size: int) -> tf.Tensor:
    """float32 ``[N, size, size, 1]`` in [0, 1]: 4x4 random levels enlarged bilinearly, or a linear ramp."""
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    coarse = tf.random.stateless_uniform([count, 4, 4, 1], seed=seeds[0])
    fog = tf.image.resize(coarse, [size, size], method="bilinear")
    angle = _uniform(seeds[1], count, 0.0, 2 * math.pi)
    grid = tf.range(size, dtype=tf.float32) / (size - 1) - 0.5
    ramp = tf.cos(angle) * grid[tf.newaxis, tf.newaxis, :, tf.newaxis] + tf.sin(angle) * grid[
        tf.newaxis, :, tf.newaxis, tf.newaxis]
    field = tf.where(_uniform(seeds[2], count, 0.0, 1.0) < 0.5, fog, ramp)
    low = tf.reduce_min(field, axis=[1, 2, 3], keepdims=True)
    return (field - low) / tf.maximum(tf.reduce_max(field, axis=[1, 2, 3], keepdims=True) - low, 1e-6)


def _lines(seed: tf.Tensor, count: tf.Tensor, size: int) -> tf.Tensor:
    """float32 ``[N, size, size, 1]`` masks: parallel ruled lines (period 5-10 px) or one line, 1-2.5 px wide,
    at a random angle and offset. (The single line's offset leaves 69% of them outside the digit's box; drawing
    them near the centre measured within the seeds' spread: docs/history/accuracy-2026-12-05.md.)"""
    seeds = tf.random.experimental.stateless_split(seed, num=5)
    angle = _uniform(seeds[0], count, 0.0, math.pi)
    offset = _uniform(seeds[1], count, 0.0, size)
    width = _uniform(seeds[2], count, 1.0, 2.5)
    period = tf.where(_uniform(seeds[3], count, 0.0, 1.0) < 0.5, _uniform(seeds[4], count, 5.0, 10.0),
                      tf.fill(tf.shape(width), float(4 * size)))
    pixels = tf.range(size, dtype=tf.float32)
    across = (tf.cos(angle) * pixels[tf.newaxis, tf.newaxis, :, tf.newaxis]
              + tf.sin(angle) * pixels[tf.newaxis, :, tf.newaxis, tf.newaxis] + size)
    distance = tf.math.floormod(across - offset, period)
    distance = tf.minimum(distance, period - distance)
    return tf.clip_by_value(width / 2 + 0.5 - distance, 0.0, 1.0)


def _region(seed: tf.Tensor, count: tf.Tensor, size: int) -> tf.Tensor:
    """float32 ``[N, size, size, 1]`` masks of a random rectangle covering 20-60% of each side, or (a third of
    them each) a band of 20-60% of the rows or of the columns across the whole picture."""
    seeds = tf.random.experimental.stateless_split(seed, num=5)
    pixels = tf.range(size, dtype=tf.float32)
    band = _uniform(seeds[4], count, 0.0, 3.0)  # [0, 1): rows across; [1, 2): columns across; else a box
    boxes = []
    for axis, (a, b) in enumerate(((seeds[0], seeds[1]), (seeds[2], seeds[3]))):
        extent = _uniform(a, count, 0.2 * size, 0.6 * size)
        start = _uniform(b, count, 0.0, 1.0) * (size - extent)
        line = pixels[tf.newaxis, :, tf.newaxis, tf.newaxis] if axis == 0 else pixels[tf.newaxis, tf.newaxis, :,
                                                                                       tf.newaxis]
        across = (band >= 1.0) & (band < 2.0) if axis == 0 else band < 1.0
        boxes.append(tf.where(across, 1.0, tf.cast((line >= start) & (line < start + extent), tf.float32)))
    return boxes[0] * boxes[1]


def _zigzag_mask(seed: tf.Tensor, count: tf.Tensor, size: int) -> tf.Tensor:
    """float32 ``[N, size, size, 1]`` masks of one zig-zag (a triangle wave of amplitude 1.5-6 px and period 4-14
    px), 1-2.5 px wide, at a random angle, its axis within 8 px of the centre."""
    seeds = tf.random.experimental.stateless_split(seed, num=5)
    angle = _uniform(seeds[0], count, 0.0, math.pi)
    offset = _uniform(seeds[1], count, -8.0, 8.0)
    width = _uniform(seeds[2], count, 1.0, 2.5)
    amplitude, period = _uniform(seeds[3], count, 1.5, 6.0), _uniform(seeds[4], count, 4.0, 14.0)
    pixels = tf.range(size, dtype=tf.float32) - (size - 1) / 2
    x, y = pixels[tf.newaxis, tf.newaxis, :, tf.newaxis], pixels[tf.newaxis, :, tf.newaxis, tf.newaxis]
    along, across = tf.cos(angle) * x + tf.sin(angle) * y, tf.cos(angle) * y - tf.sin(angle) * x
    phase = tf.math.floormod(along / period, 1.0)
    wave = amplitude * (4.0 * tf.abs(phase - 0.5) - 1.0)  # a triangle wave in [-amplitude, amplitude]
    distance = tf.abs(across - offset - wave) / tf.sqrt(1.0 + tf.square(4.0 * amplitude / period))
    return tf.clip_by_value(width / 2 + 0.5 - distance, 0.0, 1.0)


def _specks(images: tf.Tensor, seed: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """Salt and pepper: 2-12% of the pixels set to white or black."""
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    uniform = tf.random.stateless_uniform(tf.shape(images), seed=seeds[0])
    rate = _uniform(seeds[1], count, 0.02, 0.12)
    return tf.where(uniform < rate / 2, 1.0, tf.where(uniform < rate, 0.0, images))


def _noise(images: tf.Tensor, seed: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """Gaussian sensor noise of σ 0.05-0.3."""
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    return images + _uniform(seeds[0], count, 0.05, 0.3) * tf.random.stateless_normal(tf.shape(images), seed=seeds[1])


def _lifted(images: tf.Tensor, seed: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """A uniformly lighter background (0.15-0.6)."""
    return tf.maximum(images, _uniform(seed, count, 0.15, 0.6))


def _uneven(images: tf.Tensor, seed: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """A fog-like or side-lit background up to 0.3-0.9."""
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    return tf.maximum(images, _uniform(seeds[0], count, 0.3, 0.9) * _smooth_field(seeds[1], count, images.shape[1]))


def _drawn_over(images: tf.Tensor, seed: tf.Tensor, count: tf.Tensor, mask) -> tf.Tensor:
    """``mask(seed, count, size)`` drawn over the images at a brightness of 0.5-1."""
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    return tf.maximum(images, _uniform(seeds[0], count, 0.5, 1.0) * mask(seeds[1], count, images.shape[1]))


def _ruled(images: tf.Tensor, seed: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """Ruled lines or one line through the digit."""
    return _drawn_over(images, seed, count, _lines)


def _zigzag(images: tf.Tensor, seed: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """A zig-zag line through the digit."""
    return _drawn_over(images, seed, count, _zigzag_mask)


def _outline(images: tf.Tensor, seed: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """Strokes reduced to their outline."""
    return tf.nn.relu(images - erode(images)) * 1.5


def _inverted(images: tf.Tensor, seed: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """A box, or a band across the picture, inverted."""
    return images + _region(seed, count, images.shape[1]) * (1.0 - 2.0 * images)


def _dim(images: tf.Tensor, seed: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """Ink at 25-70% of its brightness."""
    return images * _uniform(seed, count, 0.25, 0.7)


_DAMAGES = {"specks": _specks, "noise": _noise, "lifted": _lifted, "uneven": _uneven, "lines": _ruled,
            "zigzag": _zigzag, "outline": _outline, "inverted": _inverted, "dim": _dim}
KINDS = tuple(_DAMAGES)


def damage(images: tf.Tensor, seed: tf.Tensor, probability: float | tf.Tensor) -> tf.Tensor:
    """Damages a random ``probability`` share of ``images``, one kind of :data:`KINDS` each.

    Each kind is computed only on the images that drew it.

    Args:
      images: float32 ``[N, 32, 32, 1]`` in [0, 1] (MNIST digits padded to 32: white ink on black); only the
        central 28x28 is damaged, as arrays a user passes are padded with black.
      seed: int ``[2]`` tensor seeding every draw.
      probability: share of damaged images, a float or a scalar tensor (0 leaves the images unchanged).

    Returns:
      float32 ``[N, 32, 32, 1]`` in [0, 1].
    """
    count, size = tf.shape(images)[0], images.shape[1]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=len(KINDS) + 1)
    draws = tf.random.stateless_uniform([count], seed=seeds[0])
    probability = tf.cast(probability, tf.float32)
    kind = tf.cast(tf.minimum(draws / tf.maximum(probability, 1e-6) * len(KINDS), len(KINDS) - 1), tf.int32)
    result = images
    for k, make in enumerate(_DAMAGES.values()):
        rows = tf.where((draws < probability) & tf.equal(kind, k))  # int64 [M, 1]
        group = tf.gather_nd(images, rows)
        result = tf.tensor_scatter_nd_update(result, rows, make(group, seeds[k + 1], tf.shape(group)[0]))
    margin = (size - MNIST_SIZE) // 2
    inner = tf.pad(tf.ones([MNIST_SIZE, MNIST_SIZE, 1]), [[margin, margin], [margin, margin], [0, 0]])
    return tf.clip_by_value(images + inner * (result - images), 0.0, 1.0)


def damaged_digits(images: np.ndarray, seed: int) -> np.ndarray:
    """Every digit damaged once, as :func:`damage` damages training images: uint8 ``[N, 32, 32, 1]`` (padded
    MNIST digits, as :func:`lenet_tf.data.mnist.split` holds them) in and out, the same for the same ``seed``."""
    return distorted_digits(images, lambda pixels: damage(pixels, tf.constant([seed, 0], tf.int64), 1.0))
