import gzip

import numpy as np
import pytest

from lenet_tf.core.errors import DataError
from lenet_tf.data.idx import encode_idx, parse_idx, read_idx, write_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", [".gz", ""])
def test_round_trip_keeps_values_dtype_and_shape(tmp_path, dtype, suffix):
    array = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    if dtype == np.uint8:
        array = np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
    path = write_idx(tmp_path / f"a.idx{suffix}", array)
    loaded = read_idx(path)
    assert loaded.dtype == array.dtype and loaded.shape == array.shape
    np.testing.assert_array_equal(loaded, array)


def test_header_matches_the_mnist_layout():
    data = encode_idx(np.zeros((2, 28, 28), np.uint8))
    assert data[:4] == b"\x00\x00\x08\x03"
    assert data[4:16] == (2).to_bytes(4, "big") + (28).to_bytes(4, "big") + (28).to_bytes(4, "big")
    assert len(data) == 16 + 2 * 28 * 28


def test_wrong_magic_number_names_the_file():
    with pytest.raises(DataError, match=r"^labels\.idx: bad magic number 0x01020801 \(not an IDX file\)$"):
        parse_idx(b"\x01\x02\x08\x01" + b"\x00" * 8, "labels.idx")


def test_truncated_data_is_reported_with_sizes():
    data = encode_idx(np.zeros((4, 2), np.uint8))[:-3]
    with pytest.raises(DataError, match=r"x\.idx: truncated: header says 4x2 \(8 data bytes\) but the file holds 5"):
        parse_idx(data, "x.idx")


def test_trailing_bytes_are_rejected():
    with pytest.raises(DataError, match="trailing bytes"):
        parse_idx(encode_idx(np.zeros(3, np.uint8)) + b"\x00", "x")


def test_too_short_and_truncated_header():
    with pytest.raises(DataError, match="too short"):
        parse_idx(b"\x00\x00", "x")
    with pytest.raises(DataError, match="truncated header"):
        parse_idx(b"\x00\x00\x08\x03\x00\x00\x00\x01", "x")


def test_corrupt_and_truncated_gzip(tmp_path):
    good = gzip.compress(encode_idx(np.arange(1000, dtype=np.int32)))
    truncated = tmp_path / "t.gz"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"t\.gz: corrupt or truncated gzip"):
        read_idx(truncated)
    garbage = tmp_path / "g.gz"
    garbage.write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match=r"g\.gz: corrupt or truncated gzip"):
        read_idx(garbage)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "nope.gz")
    with pytest.raises(DataError, match="is a directory"):
        read_idx(tmp_path)


def test_unsupported_dtype_cannot_be_written():
    with pytest.raises(ValueError, match="cannot store dtype"):
        encode_idx(np.zeros(3, np.complex64))
