"""PNG figures of an evaluation: confusion matrix, per-digit precision/recall, worst errors, training curves."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lenet_tf.evaluation.evaluate import Evaluation, TestRun  # noqa: E402
from lenet_tf.core.errors import OutputError  # noqa: E402
from lenet_tf.core.outputs import check_new_files, make_folder, write_atomic  # noqa: E402

FIGURES = ("confusion_matrix.png", "per_digit.png", "worst_errors.png", "training_curves.png")
MARK = {"lenet_tf": "evaluate --report"}  # a tEXt entry of every figure written: --overwrite replaces only those


def save_figure(figure, path: Path, dpi: int = 110) -> Path:
    """Writes ``figure`` as a PNG file (atomically, marked with :data:`MARK`) and closes it."""
    figure.tight_layout()
    try:
        write_atomic(path, lambda tmp: figure.savefig(tmp, dpi=dpi, format="png", metadata=MARK))
    finally:
        plt.close(figure)
    return path


def plot_confusion(evaluation: Evaluation, path: Path) -> Path:
    """Heat map of the confusion matrix with every count written in its cell."""
    matrix = np.array(evaluation.confusion)
    figure, axes = plt.subplots(figsize=(6.5, 5.5))
    # Log colour scale: the diagonal holds ~1000 per digit, the errors a handful.
    image = axes.imshow(np.log1p(matrix), cmap="Blues")
    for (true, predicted), count in np.ndenumerate(matrix):
        colour = "white" if true == predicted else "black"
        axes.text(predicted, true, str(count), ha="center", va="center", fontsize=8, color=colour)
    axes.set(xticks=range(len(matrix)), yticks=range(len(matrix)), xlabel="predicted digit",
             ylabel="true digit", title=f"Confusion matrix — accuracy {evaluation.accuracy:.2%}")
    figure.colorbar(image, ax=axes, label="log(1 + count)")
    return save_figure(figure, path)


def plot_per_digit(evaluation: Evaluation, path: Path) -> Path:
    """Side-by-side precision and recall bars for each digit."""
    digits = np.arange(len(evaluation.precision))
    figure, axes = plt.subplots(figsize=(8, 4))
    axes.bar(digits - 0.2, evaluation.precision, width=0.4, label="precision")
    axes.bar(digits + 0.2, evaluation.recall, width=0.4, label="recall")
    low = min(evaluation.precision + evaluation.recall)
    axes.set(xticks=digits, xlabel="digit", ylim=(max(0.0, low - 0.02), 1.0),
             title="Per-digit precision and recall")
    axes.legend(loc="lower right")
    axes.grid(axis="y", alpha=0.3)
    return save_figure(figure, path)


def plot_worst(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, path: Path,
               count: int = 24) -> Path:
    """The misclassified test digits the network was most sure about, with true and predicted labels."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(probabilities[wrong, labels[wrong]])][:count]  # least probability on the truth
    columns = 8
    rows = max(1, -(-len(wrong) // columns))
    figure, grid = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.55), squeeze=False)
    for axes in grid.flat:
        axes.axis("off")
    for axes, index in zip(grid.flat, wrong):
        axes.imshow(images[index].squeeze(), cmap="gray_r")
        axes.set_title(f"true {labels[index]} → {predicted[index]}\np={probabilities[index, predicted[index]]:.2f}",
                       fontsize=8)
    figure.suptitle(f"Worst {len(wrong)} of {int((predicted != labels).sum())} misclassified test digits")
    return save_figure(figure, path)


def plot_curves(history: list[dict], path: Path) -> Path:
    """Training and validation loss, and validation accuracy, per epoch."""
    epochs = [h["epoch"] for h in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if all("loss" in h for h in history):  # cluster runs of run.json format 1 recorded validation only
        left.plot(epochs, [h["loss"] for h in history], "o-", label="training loss")
    left.plot(epochs, [h["valid_loss"] for h in history], "o-", label="validation loss")
    left.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="Loss")
    left.legend()
    right.plot(epochs, [h["valid_accuracy"] for h in history], "o-", color="tab:green", label="validation")
    if all("train_accuracy" in h for h in history):
        right.plot(epochs, [h["train_accuracy"] for h in history], "o-", color="tab:gray", label="training")
    right.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    right.legend()
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.set_xticks(epochs if len(epochs) <= 15 else epochs[::max(1, len(epochs) // 10)])
    return save_figure(figure, path)


def check_report_dir(out_dir: str | os.PathLike, overwrite: bool = False, names: tuple[str, ...] = FIGURES
                     ) -> list[Path]:
    """Creates ``out_dir`` if needed and returns the paths of the figures ``names`` in it.

    Raises:
      OutputError: ``out_dir`` is a file, or a figure is there already and ``overwrite`` is not set, or with
        ``overwrite``, a file of a figure's name is not one this command wrote (a PNG with :data:`MARK`).
    """
    paths = [make_folder(out_dir) / name for name in names]
    check_new_files(paths, overwrite)
    for path in paths:
        if path.exists() and not _marked(path):
            raise OutputError(f"{path}: not a figure lenet_tf wrote, so --overwrite leaves it alone; move it or "
                              "choose another --report folder")
    return paths


def _marked(path: Path) -> bool:
    """Whether ``path`` is a PNG file carrying :data:`MARK` (its header chunks only are read)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.format == "PNG" and all(image.info.get(key) == value for key, value in MARK.items())
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False


def write_report(test: TestRun, out_dir: str | os.PathLike, overwrite: bool = False) -> list[Path]:
    """Writes the four :data:`FIGURES` as PNG files into ``out_dir``; returns their paths.

    Files of those names already there are refused (before anything is written) unless ``overwrite``.
    """
    confusion, per_digit, worst, curves = check_report_dir(out_dir, overwrite)
    return [
        plot_confusion(test.evaluation, confusion),
        plot_per_digit(test.evaluation, per_digit),
        plot_worst(test.images, test.labels, test.probabilities, worst),
        plot_curves(test.history, curves),
    ]
