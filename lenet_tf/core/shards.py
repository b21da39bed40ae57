"""Splitting a batch into shards whose ops run on different cores (one thread per op, one shard per core)."""

from __future__ import annotations

from lenet_tf.core.tf import tf


def shard_batch(batch: tf.Tensor, shards: int) -> list[tf.Tensor]:
    """Splits a batch of any size into ``shards`` nearly equal consecutive parts."""
    if shards == 1:
        return [batch]
    size = tf.shape(batch)[0]
    bounds = [size * k // shards for k in range(shards + 1)]
    return tf.split(batch, tf.stack([bounds[k + 1] - bounds[k] for k in range(shards)]), num=shards)


def concat(parts: list[tf.Tensor]) -> tf.Tensor:
    """The shards joined again along the batch axis (the part itself when there is one)."""
    return parts[0] if len(parts) == 1 else tf.concat(parts, axis=0)
