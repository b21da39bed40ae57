"""Deskewing in the graph: a slanted digit is sheared upright about its ink's centre; upright and blank pictures
pass unchanged; LeNet5 records the option only when on."""

import functools

import numpy as np
from scipy import ndimage

from lenet_tf import LeNet5
from lenet_tf.data.augment import affine_sample
from lenet_tf.data.deskew import MAX_SLANT, deskew, slant
from graph_run import run


def slanted_bar(shear: float, size: int = 32) -> np.ndarray:
    """A bar 2 pixels wide and 20 high whose top leans right by ``shear`` pixels per pixel of height."""
    image = np.zeros((size, size), np.float32)
    for row in range(6, 26):
        centre = 16 + shear * (16 - row)
        image[row, int(np.floor(centre)):int(np.floor(centre)) + 2] = 1.0
    return image[..., None]


def moments_slant(image: np.ndarray) -> float:
    """cov(x, y) / var(y) of the ink, computed directly in NumPy."""
    ys, xs = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    ink = image[..., 0]
    cy, cx = (ink * ys).sum() / ink.sum(), (ink * xs).sum() / ink.sum()
    return float((ink * (xs - cx) * (ys - cy)).sum() / (ink * (ys - cy) ** 2).sum())


def test_a_slanted_bar_is_sheared_upright_about_its_centre():
    bars = np.stack([slanted_bar(0.4), slanted_bar(-0.3)])
    shears, rows = run(slant, bars)
    np.testing.assert_allclose(shears, [moments_slant(b) for b in bars], rtol=1e-4)
    assert shears[0] < -0.3 and shears[1] > 0.2  # image y points down: a top leaning right is a negative cov
    upright = run(deskew, bars)
    for before, after in zip(bars, upright):
        assert abs(moments_slant(after)) < 0.03
        np.testing.assert_allclose(ndimage.center_of_mass(after[..., 0]), ndimage.center_of_mass(before[..., 0]),
                                   atol=0.3)
        assert abs(after.sum() - before.sum()) < 0.5  # the ink is moved, not lost


def test_upright_and_blank_pictures_pass_unchanged_and_slant_is_bounded():
    upright, blank = slanted_bar(0.0), np.zeros((32, 32, 1), np.float32)
    np.testing.assert_array_equal(run(deskew, np.stack([upright, blank])), np.stack([upright, blank]))
    steep = slanted_bar(0.7)  # leaning more than a digit does: sheared by MAX_SLANT only
    assert moments_slant(steep) < -MAX_SLANT and run(slant, steep[None])[0][0] == np.float32(-MAX_SLANT)


def test_lenet5_records_deskew_only_when_on():
    assert "deskew" not in LeNet5().get_config()
    config = LeNet5(deskew=True).get_config()
    assert config["deskew"] is True and LeNet5(**config).deskew


def test_one_kernel_and_the_gathers_resample_alike():
    bars = np.stack([slanted_bar(0.4), slanted_bar(-0.3), slanted_bar(0.1)])
    gathered = run(deskew, bars)
    np.testing.assert_allclose(run(lambda x: deskew(x, affine_sample), bars), gathered, atol=1e-5)
    np.testing.assert_allclose(run(lambda x: deskew(x, functools.partial(affine_sample, shards=2)), bars), gathered,
                               atol=1e-5)
