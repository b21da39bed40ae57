"""Style options: aspect changes, stretching to a box, skeleton re-rendering, synthetic digits."""

from pathlib import Path

import numpy as np

from lenet_tf.data.augment import augment_images, fill_box
from lenet_tf.data.strokes import DISTANCE_UNIT, restroke, restyled_digits, skeleton_distances
from lenet_tf.data import synthetic
from lenet_tf.data.synthetic import TEMPLATES, font_digit, font_files, font_folder, synthetic_digits, template_digit
from graph_run import run
from synthetic import make_digits


def bar(count=4):
    """Narrow vertical bars ``[count, 32, 32, 1]``: 3 pixels wide, 20 high."""
    images = np.zeros((count, 32, 32, 1), np.float32)
    images[:, 6:26, 14:17] = 1.0
    return images


def width(image, threshold=0.1):
    cols = np.flatnonzero((image[..., 0] > threshold).any(axis=0))
    return cols[-1] - cols[0] + 1


def test_aspect_is_seeded_changes_widths_and_is_the_identity_at_strength_0():
    images = bar(16)
    def widened(seed, strength=1.0):
        return run(lambda x, s: augment_images(x, s, strength, max_shift=0, max_rotation_degrees=0, max_shear=0,
                                               max_scale=0, max_aspect=0.5), images, np.array(seed))
    a, b = widened([0, 1]), widened([0, 1])
    np.testing.assert_array_equal(a, b)
    widths = [width(image) for image in a]
    assert min(widths) < 3 + 1 and max(widths) > 3 + 1  # some narrower or kept, some wider
    assert all(width(image, 0.5) <= 6 for image in a)  # exp(0.5) at most
    np.testing.assert_allclose(widened([0, 1], 0.0), images, atol=1e-6)


def test_fill_box_stretches_the_chosen_digits_to_a_square():
    images = bar()
    out = run(lambda x, s: fill_box(x, s, 1.0), images, np.array([0, 1]))
    for image in out:
        rows = np.flatnonzero((image[..., 0] > 0.1).any(axis=1))
        assert width(image) >= 19 and len(rows) == 20  # 3 wide became about 20, the height kept
    np.testing.assert_array_equal(run(lambda x, s: fill_box(x, s, 0.0), images, np.array([0, 1])), images)
    half = run(lambda x, s: fill_box(x, s, 0.5), bar(64), np.array([3, 4]))
    stretched = sum(width(image) > 10 for image in half)
    assert 16 < stretched < 48
    np.testing.assert_array_equal(half, run(lambda x, s: fill_box(x, s, 0.5), bar(64), np.array([3, 4])))


def test_skeleton_distances_are_cached_and_zero_on_a_one_pixel_line():
    images = (bar()[..., 0] * 255).astype(np.uint8)
    distances = skeleton_distances(images)
    assert distances.shape == (4, 32, 32) and distances.dtype == np.uint8
    assert (distances[:, 8:24, 15] == 0).all() and (distances[:, 8:24, 14] == DISTANCE_UNIT).all()
    np.testing.assert_array_equal(skeleton_distances(images), distances)  # read back from the cache
    assert (skeleton_distances(np.zeros((1, 32, 32), np.uint8)) == 255).all()  # no ink, no skeleton


def test_restroke_redraws_with_a_round_pen_of_random_radius():
    images, _ = make_digits(8)
    padded = np.pad(images, [(0, 0), (2, 2), (2, 2)])
    distances = skeleton_distances(padded)
    floats = padded[..., None].astype(np.float32) / 255
    thin = run(lambda x, d, s: restroke(x, d, s, 1.0, (0.5, 0.5)), floats, distances, np.array([0, 1]))
    thick = run(lambda x, d, s: restroke(x, d, s, 1.0, (2.0, 2.0)), floats, distances, np.array([0, 1]))
    assert (thin.sum(axis=(1, 2, 3)) < thick.sum(axis=(1, 2, 3))).all()
    assert ((thin > 0) <= (thick > 0)).all()  # a thicker pen covers every pixel of the thinner one
    same = run(lambda x, d, s: restroke(x, d, s, 0.0), floats, distances, np.array([0, 1]))
    np.testing.assert_array_equal(same, floats)
    random = [run(lambda x, d, s: restroke(x, d, s, 1.0), floats, distances, np.array(seed)) for seed in
              ([0, 1], [0, 1], [0, 2])]
    np.testing.assert_array_equal(random[0], random[1])
    assert not np.array_equal(random[0], random[2])


