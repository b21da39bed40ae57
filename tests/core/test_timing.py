"""run.json's ``timing``: counted from the command (or the library call) that trains, not from an import."""

import json
import time

import pytest

from lenet_tf.core import timing
from lenet_tf.core.tf import IMPORT_SECONDS, IMPORT_STARTED
from lenet_tf.training.loop import start_timings
from lenet_tf.training.trainer import TrainConfig, train

FAST = dict(epochs=1, batch_size=32, learning_rate=3e-3, valid_size=100)


def test_outside_a_command_the_clock_starts_at_the_call():
    time.sleep(0.2)  # long after lenet_tf.core.timing was imported
    timings = start_timings().to_dict()
    assert timing.command_started() is None and timings == {"startup": 0.0, "tf_import": 0.0}


def test_a_command_counts_start_up_and_the_tensorflow_import_it_did():
    with timing.command(IMPORT_STARTED - 1.0):  # a command that began 1 s before TensorFlow's import
        timings = start_timings()
    assert timings.seconds["tf_import"] == IMPORT_SECONDS
    assert timings.seconds["startup"] == pytest.approx(timings.elapsed() - IMPORT_SECONDS, abs=0.05)
    assert timings.seconds["startup"] >= 1.0
    with timing.command():  # one started now: TensorFlow came before it
        assert start_timings().seconds["tf_import"] == 0.0
    assert timing.command_started() is None


def check_record(out, wall: float) -> dict:
    """The run's timing: its phases add up to a total no longer than the call that trained."""
    record = json.loads((out / "run.json").read_text())["timing"]
    assert sum(v for k, v in record.items() if k != "total") == pytest.approx(record["total"], abs=0.01)
    assert record["total"] <= wall and record["startup"] < 1.0, record
    return record


def test_train_called_from_python_records_its_own_time(tmp_path, synthetic_splits):
    time.sleep(1.0)  # the old clock ran from the import of lenet_tf.core.timing: this would have counted
    began = time.perf_counter()
    train(TrainConfig(**FAST), tmp_path / "m", splits=synthetic_splits, progress=False)
    record = check_record(tmp_path / "m", time.perf_counter() - began)
    assert record["tf_import"] == 0.0


def test_the_command_in_this_process_records_from_its_call(tmp_path, synthetic_dir, cli):
    time.sleep(1.0)
    began = time.perf_counter()
    done = cli("train", "--data-dir", synthetic_dir, "--skip-checksum", "--out", tmp_path / "m", "--no-progress",
               "--valid-size", 100, "--batch-size", 32, "--epochs", 1, "--verbose", "--preset", "plain")
    assert done.returncode == 0, done.stderr
    record = check_record(tmp_path / "m", time.perf_counter() - began)
    assert f"(total {record['total']:.1f} s)" in done.stderr
