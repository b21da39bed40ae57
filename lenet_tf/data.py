"""MNIST: finding, downloading, verifying, padding and splitting the data set."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lenet_tf.errors import ConfigError, DataError
from lenet_tf.idx import parse_idx, read_bytes

DATA_DIR_ENV = "LENET_TF_DATA_DIR"
MNIST_SIZE = 28  # MNIST's digits are 28x28 ...
IMAGE_SIZE = 32  # ... LeNet-5's input is 32x32: the digits with a 2-pixel zero border
INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)
NUM_CLASSES = 10

# File name -> SHA-256 of the *decompressed* contents (the official MNIST release).
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


@dataclass(frozen=True)
class Mnist:
    """The raw data set: uint8 images [N, 28, 28] and uint8 labels [N]."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


@dataclass(frozen=True)
class Splits:
    """Padded uint8 images [N, 32, 32, 1] and int32 labels [N] for training, validation and test."""

    train_images: np.ndarray
    train_labels: np.ndarray
    valid_images: np.ndarray
    valid_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def cache_dir() -> Path:
    """The per-user fallback location for downloaded MNIST files."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lenet_tf" / "mnist"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The MNIST folder: ``data_dir``, else ``$LENET_TF_DATA_DIR``, else ``./data/mnist``, else the cache."""
    if data_dir:
        return Path(data_dir)
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    local = Path("data") / "mnist"
    return local if local.is_dir() else cache_dir()


def _download(name: str, target: Path) -> None:
    """Fetches ``name`` from the first mirror that answers, writing it atomically to ``target``."""
    errors = []
    for mirror in MIRRORS:
        try:
            with urllib.request.urlopen(mirror + name, timeout=30) as response:
                with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
                    shutil.copyfileobj(response, tmp)
            os.replace(tmp.name, target)
            return
        except OSError as err:
            errors.append(f"{mirror}: {getattr(err, 'reason', err)}")
    raise DataError(
        f"{target}: missing and could not be downloaded ({'; '.join(errors)}); "
        f"put the four MNIST .gz files in {target.parent} or pass --data-dir"
    )


def _load_file(folder: Path, name: str, verify: bool, download: bool) -> np.ndarray:
    path = folder / name
    downloaded = not path.exists() and download
    if downloaded:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DataError(f"{folder}: cannot create data folder ({err.strerror})") from None
        _download(name, path)
    if not path.exists():
        raise DataError(f"{path}: file not found; put the four MNIST .gz files in {folder} or pass --data-dir")
    data = read_bytes(path)
    if verify:
        digest = hashlib.sha256(data).hexdigest()
        if digest != MNIST_FILES[name]:
            if downloaded:  # never keep a bad download where the next run would trust it
                path.unlink()
            raise DataError(
                f"{path}: SHA-256 {digest[:12]}… does not match the official MNIST file "
                "(use --skip-checksum for your own data in MNIST's format)"
            )
    return parse_idx(data, str(path))


def load_mnist(data_dir: str | os.PathLike | None = None, *, verify: bool = True, download: bool = True) -> Mnist:
    """Loads the four MNIST files from :func:`resolve_data_dir`, downloading missing ones.

    Args:
      data_dir: folder holding the four ``*-ubyte.gz`` files; see :func:`resolve_data_dir`.
      verify: check each file's SHA-256 against the official release.
      download: try the public mirrors when a file is missing.

    Raises:
      DataError: a file is missing, unreadable, corrupt, has the wrong checksum or shape.
    """
    folder = resolve_data_dir(data_dir)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: is a file, expected the folder holding the MNIST files")
    arrays = [_load_file(folder, name, verify, download) for name in MNIST_FILES]
    mnist = Mnist(*arrays)
    for kind in ("train", "test"):
        images, labels = getattr(mnist, f"{kind}_images"), getattr(mnist, f"{kind}_labels")
        if images.ndim != 3 or images.shape[1:] != (MNIST_SIZE, MNIST_SIZE) or images.dtype != np.uint8:
            raise DataError(f"{folder}: {kind} images are {images.dtype} {images.shape}, "
                            f"expected uint8 [N, {MNIST_SIZE}, {MNIST_SIZE}]")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"{folder}: {len(images)} {kind} images but {labels.shape} labels")
        if labels.size and labels.max() >= NUM_CLASSES:
            raise DataError(f"{folder}: {kind} labels must lie in 0..9, found {labels.max()}")
    return mnist


def pad_images(images: np.ndarray) -> np.ndarray:
    """Pads uint8 digits [N, 28, 28] with a zero border to LeNet-5's [N, 32, 32, 1]."""
    border = (IMAGE_SIZE - images.shape[1]) // 2
    return np.pad(images, ((0, 0), (border, border), (border, border)))[..., np.newaxis]


def split(mnist: Mnist, valid_size: int = 5000, seed: int = 0) -> Splits:
    """Pads the images and holds out a stratified, seeded validation set from the training images."""
    from sklearn.model_selection import train_test_split  # scikit-learn loads only when splitting

    if not 0 < valid_size < len(mnist.train_labels):
        raise ConfigError(f"valid size must lie in 1..{len(mnist.train_labels) - 1}, got {valid_size}")
    try:
        train_x, valid_x, train_y, valid_y = train_test_split(
            mnist.train_images, mnist.train_labels, test_size=valid_size, random_state=seed,
            stratify=mnist.train_labels,
        )
    except ValueError as err:  # too few examples of a class to stratify
        raise ConfigError(f"cannot hold out {valid_size} validation images: {err}") from None
    return Splits(
        pad_images(train_x), train_y.astype(np.int32), pad_images(valid_x), valid_y.astype(np.int32),
        pad_images(mnist.test_images), mnist.test_labels.astype(np.int32),
    )
