"""Other writers' digits as files a user might send, read back exactly as ``lenet-tf predict`` reads a file.

* :func:`load_digits_files`: scikit-learn's 1,797 8x8 digits (43 writers), drawn as dark ink on white paper,
  upscaled (bilinear) to 64x64 PNG files;
* :func:`pendigits_files`: UCI pendigits' writers drawn on a 280x280 canvas (:mod:`lenet_tf.data.pendigits`).

Both are validation data (the robustness suites, the calibration of "I can't read this"), never training data.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from lenet_tf.core.errors import LeNetError
from lenet_tf.data.images import grayscale, to_mnist
from lenet_tf.data.pendigits import canvas_digits

LOAD_DIGITS_SCALE = 8  # load_digits' 8x8 pictures become 64x64 files


def png_bytes(image: Image.Image) -> bytes:
    """The image as the bytes of a PNG file (lossless at any level; 1 is the fastest)."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def read_file_bytes(data: bytes, name: str = "image") -> np.ndarray:
    """An image file's bytes prepared exactly as ``lenet-tf predict`` prepares a file: uint8 ``[28, 28]``."""
    with Image.open(io.BytesIO(data)) as image:
        return to_mnist(grayscale(image), name)


def read_encoded(files: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Image files' bytes read like ``predict``: prepared uint8 ``[N, 28, 28]`` (blank where the preprocessing
    refused the file) and the bool ``[N]`` mask of those it accepted."""
    prepared = np.zeros((len(files), 28, 28), np.uint8)
    accepted = np.zeros(len(files), bool)
    for i, data in enumerate(files):
        try:
            prepared[i] = read_file_bytes(data, f"image #{i}")
            accepted[i] = True
        except LeNetError:
            pass
    return prepared, accepted


def load_digits_files() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as 64x64 PNG files read back like ``predict``: prepared uint8 ``[N, 28, 28]``,
    int labels ``[N]`` and the accepted mask."""
    from sklearn.datasets import load_digits  # ships with scikit-learn: no download

    digits = load_digits()
    size = 8 * LOAD_DIGITS_SCALE
    files = [png_bytes(Image.fromarray(np.round(255 - small * (255 / 16)).astype(np.uint8)).resize(
        (size, size), Image.BILINEAR)) for small in digits.images]
    prepared, accepted = read_encoded(files)
    return prepared, digits.target.astype(np.int32), accepted


def pendigits_files(count: int, seed: int, keep_box: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` pendigits drawn on a 280x280 canvas (:func:`lenet_tf.data.pendigits.canvas_digits`) as PNG files
    read back like ``predict``: prepared uint8 ``[N, 28, 28]``, int labels ``[N]`` and the accepted mask."""
    papers, labels = canvas_digits(count, seed, keep_box)
    prepared, accepted = read_encoded([png_bytes(paper) for paper in papers])
    return prepared, labels, accepted
