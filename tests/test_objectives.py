import numpy as np
import pytest

from lenet_tf.core.tf import tf, tf1
from lenet_tf.objectives import cross_entropy, with_weight_decay


def log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_against_smoothed_one_hot_targets(smoothing):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (8, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 8).astype(np.int32)
    targets = np.full((8, 10), smoothing / 10) + (1 - smoothing) * np.eye(10)[labels]
    expected = -(targets * log_softmax(logits.astype(np.float64))).sum(axis=1)
    with tf.Graph().as_default(), tf1.Session() as session:
        got = session.run(cross_entropy(tf.constant(logits), tf.constant(labels), smoothing))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_weight_decay_penalises_only_weight_matrices():
    with tf.Graph().as_default(), tf1.Session() as session:
        weights = tf1.get_variable("layer/weights", initializer=tf.constant([[1.0, 2.0], [3.0, -4.0]]))
        biases = tf1.get_variable("layer/biases", initializer=tf.constant([5.0, 6.0]))
        session.run(tf1.global_variables_initializer())
        loss = tf.constant(1.0)
        assert session.run(with_weight_decay(loss, [weights, biases], 0.1)) == pytest.approx(1.0 + 0.1 * 30 / 2)
        assert with_weight_decay(loss, [weights, biases], 0.0) is loss
