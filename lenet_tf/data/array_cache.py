"""Arrays computed once from other arrays and kept on disk beside the decoded MNIST cache.

A cache file is named by its kind and a key that hashes everything it was computed from; it is written
atomically, and a missing or damaged one is simply computed again (a failure to write only means no cache).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np

from lenet_tf.core.errors import OutputError
from lenet_tf.core.outputs import make_folder, write_atomic
from lenet_tf.data.mnist import decoded_cache_dir


def array_key(*parts) -> str:
    """A short hex key of ``parts``: arrays by their dtype, shape and bytes, bytes as they are, anything else by its
    ``repr``."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(f"{part.dtype}{part.shape}".encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, bytes):
            digest.update(part)
        else:
            digest.update(repr(part).encode())
    return digest.hexdigest()[:32]


def source_key(*modules: ModuleType) -> str:
    """A short hex key of the source of ``modules``: arrays computed by their code are computed again once it
    changes."""
    return array_key(*(Path(module.__file__).read_bytes() for module in modules))


def cached_arrays(kind: str, key: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays stored as ``<decoded cache>/<kind>-<key>.npz``, else ``compute()``'s, stored there."""
    path = decoded_cache_dir() / f"{kind}-{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        pass
    arrays = compute()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        write_atomic(make_folder(path.parent) / path.name, lambda tmp: tmp.write_bytes(buffer.getvalue()))
    except OutputError:
        pass
    return arrays
