"""Pictures that are not digits, to calibrate and measure "I can't read this" (validation side only).

:func:`non_digit_pictures` draws, as files a user might send (dark ink on white paper, ``L`` images):

* **letters** typed in the fonts matplotlib ships (:func:`lenet_tf.data.synthetic.font_files`), leaving out the
  letters that are also digits' shapes (O, I, l, S, Z, B, G, b, g, q…);
* **scribbles**: random smooth strokes, a few per picture;
* **textures**: noise, stripes, checkerboards, crosshatching, blobs;
* **blank** paper (grey levels with a little noise).

Seeded; computed in a few seconds for a few hundred pictures.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lenet_tf.data.pen import draw_strokes
from lenet_tf.data.synthetic import CANVAS, font_files

# Letters whose shapes are not also a digit's (O/o/D/Q ≈ 0, I/l/i/j/J/T ≈ 1, Z/z ≈ 2, S/s ≈ 5, G/b ≈ 6,
# B ≈ 8, g/q ≈ 9, L/Y/t ≈ 4 or 7, a ≈ 2 or 9, e ≈ 6 or 2 in many hands).
LETTERS = "ACEFHKMNPRUVWXcfhkmnprvwx"
KINDS = ("letter", "scribble", "texture", "blank")
SHARES = (0.5, 0.25, 0.2, 0.05)  # of the pictures, per kind


def _typed_letter(rng: np.random.Generator, fonts: list[str]) -> Image.Image:
    image = Image.new("L", (CANVAS * 2, CANVAS * 2), 255)
    font = ImageFont.truetype(fonts[rng.integers(len(fonts))], int(rng.uniform(60, 90)))
    ImageDraw.Draw(image).text((CANVAS, CANVAS), LETTERS[rng.integers(len(LETTERS))], fill=0, anchor="mm",
                               font=font, stroke_width=int(rng.integers(0, 4)), stroke_fill=0)
    return image.rotate(rng.uniform(-10, 10), Image.BILINEAR, fillcolor=255)


def _scribble(rng: np.random.Generator) -> Image.Image:
    strokes = [rng.uniform(15, CANVAS - 15, (int(rng.integers(3, 9)), 2)) for _ in range(int(rng.integers(1, 4)))]
    return draw_strokes(strokes, (CANVAS, CANVAS), rng.uniform(3, 12))


def _texture(rng: np.random.Generator) -> Image.Image:
    y, x = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float64)
    kind = rng.integers(5)
    if kind == 0:  # noise
        values = rng.random((CANVAS, CANVAS))
    elif kind in (1, 2):  # stripes; crosshatching
        angle, period = rng.uniform(0, math.pi), rng.uniform(6, 20)
        values = np.sin((x * math.cos(angle) + y * math.sin(angle)) * 2 * math.pi / period)
        if kind == 2:
            values = np.maximum(values, np.sin((x * math.sin(angle) - y * math.cos(angle)) * 2 * math.pi / period))
    elif kind == 3:  # checkerboard
        cell = rng.uniform(8, 24)
        values = ((x // cell + y // cell) % 2).astype(np.float64)
    else:  # blobs
        coarse = rng.random((6, 6))
        values = np.asarray(Image.fromarray(coarse.astype(np.float32)).resize((CANVAS, CANVAS),
                                                                                        Image.BICUBIC))
    low, high = values.min(), values.max()
    return Image.fromarray(np.round(255 * (1 - (values - low) / max(high - low, 1e-9))).astype(np.uint8))


def _blank(rng: np.random.Generator) -> Image.Image:
    level = rng.uniform(180, 250)
    return Image.fromarray(np.clip(level + rng.normal(0, 3, (CANVAS, CANVAS)), 0, 255).astype(np.uint8))


def non_digit_pictures(count: int, seed: int = 0) -> tuple[list[Image.Image], list[str]]:
    """``count`` pictures that are not digits (``L`` images, dark on white) and their kinds (:data:`KINDS`),
    in :data:`SHARES`; the same ``seed`` gives the same pictures."""
    rng = np.random.default_rng([seed, 33])
    fonts = font_files()
    kinds = [KINDS[k] for k in rng.choice(len(KINDS), count, p=SHARES)]
    draw = {"letter": lambda: _typed_letter(rng, fonts), "scribble": lambda: _scribble(rng),
            "texture": lambda: _texture(rng), "blank": lambda: _blank(rng)}
    return [draw[kind]() for kind in kinds], kinds
