"""Every interface reads the same pictures the same way and says when there is no digit: the exported SavedModel's
``predict_images`` in plain TensorFlow (each format), ``TrainedModel.predict``'s input checks, and `lenet-tf
predict` on a folder of damaged files."""

import json
import random

import numpy as np
import pytest
from fuzzing import mutated_picture
from PIL import Image, ImageDraw

from lenet_tf.data.mnist import unpad_images
from lenet_tf.serving.predict import predict_files
from lenet_tf.trained import TrainedModel

FORMATS = [("png", "PNG", "L", {}), ("png", "PNG", "RGBA", {}), ("jpg", "JPEG", "RGB", {"quality": 90}),
           ("gif", "GIF", "P", {}), ("bmp", "BMP", "RGB", {}), ("webp", "WEBP", "RGB", {"quality": 90}),
           ("webp", "WEBP", "RGBA", {"lossless": True}), ("png", "PNG", "1", {}), ("png", "PNG", "LA", {}),
           ("png", "PNG", "L", {"bits": 2})]  # 1- and 2-bit grey: TensorFlow's RGBA decoding gave them alpha 1, 3


def seven(mode: str) -> Image.Image:
    """A 7 drawn dark on white (RGBA: black strokes on a transparent canvas)."""
    image = Image.new("L", (90, 120), 255)
    ImageDraw.Draw(image).line([(20, 20), (70, 20), (35, 100)], fill=0, width=9, joint="curve")
    if mode in ("RGBA", "LA"):
        return Image.merge(mode, [Image.new("L", image.size, 0)] * (len(mode) - 1) + [image.point(lambda v: 255 - v)])
    return image.convert(mode)


@pytest.fixture(scope="module")
def model(synthetic_model_dir):
    with TrainedModel(synthetic_model_dir) as model:
        yield model


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> list:
    folder = tmp_path_factory.mktemp("formats")
    paths = []
    for k, (suffix, format, mode, options) in enumerate(FORMATS):
        paths.append(folder / f"{k}-{mode}.{suffix}")
        seven(mode).save(paths[-1], format=format, **options)
    paths.append(folder / "strip.png")  # 1 pixel wide and over WORKING_SIDE high: reduced to 1 x ..., blank
    Image.new("L", (1, 5000), 0).save(paths[-1])
    paths.append(folder / "blank.png")
    Image.new("L", (40, 40), 255).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def exported(synthetic_model_dir, tmp_path_factory):
    """The synthetic model exported as a SavedModel (read it, don't change it)."""
    from lenet_tf.serving.saved_model import export_saved_model

    return export_saved_model(synthetic_model_dir, tmp_path_factory.mktemp("export") / "lenet5")


def test_predict_images_reads_every_format_in_plain_tensorflow(exported, model, pictures):
    from lenet_tf.core.tf import tf

    signature = tf.saved_model.load(str(exported)).signatures["predict_images"]
    graph = signature(images=tf.constant([path.read_bytes() for path in pictures]))
    cli = predict_files(pictures, model)
    assert [r.error for r in cli] == [None] * len(pictures)
    assert graph["classes"].numpy().tolist() == [-1 if r.digit is None else r.digit for r in cli]
    assert cli[-1].reason == "blank image (no digit found)" and graph["classes"].numpy()[-1] == -1
    np.testing.assert_allclose(graph["probabilities"].numpy(), [r.probabilities for r in cli], atol=0.02)
    raw = tf.saved_model.load(str(exported)).signatures["serving_default"]
    assert raw(images=tf.zeros([1, 28, 28], tf.uint8))["classes"].numpy().tolist() == [-1]


def test_an_animated_webp_is_refused_by_predict_images_and_read_by_its_first_frame_elsewhere(exported, tmp_path,
                                                                                             model):
    """TensorFlow's WebP decoder corrupts memory on an animated WebP (the process aborts): the signature refuses one
    before decoding it. Run in a fresh process, so that a regression aborts that process, not the suite."""
    import subprocess
    import sys

    from lenet_tf.serving.saved_model import ANIMATED_WEBP
    frames = [seven("RGB"), seven("RGB").rotate(90), seven("RGB").rotate(180)]
    path = tmp_path / "animated.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    still = tmp_path / "still.webp"
    frames[0].save(still, quality=90)
    script = "\n".join([
        "import sys, tensorflow as tf",
        "signature = tf.saved_model.load(sys.argv[1]).signatures['predict_images']",
        "print(signature(images=tf.constant([open(sys.argv[2], 'rb').read()]))['classes'].numpy().tolist())",
        "try:",
        "    signature(images=tf.constant([open(sys.argv[3], 'rb').read()]))",
        "except tf.errors.InvalidArgumentError as err:",
        "    print('refused:', err.message.replace(chr(10), ' '))"])
    done = subprocess.run([sys.executable, "-c", script, str(exported), str(still), str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    still_line, refused = done.stdout.splitlines()[-2:]
    assert still_line == str([predict_files([still], model)[0].digit])
    assert refused.startswith("refused:") and ANIMATED_WEBP in refused
    first = predict_files([path], model)[0]  # PIL reads the first frame, with a note
    assert first.error is None and first.digit == predict_files([still], model)[0].digit and "3 frames" in first.note


def test_trained_model_checks_its_input_as_the_http_api_does(model, synthetic_splits):
    digits = unpad_images(synthetic_splits.test_images[:20])
    expected = model.predict(digits)
    np.testing.assert_array_equal(model.predict(digits[..., None]).probabilities, expected.probabilities)
    np.testing.assert_array_equal(model.predict(digits.astype(np.float64)).probabilities, expected.probabilities)
    np.testing.assert_array_equal(model.predict(digits / 255.0, scaled=True).probabilities, expected.probabilities)
    for images, message in [(digits / 255.0, "floats in \\[0, 1\\].*scaled=True"),
                            (digits * 1.5, "fractional floats"),
                            (digits.astype(np.int32) + 200, "grey levels 0..255, got"),
                            (digits.astype(bool), "dtype bool"),
                            (digits[:, :27], "images must be"),
                            (np.full_like(digits, np.nan, dtype=np.float32), "NaN"),
                            (digits, "scaled=True is for floats")]:
        with pytest.raises(ValueError, match=message):
            model.predict(images, scaled=message.startswith("scaled"))
    blank = model.predict(np.zeros((2, 28, 28), np.uint8))
    assert blank.blank.tolist() == [True, True] and blank.digits.tolist() == [-1, -1]
    assert expected.blank.sum() == 0 and (expected.digits == expected.classes).all()


def test_a_folder_of_1500_damaged_pictures_is_fully_reported(tmp_path, model, capsys):
    from lenet_tf.cli.commands import main

    rng = random.Random(0)
    for k in range(1500):
        name, data = mutated_picture(rng)
        (tmp_path / f"{k:04d}-{name}").write_bytes(data)
    results = predict_files([tmp_path], model)
    assert len(results) == 1500 and all((r.error is None) != (r.digit is None and r.reason is None)
                                        for r in results)
    assert all(len(r.probabilities) == 10 for r in results if r.error is None)
    status = main(["predict", str(tmp_path), "--checkpoint", str(model.checkpoint).rsplit("/", 2)[0], "--json"])
    out, err = capsys.readouterr()
    assert len(json.loads(out)) == 1500 and "Traceback" not in err
    assert status == (1 if any(r.error for r in results) else 0)
    assert sum(line.startswith("lenet-tf: error: ") for line in err.splitlines()) == sum(1 for r in results
                                                                                          if r.error)
