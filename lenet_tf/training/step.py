"""One training step, the same for every trainer: loss, accuracy and update of a batch for an ensemble of LeNet5
members. The single-process trainer runs it in an in-graph loop; a cluster's workers run it with their
synchronous optimizer and the variables on the parameter servers (:mod:`lenet_tf.training.cluster`)."""

from __future__ import annotations

from dataclasses import dataclass

from lenet_tf.core.tf import tf, tf1
from lenet_tf.model import LeNet5
from lenet_tf.objectives import correct, cross_entropy, training_op
from lenet_tf.training.config import TrainConfig


@dataclass(frozen=True)
class StepOps:
    """What one step computes: the batch's mean loss (the members' mean) and accuracy (of their averaged
    probabilities), both float32 scalars, and the update op."""

    loss: tf.Tensor
    accuracy: tf.Tensor
    train_op: tf.Operation


def training_step(config: TrainConfig, members: list[LeNet5], images: tf.Tensor, labels: tf.Tensor,
                  learning_rate: tf.Tensor, global_step: tf.Variable, *, towers: int = 1,
                  optimizer: tf1.train.Optimizer | None = None,
                  averager: tf1.train.ExponentialMovingAverage | None = None) -> StepOps:
    """One step on a batch: ``images`` float32 ``[N, 32, 32, 1]`` in [0, 1] (already distorted), int32 ``labels``
    ``[N]``.

    Data parallelism inside the step: the batch is split into ``towers`` shards whose ops run on their own core;
    the loss is the mean over the whole batch and batch norm's statistics are the whole batch's, so the loss and
    gradient are those of one batch whatever the number of towers. An ensemble minimises the sum of its members'
    losses: each member gets its own gradient, as alone. ``optimizer`` defaults to Adam at ``learning_rate``; with
    an ``averager`` (weight averaging) its update follows each step.
    """
    logits = [net(images, training=True, shards=towers) for net in members]
    losses = [tf.reduce_mean(cross_entropy(x, labels, config.label_smoothing)) for x in logits]
    total = losses[0] if len(losses) == 1 else tf.add_n(losses)
    loss = total if len(losses) == 1 else total * (1.0 / len(losses))
    scores = logits[0] if len(logits) == 1 else tf.add_n([tf.nn.softmax(x) for x in logits])
    accuracy = tf.reduce_mean(correct(scores, labels))
    variables = [v for net in members for v in net.trainable_variables]
    train_op = training_op(total, learning_rate, variables, [op for net in members for op in net.update_ops],
                           config.weight_decay, global_step, optimizer)
    if averager:
        with tf.control_dependencies([train_op]):
            train_op = averager.apply(variables)
    return StepOps(loss, accuracy, train_op)
