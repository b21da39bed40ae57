"""LeNet-5 as a reusable TF1 graph module built from ``tf.nn`` ops and ``get_variable``."""

from __future__ import annotations

import contextlib
import math
import os
from typing import Callable

from lenet_tf.core import kernels as kernel_sets, options
from lenet_tf.core.checkpoint_paths import describe_tf_error, resolve_checkpoint
from lenet_tf.core.errors import CheckpointError
from lenet_tf.core.options import BN_EPSILON, CLASS_COUNT, DROPOUT, INIT_STDDEV, INPUT_MEAN, INPUT_STD
from lenet_tf.core.shards import concat as _concat, shard_batch
from lenet_tf.core.tf import tf, tf1
from lenet_tf.data.cleanup import clean_inputs
from lenet_tf.data.deskew import deskew
from lenet_tf.data.mnist import INPUT_SHAPE, NUM_CLASSES
from lenet_tf.data.uninvert import uninvert

# Max pooling commutes with any non-decreasing function, so without batch norm a training conv block pools
# *before* its bias and activation: the same function and gradients as conv -> bias -> act -> pool, with the
# elementwise work done on a quarter of the values. Only monotonic activations are offered. With batch norm the
# order is not free (normalising pooled values is another function): its block is defined as
# conv -> pool -> batch norm -> activation, in training and inference alike.
ACTIVATIONS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    name: getattr(tf.nn, name) for name in options.ACTIVATIONS}
_TRUNCATED_NORMAL_STD = 0.87962566103423978  # stddev of a unit normal truncated at ±2
# How convolutions and poolings are computed: lenet_tf.core.kernels (the same function and variables whichever).
KERNELS = options.KERNEL_NAMES


