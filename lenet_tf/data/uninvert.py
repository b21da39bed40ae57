"""Inverted regions turned back in the graph: a band of glare or a negative corner becomes black paper again.

A capture can invert part of a picture: a band of glare across it, a corner of a negative. There the paper is
white and the strokes are dark, which MNIST's digits never are. :func:`uninvert` finds white paper (the centres of
5x5 squares of white, grown back to the squares) connected to the picture's edge (through strokes up to 7 pixels
wide), takes the box around it, and inverts that box back when white paper fills at least 80% of it and dark
strokes lie in it. A bold digit is left alone: its strokes do not reach the edge (of MNIST's 60,000 training and
validation digits it changes none) or, in a tightly cropped array, fill less of their box or hold no dark strokes
(a bold 1's bar). Files and the server's pixels are boxed and centred first (lenet_tf.data.images.to_mnist), so
there a band no longer reaches the edge and the network reads it as ``--damage`` taught it.

It is part of :class:`lenet_tf.model.LeNet5` with ``uninvert`` at prediction (``training=False``), so
``TrainedModel``, serving and the exported models apply it alike, before the clean-up and the deskewing (a white
band would be most of the ink's moments). Training leaves inverted regions to the network, which ``--damage``
shows them to: networks trained on uninverted pictures read other writers' digits 0.3-1.0 points worse
(docs/history/accuracy-2026-12-07.md). It works on the 28x28 picture inside the network's 32x32 input: the 2-pixel
border stays as it is.
"""

from __future__ import annotations

import numpy as np

from lenet_tf.core.tf import tf
from lenet_tf.data.mnist import IMAGE_SIZE, MNIST_SIZE

WHITE = 0.9  # a pixel of white paper, at least
SQUARE = 5  # pixels: white paper is where a square this wide is all white (wider than MNIST's strokes)
BOX_FILL = 0.8  # white paper fills at least this share of the box around it
DARK_MIN = 4  # pixels: dark ones in the box, at least (strokes under the glare, or a whole negative digit)
REACH = 24  # pixels: how far from the edge, along its paper, a region is followed
BRIDGE = 7  # pixels: strokes up to this wide do not cut a region's paper apart
_PAD = (IMAGE_SIZE - MNIST_SIZE) // 2


# The pictures of a batch are laid out as the channels of one picture ([1, H, W, N]): TensorFlow's CPU pooling is
# vectorised over channels, 4x faster than over a batch of one-channel pictures.


def _dilate(x: tf.Tensor, window: list[int]) -> tf.Tensor:
    """Grey dilation of ``x`` ``[1, H, W, N]`` by a ``window`` rectangle, one axis at a time (the outside ignored)."""
    return tf.nn.max_pool2d(tf.nn.max_pool2d(x, [1, window[1]], 1, "SAME"), [window[0], 1], 1, "SAME")


def _erode(x: tf.Tensor, window: list[int]) -> tf.Tensor:
    return -_dilate(-x, window)


def _close(x: tf.Tensor, size: int) -> tf.Tensor:
    """Grey closing of ``x`` ``[1, H, W, N]`` by a ``size`` square, the picture mirrored beyond its edges: the
    strokes that cross a region at the edge are filled in too (and a region within ``size // 2`` pixels of the edge
    is joined to it)."""
    half = size // 2
    padded = tf.pad(x, [[0, 0], [half, half], [half, half], [0, 0]], mode="SYMMETRIC")
    return _erode(_dilate(padded, [size, size]), [size, size])[:, half:half + x.shape[1], half:half + x.shape[2]]


