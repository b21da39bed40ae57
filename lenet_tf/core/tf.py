"""The single place the package imports TensorFlow, with its CPU and logging settings applied first."""

import contextlib
import importlib.util
import os
import sys
import time
from typing import Iterator

from lenet_tf.core.quiet import import_tensorflow

# oneDNN kernels are on by default only on CPUs with AVX-512; on AVX2-only CPUs turning
# them on made LeNet-5 training 2.5x faster here (benchmarks/throughput.py). An explicit
# TF_ENABLE_ONEDNN_OPTS=0 from the user still wins, and nothing changes if TensorFlow
# was imported before this package.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def _import_tensorflow():
    """Imports TensorFlow without the eager import of all of Keras that it ends with.

    That import (about 3 of the 7 s TensorFlow takes to import on 2 cores) only registers Keras optimizers for
    Keras SavedModels, which this package never loads, and TensorFlow skips it when Keras cannot be imported.
    So Keras is hidden while TensorFlow loads, then ``tf.keras`` is pointed at it again: ``tf.keras`` and
    ``import keras`` load it on first use as usual. Nothing changes when Keras or TensorFlow is already loaded
    (import keras first to keep TensorFlow's eager registration) or with ``TF_USE_LEGACY_KERAS``.
    """
    hide = not {"keras", "tensorflow"} & set(sys.modules) and not os.environ.get("TF_USE_LEGACY_KERAS")
    if hide:
        sys.modules["keras"] = None  # makes `import keras...` raise ImportError at once
    try:
        import tensorflow
    finally:
        if hide and sys.modules.get("keras", 0) is None:
            del sys.modules["keras"]
    if hide and None in tensorflow.__path__:  # where TensorFlow looked Keras up, it found nothing: redo that
        tensorflow.__path__[:] = keras_dirs() + [d for d in tensorflow.__path__ if d is not None]
    return tensorflow


# Where TensorFlow's __init__ finds the Keras it serves as tf.keras (Keras 2's and Keras 3's layout); private
# module paths of Keras, so tests/core/test_private_apis.py fails with a clear message when they move.
TF_KERAS_MODULES = ("keras.api._v2.keras", "keras._tf_keras.keras")


def keras_dirs() -> list[str]:
    """The folders holding :data:`TF_KERAS_MODULES` that exist, found without importing Keras."""
    spec = importlib.util.find_spec("keras")
    if spec is None or not spec.origin:
        return []
    base = os.path.dirname(spec.origin)
    folders = [os.path.join(base, *name.split(".")[1:-1]) for name in TF_KERAS_MODULES]
    return [folder for folder in folders if os.path.isdir(folder)]


IMPORT_STARTED = time.perf_counter()
tf = import_tensorflow(_import_tensorflow)  # without its start-up log lines (lenet_tf.core.quiet)
IMPORT_SECONDS = time.perf_counter() - IMPORT_STARTED  # reported in the timing of `lenet-tf train`
tf1 = tf.compat.v1

__all__ = ["default_towers", "enable_bf16", "gpu_available", "session_config", "tf", "tf1"]

# The rewrite's lists (auto_mixed_precision_lists.h) let Mean and SquaredDifference run in bfloat16, which
# would compute batch-norm means and variances from 8-bit mantissas: they are moved to the deny list, so
# tf.nn.moments stays float32 (elsewhere in lenet_tf they only appear in the loss, which is float32 anyway).
_KEEP_FP32 = ("Mean", "SquaredDifference")
_LIST_ENV = "TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_"


def gpu_available() -> bool:
    """Whether TensorFlow sees a GPU (it then places the graphs there by itself)."""
    return bool(tf.config.list_physical_devices("GPU"))


def default_towers(batch_size: int) -> int:
    """How many shards a training batch is split into, each shard's ops running on one CPU core.

    LeNet-5's tiny convolutions barely speed up when one op spreads over several threads, so on a CPU each
    core gets its own shard of the batch (benchmarks/throughput.py: +10-20% on 2 cores). A GPU takes the
    whole batch at once.
    """
    if gpu_available():
        return 1
    return max(1, min(os.cpu_count() or 1, batch_size // 32, 8))


def session_config(towers: int = 1, precision: str = "fp32") -> tf1.ConfigProto:
    """Session settings: one thread per op and one op per core with towers, else every core inside an op;
    ``precision`` ``"bf16"`` adds the oneDNN bfloat16 rewrite (:func:`enable_bf16`)."""
    cores = os.cpu_count() or 1
    if towers > 1:
        config = tf1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=max(towers, cores))
    else:
        config = tf1.ConfigProto(intra_op_parallelism_threads=cores, inter_op_parallelism_threads=2)
    config.use_per_session_threads = True  # each session keeps its own thread settings, not the first one's
    config.allow_soft_placement = True  # ops without a GPU kernel (uint8 gathers) fall back to the CPU
    config.gpu_options.allow_growth = True
    if precision == "bf16":
        enable_bf16(config)
    elif precision != "fp32":
        raise ValueError(f"precision must be fp32 or bf16 here, got {precision!r}")
    return config


def _add_to_env_list(name: str, ops: tuple[str, ...]) -> None:
    present = [op for op in os.environ.get(name, "").split(",") if op]
    os.environ[name] = ",".join(present + [op for op in ops if op not in present])


def enable_bf16(config: tf1.ConfigProto) -> None:
    """Turns the oneDNN bfloat16 rewrite on in a ``tf.compat.v1.ConfigProto``, batch-norm statistics in fp32.

    The op lists are read from the environment whenever a session optimises a graph, so they are set here,
    before any bf16 session runs.
    """
    _add_to_env_list(_LIST_ENV + "DENYLIST_ADD", _KEEP_FP32)
    _add_to_env_list(_LIST_ENV + "INFERLIST_REMOVE", _KEEP_FP32)  # an op in two lists disables the rewrite
    _add_to_env_list(_LIST_ENV + "CLEARLIST_REMOVE", _KEEP_FP32)
    rewrite = config.graph_options.rewrite_options  # a RewriterConfig message: its enum values are its attributes
    rewrite.auto_mixed_precision_onednn_bfloat16 = rewrite.ON


@contextlib.contextmanager
def graph_control_flow() -> Iterator[None]:
    """Within the block, ``tf.while_loop`` and ``tf.TensorArray`` build TF1 control flow: the loop's body lives in
    the graph itself (Enter/Exit frames), as the graph API's other ops do, where TF2 would build it as a function
    graph of its own (which ``LeNet5`` refuses to be called in, and whose body the oneDNN bf16 rewrite is not known
    to reach). The switch is TensorFlow's own (``tf.compat.v1.disable_control_flow_v2`` sets it for the whole
    process); here it is set only while the block builds."""
    from tensorflow.python.ops import control_flow_util

    saved = control_flow_util.ENABLE_CONTROL_FLOW_V2
    control_flow_util.ENABLE_CONTROL_FLOW_V2 = False
    try:
        yield
    finally:
        control_flow_util.ENABLE_CONTROL_FLOW_V2 = saved
