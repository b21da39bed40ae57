"""Capture conditions users meet, applied to MNIST-style digits as raw 28x28 arrays (validation side).

Each :class:`Condition` damages uint8 digits ``[N, 28, 28]`` (white ink on black, as MNIST stores them) the way a
camera, a scanner or the paper does, and returns uint8 digits of the same shape, to be read by
``TrainedModel.predict`` as they are: no file round trip and no :func:`lenet_tf.data.images.to_mnist`, so that a
model (and whatever it does to its input) is measured on the arrays a Python user passes. Written for this
project from the descriptions of the damage (speckle and salt-and-pepper noise, fog-like and shadowed lighting, a
brighter background, ruled or squared paper and lines through the digit, outlined strokes, partly inverted
regions, motion blur, ink spatter); no published corrupted-digit set or its code is used. Seeded per condition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

SIZE = 28


def _fog(count: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random fields ``[count, 28, 28]`` in 0..1: coarse noise at 3 scales, bilinearly enlarged."""
    field = np.zeros((count, SIZE, SIZE))
    for cells, weight in ((2, 1.0), (4, 0.5), (7, 0.25)):
        coarse = rng.random((count, cells + 1, cells + 1))
        field += weight * ndimage.zoom(coarse, (1, SIZE / (cells + 1), SIZE / (cells + 1)), order=1)[:, :SIZE, :SIZE]
    low = field.min(axis=(1, 2), keepdims=True)
    return (field - low) / (field.max(axis=(1, 2), keepdims=True) - low)


def _gradient(count: int, rng: np.random.Generator) -> np.ndarray:
    """Linear ramps ``[count, 28, 28]`` from 0 to 1 in a random direction (a side light or a shadow)."""
    angle = rng.uniform(0, 2 * np.pi, (count, 1, 1))
    y, x = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1) - 0.5
    ramp = np.cos(angle) * x + np.sin(angle) * y
    low = ramp.min(axis=(1, 2), keepdims=True)
    return (ramp - low) / (ramp.max(axis=(1, 2), keepdims=True) - low)


def _drawn(count: int, rng: np.random.Generator, draw) -> np.ndarray:
    """``count`` masks ``[count, 28, 28]`` in 0..1, each drawn at 4x by ``draw(ImageDraw, rng)`` and reduced."""
    masks = np.zeros((count, SIZE, SIZE))
    for i in range(count):
        image = Image.new("L", (SIZE * 4, SIZE * 4), 0)
        draw(ImageDraw.Draw(image), rng)
        masks[i] = np.asarray(image.reduce(4), np.float64) / 255.0
    return masks


def _ruled(pen, rng):
    gap, start, width = rng.uniform(4.5, 7) * 4, rng.uniform(0, 7 * 4), int(rng.integers(3, 6))
    for y in np.arange(start, SIZE * 4, gap):
        pen.line([(0, y), (SIZE * 4, y + rng.uniform(-4, 4))], fill=int(rng.uniform(150, 255)), width=width)


def _squared(pen, rng):
    gap, offset, width, level = rng.uniform(5, 8) * 4, rng.uniform(0, 8 * 4, 2), int(rng.integers(3, 5)), 200
    for v in np.arange(offset[0], SIZE * 4, gap):
        pen.line([(0, v), (SIZE * 4, v)], fill=level, width=width)
    for v in np.arange(offset[1], SIZE * 4, gap):
        pen.line([(v, 0), (v, SIZE * 4)], fill=level, width=width)


def _zigzag(pen, rng):
    points, x = [], rng.uniform(-8, 8)
    y0, amplitude, step = rng.uniform(30, 82), rng.uniform(8, 24), rng.uniform(10, 22)
    while x < SIZE * 4 + step:
        points.append((x, y0 + amplitude * (1 if len(points) % 2 else -1)))
        x += step
    pen.line(points, fill=255, width=int(rng.integers(4, 9)))


def _line(pen, rng):
    a, b = rng.uniform(0, SIZE * 4, 2), rng.uniform(0, SIZE * 4, 2)
    side = rng.integers(2)  # from the left edge to the right, or top to bottom
    start, end = ((0, a[0]), (SIZE * 4, b[0])) if side else ((a[0], 0), (b[0], SIZE * 4))
    pen.line([start, end], fill=255, width=int(rng.integers(4, 9)))


def _dotted(pen, rng):
    y, slope, radius = rng.uniform(20, 92), rng.uniform(-0.4, 0.4), rng.uniform(2.5, 4.5)
    for x in np.arange(rng.uniform(0, 8), SIZE * 4, rng.uniform(10, 16)):
        cy = y + slope * (x - SIZE * 2)
        pen.ellipse((x - radius, cy - radius, x + radius, cy + radius), fill=255)


def _spatter(pen, rng):
    for _ in range(int(rng.integers(3, 9))):
        x, y, radius = rng.uniform(0, SIZE * 4), rng.uniform(0, SIZE * 4), rng.uniform(2, 7)
        pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=int(rng.uniform(120, 255)))


