"""How a :class:`lenet_tf.model.LeNet5` computes its convolutions and poolings: the same function and variables
whichever is used, so checkpoints load in every one (docs/speed.md).

``nn`` is ``tf.nn.conv2d`` / ``max_pool2d`` (oneDNN's kernels), the default; ``forward_grad`` the same but a
convolution's input gradient is a forward convolution; ``matmul`` im2col + one matmul and reshape + max
(:mod:`lenet_tf.core.fast_ops`). ``native`` adds a fused first block compiled for this CPU: it is built by
:func:`lenet_tf.core.native_ops.kernels`, which the trainer calls and injects
(:func:`lenet_tf.training.trainer.kernels_named`), never a LeNet5 itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lenet_tf.core import fast_ops
from lenet_tf.core.tf import tf


def conv2d(inputs: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """VALID convolution, stride 1: ``[N, H, W, C]`` with ``[k, k, C, K]`` → ``[N, H-k+1, W-k+1, K]``."""
    return tf.nn.conv2d(inputs, weights, strides=1, padding="VALID")


def max_pool(inputs: tf.Tensor) -> tf.Tensor:
    """2x2 max pooling with stride 2: ``[N, H, W, C]`` → ``[N, H/2, W/2, C]``."""
    return tf.nn.max_pool2d(inputs, ksize=2, strides=2, padding="VALID")


@dataclass(frozen=True)
class Kernels:
    """A set of kernels: ``conv2d(x, w)``, ``max_pool(x)``, and optionally ``conv_pool(x, w, biases=None,
    relu=False)``, a one-channel first block (conv, 2x2 pool, bias, ReLU) fused into one op, and ``warp(images,
    maps)``, the bilinear affine resampling of :func:`lenet_tf.data.augment.affine_sample` (``None``: gathers,
    which every runtime has, TFLite included)."""

    name: str
    conv2d: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    max_pool: Callable[[tf.Tensor], tf.Tensor]
    conv_pool: Callable[..., tf.Tensor] | None = None
    warp: Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None = None


TF_KERNELS: dict[str, Kernels] = {
    "nn": Kernels("nn", conv2d, max_pool),
    "forward_grad": Kernels("forward_grad", fast_ops.conv2d_forward_input_grad, max_pool),
    "matmul": Kernels("matmul", fast_ops.conv2d, fast_ops.max_pool),
}