def test_restyled_digits_are_seeded_restyle_each_digit_and_keep_its_ink():
    images = np.pad(make_digits(8)[0], [(0, 0), (2, 2), (2, 2)])[..., None]
    restyled = restyled_digits(images, 0, 0.5, 0.3)
    assert restyled.shape == images.shape and restyled.dtype == np.uint8
    np.testing.assert_array_equal(restyled_digits(images, 0, 0.5, 0.3), restyled)
    assert not np.array_equal(restyled_digits(images, 1, 0.5, 0.3), restyled)
    assert (restyled != images).any(axis=(1, 2, 3)).all()  # every digit moved, turned or redrawn
    ink, kept = images.sum(axis=(1, 2, 3), dtype=np.int64), restyled.sum(axis=(1, 2, 3), dtype=np.int64)
    # neither erased nor blotted (a thin pen along a blocky test digit's skeleton keeps about a fifth of its ink)
    assert ((kept > ink / 10) & (kept < ink * 4)).all()
    redrawn = restyled_digits(images, 0, 1.0, 0.3)  # the same moves, every digit redrawn with another pen
    assert not np.array_equal(redrawn, restyled)
    assert restyled_digits(images[:0], 0, 0.5, 0.3).shape == (0, 32, 32, 1)


def test_every_template_draws_a_centred_digit():
    rng = np.random.default_rng(0)
    for label in TEMPLATES:
        digit = template_digit(label, rng)
        assert digit.shape == (28, 28) and digit.dtype == np.uint8 and digit.max() == 255
        rows = np.flatnonzero((digit > 64).any(axis=1))
        assert rows[-1] - rows[0] >= 17  # to_mnist scales the longer side to 20 pixels


def test_european_one_has_its_up_stroke():
    one = template_digit(1, np.random.default_rng(0))
    for seed in range(20):  # a seed that draws the European style (the second one)
        rng = np.random.default_rng(seed)
        if rng.integers(len(TEMPLATES[1])) == 1:
            one = template_digit(1, np.random.default_rng(seed))
            break
    ink = one > 64
    cols = np.flatnonzero(ink.any(axis=0))
    assert cols[-1] - cols[0] >= 8  # much wider than a bar: the up-stroke reaches left


def test_synthetic_digits_are_balanced_and_seeded():
    images, labels = synthetic_digits(40, seed=3)
    assert images.shape == (40, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == [4] * 10
    again, _ = synthetic_digits(40, seed=3)
    np.testing.assert_array_equal(images, again)
    assert not np.array_equal(images, synthetic_digits(40, seed=4)[0])
    assert (images.reshape(40, -1).max(axis=1) == 255).all()


def test_synthetic_digits_type_their_share_in_matplotlib_s_fonts(monkeypatch):
    calls = []

    def recording(label, font, rng):
        digit = real(label, font, rng)
        calls.append((label, font, digit))
        return digit

    real = synthetic.font_digit
    monkeypatch.setattr(synthetic, "font_digit", recording)
    images, labels = synthetic_digits(30, seed=11)  # a count and seed no other test caches
    typed = np.flatnonzero(np.random.default_rng([11, 21]).random(30) < synthetic.FONT_SHARE)  # its first draw
    assert len(typed) >= 5 and [label for label, _, _ in calls] == labels[typed].tolist()
    assert {font for _, font, _ in calls} <= set(font_files())
    np.testing.assert_array_equal(images[typed], np.stack([digit for _, _, digit in calls]))


def test_fonts_are_matplotlibs_and_each_types_ten_different_digits():
    fonts = font_files()
    assert len(fonts) >= 15 and all(Path(font).parent == font_folder() for font in fonts)
    assert font_folder().parts[-4:] == ("matplotlib", "mpl-data", "fonts", "ttf")
    for font in fonts:  # a face without digits would type ten empty (or ten equal) boxes
        digits = [font_digit(label, font, np.random.default_rng(0)) for label in range(10)]
        assert all(d.max() == 255 for d in digits), font
        assert len({d.tobytes() for d in digits}) == 10, font
