"""LeNet-5's convolution and pooling from other kernels than oneDNN's defaults, for tiny batches on CPUs.

The same functions as ``tf.nn.conv2d`` (stride 1, VALID) and ``tf.nn.max_pool2d`` (2x2, stride 2), built from
other kernels in case oneDNN's small-shape convolution and pooling paths are the slow part of a step (the
profile in docs/speed.md): :func:`conv2d` is ``extract_patches`` + one matmul, its input gradient the same on the
padded output gradient with the filters turned round, its filter gradient one matmul; :func:`max_pool` is a
reshape + max, its gradient a select; :func:`conv2d_forward_input_grad` keeps oneDNN's kernels but computes the
input gradient as a forward convolution. ``LeNet5(kernels=...)`` picks them (lenet_tf.model.KERNELS).
"""

from __future__ import annotations

from lenet_tf.core.tf import tf, tf1


def _patches(x: tf.Tensor, size: int) -> tf.Tensor:
    """``[N, H, W, C]`` → ``[N, H-k+1, W-k+1, k*k*C]``: every k x k window, laid out (row, column, channel)."""
    return tf.image.extract_patches(x, [1, size, size, 1], [1, 1, 1, 1], [1, 1, 1, 1], "VALID")


def _patch_matmul(x: tf.Tensor, filters: tf.Tensor) -> tf.Tensor:
    """VALID cross-correlation of ``x`` ``[N, H, W, C]`` with ``filters`` ``[k, k, C, K]``, as im2col + matmul."""
    size, _, channels, out = filters.shape.as_list()
    patches = _patches(x, size)
    rows = tf.reshape(patches, [-1, size * size * channels])
    shape = tf.concat([tf.shape(patches)[:3], [out]], axis=0)
    return tf.reshape(tf.matmul(rows, tf.reshape(filters, [size * size * channels, out])), shape)


@tf.custom_gradient
def conv2d(x: tf.Tensor, filters: tf.Tensor):
    """Stride-1 VALID convolution ``[N, H, W, C]`` * ``[k, k, C, K]`` → ``[N, H-k+1, W-k+1, K]`` (as tf.nn.conv2d).

    Gradients: the filters' is patchesᵀ · dy (one matmul); the input's is the full correlation of dy with the
    filters turned by 180° and their channel axes swapped (im2col + one matmul again).
    """
    size, _, channels, out = filters.shape.as_list()
    patches = _patches(x, size)
    rows = tf.reshape(patches, [-1, size * size * channels])
    shape = tf.concat([tf.shape(patches)[:3], [out]], axis=0)
    y = tf.reshape(tf.matmul(rows, tf.reshape(filters, [size * size * channels, out])), shape)

    def grad(dy: tf.Tensor):
        dy_rows = tf.reshape(dy, [-1, out])
        d_filters = tf.reshape(tf.matmul(rows, dy_rows, transpose_a=True), [size, size, channels, out])
        pad = size - 1
        turned = tf.transpose(tf.reverse(filters, [0, 1]), [0, 1, 3, 2])  # [k, k, K, C]
        dx = _patch_matmul(tf.pad(dy, [[0, 0], [pad, pad], [pad, pad], [0, 0]]), turned)
        return dx, d_filters

    return y, grad


def _windows(x: tf.Tensor) -> tf.Tensor:
    """``[N, H, W, C]`` → ``[N, H/2, 2, W/2, 2, C]``: the 2x2 windows as axes 2 and 4."""
    _, height, width, channels = x.shape.as_list()
    return tf.reshape(x, [-1, height // 2, 2, width // 2, 2, channels])


@tf.custom_gradient
def max_pool(x: tf.Tensor):
    """2x2 max pooling, stride 2: ``[N, H, W, C]`` → ``[N, H/2, W/2, C]`` (H and W even), as a reshape + max.

    The gradient goes to the window's maximum through one select (to every maximum of a window whose values
    tie, where ``tf.nn.max_pool2d`` picks one: a measure-zero event for float32 inputs).
    """
    windows = _windows(x)
    y = tf.reduce_max(windows, axis=[2, 4])

    def grad(dy: tf.Tensor):
        at_max = tf.equal(windows, y[:, :, None, :, None, :])
        spread = tf.where(at_max, tf.broadcast_to(dy[:, :, None, :, None, :], tf.shape(windows)),
                          tf.zeros_like(windows))
        return tf.reshape(spread, tf.shape(x))

    return y, grad


def _turned(filters: tf.Tensor) -> tf.Tensor:
    """``[k, k, C, K]`` → ``[k, k, K, C]`` turned by 180°: the filters of a convolution's input gradient."""
    return tf.transpose(tf.reverse(filters, [0, 1]), [0, 1, 3, 2])


@tf.custom_gradient
def conv2d_forward_input_grad(x: tf.Tensor, filters: tf.Tensor):
    """``tf.nn.conv2d`` (stride 1, VALID) whose input gradient is a *forward* convolution of the zero-padded
    output gradient with :func:`_turned` filters, instead of oneDNN's backward-data kernel."""
    size = filters.shape[0]
    y = tf.nn.conv2d(x, filters, strides=1, padding="VALID")

    def grad(dy: tf.Tensor):
        d_filters = tf1.nn.conv2d_backprop_filter(x, tf.shape(filters), dy, [1, 1, 1, 1], "VALID")
        pad = size - 1
        dx = tf.nn.conv2d(tf.pad(dy, [[0, 0], [pad, pad], [pad, pad], [0, 0]]), _turned(filters), 1, "VALID")
        return dx, d_filters

    return y, grad
