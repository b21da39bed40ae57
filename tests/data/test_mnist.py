import os
import urllib.request

import numpy as np
import pytest
from synthetic import write_mnist_dir

from lenet_tf.data import mnist as data
from lenet_tf.data.mnist import load_mnist, pad_images, resolve_data_dir, split, unpad_images
from lenet_tf.core.errors import ConfigError, DataError
from lenet_tf.data.idx import write_idx


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_dir() == tmp_path / "cache" / "lenet_tf" / "mnist"
    (tmp_path / "data" / "mnist").mkdir(parents=True)
    assert resolve_data_dir().resolve() == (tmp_path / "data" / "mnist").resolve()
    monkeypatch.setenv(data.DATA_DIR_ENV, "/from/env")
    assert str(resolve_data_dir()) == "/from/env"
    assert str(resolve_data_dir("/explicit")) == "/explicit"


def test_real_files_pass_their_checksums(real_mnist):
    assert real_mnist.train_images.shape == (60000, 28, 28)
    assert real_mnist.test_images.shape == (10000, 28, 28)
    assert np.bincount(real_mnist.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_checksum_mismatch_is_reported(synthetic_dir):
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: SHA-256 .* does not match"):
        load_mnist(synthetic_dir, download=False)


def test_synthetic_files_load_without_verification(synthetic_dir):
    mnist = load_mnist(synthetic_dir, verify=False, download=False)
    assert mnist.train_images.shape == (600, 28, 28) and mnist.test_labels.shape == (200,)


def test_missing_file_offline_says_where_to_put_files(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match=rf"{tmp_path}.*could not be downloaded.*put the four MNIST \.gz files in"):
        load_mnist(tmp_path)
    assert not any(tmp_path.iterdir()), "a failed download must leave no partial file"
    with pytest.raises(DataError, match="could not be downloaded"):  # nor the folders made for it, and only those
        load_mnist(tmp_path / "new" / "mnist")
    assert not any(tmp_path.iterdir())


def test_missing_file_without_download(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_mnist(tmp_path, download=False)


def test_download_is_verified_and_written_atomically(tmp_path, monkeypatch, synthetic_dir):
    served = []

    def fake_urlopen(url, timeout):
        served.append(url)
        return open(synthetic_dir / url.rsplit("/", 1)[1], "rb")

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(DataError, match="does not match the official MNIST"):
        load_mnist(tmp_path / "new")
    assert not any((tmp_path / "new").iterdir()), "a download that fails its checksum is removed"
    mnist = load_mnist(tmp_path / "new", verify=False)
    assert len(served) == 5 and mnist.train_images.shape == (600, 28, 28)
    assert sorted(os.listdir(tmp_path / "new")) == sorted(data.MNIST_FILES)


def test_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        load_mnist(tmp_path / "f")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_data_folder_is_named_for_what_it_is(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(DataError, match="pipe: is a FIFO, expected the folder holding the MNIST files"):
        load_mnist(tmp_path / "pipe", download=False)


def test_data_files_linked_into_place_are_read(tmp_path):
    folder = write_mnist_dir(tmp_path / "real", train=50, test=20)
    (tmp_path / "links").mkdir()
    for name in data.MNIST_FILES:
        (tmp_path / "links" / name).symlink_to(folder / name)
    linked = load_mnist(tmp_path / "links", verify=False, download=False)
    np.testing.assert_array_equal(linked.train_images, load_mnist(folder, verify=False).train_images)


def test_image_label_count_mismatch(tmp_path):
    folder = write_mnist_dir(tmp_path, train=50, test=20)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(19, np.uint8))
    with pytest.raises(DataError, match=r"20 test images but \(19,\) labels"):
        load_mnist(folder, verify=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path):
    folder = write_mnist_dir(tmp_path, train=50, test=20)
    (folder / "train-images-idx3-ubyte.gz").chmod(0)
    with pytest.raises(DataError, match="permission denied"):
        load_mnist(folder, verify=False)


def test_padding_centres_the_digit_in_a_zero_border():
    images = np.full((3, 28, 28), 7, np.uint8)
    padded = pad_images(images)
    assert padded.shape == (3, 32, 32, 1) and padded.dtype == np.uint8
    assert padded[:, 2:30, 2:30, 0].min() == 7
    assert padded.sum() == images.sum()
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    np.testing.assert_array_equal(unpad_images(pad_images(digits)), digits)  # its inverse


def test_split_is_stratified_seeded_and_disjoint(real_mnist):
    a = split(real_mnist, valid_size=5000, seed=3)
    b = split(real_mnist, valid_size=5000, seed=3)
    c = split(real_mnist, valid_size=5000, seed=4)
    assert len(a.train_labels) == 55000 and len(a.valid_labels) == 5000 and len(a.test_labels) == 10000
    np.testing.assert_array_equal(a.valid_images, b.valid_images)
    assert not np.array_equal(a.valid_labels, c.valid_labels)
    full = np.bincount(real_mnist.train_labels) / 60000
    np.testing.assert_allclose(np.bincount(a.valid_labels) / 5000, full, atol=0.001)
    train_keys = {img.tobytes() for img in a.train_images[:, 2:30, 2:30, 0][:5000]}
    assert not train_keys & {img.tobytes() for img in a.valid_images[:, 2:30, 2:30, 0]}


def test_split_rejects_bad_sizes(synthetic_dir):
    mnist = load_mnist(synthetic_dir, verify=False)
    with pytest.raises(ConfigError, match="valid size must lie in"):
        split(mnist, valid_size=600)
    with pytest.raises(ConfigError, match="cannot hold out 5"):
        split(mnist, valid_size=5)
