"""MNIST: finding, downloading, verifying, caching, padding and splitting the data set.

Decompressing the gzip files and splitting them (importing scikit-learn alone takes about a second) cost more
than a short run's first epoch, so both results are cached in ``~/.cache/lenet_tf/decoded`` (see
:func:`decoded_cache_dir`): the decompressed files under their SHA-256, the digests of each data folder's files
under the files' path, size and modification time, and the train/validation indices per ``(valid_size, seed)``.
An entry is used only while the files' path, size and modification time match, and only after its contents
match their SHA-256 (the indices: their zip CRC and that they partition the training set). Every cache file is
written atomically, and a damaged one is simply rebuilt: the cache can cost a re-read, never change what is
loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import threading
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lenet_tf.core.errors import ConfigError, DataError, OutputError
from lenet_tf.core.outputs import cache_home, make_folder, write_atomic
from lenet_tf.core.regular_files import special_kind
from lenet_tf.core import json_text
from lenet_tf.data.idx import parse_idx, read_bytes

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
_CACHE_FORMAT = 1


@dataclass(frozen=True)
class Mnist:
    """The raw data set: uint8 images [N, 28, 28] and uint8 labels [N].

    ``source`` identifies the files it was loaded from (folder, sizes, modification times) when it came from
    :func:`load_mnist`; :func:`split` caches its indices under it.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str | None = None


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
    return cache_home() / "mnist"


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


def decoded_cache_dir() -> Path:
    """Where decoded arrays and split indices are cached (``$XDG_CACHE_HOME/lenet_tf/decoded``)."""
    return cache_dir().parent / "decoded"


def _source_id(folder: Path) -> str | None:
    """A key for the four files as they are now: their folder, sizes and modification times (None if one is
    missing)."""
    try:
        stats = {name: os.stat(folder / name) for name in MNIST_FILES}
    except OSError:
        return None
    identity = [str(folder.resolve()), *((name, s.st_size, s.st_mtime_ns) for name, s in stats.items())]
    return hashlib.sha256(json.dumps([_CACHE_FORMAT, identity]).encode()).hexdigest()[:32]


def _write_atomic(path: Path, data: bytes) -> None:
    """Writes a cache file through a temporary file and a rename; a failure (read-only home, full disk) only
    means no cache."""
    try:
        write_atomic(make_folder(path.parent) / path.name, lambda tmp: tmp.write_bytes(data))
    except OutputError:
        pass


def _read_npz(path: Path) -> dict[str, np.ndarray] | None:
    """Every array of an ``.npz`` cache file, or None when it is missing or damaged (zip checks its CRCs)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def _cached_contents(source: str | None, verify: bool) -> list[bytes] | None:
    """The decompressed files that ``source`` identifies, if cached intact (with ``verify``: if official).

    The index ``<source>.json`` names each file's SHA-256; the contents are stored under that digest and
    checked against it on every read, so a damaged or foreign cache file is never used.
    """
    if source is None:
        return None
    try:
        digests = json_text.loads((decoded_cache_dir() / f"{source}.json").read_text())
        if verify and digests != MNIST_FILES:  # cached with --skip-checksum: read again to report the mismatch
            return None
        contents = [(decoded_cache_dir() / f"{digests[name]}.idx").read_bytes() for name in MNIST_FILES]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if any(hashlib.sha256(data).hexdigest() != digests[name] for name, data in zip(MNIST_FILES, contents)):
        return None
    return contents


def _cache_contents(source: str, contents: list[bytes], digests: list[str]) -> None:
    for data, digest in zip(contents, digests):  # rewritten, in case a damaged copy caused the miss
        _write_atomic(decoded_cache_dir() / f"{digest}.idx", data)
    _write_atomic(decoded_cache_dir() / f"{source}.json", json.dumps(dict(zip(MNIST_FILES, digests))).encode())


def _read_file(folder: Path, name: str, verify: bool, download: bool) -> tuple[bytes, str]:
    """One file's decompressed contents and their SHA-256 (downloaded first when missing)."""
    path = folder / name
    downloaded = not path.exists() and download
    if downloaded:
        created = [p for p in (folder, *folder.parents) if not p.exists()]  # innermost first
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DataError(f"{folder}: cannot create data folder ({err.strerror})") from None
        try:
            _download(name, path)
        except DataError:
            for made in created:  # the folders made for the download, unless something else is in them now
                with contextlib.suppress(OSError):
                    made.rmdir()
            raise
    if not path.exists():
        raise DataError(f"{path}: file not found; put the four MNIST .gz files in {folder} or pass --data-dir")
    data = read_bytes(path)
    digest = hashlib.sha256(data).hexdigest()
    if verify:
        if digest != MNIST_FILES[name]:
            if downloaded:  # never keep a bad download where the next run would trust it
                path.unlink()
            raise DataError(
                f"{path}: SHA-256 {digest[:12]}… does not match the official MNIST file "
                "(use --skip-checksum for your own data in MNIST's format)"
            )
    return data, digest


