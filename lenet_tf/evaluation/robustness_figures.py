"""PNG figures of a robustness suite: example digits per row as the network saw them, and the worst errors."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lenet_tf.evaluation.figures import check_report_dir, save_figure  # noqa: E402
from lenet_tf.evaluation.robustness import RobustnessReport  # noqa: E402


def plot_examples(report: RobustnessReport, path: Path, columns: int = 10) -> Path:
    """One line per row: its first ``columns`` digits after the ``predict`` preprocessing, with the prediction
    (red when wrong)."""
    names = list(report.examples)
    figure, grid = plt.subplots(len(names), columns, figsize=(columns * 0.9 + 1.6, len(names) * 1.0),
                                squeeze=False)
    for line, name in zip(grid, names):
        images, labels, probabilities, accepted = report.examples[name]
        for axes, i in zip(line, range(columns)):
            axes.imshow(images[i], cmap="gray_r", vmin=0, vmax=255)
            predicted = int(probabilities[i].argmax())
            wrong = predicted != labels[i] or not accepted[i]
            axes.set_title(str(predicted) if accepted[i] else "—", fontsize=8, color="red" if wrong else "black",
                           pad=1)
            axes.set_xticks([])
            axes.set_yticks([])
        row = report.row(name)
        line[0].set_ylabel(f"{name}\n{row.accuracy:.1%}", rotation=0, ha="right", va="center", fontsize=8)
    figure.suptitle(f"{report.suite}-side robustness suite: digits as the network sees them (title: prediction)",
                    fontsize=9)
    return save_figure(figure, path, dpi=100)


def plot_errors(report: RobustnessReport, path: Path, count: int = 32) -> Path:
    """The captured digits (MNIST's own excepted) whose true class got the least probability."""
    candidates = []
    for name, (images, labels, probabilities, accepted) in list(report.examples.items())[1:]:
        truth = probabilities[np.arange(len(labels)), labels]
        for i in np.flatnonzero((probabilities.argmax(axis=1) != labels) & accepted):
            candidates.append((truth[i], name, images[i], int(labels[i]), int(probabilities[i].argmax())))
    candidates.sort(key=lambda c: c[0])
    columns = 8
    rows = max(1, -(-min(count, len(candidates)) // columns))
    figure, grid = plt.subplots(rows, columns, figsize=(columns * 1.4, rows * 1.7), squeeze=False)
    for axes in grid.flat:
        axes.axis("off")
    for axes, (p, name, image, label, predicted) in zip(grid.flat, candidates[:count]):
        axes.imshow(image, cmap="gray_r", vmin=0, vmax=255)
        axes.set_title(f"{name}\n{label} → {predicted} (p[{label}]={p:.2f})", fontsize=7)
    figure.suptitle(f"Worst {min(count, len(candidates))} of {len(candidates)} errors on captured digits")
    return save_figure(figure, path, dpi=100)


FIGURES = ("robustness_examples.png", "robustness_errors.png")


def write_robustness_report(report: RobustnessReport, out_dir: str | os.PathLike, overwrite: bool = False
                            ) -> list[Path]:
    """Writes the :data:`FIGURES` into ``out_dir`` (refusing existing ones unless ``overwrite``); returns their
    paths."""
    examples, errors = check_report_dir(out_dir, overwrite, FIGURES)
    return [plot_examples(report, examples), plot_errors(report, errors)]