def _moments(shards: list[tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
    """Mean and variance over every axis but the last of all ``shards`` together."""
    axes = list(range(shards[0].shape.rank - 1))
    count = tf.add_n([tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32) for x in shards])
    mean = tf.add_n([tf.reduce_sum(x, axes) for x in shards]) / count
    var = tf.add_n([tf.reduce_sum(tf.math.squared_difference(x, tf.stop_gradient(mean)), axes) for x in shards]) / count
    return mean, var


class LeNet5:
    """LeNet-5 for 32x32 grey digits: conv 6@5x5 → pool → conv 16@5x5 → pool → fc 120 → fc 84 → logits.

    Calling the instance on a float32 tensor ``[N, 32, 32, 1]`` (values in [0, 1]) adds the network to
    that tensor's graph and returns logits ``[N, num_classes]``. Every call in a graph uses the same
    variables, created by ``get_variable`` on the first call under a unique variable scope (``lenet5``,
    ``lenet5_1``, …). ``training=True`` uses batch statistics for batch norm (the updates of its moving
    averages are added to :attr:`update_ops` and to the graph's ``UPDATE_OPS`` collection, whatever calls
    follow) and applies dropout; ``training=False`` is inference.

    The intermediate tensors of the latest call are in :attr:`endpoints`; :meth:`restore` loads trained
    weights into this instance without touching any other variable of the graph.
    """

    def __init__(
        self,
        name: str = "lenet5",
        *,
        num_classes: int = NUM_CLASSES,
        activation: str = "relu",
        init_stddev: float | None = None,
        batch_norm: bool = False,
        dropout: float = 0.0,
        bn_momentum: float = 0.99,
        bn_epsilon: float = 1e-3,
        input_mean: float = 0.0,
        input_std: float = 1.0,
        uninvert: bool = False,
        clean_inputs: bool = False,
        deskew: bool = False,
        seed: int | None = None,
        kernels: str | kernel_sets.Kernels = "nn",
    ) -> None:
        """Checks and stores the configuration; no graph ops are made until the first call.

        Args:
          name: variable scope name (made unique within a graph).
          num_classes: width of the logits.
          activation: one of :data:`ACTIVATIONS`.
          init_stddev: stddev of the truncated-normal weights; ``None`` scales it by fan-in (He).
          batch_norm: batch-normalise every hidden layer (replaces the biases).
          dropout: drop rate on the two fully connected hidden layers while training.
          bn_momentum: decay of the batch-norm moving averages.
          bn_epsilon: added to the variance in batch norm.
          input_mean, input_std: the network sees ``(images - input_mean) / input_std``.
          uninvert: at prediction (``training=False``), first invert back a white-paper region reaching the
            picture's edge (a band of glare, a negative corner: :func:`lenet_tf.data.uninvert.uninvert`); training
            leaves such regions to the network (``--damage`` draws them).
          clean_inputs: (after uninvert, where it applies) flatten each image's background, drop isolated specks
            and restore its contrast (:func:`lenet_tf.data.cleanup.clean_inputs`), in training and at prediction
            alike.
          deskew: then shear each image upright by its ink's second moments (:func:`lenet_tf.data.deskew.deskew`),
            in training and at prediction alike.
          seed: op-level seed for weight initialisation and dropout (with the graph's seed).
          kernels: how convolutions and poolings are computed (the same function and variables either way, so
            checkpoints load in all): ``"nn"``, ``"forward_grad"``, ``"matmul"`` (:mod:`lenet_tf.core.kernels`), or
            a :class:`lenet_tf.core.kernels.Kernels`, such as the native ones a trainer builds for its CPU
            (:func:`lenet_tf.core.native_ops.kernels`).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if not isinstance(num_classes, int):
            raise ValueError(f"num_classes must be an int, got {num_classes!r}")
        CLASS_COUNT.check("num_classes", num_classes)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if init_stddev is not None:
            INIT_STDDEV.check("init_stddev", init_stddev)
        DROPOUT.check("dropout", dropout)
        if not 0.0 < bn_momentum < 1.0:
            raise ValueError(f"bn_momentum must lie in (0, 1), got {bn_momentum!r}")
        if isinstance(kernels, str):
            if kernels not in kernel_sets.TF_KERNELS:
                raise ValueError(f"kernels must be one of {', '.join(kernel_sets.TF_KERNELS)} or a Kernels object "
                                 f"(native ones: lenet_tf.core.native_ops.kernels()), got {kernels!r}")
            kernels = kernel_sets.TF_KERNELS[kernels]
        elif not isinstance(kernels, kernel_sets.Kernels):
            raise TypeError(f"kernels must be a name or a lenet_tf.core.kernels.Kernels, got {kernels!r}")
        INPUT_MEAN.check("input_mean", input_mean)
        INPUT_STD.check("input_std", input_std)
        BN_EPSILON.check("bn_epsilon", bn_epsilon)
        self.name = name
        self.num_classes = num_classes
        self.activation = activation
        self.init_stddev = init_stddev
        self.batch_norm = batch_norm
        self.dropout = dropout
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.input_mean = input_mean
        self.input_std = input_std
        self.uninvert = bool(uninvert)
        self.clean_inputs = bool(clean_inputs)
        self.deskew = bool(deskew)
        self.seed = seed
        self._kernels = kernels
        self.kernels = kernels.name
        self._scope: tf1.VariableScope | None = None
        self._graph: tf.Graph | None = None
        self._savers: dict[str, tf1.train.Saver] = {}
        self._calls = 0
        self.endpoints: dict[str, tf.Tensor] = {}  # of the latest call
        self.update_ops: list[tf.Operation] = []  # of every training call so far (also in UPDATE_OPS)

    def get_config(self) -> dict:
        """The constructor arguments, JSON-serialisable, so that ``LeNet5(**config)`` rebuilds it; ``kernels``
        is left out: like the precision, it is how this machine computes the network, not what the network is."""
        keys = ("name", "num_classes", "activation", "init_stddev", "batch_norm", "dropout",
                "bn_momentum", "bn_epsilon", "input_mean", "input_std", "seed")
        config = {key: getattr(self, key) for key in keys}
        for key in ("uninvert", "clean_inputs", "deskew"):  # only when on: the runs recorded before these
            if getattr(self, key):  # existed describe the same network
                config[key] = True
        return config

    # ----------------------------------------------------------------------------------- helpers

    def _seed(self, offset: int) -> int | None:
        return None if self.seed is None else self.seed + offset

    def conv_weights(self, in_channels: int, out_channels: int, size: int = 5, seed_offset: int = 0) -> tf.Variable:
        """Truncated-normal filter bank ``[size, size, in_channels, out_channels]`` named ``weights``."""
        return self._weights([size, size, in_channels, out_channels], size * size * in_channels, seed_offset)

    def _weights(self, shape: list[int], fan_in: int, seed_offset: int) -> tf.Variable:
        stddev = self.init_stddev or math.sqrt(2.0 / fan_in) / _TRUNCATED_NORMAL_STD
        init = tf1.truncated_normal_initializer(stddev=stddev, seed=self._seed(seed_offset))
        return tf1.get_variable("weights", shape, tf.float32, init)

    def bias(self, size: int) -> tf.Variable:
        """Zero-initialised bias vector ``[size]`` named ``biases``."""
        return tf1.get_variable("biases", [size], tf.float32, tf1.zeros_initializer())

    conv2d = staticmethod(kernel_sets.conv2d)  # stride-1 VALID convolution, oneDNN's kernel
    max_pool = staticmethod(kernel_sets.max_pool)  # 2x2 max pooling with stride 2

    def _fused_block(self, shards: list[tf.Tensor], weights: tf.Tensor, training: bool) -> list[tf.Tensor]:
        """:meth:`conv_block` on one-channel shards as the kernels' fused op (the native ones'): conv, pool,
        bias and ReLU in one kernel; with batch norm, conv and pool, then batch norm and the activation."""
        activation = ACTIVATIONS[self.activation]
        if self.batch_norm:
            pooled = [self._kernels.conv_pool(x, weights) for x in shards]
            return [activation(x) for x in self._normalise(pooled, training)]
        biases = self.bias(weights.shape[-1])
        relu = self.activation == "relu"
        outputs = [self._kernels.conv_pool(x, weights, biases, relu=relu) for x in shards]
        return outputs if relu else [activation(x) for x in outputs]

    @staticmethod
    def flatten(inputs: tf.Tensor) -> tf.Tensor:
        """``[N, d1, d2, …]`` → ``[N, d1*d2*…]``."""
        width = math.prod(inputs.shape.as_list()[1:])
        return tf.reshape(inputs, [-1, width])

    def _normalise(self, shards: list[tf.Tensor], training: bool) -> list[tf.Tensor]:
        """Adds the biases, or batch-normalises over every axis but the last when batch norm is on.

        In training, the batch statistics are those of all ``shards`` together (the whole batch), however it is
        split, and the updates of the moving averages go to :attr:`update_ops` and ``UPDATE_OPS``.
        """
        channels = shards[0].shape[-1]
        if not self.batch_norm:
            biases = self.bias(channels)
            return [tf.nn.bias_add(x, biases) for x in shards]
        with tf1.variable_scope("batch_norm"):
            beta = tf1.get_variable("beta", [channels], initializer=tf1.zeros_initializer())
            gamma = tf1.get_variable("gamma", [channels], initializer=tf1.ones_initializer())
            moving_mean = tf1.get_variable(
                "moving_mean", [channels], initializer=tf1.zeros_initializer(), trainable=False)
            moving_var = tf1.get_variable(
                "moving_variance", [channels], initializer=tf1.ones_initializer(), trainable=False)
        if training:
            mean, var = _moments(shards)
            decay = 1.0 - self.bn_momentum
            updates = [tf1.assign_sub(moving_mean, (moving_mean - mean) * decay).op,
                       tf1.assign_sub(moving_var, (moving_var - var) * decay).op]
            self.update_ops += updates
            for op in updates:
                tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS, op)
        else:
            mean, var = moving_mean, moving_var
        return [tf.nn.batch_normalization(x, mean, var, beta, gamma, self.bn_epsilon) for x in shards]

    def conv_block(self, shards: list[tf.Tensor], out_channels: int, training: bool, seed_offset: int
                   ) -> list[tf.Tensor]:
        """conv 5x5 VALID → bias (or batch norm) → activation → 2x2 max pool on each shard of a batch.

        Without batch norm, training pools first (the same function, less work; see the note on ACTIVATIONS)
        and inference keeps the textbook order, which oneDNN fuses; with batch norm the block is conv → pool →
        batch norm → activation in both modes. With kernels that fuse the first block (the native ones) a one-channel
        block is one op in both modes (:meth:`_fused_block`).
        """
        weights = self.conv_weights(shards[0].shape[-1], out_channels, seed_offset=seed_offset)
        activation = ACTIVATIONS[self.activation]
        if self._kernels.conv_pool is not None and shards[0].shape[-1] == 1:
            return self._fused_block(shards, weights, training)
        convolved = [self._kernels.conv2d(x, weights) for x in shards]
        if training or self.batch_norm:
            return [activation(x) for x in self._normalise([self._kernels.max_pool(x) for x in convolved], training)]
        # Inference without batch norm: TensorFlow fuses conv + bias + ReLU into one oneDNN kernel, which
        # beats pooling first when no gradient is needed (benchmarks/throughput.py).
        return [self._kernels.max_pool(activation(x)) for x in self._normalise(convolved, training)]

    def fully_connected(
        self, shards: list[tf.Tensor], units: int, training: bool, seed_offset: int, hidden: bool = True
    ) -> list[tf.Tensor]:
        """Dense layer ``[N, in]`` → ``[N, units]`` on each shard; hidden layers get normalisation, activation
        and dropout."""
        fan_in = shards[0].shape[-1]
        weights = self._weights([fan_in, units], fan_in, seed_offset)
        outputs = [tf.matmul(x, weights) for x in shards]
        if not hidden:
            biases = self.bias(units)
            return [tf.nn.bias_add(x, biases) for x in outputs]
        outputs = [ACTIVATIONS[self.activation](x) for x in self._normalise(outputs, training)]
        if training and self.dropout > 0:
            # A different op seed per call and shard, so that shards sharing the weights draw independent masks.
            outputs = [tf.nn.dropout(x, rate=self.dropout,
                                     seed=self._seed(seed_offset + 100 * self._calls + 10_000 * k))
                       for k, x in enumerate(outputs)]
        return outputs

    # ---------------------------------------------------------------------------------- building

    def __call__(self, images: tf.Tensor, training: bool = False, shards: int = 1) -> tf.Tensor:
        """Builds the network on ``images`` (float32 ``[N, 32, 32, 1]``) and returns logits ``[N, classes]``.

        ``shards`` > 1 splits the batch into that many parts whose ops are independent (so that they can run
        on different cores) but for batch norm's statistics, which are the whole batch's: the result does not
        depend on ``shards``. The tensors of this call are in :attr:`endpoints` (shards concatenated).
        """
        if tf.executing_eagerly():
            raise RuntimeError(
                "LeNet5 builds TF1 graph ops: call it inside `with tf.Graph().as_default():` "
                "or after tf.compat.v1.disable_eager_execution()")
        if images.shape.rank != 4 or tuple(images.shape[1:].as_list()) != INPUT_SHAPE:
            raise ValueError(f"images must have shape [N, {', '.join(map(str, INPUT_SHAPE))}], got {images.shape}")
        if not isinstance(shards, int) or shards < 1:
            raise ValueError(f"shards must be an int ≥ 1, got {shards!r}")
        graph = tf1.get_default_graph()
        if self._graph is not None and graph is not self._graph:
            raise RuntimeError(f"{self.name}: this instance is bound to another graph; make a new LeNet5 here")
        self._graph = graph
        self._calls += 1
        with self._enter_scope():
            x = tf.cast(images, tf.float32)
            if self.uninvert and not training:
                x = uninvert(x)
            if self.clean_inputs:
                x = clean_inputs(x)
            parts = shard_batch(x, shards)
            if self.deskew:  # per shard, so that the shards' ops run side by side
                parts = [deskew(part, self._kernels.warp) for part in parts]
            if (self.input_mean, self.input_std) != (0.0, 1.0):
                parts = [(part - self.input_mean) * (1.0 / self.input_std) for part in parts]
            ends = {}
            with tf1.variable_scope("conv1"):
                ends["conv1"] = self.conv_block(parts, 6, training, seed_offset=1)
            with tf1.variable_scope("conv2"):
                ends["conv2"] = self.conv_block(ends["conv1"], 16, training, seed_offset=2)
            ends["flatten"] = [self.flatten(h) for h in ends["conv2"]]
            with tf1.variable_scope("fc1"):
                ends["fc1"] = self.fully_connected(ends["flatten"], 120, training, seed_offset=3)
            with tf1.variable_scope("fc2"):
                ends["fc2"] = self.fully_connected(ends["fc1"], 84, training, seed_offset=4)
            with tf1.variable_scope("logits"):
                ends["logits"] = self.fully_connected(
                    ends["fc2"], self.num_classes, training, seed_offset=5, hidden=False)
        self.endpoints = {name: _concat(parts) for name, parts in ends.items()}
        return self.endpoints["logits"]

    @contextlib.contextmanager
    def _enter_scope(self):
        """Opens a new unique scope on the first call, then re-enters it (same op name scope) with reuse."""
        if self._scope is None:
            with tf1.variable_scope(None, default_name=self.name) as scope:
                self._scope = scope
                yield
        else:
            with tf1.variable_scope(self._scope, reuse=True, auxiliary_name_scope=False):
                with tf.name_scope(self._scope.original_name_scope):
                    yield

    # ------------------------------------------------------------------------------- variables

    @property
    def scope_name(self) -> str:
        """The variable scope this instance's variables live under (after the first call)."""
        self._require_built()
        return self._scope.name

    def _require_built(self) -> None:
        if self._scope is None:
            raise RuntimeError(f"{self.name}: call the network on an input before using its variables")

    @property
    def variables(self) -> list[tf.Variable]:
        """All of this instance's variables (weights, biases, batch-norm statistics), in creation order."""
        self._require_built()
        return self._graph.get_collection(tf1.GraphKeys.GLOBAL_VARIABLES, scope=self._scope.name + "/")

    @property
    def trainable_variables(self) -> list[tf.Variable]:
        """The variables an optimizer should update."""
        self._require_built()
        return self._graph.get_collection(tf1.GraphKeys.TRAINABLE_VARIABLES, scope=self._scope.name + "/")

    def saver(self, checkpoint_scope: str | None = None) -> tf1.train.Saver:
        """A Saver over this instance's variables only, keyed as ``checkpoint_scope/…`` in the file.

        ``checkpoint_scope`` defaults to this instance's own scope; pass the scope the checkpoint was
        written under (``"lenet5"`` for ``lenet-tf train``) to load it into an instance of another name.
        """
        prefix = checkpoint_scope or self.scope_name
        if prefix not in self._savers:
            own = len(self.scope_name) + 1
            var_list = {f"{prefix}/{v.op.name[own:]}": v for v in self.variables}
            with self._graph.as_default():
                self._savers[prefix] = tf1.train.Saver(var_list=var_list, sharded=False)
        return self._savers[prefix]

    def restore(
        self, session: tf1.Session, checkpoint: str | os.PathLike, checkpoint_scope: str = "lenet5", which: str = "best"
    ) -> str:
        """Loads this network's weights from a checkpoint, leaving every other variable alone.

        Args:
          session: a session of this instance's graph.
          checkpoint: a training folder (``SavedModel``), an epoch folder (``SavedModel/epoch-0007``) or a Saver
            prefix (``SavedModel/epoch-0007/ckpt``); see :func:`lenet_tf.runs.checkpoint.resolve_checkpoint`.
          checkpoint_scope: the variable scope the checkpoint was written under.
          which: ``"best"`` or ``"last"`` epoch, when ``checkpoint`` is a training folder.

        Returns:
          The Saver prefix that was loaded.

        Raises:
          CheckpointError: the checkpoint is missing or holds a different architecture.
        """
        checkpoint = resolve_checkpoint(checkpoint, which)
        saver = self.saver(checkpoint_scope)
        try:
            stored = dict(tf1.train.list_variables(checkpoint))
        except (ValueError, tf.errors.OpError):
            raise CheckpointError(f"{checkpoint}: no readable checkpoint there") from None
        own = len(self.scope_name) + 1
        for variable in self.variables:
            key = f"{checkpoint_scope}/{variable.op.name[own:]}"
            if key not in stored:
                raise CheckpointError(f"{checkpoint}: does not hold this LeNet5's variables ({key} is missing)")
            if stored[key] != variable.shape.as_list():
                raise CheckpointError(
                    f"{checkpoint}: does not hold this LeNet5's variables ({key} has shape {stored[key]} "
                    f"there, {variable.shape.as_list()} here)")
        try:
            with self._graph.as_default():  # outside a graph, TF2's Saver would try an eager restore
                saver.restore(session, checkpoint)
        except tf.errors.OpError as err:
            raise CheckpointError(f"{checkpoint}: unreadable checkpoint ({describe_tf_error(err)})") from None
        return checkpoint

    def count_params(self) -> int:
        """Number of trainable parameters (61,706 for the plain ten-class network)."""
        return sum(math.prod(v.shape.as_list()) for v in self.trainable_variables)
