import numpy as np
import pytest
from scipy import ndimage

from lenet_tf.core.tf import tf
from lenet_tf.data.augment import (affine_sample, augment_images, bilinear_sample, capture_distort, dilate, elastic_field, erode,
                              gaussian_blur, gaussian_matrix, ink_box, low_resolution)
from graph_run import run
from synthetic import make_digits


def digits(count=16):
    images, _ = make_digits(count)
    padded = np.pad(images, [(0, 0), (2, 2), (2, 2)]).astype(np.float32) / 255
    return padded[..., np.newaxis]


def test_bilinear_sample_shifts_and_interpolates_with_zero_border():
    images = np.random.default_rng(0).random((2, 6, 5, 1)).astype(np.float32)
    grid_y, grid_x = np.mgrid[0:6, 0:5].astype(np.float32)
    x = np.broadcast_to(grid_x + 1.5, (2, 6, 5)).copy()  # half a pixel between columns j+1 and j+2
    y = np.broadcast_to(grid_y - 1.0, (2, 6, 5)).copy()  # one row up
    sampled = run(bilinear_sample, images, x, y)[..., 0]
    framed = np.pad(images[..., 0], [(0, 0), (1, 0), (0, 2)])  # zeros above and to the right
    expected = 0.5 * (framed[:, :6, 1:6] + framed[:, :6, 2:7])
    np.testing.assert_allclose(sampled, expected, atol=1e-6)


def test_affine_sample_is_bilinear_sample_bit_for_bit_however_sharded():
    """The native kernel reads the same four pixels with the same weights as the gathers; shards change nothing."""
    rng = np.random.default_rng(3)
    images = rng.random((7, 32, 32, 1)).astype(np.float32)
    maps = (rng.normal(0, 0.3, (7, 6)) + [1, 0, 0, 0, 1, 0]).astype(np.float32)
    maps[:, [2, 5]] *= 20  # some maps send part of the image outside the frame: zeros there
    grid_y, grid_x = np.mgrid[0:32, 0:32].astype(np.float32)
    x = maps[:, 0, None, None] * grid_x + maps[:, 1, None, None] * grid_y + maps[:, 2, None, None]
    y = maps[:, 3, None, None] * grid_x + maps[:, 4, None, None] * grid_y + maps[:, 5, None, None]
    gathered = run(bilinear_sample, images, x, y)
    assert (gathered == 0).mean() > 0.05 and (gathered > 0).mean() > 0.3
    for shards in (1, 2, 3):
        np.testing.assert_array_equal(run(lambda i, m: affine_sample(i, m, shards), images, maps), gathered)


def test_augmentation_does_not_depend_on_the_shards():
    images = digits(9)
    one, three = (run(lambda x, s: augment_images(x, s, max_aspect=0.3, shards=shards), images, np.array([4, 2]))
                  for shards in (1, 3))
    np.testing.assert_array_equal(one, three)
    assert np.abs(one - images).max() > 0.1


def test_gaussian_matrix_equals_zero_padded_convolution():
    vector = np.random.default_rng(1).random(32)
    sigma = 4.0
    taps = np.exp(-0.5 * (np.arange(-32, 33) / sigma) ** 2)
    expected = np.convolve(vector, taps / taps.sum())[32:64]  # the centred, zero-padded part
    np.testing.assert_allclose(gaussian_matrix(32, sigma) @ vector, expected, rtol=1e-5)


def test_zero_strength_leaves_images_unchanged():
    images = digits()
    out = run(lambda x, s: augment_images(x, s, strength=0.0), images, np.array([1, 2]))
    np.testing.assert_allclose(out, images, atol=1e-6)


def test_augmentation_is_keyed_by_the_seed_and_keeps_digits_upright():
    images = digits()
    a, b, c = (run(lambda x, s: augment_images(x, s, elastic_alpha=34.0), images, np.array(seed))
               for seed in ([0, 5], [0, 5], [0, 6]))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.1
    # Every distorted digit still looks more like its original than like the original's mirror image.
    def similarity(u, v):
        return (u * v).sum(axis=(1, 2, 3)) / np.sqrt((u * u).sum(axis=(1, 2, 3)) * (v * v).sum(axis=(1, 2, 3)))
    assert np.all(similarity(a, images) > similarity(a, images[:, :, ::-1]))
    assert np.all(a >= -1e-6) and np.all(a <= 1 + 1e-6)


