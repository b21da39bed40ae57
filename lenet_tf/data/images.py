"""Turning an arbitrary picture of a digit into an MNIST-style 28x28 image.

MNIST's recipe: white ink on black, the digit's bounding box scaled to fit 20x20 keeping its aspect
ratio (anti-aliased), then placed in a 28x28 frame so that its centre of mass is at the centre.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from lenet_tf.core.options import MAX_IMAGE_PIXELS
from lenet_tf.core.errors import DataError
from lenet_tf.core.quiet import quiet_stderr

# PIL warns about damaged files it still reads ("Corrupt EXIF data", "Truncated File Read"): a file that cannot
# be read is reported once as an error; one that can is simply read.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# Larger pictures are refused from their header, before decoding: a 60 KB PNG can declare 20000x20000 pixels
# (400 MB decoded, gigabytes once converted), and a digit needs nothing near this resolution.
# Bigger pictures are box-reduced to about this side before the float work (the digit ends up 20x20 anyway):
# preparing a 4096x4096 picture then takes 0.1-0.5 s and 20-90 MB instead of up to 1 s and 200 MB.
WORKING_SIDE = 1024
_INK_FRACTION = 0.1  # a pixel is ink when it is this far from the background towards the darkest ink


class ImageTooLarge(DataError):
    """An image declares more than :data:`MAX_IMAGE_PIXELS` pixels."""


def grayscale(image: Image.Image) -> np.ndarray:
    """An opened image as float32 grey levels [H, W] in 0..255; transparent areas become white paper.

    Images wider or taller than WORKING_SIDE come back reduced by an integer factor to at most that side.
    """
    image.draft(None, (WORKING_SIDE, WORKING_SIDE))  # JPEG decodes at 1/2..1/8 scale directly; others: no-op
    image.load()
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    gray = image.convert("L")
    factor = -(-max(gray.size) // WORKING_SIDE)
    return np.asarray(gray.reduce(factor) if factor > 1 else gray, dtype=np.float32)


def decode_grayscale(stream: BinaryIO, name: str) -> np.ndarray:
    """Decodes an image from a binary stream as float32 grey levels [H, W] in 0..255.

    Raises:
      ImageTooLarge: the header declares more than MAX_IMAGE_PIXELS pixels (nothing is decoded).
      DataError: the bytes are not an image PIL can read.
    """
    limit = f"the limit is {MAX_IMAGE_PIXELS:,} pixels, e.g. 4096x4096"
    try:
        with Image.open(stream) as image:  # lazy: reads the header only
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageTooLarge(f"{name}: image too large ({width}x{height} pixels; {limit})")
            if image.format != "TIFF":
                return grayscale(image)
            with quiet_stderr(replay=False):  # libtiff and libjpeg print their warnings themselves
                return grayscale(image)
    except Image.DecompressionBombError:  # PIL's own, higher, limit fires inside Image.open
        raise ImageTooLarge(f"{name}: image too large ({limit})") from None
    except UnidentifiedImageError:  # PIL's message names the stream object (<_io.BufferedReader name=3>)
        raise DataError(f"{name}: not a readable image (unknown format; PNG, JPEG, BMP, GIF, TIFF or WebP "
                        "expected)") from None
    except (OSError, ValueError) as err:
        raise DataError(f"{name}: not a readable image ({err})") from None


def open_regular_file(path: str | os.PathLike) -> BinaryIO:
    """Opens ``path`` for reading without ever blocking; FIFOs, devices and folders are refused.

    The file is opened non-blocking and checked on its descriptor, so a FIFO swapped in at the last moment
    cannot hang the caller either.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as err:
        raise DataError(f"{path}: cannot open ({err.strerror or err})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DataError(f"{path}: not a regular file")
    return os.fdopen(fd, "rb")


def load_grayscale(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file as float32 grey levels [H, W] in 0..255 (transparent areas become white).

    Raises:
      ImageTooLarge: more than MAX_IMAGE_PIXELS pixels.
      DataError: missing, not a regular file, or not an image.
    """
    with open_regular_file(path) as stream:
        return decode_grayscale(stream, str(path))


def to_mnist(gray: np.ndarray, name: str = "image") -> np.ndarray:
    """Converts grey levels [H, W] (any size, either polarity) to a uint8 MNIST digit [28, 28].

    Raises:
      DataError: the image is blank (no ink to be found).
    """
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2 or min(gray.shape) < 1:
        raise DataError(f"{name}: expected a 2-D grey image, got shape {gray.shape}")
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    ink = 255.0 - gray if np.median(border) > 127 else gray  # light background: dark ink on paper
    ink = ink - np.median(np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]]))
    ink = np.clip(ink, 0, None)
    if ink.max() < 32:  # less contrast than this is paper texture or JPEG noise, not a digit
        raise DataError(f"{name}: blank image (no digit found)")
    rows = np.flatnonzero((ink > _INK_FRACTION * ink.max()).any(axis=1))
    cols = np.flatnonzero((ink > _INK_FRACTION * ink.max()).any(axis=0))
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    crop = crop * (255.0 / crop.max())
    scale = 20.0 / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    digit = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").resize(size, Image.LANCZOS))
    digit = np.clip(digit, 0, 255)
    frame = np.zeros((28, 28), np.float32)
    total = digit.sum()
    com_y = (digit.sum(axis=1) * np.arange(digit.shape[0])).sum() / total
    com_x = (digit.sum(axis=0) * np.arange(digit.shape[1])).sum() / total
    # MNIST's digits have their centre of mass at pixel (14, 14) (measured on the test set).
    top = int(np.clip(round(14.0 - com_y), 0, 28 - digit.shape[0]))
    left = int(np.clip(round(14.0 - com_x), 0, 28 - digit.shape[1]))
    frame[top:top + digit.shape[0], left:left + digit.shape[1]] = digit
    return np.round(frame).astype(np.uint8)


def image_files(paths: list[str | os.PathLike]) -> list[Path]:
    """Expands folders into the regular image files they hold (sorted); paths given explicitly are kept as given.

    A folder's FIFOs, sockets, devices and sub-folders are skipped even when their name looks like an image.
    """
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            files.append(path)
    return files
