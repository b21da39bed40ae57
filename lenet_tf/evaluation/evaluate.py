"""Test-set evaluation of a checkpoint: accuracy, loss, per-digit precision/recall, confusion matrix; and
the robustness suites of :mod:`lenet_tf.evaluation.robustness`."""

from __future__ import annotations

import os
from typing import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix, precision_recall_fscore_support

from lenet_tf.data.mnist import load_mnist, split, unpad_images
from lenet_tf.evaluation.robustness import SUITES, RobustnessReport, run_suite
from lenet_tf.trained import TrainedModel


@dataclass
class Evaluation:
    """Metrics of one checkpoint on a labelled image set."""

    checkpoint: str
    epoch: int
    count: int
    accuracy: float
    loss: float
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    confusion: list[list[int]]

    def to_dict(self) -> dict:
        """JSON-ready dictionary of every field."""
        return asdict(self)

    def format(self) -> str:
        """A plain-text report: headline figures, scikit-learn's per-digit table, the confusion matrix."""
        # The labels and predictions behind the confusion matrix, in some order: all the table needs.
        counts = np.array(self.confusion)
        true, predicted = np.nonzero(counts)
        repeats = counts[true, predicted]
        table = classification_report(np.repeat(true, repeats), np.repeat(predicted, repeats),
                                      labels=range(len(counts)), digits=4, zero_division=0)
        lines = [f"checkpoint {self.checkpoint} (epoch {self.epoch})",
                 f"test images {self.count}   accuracy {self.accuracy:.4%}   loss {self.loss:.4f}", "", table,
                 "confusion matrix (rows: true digit, columns: predicted)",
                 "      " + "".join(f"{d:>6}" for d in range(len(counts)))]
        lines += [f"{d:>6}" + "".join(f"{n:>6}" for n in row) for d, row in enumerate(counts)]
        return "\n".join(lines)


def metrics(model: TrainedModel, images: np.ndarray, labels: np.ndarray) -> tuple[Evaluation, np.ndarray]:
    """Evaluates ``model`` on uint8 images and int labels; returns the metrics and the probabilities."""
    predictions = model.predict(images, labels)
    classes = list(range(model.net.num_classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions.classes, labels=classes, zero_division=0)
    evaluation = Evaluation(
        checkpoint=model.checkpoint,
        epoch=model.epoch,
        count=len(labels),
        accuracy=predictions.accuracy(labels),
        loss=predictions.loss,
        precision=precision.tolist(),
        recall=recall.tolist(),
        f1=f1.tolist(),
        support=support.tolist(),
        confusion=confusion_matrix(labels, predictions.classes, labels=classes).tolist(),
    )
    return evaluation, predictions.probabilities


@dataclass
class TestRun:
    """An evaluation with what its figures are drawn from (see :func:`lenet_tf.evaluation.figures.write_report`)."""

    evaluation: Evaluation
    probabilities: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    history: list[dict]


def run_test_set(
    checkpoint_dir: str | os.PathLike = "SavedModel",
    data_dir: str | os.PathLike | None = None,
    *,
    verify_checksums: bool = True,
    which: str = "best",
    precision: str | None = None,
    tta: bool = False,
    notice: Callable[[str], None] | None = None,
) -> TestRun:
    """Restores a checkpoint into a fresh graph and evaluates it on the official MNIST test set.

    ``precision``, ``tta``, ``notice``: as for :class:`lenet_tf.trained.TrainedModel`.
    """
    with TrainedModel(checkpoint_dir, which, precision, tta=tta, notice=notice) as model:  # a bad folder first
        mnist = load_mnist(data_dir, verify=verify_checksums)
        labels = mnist.test_labels.astype(np.int32)
        evaluation, probabilities = metrics(model, mnist.test_images, labels)
    return TestRun(evaluation, probabilities, mnist.test_images, labels, model.run["history"])


def evaluate(
    checkpoint_dir: str | os.PathLike = "SavedModel",
    data_dir: str | os.PathLike | None = None,
    *,
    verify_checksums: bool = True,
    which: str = "best",
    precision: str | None = None,
    tta: bool = False,
) -> Evaluation:
    """The metrics of a checkpoint on the official MNIST test set (see :func:`run_test_set`)."""
    return run_test_set(checkpoint_dir, data_dir, verify_checksums=verify_checksums, which=which,
                        precision=precision, tta=tta).evaluation


def evaluate_robustness(
    checkpoint_dir: str | os.PathLike = "SavedModel",
    data_dir: str | os.PathLike | None = None,
    *,
    verify_checksums: bool = True,
    which: str = "best",
    suite: str = "test",
    count: int | None = None,
    precision: str | None = None,
    tta: bool = False,
    notice: Callable[[str], None] | None = None,
) -> RobustnessReport:
    """Restores a checkpoint and runs a :mod:`lenet_tf.evaluation.robustness` suite on it.

    ``suite="test"`` uses the MNIST test digits (and scikit-learn's digits); ``"valid"`` uses the checkpoint's
    own validation digits (its seed's split), for choosing training options. ``count`` overrides the suite's
    number of digits per shift (and per pendigits row); ``tta`` averages over a few affine variants of each digit
    (see :class:`lenet_tf.trained.TrainedModel`).
    :func:`lenet_tf.evaluation.robustness_figures.write_robustness_report` draws its figures.
    """
    with TrainedModel(checkpoint_dir, which, precision, tta=tta, notice=notice) as model:  # a bad folder first
        mnist = load_mnist(data_dir, verify=verify_checksums)
        if suite == "valid":
            train = model.run["train"]
            splits = split(mnist, train["valid_size"], train["seed"])
            images, labels = unpad_images(splits.valid_images), splits.valid_labels
        else:
            images, labels = mnist.test_images, mnist.test_labels
        chosen = SUITES[suite]
        if count is not None:
            chosen = replace(chosen, count=count, pendigits=min(count, chosen.pendigits))
        report = run_suite(model, chosen, images, labels, f"mnist {suite}")
    return report
