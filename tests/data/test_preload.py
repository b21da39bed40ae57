"""MNIST read in a background thread (while TensorFlow imports) is the same data, and its failures are not lost."""

import threading

import numpy as np
import pytest
from synthetic import write_mnist_dir

from lenet_tf.core.errors import DataError
from lenet_tf.data.mnist import load_mnist, preload_mnist


def test_a_preload_is_taken_once_and_equals_a_direct_read(tmp_path):
    folder = write_mnist_dir(tmp_path / "mnist")
    expected = load_mnist(folder, verify=False, download=False)
    preload_mnist(folder, verify=False)
    for thread in threading.enumerate():
        if thread.name == "mnist-preload":
            thread.join(60)
    folder.rename(tmp_path / "moved")  # from now on only the preload has the data
    preloaded = load_mnist(folder, verify=False, download=False)
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(preloaded, name), getattr(expected, name))
    with pytest.raises(DataError):  # used up: the next call reads the folder again
        load_mnist(folder, verify=False, download=False)


def test_a_failed_preload_leaves_the_error_to_the_real_read(tmp_path):
    preload_mnist(tmp_path / "empty", verify=True)  # nothing there, and the preload never downloads
    with pytest.raises(DataError, match="empty"):
        load_mnist(tmp_path / "empty", download=False)
    assert not (tmp_path / "empty").exists() or not any((tmp_path / "empty").iterdir())
