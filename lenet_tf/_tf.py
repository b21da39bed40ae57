"""The single place the package imports TensorFlow, with its CPU settings applied first."""

import os

# oneDNN kernels are on by default only on CPUs with AVX-512; on AVX2-only CPUs turning
# them on made LeNet-5 training 2.5x faster here (benchmarks/throughput.py). An explicit
# TF_ENABLE_ONEDNN_OPTS=0 from the user still wins, and nothing changes if TensorFlow
# was imported before this package.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1

__all__ = ["session_config", "tf", "tf1"]


def session_config() -> tf1.ConfigProto:
    """Session settings measured fastest for LeNet-5 here: all cores inside an op, two ops at once."""
    return tf1.ConfigProto(intra_op_parallelism_threads=os.cpu_count() or 1, inter_op_parallelism_threads=2)
