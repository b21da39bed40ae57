"""Test-time augmentation: the variants are the affine maps they claim to be, and a model with ``tta`` averages
its own probabilities over them, in one graph."""

import numpy as np
import pytest

import lenet_tf.inference as inference
from lenet_tf.core.errors import ConfigError
from lenet_tf.core.tf import tf, tf1
from lenet_tf.trained import TrainedModel


def variants_of(images: np.ndarray, variants) -> np.ndarray:
    with tf.Graph().as_default():
        inputs = tf1.placeholder(tf.float32, [None, *images.shape[1:]])
        with tf1.Session() as session:
            return session.run(inference.tta_variants(inputs, variants), {inputs: images})


def test_variants_are_shifts_rotations_and_zooms_variant_major():
    images = np.random.default_rng(0).random((3, 32, 32, 1), np.float32)
    out = variants_of(images, [(0, 1, 0, 0), (90, 1, 0, 0), (0, 1, 1, 0), (0, 1, 0, -2), (0, 1 / 3, 0, 0)])
    assert out.shape == (15, 32, 32, 1)
    np.testing.assert_allclose(out[:3], images, atol=1e-6)
    np.testing.assert_allclose(out[3:6], np.rot90(images, 1, axes=(1, 2)), atol=1e-5)  # +degrees: anticlockwise
    np.testing.assert_allclose(out[6:9, :, 1:], images[:, :, :-1], atol=1e-6)  # one pixel right
    assert not out[6:9, :, 0].any()  # what comes in from outside is background
    np.testing.assert_allclose(out[9:12, :-2], images[:, 2:], atol=1e-6)  # two pixels up
    # Zoomed out 3x about the centre (15.5): output pixel i samples input pixel 3i - 31.
    np.testing.assert_allclose(out[12:15, 11:21, 11:21], images[:, 2:30:3, 2:30:3], atol=1e-5)


def shifted(digits: np.ndarray, right: int, down: int) -> np.ndarray:
    padded = np.pad(digits, [[0, 0], [2, 2], [2, 2]])
    moved = np.roll(padded, (down, right), axis=(1, 2))
    return moved[:, 2:30, 2:30]


def test_a_model_with_tta_averages_its_probabilities_over_the_variants(real_model_dir, real_mnist, monkeypatch):
    digits = real_mnist.test_images[:200]  # MNIST digits keep 2+ pixels of background: rolls lose no ink
    variants = [(0.0, 1.0, 0.0, 0.0), (0.0, 1.0, 1.0, 0.0), (0.0, 1.0, 0.0, -1.0)]
    monkeypatch.setattr(inference, "TTA_VARIANTS", tuple(variants))
    with TrainedModel(real_model_dir[0], precision="fp32") as plain:
        expected = np.mean([plain.predict(shifted(digits, int(right), int(down))).probabilities
                            for _, _, right, down in variants], axis=0)
        alone = plain.predict(digits)
    with TrainedModel(real_model_dir[0], precision="fp32", tta=True) as model:
        predictions = model.predict(digits, real_mnist.test_labels[:200].astype(np.int32))
    np.testing.assert_allclose(predictions.probabilities, expected, atol=1e-5)
    assert np.abs(predictions.probabilities - alone.probabilities).max() > 1e-3  # the variants did change things
    np.testing.assert_allclose(predictions.losses, -np.log(expected[np.arange(200), real_mnist.test_labels[:200]]),
                               rtol=1e-4, atol=1e-6)


def test_serving_a_saved_model_with_tta_is_refused_in_one_line():
    from lenet_tf.serving.server import load_model

    with pytest.raises(ConfigError, match="--tta needs --checkpoint"):
        load_model(None, "export/lenet5", tta=True)
