"""Turning an arbitrary picture of a digit into an MNIST-style 28x28 image.

Files are read as the user sees them (:func:`read_picture`): EXIF orientation applied, 16-bit, 32-bit and float
images scaled from their range, transparency composited so that the digit stays visible, the first frame of a
multi-frame file (with a note). Then :func:`to_mnist` follows MNIST's recipe: the paper's level and noise removed,
white ink on black, the digit's bounding box scaled to fit 20x20 keeping its aspect ratio (anti-aliased), then
placed in a 28x28 frame so that its centre of mass is at the centre.
"""

from __future__ import annotations

import logging
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lenet_tf.core.options import IMAGE_SUFFIXES, MAX_IMAGE_PIXELS
from lenet_tf.core.errors import DataError
from lenet_tf.core.quiet import debugging, silence_libtiff

# PIL warns about damaged files it still reads ("Corrupt EXIF data", "Truncated File Read"): a file that cannot
# be read is reported once as an error; one that can is simply read.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
# PIL also logs some refusals before raising them ("More samples per pixel than can be decoded"): the error it
# raises is reported, as the file's, so its log records stay unseen unless LENET_TF_DEBUG asks for everything.
if not debugging():
    logging.getLogger("PIL").setLevel(logging.CRITICAL)

# The formats the docs promise, and the only PIL plugins a file is ever offered to (PIL would also try EPS through
# Ghostscript, PSD, DDS and dozens more, each a parser of its own to attack).
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
FRAMES_COUNTED = 100  # frames of a multi-frame file counted for its note: a TIFF's pages are a chain to walk
# Larger pictures are refused from their header, before decoding: a 60 KB PNG can declare 20000x20000 pixels
# (400 MB decoded, gigabytes once converted), and a digit needs nothing near this resolution.
# Bigger pictures are box-reduced to about this side before the float work (the digit ends up 20x20 anyway):
# preparing a 4096x4096 picture then takes 0.1-0.5 s and 20-90 MB instead of up to 1 s and 200 MB.
WORKING_SIDE = 1024
INK_FRACTION = 0.1  # a pixel is ink when it is this far from the background towards the darkest ink
PAPER_NOISE = 3.5  # the paper's noise stddevs subtracted with its level (2.5/3/3.5/4/5 tried on the valid-side suite)

BLANK_LEVEL = 32  # ink below this contrast (of 255) is paper texture or JPEG noise, not a digit
BLANK_REASON = "blank image (no digit found)"
# Lighting across the page that the border shows, in grey levels, beyond which it is flattened first: below it the
# paper counts as one level (as ever), so evenly lit paper is read exactly as before.
UNEVEN_LIGHT = 12.0
PAPER_BORDER = 0.9  # the share of the border that must be paper for the lighting to be read from it
# A hard-edged shadow (a hand's, a phone's) crosses the border as one or two long stretches of darker paper, at
# least this share of it and more than 2 * UNEVEN_LIGHT grey levels darker; pictures with a side under
# SHADOW_MIN_SIDE pixels (scans of one digit, whose strokes may fill a quarter of the picture) are left as they are.
SHADOW_SHARE, SHADOW_MIN_SIDE = 0.2, 96


class ImageTooLarge(DataError):
    """An image declares more than :data:`MAX_IMAGE_PIXELS` pixels."""


class BlankImage(DataError):
    """A picture with no ink to be found: no digit to classify (:data:`BLANK_REASON`)."""


def blank_digits(digits: np.ndarray) -> np.ndarray:
    """Which of the digits ``[N, H, W]`` or ``[N, H, W, 1]`` (0..255, white ink on black) hold no ink: bool ``[N]``.

    A digit :func:`to_mnist` prepares always peaks at 255; a blank picture is prepared as all zeros. The same test
    runs in the exported graph (:mod:`lenet_tf.serving.saved_model`) and in the TF Serving API.
    """
    digits = np.asarray(digits)
    return digits.reshape(len(digits), int(np.prod(digits.shape[1:]))).max(axis=1, initial=0) < BLANK_LEVEL


@dataclass(frozen=True)
class Picture:
    """An image file as the user sees it: float32 grey levels ``[H, W]`` in 0..255, and what was left out
    (``note``, e.g. the frames after the first of an animated GIF), else ``None``."""

    gray: np.ndarray
    note: str | None = None


