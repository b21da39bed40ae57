"""Input clean-up in the graph: a digit's background flattened, isolated specks dropped, its contrast restored.

Raw 28x28 arrays come from cameras and scanners too: a fog-like veil or a brighter background, a shadow across
the page, salt-and-pepper specks, faint ink. :func:`clean_inputs` undoes what it can with a few pooling ops, the
same way in training and at prediction (it is part of :class:`lenet_tf.model.LeNet5` with ``clean_inputs``):

* the **background** is the picture's grey opening (erosion then dilation over a ``window`` square): what
  remains of it once every bright structure narrower than the window is gone, so MNIST's strokes (2-4 px) are kept
  and fog, gradients and a lifted background are subtracted (a white top-hat);
* **specks**: a bright pixel with fewer than two bright neighbours (over half its value) is dropped;
* the **contrast** is brought back to a peak of 1 (faint ink), as :func:`lenet_tf.data.images.to_mnist` does for
  files.

On MNIST's own digits it changes almost nothing (where a ``window`` square fits inside the ink, which is rare).
"""

from __future__ import annotations

from lenet_tf.core.tf import tf

WINDOW = 7  # pixels: wider than MNIST's strokes, narrower than fog, shadows and lifted backgrounds


def _erode(x: tf.Tensor, size: int) -> tf.Tensor:
    return -tf.nn.max_pool2d(-x, size, 1, "SAME")


def clean_inputs(images: tf.Tensor, window: int = WINDOW) -> tf.Tensor:
    """float32 images ``[N, H, W, 1]`` in 0..1 (white ink on black) → the same with the background flattened,
    isolated specks dropped and the peak brought to 1 (see the module docstring)."""
    opened = tf.nn.max_pool2d(_erode(images, window), window, 1, "SAME")
    ink = tf.nn.relu(images - opened)
    kernel = tf.constant([[1, 1, 1], [1, 0, 1], [1, 1, 1]], tf.float32)[:, :, None, None]
    bright = tf.cast(ink > 0.5 * tf.reduce_max(ink, axis=[1, 2, 3], keepdims=True), tf.float32)
    ink = ink * tf.cast(tf.nn.conv2d(bright, kernel, 1, "SAME") >= 2, tf.float32)  # a speck has < 2 bright ones
    peak = tf.reduce_max(ink, axis=[1, 2, 3], keepdims=True)
    return ink / tf.maximum(peak, 1e-3)
