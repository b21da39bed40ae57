"""Batch plumbing: splitting a batch into shards whose ops run on different cores (one thread per op, one shard
per core), joining them, and choosing whole rows between two batches."""

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


def select_rows(chosen: tf.Tensor, when_true: tf.Tensor, when_false: tf.Tensor) -> tf.Tensor:
    """Row k of ``when_true`` where ``chosen[k]``, else of ``when_false`` (``[N, ...]`` each, ``chosen`` bool
    ``[N]``): ``tf.where`` on rows, as one concatenation and one row gather (a broadcast select over every value
    of an image batch costs about four times as much)."""
    count = tf.shape(chosen)[0]
    return tf.gather(tf.concat([when_false, when_true], axis=0), tf.range(count) + tf.cast(chosen, tf.int32) * count)