def _region(count: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean masks ``[count, 28, 28]`` of a random region: a vertical or horizontal band, or a corner box."""
    masks = np.zeros((count, SIZE, SIZE), bool)
    for i in range(count):
        kind, a = rng.integers(3), int(rng.integers(4, 12))
        start = int(rng.integers(0, SIZE - a))
        if kind == 0:
            masks[i, :, start:start + a] = True
        elif kind == 1:
            masks[i, start:start + a, :] = True
        else:
            top, left = rng.integers(0, 2, 2) * 14
            masks[i, top:top + 14, left:left + 14] = True
    return masks


def _motion(digits: np.ndarray, rng: np.random.Generator, length: float) -> np.ndarray:
    out = np.empty_like(digits)
    for i, digit in enumerate(digits):
        angle, steps = rng.uniform(0, np.pi), np.linspace(-length / 2, length / 2, 2 * int(length) + 1)
        out[i] = np.mean([ndimage.shift(digit, (s * np.sin(angle), s * np.cos(angle)), order=1) for s in steps], 0)
    return out


def damage(digits: np.ndarray, kind: str, strength: float, rng: np.random.Generator) -> np.ndarray:
    """``digits`` float ``[N, 28, 28]`` in 0..1 (white ink on black) under the condition ``kind`` at ``strength``
    (see :data:`KINDS`), float ``[N, 28, 28]`` in 0..1."""
    count = len(digits)
    if kind == "salt_pepper":  # a share ``strength`` of the pixels turned white or black
        hit = rng.random(digits.shape) < strength
        return np.where(hit, rng.integers(0, 2, digits.shape).astype(np.float64), digits)
    if kind == "speckle":  # grainy sensor noise of stddev ``strength``
        return digits + rng.normal(0, strength, digits.shape)
    if kind == "fog":  # an uneven, fog-like veil up to ``strength``
        return digits + strength * _fog(count, rng) * rng.uniform(0.6, 1.0, (count, 1, 1))
    if kind == "brighter":  # the whole background lifted to ``strength``
        level = strength * rng.uniform(0.8, 1.0, (count, 1, 1))
        return level + (1 - level) * digits
    if kind == "shadow":  # a light gradient across the page, up to ``strength``
        return digits + strength * _gradient(count, rng)
    if kind == "dim":  # a dim, low-contrast capture: the ink at ``strength`` of full brightness
        return digits * strength * rng.uniform(0.8, 1.2, (count, 1, 1))
    if kind in _LINES:
        return np.maximum(digits, strength * _drawn(count, rng, _LINES[kind]))
    if kind == "hollow":  # strokes reduced to their outline, ``strength`` pixels wide
        size = 2 * int(strength) + 1
        return digits - ndimage.grey_erosion(digits, size=(1, size, size))
    if kind == "inverted":  # a region of the picture inverted (a band of glare, a negative corner)
        return np.where(_region(count, rng), 1.0 - digits, digits)
    if kind == "motion":  # a shaken camera: averaged along a line of ``strength`` pixels
        return _motion(digits, rng, strength)
    raise ValueError(f"condition kind must be one of {KINDS}, got {kind!r}")


_LINES = {"ruled": _ruled, "squared": _squared, "zigzag": _zigzag, "line": _line, "dotted": _dotted,
          "spatter": _spatter}
KINDS = ("salt_pepper", "speckle", "fog", "brighter", "shadow", "dim", *_LINES, "hollow", "inverted", "motion")


@dataclass(frozen=True)
class Condition:
    """One capture condition of :func:`damage` at one strength."""

    name: str
    kind: str
    strength: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"condition kind must be one of {KINDS}, got {self.kind!r}")

    def apply(self, digits: np.ndarray, seed: int) -> np.ndarray:
        """uint8 ``[N, 28, 28]`` → uint8 ``[N, 28, 28]`` under this condition; the same seed, the same damage."""
        rng = np.random.default_rng([seed, KINDS.index(self.kind), int(round(self.strength * 1000))])
        damaged = damage(np.asarray(digits, np.float64) / 255.0, self.kind, self.strength, rng)
        return np.round(np.clip(damaged, 0, 1) * 255).astype(np.uint8)


# The validation side's conditions: strengths chosen to be clearly visible, as a user would meet them.
VALID_CONDITIONS = (
    Condition("salt and pepper 8%", "salt_pepper", 0.08),
    Condition("speckle noise 0.25", "speckle", 0.25),
    Condition("fog 0.7", "fog", 0.7),
    Condition("brighter background 0.45", "brighter", 0.45),
    Condition("shadow gradient 0.6", "shadow", 0.6),
    Condition("dim ink 0.35", "dim", 0.35),
    Condition("ruled paper", "ruled", 0.8),
    Condition("squared paper", "squared", 0.8),
    Condition("zig-zag line", "zigzag", 1.0),
    Condition("line through", "line", 1.0),
    Condition("dotted line", "dotted", 1.0),
    Condition("ink spatter", "spatter", 1.0),
    Condition("outlined strokes", "hollow", 1),
    Condition("inverted region", "inverted", 1.0),
    Condition("motion blur 4 px", "motion", 4.0),
)
