"""The in-graph input clean-up: a lifted or uneven background and specks removed, MNIST's own strokes kept."""

import numpy as np

from lenet_tf.data.cleanup import clean_inputs
from lenet_tf.model import LeNet5
from graph_run import run


def seven() -> np.ndarray:
    """A 7 with 3-pixel strokes, float32 [1, 32, 32, 1] in 0..1."""
    image = np.zeros((1, 32, 32, 1), np.float32)
    image[0, 6:9, 8:24] = 1.0
    for row in range(9, 27):
        col = 23 - (row - 9) // 2
        image[0, row, col - 1:col + 2] = 1.0
    return image


def test_strokes_are_kept_and_a_lifted_or_uneven_background_removed():
    digit = seven()
    np.testing.assert_allclose(run(clean_inputs, digit), digit, atol=1e-6)
    ramp = np.linspace(0, 0.5, 32, dtype=np.float32)[None, None, :, None]
    for background in (0.45, ramp):
        seen = np.clip(background + (1 - background) * digit, 0, 1).astype(np.float32)
        cleaned = run(clean_inputs, seen)
        assert cleaned[digit == 0].max() < 0.08 and cleaned[digit == 1].min() > 0.45  # paper gone, ink kept


def test_isolated_specks_are_dropped_and_faint_ink_restored():
    digit = seven()
    specked = digit.copy()
    for row, col in ((28, 3), (2, 29), (29, 12), (14, 2), (3, 3), (20, 29)):
        specked[0, row, col] = 1.0
    np.testing.assert_allclose(run(clean_inputs, specked), digit, atol=1e-6)
    few = digit.copy()
    few[0, 28, 3] = 1.0  # one dot is kept: it may be a stroke's end (the gate needs four)
    np.testing.assert_allclose(run(clean_inputs, few), few, atol=1e-6)
    np.testing.assert_allclose(run(clean_inputs, 0.3 * digit), digit, atol=1e-5)


def test_the_option_is_recorded_only_when_on():
    assert "clean_inputs" not in LeNet5().get_config()  # the runs recorded before it describe the same network
    assert LeNet5(clean_inputs=True).get_config()["clean_inputs"] is True
