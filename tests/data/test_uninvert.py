"""Inverted regions turned back in the graph: real MNIST digits under a band or a corner of inversion come back,
MNIST's own digits (bold ones too) and other damage pass unchanged."""

import numpy as np

from lenet_tf.data.mnist import split
from lenet_tf.data.uninvert import uninvert
from lenet_tf.model import LeNet5
from graph_run import run


def digits(real_mnist, count: int) -> np.ndarray:
    """The first ``count`` MNIST validation digits, float32 [count, 32, 32, 1] in 0..1."""
    images = split(real_mnist, valid_size=5000, seed=0).valid_images[:count]
    return images.reshape(-1, 32, 32, 1).astype(np.float32) / 255.0


def inverted(images: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """``images`` [N, 32, 32, 1] with the region ``rows`` x ``cols`` inverted (a copy)."""
    out = images.copy()
    out[:, rows, cols] = 1.0 - out[:, rows, cols]
    return out


def test_a_band_or_a_corner_of_inversion_is_turned_back(real_mnist):
    original = digits(real_mnist, 200)
    picture = slice(2, 30)  # the 28x28 picture inside the 32x32 input
    for rows, cols in ((slice(12, 19), picture), (picture, slice(2, 9)), (slice(2, 14), slice(18, 30)),
                       (slice(20, 30), picture), (picture, picture)):  # the last: dark ink on white paper
        damaged = inverted(original, rows, cols)
        restored = run(uninvert, damaged)
        acted = np.abs(restored - damaged).max(axis=(1, 2, 3)) > 0
        wrong = (np.abs(restored - original) > 0.05).mean(axis=(1, 2, 3))
        assert acted.mean() >= 0.2  # a box of glare mostly of paper, with strokes under it, in a good share ...
        assert (wrong[acted] < 0.01).mean() >= 0.6  # ... and there nearly every pixel is put back


def test_mnist_digits_and_other_damage_pass_unchanged(real_mnist):
    original = digits(real_mnist, 2000)  # bold digits among them: thick strokes are no white paper at the edge
    np.testing.assert_array_equal(run(uninvert, original), original)
    lifted = 0.45 + 0.55 * original  # a brighter background
    ramp = np.clip(original + np.linspace(0, 0.6, 32, dtype=np.float32)[None, None, :, None], 0, 1)  # a shadow
    for seen in (lifted, ramp):
        np.testing.assert_array_equal(run(uninvert, seen), seen)


def test_white_paper_away_from_the_edge_or_without_strokes_is_left_alone():
    block = np.zeros((1, 32, 32, 1), np.float32)
    block[0, 9:23, 9:23] = 1.0  # a 14-pixel square of white in the middle: a blot, or a very bold stroke
    np.testing.assert_array_equal(run(uninvert, block), block)
    bar = np.zeros_like(block)
    bar[0, 2:30, 12:20] = 1.0  # a bold 1 cropped to the picture: white to the edges, but no strokes in it
    np.testing.assert_array_equal(run(uninvert, bar), bar)
    at_edge = np.zeros_like(block)
    at_edge[0, 2:16, 2:30] = 1.0
    at_edge[0, 8:10, 10:20] = 0.0  # the same reaching the edge, a stroke under it: glare, inverted back
    np.testing.assert_array_equal(run(uninvert, at_edge), inverted(at_edge, slice(2, 16), slice(2, 30)))


def test_a_bold_stroke_apart_from_an_inverted_band_stays_ink():
    picture = np.zeros((1, 32, 32, 1), np.float32)
    picture[0, 5:7, 10:20] = 1.0  # a stroke the band of glare will cover
    picture[0, 18:27, 12:20] = 1.0  # a stroke bold enough to hold white squares, away from the edge
    banded = inverted(picture, slice(2, 9), slice(2, 30))  # a band of glare across the top, 9 pixels above it
    np.testing.assert_array_equal(run(uninvert, banded), picture)


def test_the_option_is_recorded_only_when_on():
    assert "uninvert" not in LeNet5().get_config()  # the runs recorded before it describe the same network
    assert LeNet5(uninvert=True).get_config()["uninvert"] is True


def test_the_network_uninverts_at_prediction_only(real_mnist):
    """Training leaves inverted regions to the network (``--damage`` draws them); prediction turns them back first.
    Without batch norm and dropout, the training graph is the prediction graph but for that."""
    from lenet_tf.core.tf import tf, tf1

    damaged = inverted(digits(real_mnist, 20), slice(12, 19), slice(2, 30))
    restored = run(uninvert, damaged)
    with tf.Graph().as_default() as graph:
        images = tf1.placeholder(tf.float32, [None, 32, 32, 1])
        network = LeNet5(uninvert=True, seed=1)
        training, predicting = network(images, training=True), network(images, training=False)
        with tf1.Session(graph=graph) as session:
            session.run(tf1.global_variables_initializer())
            trained_on, predicted = session.run([training, predicting], {images: damaged})
            trained_on_restored = session.run(training, {images: restored})
    np.testing.assert_allclose(predicted, trained_on_restored, atol=1e-5)
    assert np.abs(trained_on - predicted).max() > 1e-2  # training saw the damage itself


def test_each_picture_of_a_mixed_batch_is_uninverted_as_if_alone(real_mnist):
    # only the pictures with white paper at the edge are followed further: each must come back to its own row
    original = digits(real_mnist, 60)
    mixed = original.copy()
    picture = slice(2, 30)
    mixed[1::3] = inverted(original[1::3], slice(12, 19), picture)  # bands on every third, from the second
    mixed[5::9] = inverted(original[5::9], picture, picture)  # whole negatives on others
    together = run(uninvert, mixed)
    alone = np.concatenate([run(uninvert, mixed[i:i + 1]) for i in range(len(mixed))])
    np.testing.assert_array_equal(together, alone)
    changed = np.flatnonzero(np.abs(together - mixed).max(axis=(1, 2, 3)) > 0)
    assert set(changed) <= {*range(1, 60, 3), *range(5, 60, 9)} and len(changed) >= 3
    assert run(uninvert, mixed[:0]).shape == (0, 32, 32, 1)
