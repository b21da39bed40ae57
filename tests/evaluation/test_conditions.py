"""Capture conditions on raw arrays and synthetic non-digits: seeded, and each changes a digit the intended way."""

import numpy as np
import pytest

from lenet_tf.data.nondigits import KINDS as NON_DIGIT_KINDS, non_digit_pictures
from lenet_tf.evaluation.conditions import VALID_CONDITIONS, Condition
from synthetic import make_digits


def bar() -> np.ndarray:
    """One uint8 digit [1, 28, 28]: a white vertical bar 6 pixels wide on black."""
    digit = np.zeros((1, 28, 28), np.uint8)
    digit[0, 4:24, 11:17] = 255
    return digit


@pytest.mark.parametrize("condition", VALID_CONDITIONS, ids=lambda c: c.kind)
def test_every_condition_is_seeded_and_changes_the_digits(condition):
    digits = make_digits(6)[0]
    first = condition.apply(digits, seed=5)
    assert first.dtype == np.uint8 and first.shape == digits.shape
    np.testing.assert_array_equal(first, condition.apply(digits, seed=5))
    assert not np.array_equal(first, digits)


def test_conditions_do_what_they_say():
    digit = bar()
    brighter = Condition("b", "brighter", 0.45).apply(digit, 0)
    assert brighter[0, 0, 0] >= 0.8 * 0.45 * 255 and brighter[0, 10, 13] == 255
    hollow = Condition("h", "hollow", 1).apply(digit, 0)
    assert hollow[0, 12, 13] == 0 and hollow[0, 12, 11] == 255  # the inside gone, the outline kept
    noisy = Condition("s", "salt_pepper", 0.1).apply(np.repeat(digit, 50, 0), 0)
    changed = (noisy != digit).mean()
    assert 0.03 < changed < 0.07  # half of the 10% hit land on their own value
    inverted = Condition("i", "inverted", 1.0).apply(np.repeat(digit, 20, 0), 0)
    assert ((inverted == 255) & (digit == 0)).any(axis=(1, 2)).mean() > 0.9
    with pytest.raises(ValueError, match="condition kind"):
        Condition("x", "nope", 1.0)


def test_non_digits_are_seeded_and_of_every_kind():
    pictures, kinds = non_digit_pictures(40, seed=3)
    assert len(pictures) == 40 and set(kinds) <= set(NON_DIGIT_KINDS) and "letter" in kinds
    again, _ = non_digit_pictures(40, seed=3)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(pictures, again))
    assert all(p.mode == "L" and np.asarray(p).min() < 128 for p, k in zip(pictures, kinds) if k == "letter")
