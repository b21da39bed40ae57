"""The cache of decoded MNIST arrays and split indices: used only while the files are unchanged, rebuilt when
damaged, and never changing what is loaded."""

import json
import os

import numpy as np
import pytest
from conftest import REAL_MNIST
from synthetic import write_mnist_dir

from lenet_tf.data import mnist as data
from lenet_tf.data.mnist import Mnist, load_mnist, split
from lenet_tf.core.errors import DataError
from lenet_tf.data.idx import read_idx


def _no_reading(*args, **kwargs):
    raise AssertionError("read the files although the cache holds them")


def _cache_files(mnist: Mnist) -> list:
    """The index of ``mnist``'s files and their cached contents."""
    index = data.decoded_cache_dir() / f"{mnist.source}.json"
    return [index, *(data.decoded_cache_dir() / f"{digest}.idx" for digest in json.loads(index.read_text()).values())]


def assert_same(a: Mnist, b: Mnist) -> None:
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_second_load_comes_from_the_cache_and_is_identical(tmp_path, monkeypatch):
    folder = write_mnist_dir(tmp_path / "mnist", train=60, test=20)
    first = load_mnist(folder, verify=False, download=False)
    assert all(path.exists() for path in _cache_files(first))
    monkeypatch.setattr(data, "read_bytes", _no_reading)
    second = load_mnist(folder, verify=False, download=False)
    assert_same(first, second)
    assert second.source == first.source


def test_verified_official_files_are_cached_with_their_checksums(real_mnist, monkeypatch):
    monkeypatch.setattr(data, "read_bytes", _no_reading)
    assert_same(load_mnist(REAL_MNIST, download=False), real_mnist)


def test_cache_of_unverified_files_does_not_pass_verification(tmp_path):
    folder = write_mnist_dir(tmp_path / "mnist", train=60, test=20)
    load_mnist(folder, verify=False, download=False)
    with pytest.raises(DataError, match="does not match the official MNIST"):
        load_mnist(folder, download=False)


def test_a_changed_file_is_read_again(tmp_path):
    folder = write_mnist_dir(tmp_path / "mnist", train=60, test=20, seed=0)
    before = load_mnist(folder, verify=False, download=False)
    write_mnist_dir(folder, train=60, test=20, seed=5)  # same shapes, new contents
    for name in data.MNIST_FILES:  # a later modification time, even on a file system with coarse timestamps
        os.utime(folder / name, ns=(os.stat(folder / name).st_atime_ns, os.stat(folder / name).st_mtime_ns + 10**9))
    after = load_mnist(folder, verify=False, download=False)
    assert after.source != before.source
    assert not np.array_equal(after.train_images, before.train_images)
    assert_same(after, Mnist(*(read_idx(folder / name) for name in data.MNIST_FILES)))


def test_a_damaged_cache_costs_only_a_reread(tmp_path):
    folder = write_mnist_dir(tmp_path / "mnist", train=60, test=20)
    first = load_mnist(folder, verify=False, download=False)
    index, train_images = _cache_files(first)[:2]
    damaged = bytearray(train_images.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one pixel of one training image
    train_images.write_bytes(bytes(damaged))
    assert_same(load_mnist(folder, verify=False, download=False), first)
    assert train_images.read_bytes() != bytes(damaged), "the damaged copy was rebuilt"
    index.write_text("{not json")
    assert_same(load_mnist(folder, verify=False, download=False), first)
    assert json.loads(index.read_text()), "the damaged index was rebuilt"


def test_an_unwritable_cache_only_means_no_cache(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(data, "decoded_cache_dir", lambda: tmp_path / "file" / "decoded")
    folder = write_mnist_dir(tmp_path / "mnist", train=60, test=20)
    assert load_mnist(folder, verify=False, download=False).train_images.shape == (60, 28, 28)
    assert sorted(os.listdir(tmp_path)) == ["file", "mnist"]


def test_split_is_the_same_as_before_and_cached(real_mnist, monkeypatch):
    from sklearn.model_selection import train_test_split

    train_x, valid_x, train_y, valid_y = train_test_split(
        real_mnist.train_images, real_mnist.train_labels, test_size=5000, random_state=7,
        stratify=real_mnist.train_labels)  # how split() did it before the cache
    first = split(real_mnist, 5000, 7)
    np.testing.assert_array_equal(first.train_images[:, 2:30, 2:30, 0], train_x)
    np.testing.assert_array_equal(first.valid_images[:, 2:30, 2:30, 0], valid_x)
    np.testing.assert_array_equal(first.train_labels, train_y)
    np.testing.assert_array_equal(first.valid_labels, valid_y)
    assert first.train_labels.dtype == np.int32 and first.train_images.shape == (55000, 32, 32, 1)
    monkeypatch.setattr(data, "_split_indices", _no_reading)
    second = split(real_mnist, 5000, 7)
    np.testing.assert_array_equal(second.train_images, first.train_images)
    np.testing.assert_array_equal(second.valid_labels, first.valid_labels)


def test_damaged_split_indices_are_recomputed(tmp_path):
    folder = write_mnist_dir(tmp_path / "mnist", train=60, test=20)
    mnist = load_mnist(folder, verify=False, download=False)
    expected = split(mnist, 10, 0)
    path = data.decoded_cache_dir() / f"{mnist.source}-split-10-0.npz"
    np.savez(path, train=np.zeros(50, np.int64), valid=np.arange(10))  # readable, but not a partition
    again = split(mnist, 10, 0)
    np.testing.assert_array_equal(again.valid_images, expected.valid_images)
    np.testing.assert_array_equal(again.train_labels, expected.train_labels)
