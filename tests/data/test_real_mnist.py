"""Training on the real, shipped MNIST: two epochs must already reach a real accuracy."""

import json

import numpy as np

from lenet_tf.evaluation.evaluate import evaluate
from lenet_tf.trained import TrainedModel


def test_two_epochs_on_real_mnist_reach_97_5_percent(real_model_dir, real_mnist):
    out, result = real_model_dir
    record = json.loads((out / "run.json").read_text())  # computed as asked, not as timings chose (conftest)
    assert record["kernels"] == {"used": "nn", "reason": "as asked"} and record["precision"]["used"] == "fp32"
    assert result.test_accuracy >= 0.975
    assert result.valid_accuracy >= 0.975
    with TrainedModel(out) as model:
        accuracy = model.predict(real_mnist.test_images).accuracy(real_mnist.test_labels)
    assert accuracy == result.test_accuracy


def test_evaluate_reports_consistent_metrics(real_model_dir):
    out, result = real_model_dir
    evaluation = evaluate(out)
    confusion = np.array(evaluation.confusion)
    assert evaluation.accuracy == result.test_accuracy
    assert confusion.sum() == 10000 and np.trace(confusion) == round(result.test_accuracy * 10000)
    np.testing.assert_allclose(evaluation.recall, np.diag(confusion) / confusion.sum(axis=1))
    np.testing.assert_allclose(evaluation.precision, np.diag(confusion) / confusion.sum(axis=0))
