"""Synthetic digits of the styles MNIST lacks, from the TrueType fonts matplotlib ships and from stroke templates.

MNIST's writers were American: it has few European 1s (a long up-stroke), 7s with a bar, open-top 4s, closed
printed 6s and 9s, or serif 1s, and no typed digits. :func:`synthetic_digits` draws them:

* **templates** (:data:`TEMPLATES`): strokes in a unit box (x right, y down), several styles per digit, each
  point jittered, drawn with a round pen (:mod:`lenet_tf.data.pen`) of a random width under a random affine map
  (aspect, slant, rotation);
* **fonts**: the faces with digits among the TrueType files matplotlib (a pinned dependency) ships in
  ``mpl-data/fonts/ttf`` (:func:`font_files`: DejaVu Sans, Serif and Mono; STIX; Computer Modern roman, sans,
  typewriter, italic and bold), at a random aspect, slant, rotation and stroke width. Never the machine's own
  fonts: every machine trains on the same digits.

Each picture goes through :func:`lenet_tf.data.images.to_mnist` like a user's file. Seeded; cached on disk.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lenet_tf.data.array_cache import array_key, cached_arrays
from lenet_tf.data.images import to_mnist
from lenet_tf.data.pen import draw_strokes

# The faces of matplotlib's font folder that have digits (not symbols, sizes, the "Display" subsets or the
# old-style figures of cmmi10).
FONT_PATTERNS = ("DejaVuSans.ttf", "DejaVuSans-*.ttf", "DejaVuSansMono*.ttf", "DejaVuSerif.ttf",
                 "DejaVuSerif-*.ttf", "STIXGeneral*.ttf", "cmr10.ttf", "cmss10.ttf",
                 "cmtt10.ttf", "cmti10.ttf", "cmb10.ttf")
CANVAS = 112
FONT_SHARE = 0.4  # of the synthetic digits, the share typed from fonts (the rest drawn from templates)

# Strokes per style, in a unit box (x right, y down). Corners are where two strokes meet.
TEMPLATES: dict[int, list[list[list[tuple[float, float]]]]] = {
    0: [[[(0.5, 0), (0.1, 0.3), (0.1, 0.7), (0.5, 1), (0.9, 0.7), (0.9, 0.3), (0.5, 0), (0.4, 0.05)]],
        [[(0.55, 0.02), (0.2, 0.2), (0.08, 0.6), (0.35, 1), (0.8, 0.85), (0.9, 0.35), (0.65, 0.02), (0.3, 0.1)]]],
    1: [[[(0.5, 0), (0.5, 1)]],                                            # a bar
        [[(0.1, 0.4), (0.7, 0)], [(0.7, 0), (0.7, 1)]],                    # European: a long up-stroke
        [[(0.2, 0.3), (0.65, 0)], [(0.65, 0), (0.65, 1)], [(0.3, 1), (1.0, 1)]],  # serif: flag and base
        [[(0.35, 0.2), (0.6, 0)], [(0.6, 0), (0.6, 1)]],                   # a short flag
        [[(0.0, 0.6), (0.75, 0)], [(0.75, 0), (0.7, 1)]],                  # a very long up-stroke, from low
        [[(0.5, 0), (0.5, 1)], [(0.2, 1), (0.8, 1)]],                      # a base, no flag
        [[(0.05, 0.45), (0.4, 0.25), (0.7, 0)], [(0.7, 0), (0.65, 1)]]],   # a curved up-stroke
    2: [[[(0.1, 0.25), (0.45, 0), (0.85, 0.2), (0.65, 0.55), (0.1, 1)], [(0.1, 1), (0.95, 1)]],
        [[(0.1, 0.25), (0.45, 0), (0.85, 0.2), (0.6, 0.6), (0.1, 1)], [(0.1, 1), (0.4, 0.85), (0.95, 1)]],
        [[(0.15, 0.25), (0.5, 0), (0.85, 0.2), (0.7, 0.5), (0.2, 0.92), (0.1, 0.78), (0.3, 0.72), (0.4, 0.95),
          (0.95, 1)]],                                                     # looped at the base
        [[(0.1, 0.3), (0.3, 0.05), (0.7, 0.02), (0.85, 0.3), (0.5, 0.7), (0.15, 1), (0.5, 0.9), (0.9, 0.98)]]],
    3: [[[(0.1, 0.1), (0.5, 0), (0.85, 0.2), (0.45, 0.45), (0.9, 0.7), (0.5, 1), (0.1, 0.88)]],
        [[(0.1, 0), (0.85, 0)], [(0.85, 0), (0.4, 0.4)], [(0.4, 0.4), (0.9, 0.65), (0.5, 1), (0.1, 0.88)]],
        [[(0.15, 0.15), (0.5, 0), (0.8, 0.15), (0.7, 0.38), (0.35, 0.47), (0.3, 0.42), (0.45, 0.45),
          (0.85, 0.62), (0.75, 0.92), (0.4, 1), (0.1, 0.85)]],            # cursive: a small loop in the middle
        [[(0.2, 0.2), (0.35, 0.02), (0.75, 0.05), (0.8, 0.3), (0.5, 0.48), (0.9, 0.72), (0.6, 1), (0.15, 0.8)]]],
    4: [[[(0.7, 1), (0.7, 0)], [(0.7, 0), (0.05, 0.7)], [(0.05, 0.7), (1, 0.7)]],    # closed, printed
        [[(0.2, 0), (0.05, 0.65)], [(0.05, 0.65), (0.95, 0.65)], [(0.72, 0.15), (0.72, 1)]],  # open top
        [[(0.25, 0), (0.1, 0.6), (0.9, 0.55)], [(0.75, 0.1), (0.7, 1)]],       # open top, one curved stroke
        [[(0.15, 0), (0.15, 0.55), (0.9, 0.55)], [(0.65, 0), (0.65, 1)]],      # open, upright left stroke
        [[(0.3, 0), (0.05, 0.55), (0.3, 0.62), (0.95, 0.5)], [(0.7, 0.2), (0.75, 1)]],  # open, curved, looped bar
        [[(0.6, 1), (0.6, 0), (0.05, 0.65), (0.95, 0.65)]]],                   # closed, in one stroke
    5: [[[(0.85, 0), (0.2, 0)], [(0.2, 0), (0.15, 0.45)],
         [(0.15, 0.45), (0.6, 0.38), (0.9, 0.68), (0.55, 1), (0.1, 0.9)]],
        [[(0.25, 0), (0.15, 0.45), (0.6, 0.38), (0.9, 0.68), (0.55, 1), (0.1, 0.9)], [(0.25, 0), (0.9, 0.02)]]],
    6: [[[(0.75, 0), (0.3, 0.3), (0.12, 0.7), (0.35, 1), (0.75, 0.95), (0.85, 0.7), (0.55, 0.5), (0.2, 0.62)]],
        [[(0.8, 0.1), (0.5, 0), (0.15, 0.3), (0.1, 0.7), (0.4, 1), (0.8, 0.9), (0.85, 0.65), (0.5, 0.45),
          (0.12, 0.6)]]],                                                  # closed, printed
    7: [[[(0.05, 0), (0.95, 0)], [(0.95, 0), (0.4, 1)]],
        [[(0.05, 0), (0.95, 0)], [(0.95, 0), (0.4, 1)], [(0.4, 0.5), (0.9, 0.5)]],     # with a bar
        [[(0.05, 0.2), (0.05, 0), (0.95, 0)], [(0.95, 0), (0.45, 1)], [(0.45, 0.5), (0.95, 0.5)]],  # serif, bar
        [[(0.05, 0.05), (0.95, 0)], [(0.95, 0), (0.6, 0.45), (0.5, 1)], [(0.3, 0.5), (0.85, 0.48)]],  # curved, bar
        [[(0.1, 0.1), (0.3, 0), (0.95, 0.02)], [(0.95, 0.02), (0.55, 0.55), (0.45, 1)]]],
    8: [[[(0.5, 0.48), (0.18, 0.25), (0.5, 0), (0.82, 0.25), (0.5, 0.48), (0.12, 0.75), (0.5, 1),
          (0.88, 0.75), (0.5, 0.48)]],
        [[(0.5, 0), (0.2, 0.22), (0.5, 0.45), (0.5, 0.45), (0.15, 0.72), (0.5, 1), (0.85, 0.72), (0.5, 0.45),
          (0.8, 0.22), (0.5, 0)]]],                                        # two loops, drawn left first
    9: [[[(0.85, 0.3), (0.5, 0.55), (0.12, 0.3), (0.5, 0), (0.85, 0.3)], [(0.85, 0.3), (0.8, 1)]],  # closed
        [[(0.85, 0.25), (0.5, 0.55), (0.12, 0.3), (0.5, 0), (0.88, 0.25), (0.8, 0.7), (0.4, 1), (0.15, 0.9)]],
        [[(0.8, 0.1), (0.5, 0), (0.15, 0.2), (0.2, 0.45), (0.55, 0.5), (0.85, 0.3)], [(0.85, 0.05), (0.85, 1)]],
        [[(0.85, 0.2), (0.5, 0.5), (0.15, 0.3), (0.45, 0), (0.85, 0.2), (0.75, 0.6), (0.6, 1)]]],  # cursive tail
}


def font_folder() -> Path:
    """matplotlib's folder of bundled TrueType fonts (``mpl-data/fonts/ttf``)."""
    import matplotlib  # imported here: only the synthetic digits need it

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def font_files() -> list[str]:
    """The TrueType faces with digits that matplotlib ships (:data:`FONT_PATTERNS`), sorted: the same on every
    machine with the pinned matplotlib."""
    folder = font_folder()
    return sorted({str(path) for pattern in FONT_PATTERNS for path in folder.glob(pattern)})


