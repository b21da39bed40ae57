"""Digits re-captured as low-resolution scans, read back exactly as ``lenet-tf predict`` reads a file.

Other writers' digits often reach us as small scans: 8x8 to 16x16 pictures in a few grey levels or in black and
white, enlarged by whatever viewer saved them. :func:`low_resolution_scans` makes such files of MNIST digits, so
that "I can't read this" learns that their blocky strokes are still digits (:mod:`lenet_tf.rejection.calibration`).
"""

from __future__ import annotations

import sys

import numpy as np
from PIL import Image

from lenet_tf.data import images as images_module, other_writers as other_writers_module
from lenet_tf.data.array_cache import array_key, cached_arrays, source_key
from lenet_tf.data.other_writers import png_bytes, read_encoded

SIDES = (8, 10, 12, 16)  # the scan's side in pixels, one drawn per digit
GREY_LEVELS = 16  # a grey scan's levels of ink (else it is black and white, at a threshold drawn per digit)
ENLARGED = (3, 8)  # the saved file is the scan enlarged this many times (bilinear or nearest), drawn per digit


def low_resolution_scans(digits: np.ndarray, seed: int) -> np.ndarray:
    """uint8 MNIST digits ``[N, 28, 28]`` (white ink on black) scanned at a low resolution as dark ink on white
    paper, saved as PNG files and read back like ``predict``: uint8 ``[M, 28, 28]``, ``M <= N`` (a scan the reader
    found blank is left out). The same ``seed`` gives the same scans, cached on disk for the same digits (3 s for
    1,500 digits the first time; :mod:`lenet_tf.data.array_cache`)."""
    digits = np.asarray(digits, np.uint8)
    code = source_key(images_module, other_writers_module, sys.modules[__name__])
    return cached_arrays("scans", array_key("scans-v1", digits, seed, code),
                         lambda: {"scans": _scanned(digits, seed)})["scans"]


def _scanned(digits: np.ndarray, seed: int) -> np.ndarray:
    """:func:`low_resolution_scans`, computed."""
    rng = np.random.default_rng([seed, 16])
    files = []
    for digit in digits:
        side = int(rng.choice(SIDES))
        ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.BOX), np.float64)
        if rng.random() < 0.5:
            ink = np.round(ink / 255 * GREY_LEVELS) * (255 / GREY_LEVELS)
        else:
            ink = (ink > rng.uniform(60, 160)) * 255.0
        enlarged = side * int(rng.integers(ENLARGED[0], ENLARGED[1] + 1))
        resample = (Image.BILINEAR, Image.NEAREST)[int(rng.integers(2))]
        paper = Image.fromarray(np.round(255 - ink).astype(np.uint8)).resize((enlarged, enlarged), resample)
        files.append(png_bytes(paper))
    prepared, accepted = read_encoded(files)
    return prepared[accepted]
