"""`train --ensemble N`: N LeNet5 members in one graph, averaged by every consumer of a run; a single model is
checkpointed and restored exactly as before ensembles existed."""

import json
import subprocess
import sys

import numpy as np
import pytest

from lenet_tf.core.tf import tf, tf1
from lenet_tf.data.mnist import Splits
from lenet_tf.model import LeNet5
from lenet_tf.serving.saved_model import export_saved_model
from lenet_tf.serving.tflite import export_tflite, tflite_probabilities
from lenet_tf.trained import TrainedModel
from lenet_tf.training.trainer import TrainConfig, train


@pytest.fixture(scope="module")
def small_real_splits(real_mnist):
    """3,000 real training digits, 500 for validation, the first 1,000 test digits (padded as train() takes them)."""
    pad = [[0, 0], [2, 2], [2, 2]]
    images = np.pad(real_mnist.train_images[:3500], pad)[..., None]
    labels = real_mnist.train_labels[:3500].astype(np.int32)
    return Splits(images[:3000], labels[:3000], images[3000:], labels[3000:],
                  np.pad(real_mnist.test_images[:1000], pad)[..., None], real_mnist.test_labels[:1000].astype(np.int32))


@pytest.fixture(scope="module")
def ensemble_dir(tmp_path_factory, small_real_splits):
    out = tmp_path_factory.mktemp("ensemble") / "run"
    train(TrainConfig(epochs=1, ensemble=2, towers=1), out, splits=small_real_splits, progress=False)
    return out


def member_probabilities(out, scope: str, images: np.ndarray) -> np.ndarray:
    """One member alone, restored by the plain LeNet5 API from its scope in the checkpoint."""
    with tf.Graph().as_default():
        net = LeNet5()
        inputs = tf1.placeholder(tf.float32, [None, 32, 32, 1])
        probabilities = tf.nn.softmax(net(inputs))
        with tf1.Session() as session:
            net.restore(session, out, checkpoint_scope=scope)
            return session.run(probabilities, {inputs: np.pad(images, [[0, 0], [2, 2], [2, 2]])[..., None] / 255})


def test_the_run_records_its_members_which_differ_and_are_averaged(ensemble_dir, real_mnist):
    run = json.loads((ensemble_dir / "run.json").read_text())
    assert run["train"]["ensemble"] == 2 and run["model"]["name"] == "lenet5"
    images = real_mnist.test_images[:500]
    first, second = (member_probabilities(ensemble_dir, scope, images) for scope in ("lenet5", "lenet5_1"))
    assert np.abs(first - second).max() > 0.05  # seeded apart: two different networks
    with TrainedModel(ensemble_dir) as model:
        averaged = model.predict(images).probabilities
        assert len(model.members) == 2
    np.testing.assert_allclose(averaged, (first + second) / 2, atol=2e-3)  # bf16 where the CPU has it
    assert np.mean(averaged.argmax(1) == real_mnist.test_labels[:500]) > 0.7  # 23 steps: far from chance


_FRESH = """
import sys, numpy as np
from lenet_tf.trained import TrainedModel
from lenet_tf.data.mnist import load_mnist
with TrainedModel(sys.argv[1], precision="fp32") as model:
    np.save(sys.argv[2], model.predict(load_mnist(sys.argv[3]).test_images[:200]).probabilities)
"""


def test_an_ensemble_restores_in_a_fresh_process(ensemble_dir, real_mnist, tmp_path):
    from conftest import REAL_MNIST

    done = subprocess.run([sys.executable, "-c", _FRESH, str(ensemble_dir), str(tmp_path / "p.npy"),
                           str(REAL_MNIST)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with TrainedModel(ensemble_dir, precision="fp32") as model:
        expected = model.predict(real_mnist.test_images[:200]).probabilities
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, atol=1e-6)


def test_exported_saved_model_and_tflite_average_the_members(ensemble_dir, real_mnist, tmp_path):
    images = real_mnist.test_images[:1000]
    with TrainedModel(ensemble_dir, precision="fp32") as model:
        expected = model.predict(images).probabilities
    tflite = tflite_probabilities(export_tflite(ensemble_dir, tmp_path / "e.tflite"), images)
    np.testing.assert_allclose(tflite, expected, atol=1e-4)
    folder = export_saved_model(ensemble_dir, tmp_path / "export")
    signature = tf.saved_model.load(str(folder)).signatures["serving_default"]
    outputs = signature(images=tf.constant(images))
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-4)
    assert outputs["classes"].numpy().tolist() == expected.argmax(1).tolist()
    assert json.loads((folder / "assets.extra/lenet_tf.json").read_text())["ensemble"] == 2


def test_a_single_model_is_the_checkpoint_it_always_was(tmp_path, small_real_splits, real_mnist):
    """ensemble=1 writes only lenet5/ variables; a run record from before ensembles (no "ensemble") restores."""
    out = tmp_path / "single"
    train(TrainConfig(epochs=1, towers=1), out, splits=small_real_splits, progress=False)
    stored = {name for name, _ in tf1.train.list_variables(str(out / json.loads(
        (out / "run.json").read_text())["best"]["dir"] / "ckpt"))}
    assert {name.split("/")[0] for name in stored} <= {"lenet5", "beta1_power", "beta2_power", "global_step"}
    images = real_mnist.test_images[:300]
    with TrainedModel(out, precision="fp32") as model:
        today = model.predict(images).probabilities
    run = json.loads((out / "run.json").read_text())
    del run["train"]["ensemble"]
    (out / "run.json").write_text(json.dumps(run))
    with TrainedModel(out, precision="fp32") as model:
        np.testing.assert_array_equal(model.predict(images).probabilities, today)
    np.testing.assert_allclose(member_probabilities(out, "lenet5", images), today, atol=1e-5)
