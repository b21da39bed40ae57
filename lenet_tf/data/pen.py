"""Drawing strokes with a round pen, as a drawing canvas does: smooth curves through points, stamped discs.

Shared by the pendigits renderer (:mod:`lenet_tf.data.pendigits`) and the synthetic stroke-template digits
(:mod:`lenet_tf.data.synthetic`). Coordinates are pixels, x to the right and y **down**.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def smooth_curve(points: np.ndarray, spacing: float = 1.0) -> np.ndarray:
    """A Catmull-Rom curve through ``points`` float ``[K, 2]``, sampled about every ``spacing`` pixels: ``[M, 2]``.

    The curve passes through every point (a single point stays a single point).
    """
    points = np.asarray(points, np.float64)
    if len(points) < 2:
        return points.copy()
    padded = np.concatenate([points[:1], points, points[-1:]])
    pieces = []
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1], padded[i], padded[i + 1], padded[i + 2]
        steps = max(2, int(np.ceil(np.linalg.norm(p2 - p1) / spacing)) + 1)
        t = np.linspace(0.0, 1.0, steps)[:, None]
        pieces.append(0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                             + (3 * p1 - p0 - 3 * p2 + p3) * t ** 3)[:-1])
    pieces.append(points[-1:])
    return np.concatenate(pieces)


def draw_strokes(strokes: list[np.ndarray], size: tuple[int, int], width: float, *, ink: int = 0,
                 paper: int = 255, smooth: bool = True) -> Image.Image:
    """An ``L`` image of ``size`` (width, height): each stroke (float ``[K, 2]`` pixel points) drawn on ``paper`` in
    ``ink`` with a round pen of diameter ``width`` pixels (discs stamped every quarter width along the curve)."""
    image = Image.new("L", size, paper)
    draw = ImageDraw.Draw(image)
    radius = max(width, 1.0) / 2
    for stroke in strokes:
        path = smooth_curve(stroke, max(radius / 2, 0.5)) if smooth else _densify(stroke, max(radius / 2, 0.5))
        for x, y in path:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=ink)
    return image


def _densify(points: np.ndarray, spacing: float) -> np.ndarray:
    """Straight segments between ``points`` ``[K, 2]`` sampled every ``spacing`` pixels or closer."""
    points = np.asarray(points, np.float64)
    pieces = [points[:1]]
    for a, b in zip(points[:-1], points[1:]):
        steps = max(1, int(np.ceil(np.linalg.norm(b - a) / spacing)))
        pieces.append(a + (b - a) * np.linspace(0, 1, steps + 1)[1:, None])
    return np.concatenate(pieces)
