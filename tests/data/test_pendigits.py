"""Pendigits drawn as a canvas would: deterministic, the right size, and a known digit looks like itself."""

import gzip

import numpy as np
import pytest

from lenet_tf.core.errors import DataError
from lenet_tf.data.images import to_mnist
from lenet_tf.data.pen import draw_strokes, smooth_curve
from lenet_tf.data.pendigits import CANVAS, canvas_digits, load_pendigits, pendigits_dir, render_canvas

# A "1" from the data set's first lines: a short up-stroke to the top right, then straight down (y up, 0..100).
ONE = np.array([[0, 57], [31, 68], [72, 90], [100, 100], [76, 75], [50, 51], [28, 25], [16, 0]], np.float32)
needs_data = pytest.mark.skipif(not (pendigits_dir() / "pendigits.tra.gz").is_file(), reason="no pendigits data")


def test_smooth_curve_passes_through_its_points():
    points = np.array([[0, 0], [10, 5], [20, 0], [30, 10]], float)
    curve = smooth_curve(points, spacing=0.5)
    for point in points:
        assert np.min(np.linalg.norm(curve - point, axis=1)) < 1e-9
    assert np.max(np.linalg.norm(np.diff(curve, axis=0), axis=1)) < 1.0  # densely sampled


def test_round_pen_width():
    image = np.asarray(draw_strokes([np.array([[20, 50], [80, 50]], float)], (100, 100), 12))
    ink = image < 128
    assert ink[:, 50].sum() in (12, 13) and ink[50, 8:20].sum() in (5, 6, 7)  # 12 px across, round cap of radius 6
    assert ink[30].sum() == 0 and image[0, 0] == 255


def test_render_is_seeded_and_on_a_white_280_canvas():
    first = render_canvas(ONE, np.random.default_rng(3))
    assert first.size == (CANVAS, CANVAS) and first.mode == "L"
    assert first.tobytes() == render_canvas(ONE, np.random.default_rng(3)).tobytes()
    assert first.tobytes() != render_canvas(ONE, np.random.default_rng(4)).tobytes()
    pixels = np.asarray(first)
    assert pixels[0].min() == 255 and pixels.min() == 0  # white border, black ink


def test_a_drawn_one_looks_like_a_one():
    digit = to_mnist(np.asarray(render_canvas(ONE, np.random.default_rng(0))))
    ink = digit > 64
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    assert rows[-1] - rows[0] >= 19 and cols[-1] - cols[0] < rows[-1] - rows[0]  # tall, narrower than high
    assert ink[rows[-1] - 2:, :14].sum() > ink[rows[-1] - 2:, 14:].sum() - 1  # the foot is at the bottom left
    box = to_mnist(np.asarray(render_canvas(ONE, np.random.default_rng(0), keep_box=True)))
    box_cols = np.flatnonzero((box > 64).any(axis=0))
    assert box_cols[-1] - box_cols[0] >= 18  # kept as the data stores it: as wide as high


def test_load_refuses_a_malformed_file(tmp_path):
    with gzip.open(tmp_path / "pendigits.tra.gz", "wt") as stream:
        stream.write("1, 2, 3\n")
    with pytest.raises(DataError, match="pendigits"):
        load_pendigits(tmp_path)
    with pytest.raises(DataError, match="cannot read"):
        load_pendigits(tmp_path / "missing")


@needs_data
def test_the_real_file_renders_deterministically():
    points, labels = load_pendigits()
    assert points.shape == (7494, 8, 2) and set(labels) == set(range(10))
    images, chosen = canvas_digits(5, seed=1)
    again, chosen_again = canvas_digits(5, seed=1)
    assert [i.tobytes() for i in images] == [i.tobytes() for i in again]
    np.testing.assert_array_equal(chosen, chosen_again)