def _border(values: np.ndarray) -> np.ndarray:
    """The pixels of the outermost rows and columns of ``values`` ``[H, W]``, as one vector."""
    return np.concatenate([values[0], values[-1], values[:, 0], values[:, -1]])


def full_range(values: np.ndarray, name: str = "image") -> np.ndarray:
    """Grey levels of a 16-bit, 32-bit or float image ``[H, W]`` as float32 0..255, never clipped.

    Integers are scaled from the smallest usual depth that holds their maximum (8, 10, 12 or 16 bits), floats
    from 0..1 or 0..255; other values (negative ones, 32-bit counts) are stretched from their minimum to their
    maximum.

    Raises:
      DataError: NaN or infinite values.
    """
    kind = values.dtype.kind
    values = values.astype(np.float32)  # not float64: a 4096x4096 picture stays at 64 MB
    if not np.isfinite(values).all():
        raise DataError(f"{name}: holds NaN or infinite pixel values")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if low >= 0:
        for top in ((1.0, 255.0) if kind == "f" else (255.0, 1023.0, 4095.0, 65535.0)):
            if high <= top:
                return (values * (255.0 / top)).astype(np.float32)
    scale = 255.0 / max(high - low, 1e-12)  # in float64: float32's whole range as one span does not overflow
    return np.clip(values * np.float32(scale) - np.float32(low * scale), 0.0, 255.0).astype(np.float32)


def _alpha_composited(image: Image.Image) -> np.ndarray:
    """Grey levels ``[H, W]`` of an image with transparency, in which the digit stays visible whatever its colour.

    Where the alpha channel is the digit's mask (a transparent background around a minority of opaque pixels, or
    transparent strokes in an opaque sheet of one colour), the alpha is the ink: dark on white paper, so a white,
    black or red digit on a transparent canvas reads the same. Otherwise the colours hold the digit, and transparent
    areas (e.g. rounded corners) take the paper's colour: the median grey of the opaque pixels.
    """
    rgba = image.convert("RGBA")
    alpha = np.asarray(rgba.getchannel("A"), np.float32)
    gray = np.asarray(rgba.convert("L"), np.float32)
    if alpha.min() >= 255:
        return gray
    opaque = alpha >= 128
    if np.median(_border(alpha)) < 128 and opaque.mean() < 0.5:
        return 255.0 - alpha
    paper = float(np.median(gray[opaque])) if opaque.any() else 255.0
    composited = (gray * alpha + paper * (255.0 - alpha)) * (1.0 / 255.0)
    if np.abs(composited - paper).max() < 32:  # the colours show nothing: the transparent strokes are the digit
        return 255.0 - alpha
    return composited


def read_picture(image: Image.Image, name: str = "image") -> Picture:
    """An opened image as the user sees it, as float32 grey levels ``[H, W]`` in 0..255.

    EXIF orientation is applied; 16-bit, 32-bit and float images are scaled by :func:`full_range`;
    transparency is composited so that the digit stays visible (see :func:`_alpha_composited`); of a
    multi-frame file (animated GIF, multi-page TIFF) the first frame is read, and :attr:`Picture.note` says so.
    Images wider or taller than WORKING_SIDE come back reduced by an integer factor to at most that side.
    """
    frames = _frame_count(image)
    note = f"{frames} frames: read the first" if frames != 1 else None
    image.draft(None, (WORKING_SIDE, WORKING_SIDE))  # JPEG decodes at 1/2..1/8 scale directly; others: no-op
    image.load()
    image = ImageOps.exif_transpose(image)
    if image.mode == "LAB":  # PIL converts LAB to nothing else; its lightness is the grey
        image = image.getchannel("L")
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):  # scaled before reducing: a sum of huge
        gray = _reduced(Image.fromarray(full_range(np.asarray(image), name), "F"))  # floats would overflow
    elif image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        gray = _alpha_composited(_reduced(image))
    else:
        gray = _reduced(image).convert("L")
    return Picture(np.asarray(gray, dtype=np.float32), note)


def _frame_count(image: Image.Image) -> int | str:
    """How many frames ``image`` holds (``"over N"`` past :data:`FRAMES_COUNTED`); left at the first frame."""
    if not getattr(image, "is_animated", False):
        return 1
    if image.format != "TIFF":  # GIF, APNG and WebP count their frames without decoding them
        return image.n_frames
    count = 1  # a TIFF's n_frames walks every page of the chain: 20,000 pages of a 2 MiB file took 2.7 s
    try:
        while count <= FRAMES_COUNTED:
            image.seek(count)
            count += 1
    except EOFError:
        pass
    image.seek(0)
    return count if count <= FRAMES_COUNTED else f"over {FRAMES_COUNTED}"


