"""Friendly restore: a training folder, an epoch folder or a Saver prefix all load, in this process and a fresh one."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import console_script, deterministic

from lenet_tf import LeNet5
from lenet_tf.core.tf import tf, tf1
from lenet_tf.runs.checkpoint import resolve_checkpoint
from lenet_tf.core.errors import CheckpointError
from lenet_tf.training.trainer import TrainConfig, train
from lenet_tf.trained import TrainedModel


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_splits):
    """A training folder whose best epoch (1) is not its last (2): the synthetic digits are easy enough that the
    first epoch already classifies every validation digit, so the second can at best tie, and a tie keeps the
    earlier epoch."""
    out = tmp_path_factory.mktemp("restore") / "model"
    train(TrainConfig(epochs=2, batch_size=32, learning_rate=3e-3, valid_size=100, **deterministic()), out,
          splits=synthetic_splits, progress=False)
    run = json.loads((out / "run.json").read_text())
    assert run["history"][0]["valid_accuracy"] == 1.0, "epoch 1 must be perfect for the tie to be certain"
    assert run["best"]["dir"] != run["last"]["dir"], "the fixture needs distinct best and last epochs"
    return out, out / run["best"]["dir"], out / run["last"]["dir"]


def restored_weights(path, **kwargs) -> np.ndarray:
    with tf.Graph().as_default():
        net = LeNet5()
        net(tf1.placeholder(tf.float32, [None, 32, 32, 1]))
        with tf1.Session() as session:
            net.restore(session, path, **kwargs)
            return session.run(net.variables[0])


def test_every_form_resolves_to_its_saver_prefix(trained, tmp_path):
    out, best, last = trained
    assert resolve_checkpoint(out) == str(best / "ckpt")
    assert resolve_checkpoint(out, "last") == str(last / "ckpt")
    assert resolve_checkpoint(best) == resolve_checkpoint(best, "last") == str(best / "ckpt")
    assert resolve_checkpoint(last / "ckpt") == str(last / "ckpt")
    assert resolve_checkpoint(last / "ckpt.index") == str(last / "ckpt")
    assert resolve_checkpoint(next(last.glob("ckpt.data-*"))) == str(last / "ckpt")
    with pytest.raises(ValueError, match="which must be 'best' or 'last'"):
        resolve_checkpoint(out, "first")


def test_a_plain_saver_folder_resolves_to_its_latest_save(tmp_path):
    with tf.Graph().as_default():
        net = LeNet5()
        net(tf1.placeholder(tf.float32, [None, 32, 32, 1]))
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            saver = tf1.train.Saver(net.variables)
            saver.save(session, str(tmp_path / "model.ckpt"), global_step=10)
            expected = session.run(net.variables[0])
    assert resolve_checkpoint(tmp_path) == str(tmp_path / "model.ckpt-10")
    np.testing.assert_array_equal(restored_weights(tmp_path), expected)
    with pytest.raises(CheckpointError, match=r"no run\.json in .* to give the model's configuration"):
        TrainedModel(tmp_path)


@pytest.mark.parametrize("name, message", [
    ("missing", "no such checkpoint folder or Saver prefix (expected a training folder"),
    ("empty", "holds no checkpoint (expected run.json of a training folder, ckpt.index of an epoch folder"),
])
def test_what_is_not_a_checkpoint_is_one_clear_line(tmp_path, name, message):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError) as caught:
        resolve_checkpoint(tmp_path / name)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(CheckpointError, match="no such checkpoint folder|holds no checkpoint"):
        TrainedModel(tmp_path / name)


@pytest.mark.parametrize("part, key, value, message", [
    ("train", "ensemble", 10**30, r"ensemble must be in \[1, 64\], got 10{30}"),  # was: built for ever
    ("train", "ensemble", 2.0, r"ensemble must be in \[1, 64\], got 2\.0"),
    ("model", "num_classes", 10**30, r"num_classes must be in \[2, 2147483647\]"),  # was: a traceback
    ("model", "input_mean", float("inf"), "input_mean must be a finite number, got inf"),  # was: wrong answers
])
def test_a_run_record_with_values_out_of_range_is_one_clear_line(trained, tmp_path, part, key, value, message):
    copy = tmp_path / "edited"
    copy.mkdir()
    run = json.loads((trained[0] / "run.json").read_text())
    run[part][key] = value
    (copy / "run.json").write_text(json.dumps(run))  # json writes inf as Infinity, as a hand edit might
    shutil.copytree(trained[0] / run["best"]["dir"], copy / run["best"]["dir"])
    with pytest.raises(CheckpointError, match=rf"edited: unknown model configuration \({message}"):
        TrainedModel.read_config(copy)

def test_a_run_record_nested_too_deeply_is_one_clear_line(tmp_path):
    (tmp_path / "run.json").write_text("[" * 100_000 + "]" * 100_000)  # json.loads: RecursionError
    with pytest.raises(CheckpointError, match=r"run\.json: unreadable run record \(nested too deeply to read\)$"):
        TrainedModel.read_config(tmp_path)

def test_the_epoch_of_a_checkpoint_saved_under_a_free_name_is_known(trained, tmp_path):
    run = json.loads((trained[0] / "run.json").read_text())
    copy, renamed = tmp_path / "overwritten", run["best"]["dir"] + "-2"  # as --overwrite saves the same epoch
    copy.mkdir()
    shutil.copytree(trained[0] / run["best"]["dir"], copy / renamed)
    run["best"]["dir"] = run["last"]["dir"] = renamed
    run["checkpoints"] = [renamed]
    (copy / "run.json").write_text(json.dumps(run))
    assert TrainedModel.read_config(copy)["epoch"] == run["best"]["epoch"] == 1

def test_lenet5_restore_takes_each_form(trained):
    out, best, last = trained
    from_best = restored_weights(best / "ckpt")
    from_last = restored_weights(last / "ckpt")
    assert not np.array_equal(from_best, from_last)
    np.testing.assert_array_equal(restored_weights(out), from_best)
    np.testing.assert_array_equal(restored_weights(best), from_best)
    np.testing.assert_array_equal(restored_weights(out, which="last"), from_last)
    np.testing.assert_array_equal(restored_weights(last), from_last)


def test_trained_model_takes_each_form(trained, synthetic_splits):
    out, best, last = trained
    images = synthetic_splits.test_images
    with TrainedModel(out) as model:
        expected_best = model.predict(images).probabilities
        assert model.epoch == 1 and model.checkpoint == str(best / "ckpt")
        empty = model.predict(images[:0], features=True)  # an empty batch is an empty answer, not an error
        assert empty.probabilities.shape == (0, 10) and empty.blank.shape == (0,) and len(empty.features) == 0
    with TrainedModel(out, which="last") as model:
        expected_last = model.predict(images).probabilities
        assert model.epoch == 2
    for path, expected, epoch in [(best, expected_best, 1), (last / "ckpt", expected_last, 2),
                                  (last, expected_last, 2)]:
        with TrainedModel(path) as model:
            np.testing.assert_array_equal(model.predict(images).probabilities, expected)
            assert model.epoch == epoch and model.run["best"]["epoch"] == 1


_FRESH_PROCESS = """
import sys
import numpy as np
import tensorflow as tf
from lenet_tf import LeNet5

