"""Test-set evaluation of a checkpoint: accuracy, loss, per-digit precision/recall, confusion matrix."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from lenet_tf.data import load_mnist
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
        """A plain-text report: headline figures, per-digit table, confusion matrix."""
        lines = [
            f"checkpoint {self.checkpoint} (epoch {self.epoch})",
            f"test images {self.count}   accuracy {self.accuracy:.4%}   loss {self.loss:.4f}",
            "",
            "digit  precision  recall     f1  support",
        ]
        for digit, row in enumerate(zip(self.precision, self.recall, self.f1, self.support)):
            lines.append(f"{digit:>5}  {row[0]:>9.4f}  {row[1]:>6.4f}  {row[2]:.4f}  {row[3]:>7}")
        lines += ["", "confusion matrix (rows: true digit, columns: predicted)",
                  "      " + "".join(f"{d:>6}" for d in range(len(self.confusion)))]
        lines += [f"{d:>6}" + "".join(f"{n:>6}" for n in row) for d, row in enumerate(self.confusion)]
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


def evaluate(
    checkpoint_dir: str | os.PathLike = "SavedModel",
    data_dir: str | os.PathLike | None = None,
    *,
    verify_checksums: bool = True,
    which: str = "best",
    report_dir: str | os.PathLike | None = None,
    precision: str | None = None,
) -> Evaluation:
    """Restores a checkpoint into a fresh graph and evaluates it on the official MNIST test set.

    With ``report_dir``, also writes the figures of :func:`lenet_tf.report.write_report` there. ``precision``:
    as for :class:`lenet_tf.trained.TrainedModel`.
    """
    mnist = load_mnist(data_dir, verify=verify_checksums)
    labels = mnist.test_labels.astype(np.int32)
    with TrainedModel(checkpoint_dir, which, precision) as model:
        evaluation, probabilities = metrics(model, mnist.test_images, labels)
    if report_dir:
        from lenet_tf.report import write_report  # matplotlib loads only when figures are wanted

        write_report(evaluation, probabilities, mnist.test_images, labels, model.run["history"], report_dir)
    return evaluation