def _reduced(image: Image.Image) -> Image.Image:
    """``image`` box-reduced by an integer factor to at most WORKING_SIDE a side, before any float work: a 4096x4096
    RGBA PNG then costs 64 MB of decoded pixels and little more, instead of 600 MB of float32 copies."""
    factor = -(-max(image.size) // WORKING_SIDE)
    if factor <= 1:
        return image
    if image.mode not in ("L", "LA", "RGB", "RGBA", "I", "F") or "transparency" in image.info:  # Image.reduce's
        kind = ("RGBA" if image.mode in ("P", "PA", "RGBa") or "transparency" in image.info else
                "I" if image.mode.startswith("I;16") else "LA" if image.mode == "La" else "RGB")
        image = image.convert(kind)
    return image.reduce(factor)


def grayscale(image: Image.Image) -> np.ndarray:
    """An opened image as float32 grey levels ``[H, W]`` in 0..255, as :func:`read_picture` reads it."""
    return read_picture(image).gray


def decode_picture(stream: BinaryIO, name: str) -> Picture:
    """Decodes an image from a binary stream (see :func:`read_picture`).

    Only the formats of :data:`IMAGE_FORMATS` are read. Whatever a damaged file makes PIL or its C libraries raise
    (``SyntaxError``, ``KeyError``, ``TypeError``, ``struct.error``…) becomes the file's one-line error.

    Raises:
      ImageTooLarge: the header declares more than MAX_IMAGE_PIXELS pixels (nothing is decoded).
      DataError: the bytes are not an image of those formats PIL can read, or hold NaN or infinite values.
    """
    limit = f"the limit is {MAX_IMAGE_PIXELS:,} pixels, e.g. 4096x4096"
    silence_libtiff()  # libtiff prints its warnings itself, on the process's stderr
    try:
        with Image.open(stream, formats=IMAGE_FORMATS) as image:  # lazy: reads the header only
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageTooLarge(f"{name}: image too large ({width}x{height} pixels; {limit})")
            return read_picture(image, name)
    except DataError:
        raise
    except Image.DecompressionBombError:  # PIL's own, higher, limit fires inside Image.open
        raise ImageTooLarge(f"{name}: image too large ({limit})") from None
    except UnidentifiedImageError:  # PIL's message names the stream object (<_io.BufferedReader name=3>)
        raise DataError(f"{name}: not a readable image (unknown format; PNG, JPEG, BMP, GIF, TIFF or WebP "
                        "expected)") from None
    except MemoryError:
        raise DataError(f"{name}: not a readable image (its decoding ran out of memory)") from None
    except Exception as err:  # noqa: BLE001 - any decoder failure is this file's error, never the caller's crash
        raise DataError(f"{name}: not a readable image ({_one_line(err)})") from None


def _one_line(err: BaseException) -> str:
    """``err`` as a short single line: its message (or, without one, its type's name)."""
    text = " ".join(str(err).split())[:200]
    return text if isinstance(err, (OSError, ValueError)) and text else f"{type(err).__name__}: {text}".rstrip(": ")


def decode_grayscale(stream: BinaryIO, name: str) -> np.ndarray:
    """Decodes an image from a binary stream as float32 grey levels [H, W] in 0..255 (see :func:`decode_picture`)."""
    return decode_picture(stream, name).gray


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


def load_picture(path: str | os.PathLike) -> Picture:
    """Reads an image file as the user sees it (see :func:`read_picture`).

    Raises:
      ImageTooLarge: more than MAX_IMAGE_PIXELS pixels.
      DataError: missing, not a regular file, or not an image.
    """
    with open_regular_file(path) as stream:
        return decode_picture(stream, str(path))


def load_grayscale(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file as float32 grey levels [H, W] in 0..255 (see :func:`load_picture`)."""
    return load_picture(path).gray


def _lighting(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """The paper's lighting over the picture, float32 ``[H, W]``: a quadratic surface in x and y fitted robustly
    to the border's pixels (strokes that touch the border are left out as outliers), and the share of the border's
    pixels the surface explains."""
    height, width = gray.shape
    y, x = np.ogrid[-1:1:complex(0, height), -1:1:complex(0, width)]  # [H, 1] and [1, W]
    bx, by = _border(np.broadcast_to(x, gray.shape)), _border(np.broadcast_to(y, gray.shape))
    design = np.stack([np.ones_like(bx), bx, by, bx * bx, bx * by, by * by], axis=-1)
    values = _border(gray).astype(np.float64)
    centre = np.median(values)  # start from the paper's one level: ink on the border never tilts the first fit
    kept = np.abs(values - centre) < 3.0 * (1.4826 * np.median(np.abs(values - centre)) + 1.0)
    for _ in range(3):  # refit without the pixels far from the surface (ink at the border, glare)
        coefficients = np.linalg.lstsq(design[kept], values[kept], rcond=None)[0]
        residuals = values - design @ coefficients
        kept = np.abs(residuals) < 3.0 * (1.4826 * np.median(np.abs(residuals[kept])) + 1.0)
    c = coefficients  # the surface over the whole picture, term by term (no [H, W, 6] basis)
    surface = c[0] + c[1] * x + c[2] * y + c[3] * (x * x) + c[4] * (x * y) + c[5] * (y * y)
    return surface.astype(np.float32), float(kept.mean())


def _ring(values: np.ndarray) -> np.ndarray:
    """The outermost pixels of ``values`` ``[H, W]`` in order around the picture (clockwise from the top left)."""
    return np.concatenate([values[0, :-1], values[:-1, -1], values[-1, :0:-1], values[:0:-1, 0]])


def _shadow_background(gray: np.ndarray) -> np.ndarray | None:
    """The paper's lighting, float32 ``[H, W]``, of a picture of dark ink that a hard-edged shadow crosses, else
    ``None`` (no such shadow on the border, light ink, or a small picture). The shadow is one or two stretches of
    the border, evenly darker paper: well lighter than the ink, unlike strokes that run off the picture.

    The lighting is the picture's grey closing by a square a fifth of its short side (which removes strokes, not
    the shadow), except on the paper at the shadow's level that joins the shadow: where a slanted edge meets the
    border, the square does not fit into the shadow's narrow tip, which the closing would light. (Very soft strokes
    crossing the shadow's edge can carry that level into the lit paper along them.)"""
    if min(gray.shape) < SHADOW_MIN_SIDE:
        return None
    ring = _ring(gray).astype(np.float64)
    low, high = np.percentile(ring, [5, 95])
    darkest, lightest = np.percentile(gray, [0.2, 99])  # 0.2: a small digit's ink is under 1% of the picture
    if high - low <= 2 * UNEVEN_LIGHT or low - darkest < lightest - high:  # one level, or light ink
        return None
    shaded = ring < (low + high) / 2
    runs = int(np.count_nonzero(shaded & ~np.roll(shaded, 1)))  # stretches of shaded border, around the ring
    if not (SHADOW_SHARE <= shaded.mean() <= 1 - SHADOW_SHARE and runs <= 2):
        return None
    level = float(np.median(ring[shaded]))
    # From pixel to pixel along the shaded border: the paper's noise, whatever light is over it.
    noise = float(np.percentile(np.abs(np.diff(ring[shaded])), 90))
    if level - darkest < 0.25 * (high - darkest) or noise > 0.1 * (high - level):
        return None  # ink (darker, or ragged), not evenly shaded paper
    from scipy import ndimage

    side = min(gray.shape) // 5
    lighting = ndimage.grey_closing(gray, size=(side, side), mode="nearest").astype(np.float32)
    paper = np.abs(gray - level) <= max(3.0 * noise, 0.15 * (high - level))
    shadow = ndimage.binary_propagation(paper & (lighting < (level + high) / 2), mask=paper)
    return np.where(shadow, np.minimum(lighting, gray), lighting)


def flattened(gray: np.ndarray) -> np.ndarray:
    """Grey levels ``[H, W]`` with uneven lighting (a side light, a shadow across the page, a vignette) flattened:
    when the border's fitted lighting (:func:`_lighting`) explains nearly all of the border (:data:`PAPER_BORDER`:
    not a digit that fills its box) and spans more than :data:`UNEVEN_LIGHT` grey levels, or when a hard-edged
    shadow crosses the border (:func:`_shadow_background`), the picture is divided by the lighting (light
    multiplies the paper's and the ink's reflectance alike) and brought to its median level; evenly lit pictures
    come back unchanged (at once when the border is one grey: 57 -> 32 s for the 10,000 synthetic digits, AVX2 EPYC)."""
    if min(gray.shape) < 3:
        return gray
    border = _border(gray)
    if border.min() == border.max():  # one grey all round (a canvas, a clean scan): the fit would find it flat
        return gray
    lighting, explained = _lighting(gray)
    if explained < PAPER_BORDER:  # a digit that fills its box, or a shadow's hard edge
        lighting = _shadow_background(gray)
        if lighting is None:
            return gray
    elif float(lighting.max() - lighting.min()) <= UNEVEN_LIGHT:
        return gray
    return gray * (np.float32(np.median(lighting)) / np.maximum(lighting, 8.0))


def paper_removed(gray: np.ndarray) -> np.ndarray:
    """The ink of grey levels ``[H, W]``, float32 ``[H, W]`` ≥ 0: the paper's level and its noise subtracted.

    The paper is the border's median grey; the ink is the side of it where the picture reaches farther (dark
    ink on light paper, or light on dark, whatever the paper's own grey). The paper's noise level, estimated
    robustly from the border (1.4826 × its median absolute deviation, which ignores strokes that touch the
    border), is subtracted too: :data:`PAPER_NOISE` of it, so that a grey, noisy photo of paper leaves no
    speckle to widen the digit's box or pull its centre of mass. Uneven lighting is flattened first
    (:func:`flattened`), so that a digit under a side light is not taken for the paper's noise.
    """
    gray = flattened(gray)
    border = _border(gray)
    paper = float(np.median(border))
    darkest, lightest = np.percentile(gray, [1, 99])
    ink = paper - gray if paper - darkest >= lightest - paper else gray - paper
    noise = 1.4826 * float(np.median(np.abs(border - paper)))
    return np.clip(ink - PAPER_NOISE * noise, 0, None)


def ink_box(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows and columns ``[K]`` that hold ink in ``ink`` ``[H, W]``: pixels over :data:`INK_FRACTION` of the
    darkest, leaving out isolated ones (speckle of a noisy photo) unless nothing else is there."""
    mask = ink > INK_FRACTION * ink.max()
    padded = np.pad(mask, 1).astype(np.int8)
    height, width = mask.shape
    neighbours = sum(padded[dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3))
    kept = mask & (neighbours >= 2)
    if kept.any():
        mask = kept
    return np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))


def mnist_or_blank(gray: np.ndarray, name: str = "image") -> np.ndarray:
    """:func:`to_mnist`, but a blank picture gives an all-zero digit (which :func:`blank_digits` reports)."""
    try:
        return to_mnist(gray, name)
    except BlankImage:
        return np.zeros((28, 28), np.uint8)


def to_mnist(gray: np.ndarray, name: str = "image") -> np.ndarray:
    """Converts grey levels [H, W] (any size, either polarity, any paper grey) to a uint8 MNIST digit [28, 28]
    (see :func:`paper_removed` and :func:`ink_box`).

    Raises:
      BlankImage: the image is blank (no ink to be found).
      DataError: not a 2-D image.
    """
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2 or min(gray.shape) < 1:
        raise DataError(f"{name}: expected a 2-D grey image, got shape {gray.shape}")
    ink = paper_removed(gray)
    if ink.max() < BLANK_LEVEL:
        raise BlankImage(f"{name}: {BLANK_REASON}")
    rows, cols = ink_box(ink)
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    crop = crop * (255.0 / crop.max())
    scale = 20.0 / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    digit = np.asarray(Image.fromarray(crop.astype(np.float32)).resize(size, Image.LANCZOS))
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

    A folder's files are those named as images (:data:`IMAGE_SUFFIXES`); its FIFOs, sockets, devices and
    sub-folders are skipped even when so named, a dangling link is kept (reading it says so). A path
    that cannot be looked at or listed (no permission, a name too long) is kept as given, and so is an entry that
    cannot be looked at: reading it then reports why, as one file's error, and the other paths are still read.
    """
    files = []
    for path in map(Path, paths):
        try:
            entries = sorted(path.iterdir()) if path.is_dir() else None
        except OSError:
            entries = None
        if entries is None:
            files.append(path)
        else:
            files += [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and _maybe_regular(p)]
    return files


def _maybe_regular(path: Path) -> bool:
    """Whether ``path`` is a regular file, a dangling symbolic link or cannot be looked at (reading it will say
    why)."""
    try:
        return path.is_file() or (path.is_symlink() and not path.exists())
    except OSError:
        return True
