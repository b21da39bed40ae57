import numpy as np
import pytest

from lenet_tf._tf import tf, tf1
from lenet_tf.augment import augment_images, bilinear_sample, elastic_field, gaussian_matrix
from synthetic import make_digits


def run(build, *feeds):
    """Builds ``build(*placeholders)`` in a fresh graph and evaluates it on ``feeds``."""
    with tf.Graph().as_default() as graph:
        placeholders = [tf1.placeholder(tf.as_dtype(np.asarray(f).dtype), np.shape(f)) for f in feeds]
        output = build(*placeholders)
        with tf1.Session(graph=graph) as session:
            return session.run(output, dict(zip(placeholders, feeds)))


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
