"""The names users import (the README's among them) keep working from where they are documented."""

import importlib
import subprocess
import sys

import pytest

PUBLIC = [
    ("lenet_tf", "LeNet5"),
    ("lenet_tf", "__version__"),
    ("lenet_tf.model", "LeNet5"),
    ("lenet_tf.trained", "TrainedModel"),
    ("lenet_tf.train", "train"),
    ("lenet_tf.train", "TrainConfig"),
    ("lenet_tf.training", "train"),
    ("lenet_tf.training", "TrainConfig"),
    ("lenet_tf.data", "load_mnist"),
    ("lenet_tf.data", "split"),
    ("lenet_tf.data", "pad_images"),
    ("lenet_tf.evaluation", "run_test_set"),
    ("lenet_tf.serving", "export_saved_model"),
    ("lenet_tf.serving", "export_tflite"),
    ("lenet_tf.serving", "predict_files"),
]


@pytest.mark.parametrize("module, name", PUBLIC, ids=[f"{m}.{n}" for m, n in PUBLIC])
def test_public_name_imports(module, name):
    assert getattr(importlib.import_module(module), name) is not None


def test_lenet5_is_one_class_whatever_the_path():
    import lenet_tf
    from lenet_tf.model import LeNet5

    assert lenet_tf.LeNet5 is LeNet5


def test_python_m_lenet_tf_train_is_the_train_command():
    done = subprocess.run([sys.executable, "-m", "lenet_tf.train", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--epochs" in done.stdout and "--resume" in done.stdout
