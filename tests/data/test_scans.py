"""Low-resolution scans of MNIST digits (the rejection head's blocky positives): seeded, read back like
``predict`` files, not the digits' detail, and still the same digit to a model trained on MNIST."""

import numpy as np
from PIL import Image

from lenet_tf.data import scans
from lenet_tf.data.other_writers import png_bytes, read_encoded
from lenet_tf.trained import TrainedModel


def test_a_seed_repeats_and_another_seed_scans_otherwise(real_mnist):
    digits = real_mnist.train_images[:60]
    first = scans.low_resolution_scans(digits, 3)
    assert first.dtype == np.uint8 and first.shape == (60, 28, 28)  # every scan still has ink
    np.testing.assert_array_equal(first, scans._scanned(digits, 3))  # the cached copy is what the code computes
    assert not np.array_equal(first, scans.low_resolution_scans(digits, 4))


def test_scans_lose_detail_but_stay_the_digit(real_mnist, real_model_dir):
    digits = real_mnist.test_images[:300]
    scanned = scans.low_resolution_scans(digits, 0)
    read_clean, _ = read_encoded([png_bytes(Image.fromarray(255 - digit)) for digit in digits])
    assert np.abs(read_clean.astype(int) - digits).mean() < 1  # a clean file of the digit reads back as the digit
    assert np.abs(scanned.astype(int) - digits).mean() > 10  # its scan does not: detail is lost
    with TrainedModel(real_model_dir[0]) as model:
        on_digits = (model.predict(digits).classes == real_mnist.test_labels[:300]).mean()
        on_scans = (model.predict(scanned).classes == real_mnist.test_labels[:300]).mean()
    assert on_digits > 0.95 and on_scans > 0.8