def test_elastic_field_is_smooth_with_the_expected_size():
    alpha, sigma = 34.0, 4.0
    field = run(lambda s: elastic_field(s, tf.constant(64), 32, 32, alpha, sigma), np.array([3, 4]))
    assert field.shape == (2, 64, 32, 32)
    # Uniform noise of variance 1/3 smoothed by a normalised 2-D Gaussian keeps variance 1/(12 pi sigma^2)
    # away from the border, where the zero padding does not reach.
    inner = field[:, :, 12:20, 12:20]
    assert inner.std() == pytest.approx(alpha / np.sqrt(12 * np.pi * sigma**2), rel=0.15)
    # Neighbours differ by a fraction of the displacement (for unsmoothed noise, by more than all of it).
    neighbour_steps = np.abs(np.diff(field, axis=3)).mean()
    assert neighbour_steps < 0.3 * np.abs(field).mean()


# ------------------------------------------------------------------------------------ capture distortions

CAPTURE_ALL = dict(pen_width=1.0, blur=1.0, low_res=1.0, gamma=0.5, paper=0.3)


def mnist_like(count=16):
    """Synthetic digits whose brightest pixel is full white, like MNIST's."""
    images = digits(count)
    return images / images.max(axis=(1, 2, 3), keepdims=True)


def test_capture_strength_zero_is_the_identity():
    images = mnist_like()
    out = run(lambda x, s: capture_distort(x, s, strength=0.0, **CAPTURE_ALL), images, np.array([3, 4]))
    np.testing.assert_allclose(out, images, atol=1e-6)


def test_capture_is_keyed_by_the_seed_and_stays_in_range():
    images = mnist_like()
    a, b, c = (run(lambda x, s: capture_distort(x, s, **CAPTURE_ALL), images, np.array(seed))
               for seed in ([1, 2], [1, 2], [1, 3]))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.1
    assert a.min() >= 0 and a.max() <= 1


def test_dilation_and_erosion_are_3x3_max_and_min_pooling():
    images = np.random.default_rng(2).random((3, 7, 6, 1)).astype(np.float32)
    padded_max = np.pad(images[..., 0], [(0, 0), (1, 1), (1, 1)], constant_values=-np.inf)
    padded_min = np.pad(images[..., 0], [(0, 0), (1, 1), (1, 1)], constant_values=np.inf)
    windows = lambda a: np.lib.stride_tricks.sliding_window_view(a, (3, 3), axis=(1, 2))  # noqa: E731
    np.testing.assert_array_equal(run(dilate, images)[..., 0], windows(padded_max).max(axis=(-2, -1)))
    np.testing.assert_array_equal(run(erode, images)[..., 0], windows(padded_min).min(axis=(-2, -1)))


def test_pen_width_makes_some_digits_thicker_and_others_thinner_within_the_pooling():
    images = mnist_like(32)
    out = run(lambda x, s: capture_distort(x, s, pen_width=1.0), images, np.array([5, 6]))
    ink, before = out.sum(axis=(1, 2, 3)), images.sum(axis=(1, 2, 3))
    assert (ink > before).any() and (ink < before).any()
    assert np.all(ink <= run(dilate, images).sum(axis=(1, 2, 3)) + 1e-3)
    assert np.all(ink >= run(erode, images).sum(axis=(1, 2, 3)) - 1e-3)


def test_gaussian_blur_matches_scipy():
    images = np.random.default_rng(3).random((2, 12, 10, 1)).astype(np.float32)
    expected = ndimage.gaussian_filter(images[..., 0], sigma=(0, 1.0, 1.0), truncate=2.0, mode="constant")
    np.testing.assert_allclose(run(lambda x: gaussian_blur(x, 1.0), images)[..., 0], expected, atol=1e-5)


def test_low_resolution_averages_away_fine_detail():
    checkerboard = (np.indices((32, 32)).sum(axis=0) % 2).astype(np.float32)[np.newaxis, ..., np.newaxis]
    coarse = run(lambda x: low_resolution(x, 16), checkerboard)
    np.testing.assert_allclose(coarse, 0.5, atol=1e-6)  # every 2x2 block averages to one half


def test_paper_greys_only_the_digits_box():
    images = np.zeros((1, 32, 32, 1), np.float32)
    images[0, 10:20, 12:18, 0] = 1.0
    images[0, 14, 14, 0] = 0.0  # a hole in the ink gets paper too
    box = run(ink_box, images)[0, ..., 0]
    assert box.sum() == 10 * 6 and box[10:20, 12:18].all()
    out = run(lambda x, s: capture_distort(x, s, paper=0.5), images, np.array([0, 1]))[0, ..., 0]
    assert 0 < out[14, 14] <= 0.5 and out[0, 0] == 0 and out[10:20, 12:18].sum() > 59


def test_capture_flags_are_validated():
    from lenet_tf.core.errors import ConfigError
    from lenet_tf.training.trainer import TrainConfig

    for bad in ({"pen_width": 1.5}, {"low_res": 2.0}, {"paper": 1.0}, {"blur": -1.0}):
        with pytest.raises(ConfigError):
            TrainConfig(**bad).validate()