def _affine(points: np.ndarray, rng: np.random.Generator, height: float) -> np.ndarray:
    """Unit-box points ``[K, 2]`` on the canvas: a random aspect, slant and rotation, ``height`` pixels high."""
    aspect, slant, angle = rng.uniform(0.5, 1.0), rng.uniform(-0.35, 0.15), math.radians(rng.uniform(-8, 8))
    x = (points[:, 0] - 0.5) * height * aspect - (points[:, 1] - 0.5) * height * slant
    y = (points[:, 1] - 0.5) * height
    cos, sin = math.cos(angle), math.sin(angle)
    return np.stack([CANVAS / 2 + cos * x - sin * y, CANVAS / 2 + sin * x + cos * y], axis=1)


def template_digit(label: int, rng: np.random.Generator) -> np.ndarray:
    """One digit drawn from a random template style of ``label``: uint8 ``[28, 28]`` as ``to_mnist`` makes it."""
    styles = TEMPLATES[label]
    strokes = [np.asarray(stroke, np.float64) for stroke in styles[rng.integers(len(styles))]]
    jitter = {point: rng.normal(0, 0.04, 2) for stroke in strokes for point in map(tuple, stroke)}
    height = rng.uniform(55, 85)  # a joint shared by two strokes moves as one point
    strokes = [_affine(np.array([np.add(p, jitter[tuple(p)]) for p in stroke]), rng, height) for stroke in strokes]
    paper = draw_strokes(strokes, (CANVAS, CANVAS), rng.uniform(4, 14))
    return to_mnist(np.asarray(paper))


