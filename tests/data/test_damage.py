"""Damaged captures for training: seeded, only inside the 28x28 digit, each kind present, none at probability 0;
zig-zags that cross the middle and turn, inverted bands across the picture; the same damage on padded uint8 digits
(the rejection head's damaged positives)."""

import numpy as np

from lenet_tf.core.tf import tf
from lenet_tf.data.damage import KINDS, _region, _zigzag_mask, damage, damaged_digits
from lenet_tf.data.mnist import pad_images
from graph_run import run
from synthetic import make_digits


def digits(count=200):
    images, _ = make_digits(count, seed=5)
    padded = np.pad(images, [(0, 0), (2, 2), (2, 2)])[..., None]
    return padded.astype(np.float32) / 255.0


def damaged(images, seed, probability):
    return run(lambda: damage(tf.constant(images), tf.constant(seed), probability))


def test_probability_zero_changes_nothing_and_a_seed_repeats():
    images = digits()
    np.testing.assert_array_equal(damaged(images, [1, 2], 0.0), images)
    np.testing.assert_array_equal(damaged(images, [1, 2], 0.5), damaged(images, [1, 2], 0.5))
    assert not np.array_equal(damaged(images, [1, 2], 0.5), damaged(images, [1, 3], 0.5))


def test_damage_stays_in_range_inside_the_digit_and_hits_its_share():
    images = digits()
    out = damaged(images, [7, 0], 0.5)
    assert out.min() >= 0 and out.max() <= 1 and out.shape == images.shape
    np.testing.assert_array_equal(out[:, :2], images[:, :2])  # the padding users' arrays get stays black
    np.testing.assert_array_equal(out[:, :, -2:], images[:, :, -2:])
    changed = np.abs(out - images).reshape(len(images), -1).max(axis=1) > 0.05
    assert 0.35 < changed.mean() < 0.6


def test_every_kind_is_drawn_and_looks_like_its_name():
    images = digits(400)
    out = damaged(images, [9, 9], 1.0)
    inner = (slice(None), slice(2, 30), slice(2, 30))
    background = images[inner] == 0
    lifted = np.array([(o[b] > 0.1).mean() for o, b in zip(out[inner], background)])  # background no longer black
    dimmer = out[inner].reshape(400, -1).max(axis=1) < 0.75  # dim ink
    assert len(KINDS) == 9
    assert (lifted > 0.9).sum() > 400 / 9  # lifted and uneven backgrounds, some noise
    assert dimmer.sum() > 400 / 16


def test_zigzags_cross_the_middle_and_are_not_straight():
    masks = run(lambda: _zigzag_mask(tf.constant([4, 5], tf.int64), tf.constant(100), 32))[..., 0]  # [100, 32, 32]
    centre = np.array([15.5, 15.5])
    for mask in masks:
        inked = np.argwhere(mask > 0.5).astype(float)
        assert 25 < len(inked) < 500  # a line 1-2.5 px wide, longer than the picture where it zig-zags
        assert np.linalg.norm(inked - centre, axis=1).min() < 10  # its axis within 8 px of the centre
        spread = np.linalg.svd(inked - inked.mean(axis=0), compute_uv=False) / np.sqrt(len(inked))
        assert spread[1] > 0.9  # across its direction: a triangle wave (a straight line 2.5 px wide: < 0.75)


def test_inverted_regions_are_boxes_or_bands_across_the_picture():
    masks = run(lambda: _region(tf.constant([6, 7], tf.int64), tf.constant(300), 32))[..., 0] > 0.5
    full_rows = masks.all(axis=2).any(axis=1)  # some row inverted from edge to edge
    full_columns = masks.all(axis=1).any(axis=1)
    assert 0.2 < full_rows.mean() < 0.45 and 0.2 < full_columns.mean() < 0.45
    assert not (full_rows & full_columns).any()  # never the whole picture
    assert all(0.03 < mask.mean() < 0.65 for mask in masks)


def test_damaged_mnist_arrays_are_all_damaged_and_seeded():
    images = pad_images(make_digits(100, seed=6)[0])  # uint8 [100, 32, 32, 1], as split holds them
    out = damaged_digits(images, seed=3)
    assert out.dtype == np.uint8 and out.shape == images.shape
    np.testing.assert_array_equal(out, damaged_digits(images, seed=3))
    assert not np.array_equal(out, damaged_digits(images, seed=4))
    changed = np.abs(out.astype(int) - images).reshape(100, -1).max(axis=1) > 12
    assert changed.mean() > 0.85  # probability 1: each gets a kind (a single line may miss the digit's box)
