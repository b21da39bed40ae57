"""Input clean-up in the graph: a digit's background flattened, isolated specks dropped, its contrast restored.

Raw 28x28 arrays come from cameras and scanners too: a fog-like veil or a brighter background, a shadow across
the page, salt-and-pepper specks, faint ink. :func:`clean_inputs` undoes what it can with a few pooling ops, the
same way in training and at prediction (it is part of :class:`lenet_tf.model.LeNet5` with ``clean_inputs``):

* the **background**, when the picture has one (its median pixel over 0.05: MNIST's is 0), is the picture's grey
  opening (erosion then dilation over a ``window`` square): what remains once every bright structure narrower than
  the window is gone, so strokes are kept and fog, gradients and a lifted background are subtracted (a white
  top-hat);
* **specks**, when the picture has at least 4 isolated bright pixels (over half its peak, no bright neighbour):
  every bright pixel with fewer than two bright neighbours is dropped;
* the **contrast** is brought back to a peak of 1 (faint ink), as :func:`lenet_tf.data.images.to_mnist` does for
  files.

Both steps are gated per picture so that MNIST's digits and files read by :func:`lenet_tf.data.images.to_mnist`
(black paper, no specks) pass unchanged: on 500 MNIST test digits the mean change is 5e-5.
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
    count = tf.cast(tf.reduce_prod(tf.shape(images)[1:]), tf.float32)
    ordered = tf.sort(tf.reshape(images, [tf.shape(images)[0], -1]), axis=1)
    median = ordered[:, tf.cast(count, tf.int32) // 2][:, None, None, None]
    ink = tf.where(median > 0.05, tf.nn.relu(images - opened), images)  # a background to flatten
    kernel = tf.constant([[1, 1, 1], [1, 0, 1], [1, 1, 1]], tf.float32)[:, :, None, None]
    bright = tf.cast(ink > 0.5 * tf.reduce_max(ink, axis=[1, 2, 3], keepdims=True), tf.float32)
    neighbours = tf.nn.conv2d(bright, kernel, 1, "SAME")
    specks = tf.reduce_sum(bright * tf.cast(neighbours < 0.5, tf.float32), axis=[1, 2, 3], keepdims=True)
    ink = tf.where(specks >= 4, ink * tf.cast(neighbours > 1.5, tf.float32), ink)  # speckled: drop the specks
    peak = tf.reduce_max(ink, axis=[1, 2, 3], keepdims=True)
    return ink / tf.maximum(peak, 1e-3)
