"""Evaluation figures and TensorBoard summaries of a small synthetic run."""

import numpy as np
import pytest
from PIL import Image

from lenet_tf.core.tf import tf1
from lenet_tf.evaluation.evaluate import run_test_set
from lenet_tf.evaluation.figures import FIGURES, write_report
from lenet_tf.training.trainer import TrainConfig, train


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory, synthetic_splits):
    out = tmp_path_factory.mktemp("report") / "model"
    config = TrainConfig(epochs=3, batch_size=32, learning_rate=3e-3, valid_size=100)
    return out, train(config, out, splits=synthetic_splits, progress=False)


def test_report_writes_four_real_png_figures(tmp_path, synthetic_run, synthetic_dir):
    out, result = synthetic_run
    test = run_test_set(out, synthetic_dir, verify_checksums=False)
    assert test.evaluation.accuracy == result.test_accuracy
    write_report(test, tmp_path / "figures")
    names = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert names == ["confusion_matrix.png", "per_digit.png", "training_curves.png", "worst_errors.png"]
    for name in names:
        with Image.open(tmp_path / "figures" / name) as image:
            assert image.format == "PNG" and image.width >= 400 and image.height >= 150
            assert len(np.unique(np.asarray(image.convert("L")))) > 10, f"{name} is blank"


def test_tensorboard_summaries_hold_the_epoch_scalars(synthetic_run):
    out, result = synthetic_run
    values = {}
    for events in sorted((out / "logs").rglob("events.out.tfevents.*")):
        for event in tf1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                values.setdefault(value.tag, []).append(value.simple_value)
    assert {"train/loss", "train/accuracy", "valid/loss", "valid/accuracy", "learning_rate",
            "train/batch_loss"} <= set(values)
    assert values["valid/accuracy"] == pytest.approx([h["valid_accuracy"] for h in result.history])
    assert values["learning_rate"] == pytest.approx([h["learning_rate"] for h in result.history])


def test_text_report_is_scikit_learns_table_of_the_same_predictions():
    from sklearn.metrics import classification_report, confusion_matrix

    from lenet_tf.evaluation.evaluate import Evaluation

    labels, predicted = np.array([0, 0, 1, 1, 2, 2, 2, 2]), np.array([0, 1, 1, 1, 2, 0, 2, 2])
    evaluation = Evaluation("ckpt", 3, 8, 0.75, 0.5, [], [], [], [],
                            confusion_matrix(labels, predicted, labels=range(3)).tolist())
    text = evaluation.format()
    assert classification_report(labels, predicted, labels=range(3), digits=4, zero_division=0) in text
    assert "accuracy 75.0000%" in text and text.splitlines()[-1] == "     2     1     0     3"


def test_a_refused_report_leaves_no_folder(tmp_path, synthetic_dir, cli):
    report = tmp_path / "new" / "figures"
    refused = cli("evaluate", "--checkpoint", tmp_path / "missing", "--data-dir", synthetic_dir, "--skip-checksum",
                  "--report", report)
    assert refused.returncode != 0 and "missing" in refused.stderr
    assert not (tmp_path / "new").exists()  # the folders the refused command made are gone again


def test_overwrite_replaces_only_figures_lenet_tf_wrote(tmp_path, synthetic_run, synthetic_dir, cli):
    out, _ = synthetic_run
    report = tmp_path / "figures"
    args = ["evaluate", "--checkpoint", out, "--data-dir", synthetic_dir, "--skip-checksum", "--report", report]
    assert cli(*args).returncode == 0
    assert sorted(p.name for p in report.iterdir()) == sorted(FIGURES)  # no lock file left beside them
    assert cli(*args, "--overwrite").returncode == 0  # its own figures: replaced
    before = {p.name: p.read_bytes() for p in report.iterdir()}
    notes = report / "training_curves.png"
    notes.write_text("my notes")  # a user's file under a figure's name
    refused = cli(*args, "--overwrite")
    assert refused.returncode == 1 and refused.stderr.strip().endswith(
        "training_curves.png: not a figure lenet_tf wrote, so --overwrite leaves it alone; move it or choose another "
        "--report folder")
    assert notes.read_text() == "my notes"
    after = {p.name: p.read_bytes() for p in report.iterdir() if p != notes}
    assert after == {name: data for name, data in before.items() if name != notes.name}  # refused before any write
