"""Reading and writing the IDX format that MNIST is distributed in (gzip or raw)."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from lenet_tf.core.errors import DataError
from lenet_tf.core.regular_files import SpecialFileError, describe, read_regular

# IDX type codes -> big-endian numpy dtypes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dtype.newbyteorder("="): code for code, dtype in _DTYPES.items()}


def read_bytes(path: str | os.PathLike) -> bytes:
    """Returns the file's contents, decompressed when the name ends in ``.gz``.

    Raises:
      DataError: missing, unreadable, not a regular file (a FIFO, a device…) or not valid gzip data.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected an IDX file")
    try:
        raw = read_regular(path, follow_links=True)  # a FIFO is refused, not waited on
    except SpecialFileError as err:
        raise DataError(describe(err)) from None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupt or truncated gzip data ({err})") from None


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parses IDX bytes into an array of the stored dtype and shape; ``name`` is used in errors."""
    if len(data) < 4:
        raise DataError(f"{name}: too short to be an IDX file ({len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _DTYPES or ndim == 0:
        raise DataError(f"{name}: bad magic number 0x{data[:4].hex()} (not an IDX file)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        problem = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"{name}: {problem}: header says {'x'.join(map(str, shape))} "
            f"({expected} data bytes) but the file holds {actual}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (``.gz`` or raw) into a numpy array."""
    return parse_idx(read_bytes(path), str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """Encodes an array as IDX bytes (uint8, int8, int16, int32, float32 or float64)."""
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    if array.ndim == 0:
        raise ValueError("IDX needs an array of at least one dimension")
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(_DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Writes ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``."""
    path = Path(path)
    data = encode_idx(array)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path