class _Preload(threading.Thread):
    """:func:`load_mnist` without downloads, running in a daemon thread: ``value`` or ``error`` once joined."""

    def __init__(self, data_dir: str | os.PathLike | None, verify: bool) -> None:
        super().__init__(name="mnist-preload", daemon=True)
        self.args, self.value, self.error = (data_dir, verify), None, None
        self.start()

    def run(self) -> None:
        data_dir, verify = self.args
        try:
            self.value = _load(data_dir, verify, download=False)
        except Exception as err:  # the thread that asks for the data reads again and reports it
            self.error = err


_preloads: dict[tuple, _Preload] = {}
_preloads_lock = threading.Lock()


def preload_mnist(data_dir: str | os.PathLike | None = None, *, verify: bool = True) -> None:
    """Starts :func:`load_mnist` (without downloading) in a background thread; the next call with the same
    folder and ``verify`` takes its result instead of reading again (and, should it have failed, reads again
    itself, downloading or raising as usual). For a command that imports TensorFlow meanwhile: the files are
    read, decompressed and checked (zlib and hashlib release the GIL) while TensorFlow loads."""
    key = (str(resolve_data_dir(data_dir)), verify)
    with _preloads_lock:
        if key not in _preloads:
            _preloads[key] = _Preload(data_dir, verify)


def load_mnist(data_dir: str | os.PathLike | None = None, *, verify: bool = True, download: bool = True) -> Mnist:
    """Loads the four MNIST files from :func:`resolve_data_dir`, downloading missing ones (or takes the result
    of a :func:`preload_mnist` with the same arguments).

    Args:
      data_dir: folder holding the four ``*-ubyte.gz`` files; see :func:`resolve_data_dir`.
      verify: check each file's SHA-256 against the official release.
      download: try the public mirrors when a file is missing.

    Raises:
      DataError: a file is missing, unreadable, corrupt, has the wrong checksum or shape.
    """
    with _preloads_lock:
        pending = _preloads.pop((str(resolve_data_dir(data_dir)), verify), None)
    if pending is not None:
        pending.join()
        if pending.error is None:
            return pending.value
    return _load(data_dir, verify, download)


def _load(data_dir: str | os.PathLike | None, verify: bool, download: bool) -> Mnist:
    folder = resolve_data_dir(data_dir)
    if folder.exists() and not folder.is_dir():
        kind = special_kind(folder, follow_links=True) or "a file"
        raise DataError(f"{folder}: is {kind}, expected the folder holding the MNIST files")
    source = _source_id(folder)
    contents = _cached_contents(source, verify)
    digests = None
    if contents is None:
        contents, digests = zip(*(_read_file(folder, name, verify, download) for name in MNIST_FILES))
        if source != _source_id(folder):  # a file arrived by download or changed while it was read
            source = None
    mnist = Mnist(*(parse_idx(data, str(folder / name)) for name, data in zip(MNIST_FILES, contents)), source=source)
    _check_shapes(mnist, folder)
    if digests and source:
        _cache_contents(source, contents, digests)
    return mnist


