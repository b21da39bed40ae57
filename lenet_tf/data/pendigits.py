"""UCI pendigits (30 writers on a tablet, shipped in ``data/pendigits/``) drawn as a 280x280 drawing canvas would.

Each digit is 8 (x, y) points in 0..100 along the pen's whole trajectory (y up), stretched by the data set to fill
its square box on both axes. :func:`render_canvas` draws them as a smooth curve with a round brush of a random
diameter (8-28 px, the drawing page's range) as dark ink on a white 280x280 canvas, at a random size and place;
``keep_box`` keeps the data's box-filling aspect, otherwise the width is squeezed to a random 55-100% of the
height (people draw digits taller than wide). Everything is seeded.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
from PIL import Image

from lenet_tf.core.errors import DataError
from lenet_tf.data.pen import draw_strokes

CANVAS = 280
BRUSH = (8.0, 28.0)  # the drawing page's brush diameters, in canvas pixels
DEFAULT_DIR = Path("data") / "pendigits"  # beside data/mnist, relative to the working folder as MNIST's
REPOSITORY_DIR = Path(__file__).resolve().parents[2] / "data" / "pendigits"  # the checkout's, from anywhere
FILE = "pendigits.tra.gz"


def pendigits_dir() -> Path:
    """The pendigits folder: ``$LENET_TF_PENDIGITS_DIR``, else ``./data/pendigits``, else the checkout's."""
    if os.environ.get("LENET_TF_PENDIGITS_DIR"):
        return Path(os.environ["LENET_TF_PENDIGITS_DIR"])
    return DEFAULT_DIR if (DEFAULT_DIR / FILE).is_file() else REPOSITORY_DIR


def load_pendigits(folder: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The pen trajectories float32 ``[N, 8, 2]`` (0..100, y up) and int32 labels ``[N]``.

    Raises:
      DataError: the file is missing or malformed.
    """
    path = Path(folder or pendigits_dir()) / FILE
    try:
        with gzip.open(path, "rt") as stream:
            table = np.loadtxt(stream, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read pendigits ({err})") from None
    if table.shape[1] != 17 or table.min() < 0 or table[:, :16].max() > 100 or table[:, 16].max() > 9:
        raise DataError(f"{path}: expected lines of 16 coordinates in 0..100 and a digit, got shape {table.shape}")
    return table[:, :16].reshape(-1, 8, 2).astype(np.float32), table[:, 16].astype(np.int32)


def render_canvas(points: np.ndarray, rng: np.random.Generator, keep_box: bool = False) -> Image.Image:
    """One trajectory float ``[8, 2]`` (0..100, y up) drawn on a white ``L`` 280x280 canvas in black.

    Draws, from ``rng``: the brush diameter (uniform in 8-28 px), the digit's height (40-75% of the canvas),
    its width (the same with ``keep_box``, else 55-100% of the height) and its place (anywhere it fits).
    """
    brush = rng.uniform(*BRUSH)
    height = rng.uniform(0.4, 0.75) * CANVAS
    width = height * (1.0 if keep_box else rng.uniform(0.55, 1.0))
    left = rng.uniform(brush, CANVAS - brush - width)
    top = rng.uniform(brush, CANVAS - brush - height)
    xy = np.stack([left + points[:, 0] / 100 * width, top + (1 - points[:, 1] / 100) * height], axis=1)
    return draw_strokes([xy], (CANVAS, CANVAS), brush)


def canvas_digits(count: int, seed: int, keep_box: bool = False,
                  folder: str | os.PathLike | None = None) -> tuple[list[Image.Image], np.ndarray]:
    """``count`` pendigits (a seeded subset; 0: all) rendered by :func:`render_canvas`, and their int32 labels."""
    points, labels = load_pendigits(folder)
    rng = np.random.default_rng([seed, int(keep_box)])
    chosen = np.arange(len(labels)) if not count or count >= len(labels) else np.sort(
        rng.choice(len(labels), count, replace=False))
    return [render_canvas(points[i], rng, keep_box) for i in chosen], labels[chosen]