def _connected(seeds: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """The parts of ``mask`` ``[1, H, W, N]`` (0 or 1) that ``seeds`` (within it) reach inside it, by up to
    :data:`REACH` pixels (geodesic dilation, two pixels a step)."""
    for _ in range(REACH // 2):
        seeds = tf.minimum(_dilate(seeds, [5, 5]), mask)
    return seeds


def _span(marks: tf.Tensor) -> tf.Tensor:
    """``marks`` ``[1, L, N]`` of 0 and 1 → 1 from the first 1 to the last along ``L``, else 0."""
    return tf.minimum(tf.minimum(tf.cumsum(marks, axis=1), tf.cumsum(marks, axis=1, reverse=True)), 1.0)


def _bounding_box(paper: tf.Tensor) -> tf.Tensor:
    """``paper`` ``[1, H, W, N]`` of 0 and 1 → 1 on the smallest rectangle around its 1s, per picture."""
    rows, cols = _span(tf.reduce_max(paper, axis=2)), _span(tf.reduce_max(paper, axis=1))
    return rows[:, :, None, :] * cols[:, None, :, :]


def _frame(size: int, inner: int, outer: int) -> np.ndarray:
    """float32 ``[1, size, size, 1]``: 1 on the rings from ``outer`` to ``inner`` pixels from the edge."""
    frame = np.zeros((size, size), np.float32)
    frame[outer:size - outer, outer:size - outer] = 1.0
    frame[inner:size - inner, inner:size - inner] = 0.0
    return frame[None, :, :, None]


def inverted_regions(images: tf.Tensor) -> tf.Tensor:
    """float32 images ``[N, 32, 32, 1]`` in 0..1 (white ink on black) → float32 ``[N, 32, 32, 1]``: 1 on the
    pixels of the box of white paper reaching the 28x28 picture's edge, where it is an inverted region (see the
    module docstring); else 0. Only the pictures with white paper at the edge are followed further (no MNIST
    digit has any), so a batch of ordinary digits costs one erosion."""
    size = images.shape[1]
    channels = tf.transpose(images, [3, 1, 2, 0])  # [1, H, W, N]
    centres = tf.cast(_erode(channels, [SQUARE, SQUARE]) >= WHITE, tf.float32)
    seeds = centres * tf.constant(_frame(size, _PAD + SQUARE // 2 + 1, 0))  # the centres of the squares at the edge
    kept = tf.where(tf.reduce_max(seeds, axis=[0, 1, 2]) > 0)[:, 0]  # int64 [K]
    region = _regions(*(tf.gather(x, kept, axis=3) for x in (channels, centres, seeds)))
    picture = tf.constant(_frame(size, size, _PAD))  # the 28x28 picture, not its padding
    regions = tf.scatter_nd(kept[:, None], tf.transpose(region, [3, 1, 2, 0]), tf.shape(images, out_type=tf.int64))
    return regions * picture


def _regions(channels: tf.Tensor, centres: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
    """:func:`inverted_regions` of pictures ``channels`` ``[1, H, W, K]``, given the centres of their white squares
    and those of them at the edge (both 0 or 1, the same shape) → ``[1, H, W, K]``."""
    white = _dilate(centres, [SQUARE, SQUARE])
    # the white paper connected to the edge: a bold stroke elsewhere in the picture is no part of the region
    paper = _connected(seeds, _close(white, BRIDGE)) * white
    box = _bounding_box(paper)
    fill = tf.reduce_sum(box * tf.cast(channels >= WHITE, tf.float32), axis=[1, 2], keepdims=True) / tf.maximum(
        tf.reduce_sum(box, axis=[1, 2], keepdims=True), 1.0)
    # a box mostly of white paper, with dark strokes in it: not a bold stroke that reaches the edge (no dark in it)
    dark = tf.reduce_sum(box * tf.cast(channels < 0.5, tf.float32), axis=[1, 2], keepdims=True)
    return box * tf.cast((fill >= BOX_FILL) & (dark >= DARK_MIN), tf.float32)


def uninvert(images: tf.Tensor) -> tf.Tensor:
    """float32 images ``[N, 32, 32, 1]`` in 0..1 → the same with :func:`inverted_regions` inverted back."""
    return images + inverted_regions(images) * (1.0 - 2.0 * images)
