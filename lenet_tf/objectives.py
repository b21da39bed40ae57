"""Graph pieces the trainer and evaluator share: input scaling, loss, correctness, the Adam step."""

from __future__ import annotations

from lenet_tf.core.tf import tf, tf1


def scale_images(images: tf.Tensor) -> tf.Tensor:
    """uint8 pixels ``[N, 32, 32, 1]`` → float32 in [0, 1] (Adam's default step suits unit-scale inputs)."""
    return tf.cast(images, tf.float32) * (1.0 / 255.0)


def cross_entropy(logits: tf.Tensor, labels: tf.Tensor, label_smoothing: float = 0.0) -> tf.Tensor:
    """Per-example softmax cross-entropy ``[N]`` of float32 logits ``[N, C]`` and int32 labels ``[N]``.

    With ``label_smoothing`` ε the target is ``1 - ε`` on the label plus ``ε / C`` on every class.
    """
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    if label_smoothing == 0:
        return loss
    uniform = -tf.reduce_mean(tf.nn.log_softmax(logits), axis=1)  # cross-entropy against 1/C everywhere
    return (1.0 - label_smoothing) * loss + label_smoothing * uniform


def correct(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """float32 ``[N]``: 1 where the arg-max class equals the label."""
    return tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels), tf.float32)


def training_op(
    loss_value: tf.Tensor,
    learning_rate: tf.Tensor | float,
    var_list: list[tf.Variable],
    update_ops: list[tf.Operation] = (),
    weight_decay: float = 0.0,
    global_step: tf.Variable | None = None,
    optimizer: tf1.train.Optimizer | None = None,
) -> tf.Operation:
    """One step of ``optimizer`` (default: Adam at ``learning_rate``) on ``loss_value`` (+ L2 on the weight
    matrices), after the batch-norm ``update_ops``."""
    optimizer = optimizer or tf1.train.AdamOptimizer(learning_rate)
    with tf.control_dependencies(list(update_ops)):
        return optimizer.minimize(with_weight_decay(loss_value, var_list, weight_decay), var_list=var_list,
                                  global_step=global_step)


def with_weight_decay(loss_value: tf.Tensor, var_list: list[tf.Variable], weight_decay: float) -> tf.Tensor:
    """``loss_value`` + ``weight_decay`` × the L2 penalty (half the sum of squares) of the weight matrices."""
    if weight_decay <= 0:
        return loss_value
    weights = [v for v in var_list if v.op.name.endswith("weights")]
    return loss_value + weight_decay * tf.add_n([tf.nn.l2_loss(w) for w in weights])