tf1 = tf.compat.v1
with tf.Graph().as_default():
    images = tf1.placeholder(tf.float32, [None, 32, 32, 1])
    net = LeNet5()
    logits = net(images)
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        for which in sys.argv[2:]:
            net.restore(session, sys.argv[1], which=which)
            print(float(session.run(net.variables[0]).sum()).hex())
"""


def test_the_readme_example_restores_a_folder_in_a_fresh_process(trained):
    out, best, last = trained
    done = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, str(out), "best", "last"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    restored = [float.fromhex(line) for line in done.stdout.split()]
    assert restored == [float(restored_weights(folder).sum()) for folder in (best, last)]
    assert restored[0] != restored[1]


def test_the_console_script_evaluates_an_epoch_folder_in_a_fresh_process(trained, synthetic_dir, synthetic_splits):
    out, best, last = trained
    done = subprocess.run([console_script(), "evaluate", "--checkpoint", str(last), "--data-dir", str(synthetic_dir),
                           "--skip-checksum", "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["epoch"] == 2 and report["checkpoint"] == str(last / "ckpt")
    with TrainedModel(last) as model:
        expected = model.predict(synthetic_splits.test_images).accuracy(synthetic_splits.test_labels)
    assert report["count"] == 200 and report["accuracy"] == expected