def _check_shapes(mnist: Mnist, folder: Path) -> None:
    for kind in ("train", "test"):
        images, labels = getattr(mnist, f"{kind}_images"), getattr(mnist, f"{kind}_labels")
        if images.ndim != 3 or images.shape[1:] != (MNIST_SIZE, MNIST_SIZE) or images.dtype != np.uint8:
            raise DataError(f"{folder}: {kind} images are {images.dtype} {images.shape}, "
                            f"expected uint8 [N, {MNIST_SIZE}, {MNIST_SIZE}]")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"{folder}: {len(images)} {kind} images but {labels.shape} labels")
        if labels.size and labels.max() >= NUM_CLASSES:
            raise DataError(f"{folder}: {kind} labels must lie in 0..9, found {labels.max()}")


def pad_images(images: np.ndarray, indices: np.ndarray | None = None) -> np.ndarray:
    """Pads uint8 digits [N, 28, 28] (or those at ``indices``) with a zero border to LeNet-5's [N, 32, 32, 1]."""
    border = (IMAGE_SIZE - images.shape[1]) // 2
    count = len(images) if indices is None else len(indices)
    padded = np.zeros((count, IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
    padded[:, border:IMAGE_SIZE - border, border:IMAGE_SIZE - border, 0] = (
        images if indices is None else images[indices])
    return padded


def unpad_images(padded: np.ndarray, size: int = 28) -> np.ndarray:
    """The inverse of :func:`pad_images`: [N, 32, 32, 1] digits back to their central [N, size, size] (a view)."""
    border = (IMAGE_SIZE - size) // 2
    return padded[:, border:IMAGE_SIZE - border, border:IMAGE_SIZE - border, 0]


def _split_indices(labels: np.ndarray, valid_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's stratified, seeded train/validation indices."""
    from sklearn.model_selection import train_test_split  # a slow import: only when the indices are not cached

    try:
        train, valid = train_test_split(np.arange(len(labels)), test_size=valid_size, random_state=seed,
                                        stratify=labels)
    except ValueError as err:  # too few examples of a class to stratify
        raise ConfigError(f"cannot hold out {valid_size} validation images: {err}") from None
    return train, valid


def _cached_split_indices(mnist: Mnist, valid_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_split_indices`, cached under the files' identity when the data came from :func:`load_mnist`."""
    if mnist.source is None:
        return _split_indices(mnist.train_labels, valid_size, seed)
    path = decoded_cache_dir() / f"{mnist.source}-split-{valid_size}-{seed}.npz"
    stored = _read_npz(path)
    if stored is not None and set(stored) == {"train", "valid"}:
        train, valid = stored["train"], stored["valid"]
        every_index_once = np.bincount(np.concatenate([train, valid]), minlength=len(mnist.train_labels))
        if len(valid) == valid_size and len(every_index_once) == len(mnist.train_labels) and (
                every_index_once == 1).all():
            return train, valid
    train, valid = _split_indices(mnist.train_labels, valid_size, seed)
    buffer = io.BytesIO()
    np.savez(buffer, train=train, valid=valid)
    _write_atomic(path, buffer.getvalue())
    return train, valid


def split(mnist: Mnist, valid_size: int = 5000, seed: int = 0) -> Splits:
    """Pads the images and holds out a stratified, seeded validation set from the training images."""
    if not 0 < valid_size < len(mnist.train_labels):
        raise ConfigError(f"valid size must lie in 1..{len(mnist.train_labels) - 1}, got {valid_size}")
    train, valid = _cached_split_indices(mnist, valid_size, seed)
    labels = mnist.train_labels.astype(np.int32)
    return Splits(
        pad_images(mnist.train_images, train), labels[train], pad_images(mnist.train_images, valid), labels[valid],
        pad_images(mnist.test_images), mnist.test_labels.astype(np.int32),
    )