def font_digit(label: int, font: str, rng: np.random.Generator) -> np.ndarray:
    """``label`` typed in the TrueType ``font`` with a random aspect, slant, rotation and stroke width."""
    size = int(rng.uniform(60, 80))
    image = Image.new("L", (CANVAS * 2, CANVAS * 2), 255)
    ImageDraw.Draw(image).text((CANVAS, CANVAS), str(label), fill=0, anchor="mm",
                               font=ImageFont.truetype(font, size), stroke_width=int(rng.integers(0, 4)),
                               stroke_fill=0)
    aspect, slant, angle = rng.uniform(0.7, 1.2), rng.uniform(-0.3, 0.1), math.radians(rng.uniform(-6, 6))
    cos, sin = math.cos(angle), math.sin(angle)
    # Output (x, y) about the centre samples the input at the inverse map: un-rotate, un-slant, un-stretch.
    a, b = cos / aspect, (sin + slant * cos) / aspect
    c, d = -sin, cos - slant * sin
    centre = CANVAS
    matrix = (a, b, centre - a * centre - b * centre, c, d, centre - c * centre - d * centre)
    warped = image.transform(image.size, Image.AFFINE, matrix, Image.BILINEAR, fillcolor=255)
    return to_mnist(np.asarray(warped))


SYNTHETIC_POOL = 10000  # the synthetic digits training draws from (1,000 per class), cached once


def synthetic_digits(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` synthetic digits, uint8 ``[count, 28, 28]`` (white ink on black, as MNIST), and int32 labels
    ``[count]`` (balanced); :data:`FONT_SHARE` of them typed, the rest from templates. Cached on disk."""
    fonts = font_files()

    def compute() -> dict[str, np.ndarray]:
        rng = np.random.default_rng([seed, 21])
        labels = (np.arange(count) % 10).astype(np.int32)
        typed = rng.random(count) < (FONT_SHARE if fonts else 0.0)
        images = np.stack([font_digit(int(label), fonts[rng.integers(len(fonts))], rng) if is_typed
                           else template_digit(int(label), rng) for label, is_typed in zip(labels, typed)])
        return {"images": images, "labels": labels}

    names = [Path(font).name for font in fonts]  # not the folder: the key is the same wherever matplotlib lives
    stored = cached_arrays("synthetic", array_key("v2", count, seed, repr(TEMPLATES), names), compute)
    return stored["images"], stored["labels"]
