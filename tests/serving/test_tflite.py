"""TFLite export: the converted model classifies the real MNIST test set like the checkpoint; files are safe."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REAL_MNIST

from lenet_tf.core.errors import CheckpointError, ConfigError
from lenet_tf.data.mnist import unpad_images
from lenet_tf.serving.tflite import (calibration_digits, convert, export_tflite, exported_record, interpreter,
                                     tflite_outputs, tflite_probabilities)
from lenet_tf.trained import TrainedModel


@pytest.fixture(scope="module")
def checkpoint_predictions(real_model_dir, real_mnist):
    with TrainedModel(real_model_dir[0]) as model:
        return model.predict(real_mnist.test_images).probabilities


@pytest.mark.parametrize("quantize, tolerance", [("none", 0.001), ("dynamic", 0.001), ("int8", 0.003)])
def test_tflite_model_matches_the_checkpoint_on_the_real_test_set(tmp_path, real_model_dir, real_mnist,
                                                                  checkpoint_predictions, quantize, tolerance):
    path = export_tflite(real_model_dir[0], tmp_path / "lenet5.tflite", quantize, data_dir=REAL_MNIST)
    probabilities = tflite_probabilities(path, real_mnist.test_images)
    labels = real_mnist.test_labels
    expected = np.mean(checkpoint_predictions.argmax(axis=1) == labels)
    accuracy = np.mean(probabilities.argmax(axis=1) == labels)
    assert abs(accuracy - expected) <= tolerance, (quantize, accuracy, expected)
    assert probabilities.shape == (10000, 10) and probabilities.dtype == np.float32
    if quantize == "none":
        np.testing.assert_allclose(probabilities, checkpoint_predictions, atol=1e-4)
    model = interpreter(path)
    source, target = model.get_input_details()[0], model.get_output_details()[0]
    assert source["dtype"] == np.uint8 and list(source["shape_signature"]) == [-1, 28, 28]
    if quantize == "int8":
        assert source["quantization"] == (1.0, 0)
        assert target["dtype"] == np.uint8 and target["quantization"] == (1 / 256, 0)
    else:
        assert target["dtype"] == np.float32


@pytest.fixture(scope="module")
def synthetic_model(synthetic_model_dir):
    return synthetic_model_dir


def test_export_refuses_an_existing_file_unless_overwrite(tmp_path, synthetic_model, synthetic_dir, cli):
    target = tmp_path / "out" / "digits.tflite"
    first = cli("export", "--checkpoint", synthetic_model, "--format", "tflite", "--out", target)
    assert first.returncode == 0 and first.stderr == "" and "float32" in first.stdout
    written = target.read_bytes()
    refused = cli("export", "--checkpoint", synthetic_model, "--format", "tflite", "--quantize", "int8",
                  "--out", target, "--data-dir", synthetic_dir, "--skip-checksum")
    assert refused.returncode == 1 and refused.stderr == (
        f"lenet-tf: error: {target}: already exists; pass --overwrite to replace it\n")
    assert target.read_bytes() == written
    replaced = cli("export", "--checkpoint", synthetic_model, "--format", "tflite", "--quantize", "int8",
                   "--out", target, "--overwrite", "--data-dir", synthetic_dir, "--skip-checksum")
    assert replaced.returncode == 0 and replaced.stderr == "" and "uint8 (p = q/256)" in replaced.stdout
    assert target.read_bytes() != written
    assert interpreter(target).get_output_details()[0]["dtype"] == np.uint8
    assert sorted(p.name for p in target.parent.iterdir()) == ["digits.tflite"]  # no temporary file left


def test_overwrite_never_replaces_a_file_that_is_not_a_tflite_model(tmp_path, synthetic_model):
    target = tmp_path / "notes.tflite"
    target.write_bytes(b"somebody else's file")
    with pytest.raises(CheckpointError, match="exists and is not a TFLite model exported by lenet_tf; not replacing"):
        export_tflite(synthetic_model, target, overwrite=True)
    assert target.read_bytes() == b"somebody else's file" and len(list(tmp_path.iterdir())) == 1


def foreign_tflite() -> bytes:
    """A real TFLite model that lenet_tf did not export: y = 2x."""
    import tensorflow as tf

    double = tf.function(lambda x: 2 * x, input_signature=[tf.TensorSpec([None, 28, 28], tf.float32)])
    return tf.lite.TFLiteConverter.from_concrete_functions([double.get_concrete_function()], double).convert()


def test_overwrite_replaces_only_a_tflite_model_of_ours(tmp_path, synthetic_model, cli):
    target = tmp_path / "mine.tflite"
    for theirs in (b"\x1c\x00\x00\x00TFL3 my own mobilenet", foreign_tflite()):
        target.write_bytes(theirs)
        refused = cli("export", "--checkpoint", synthetic_model, "--format", "tflite", "--out", target, "--overwrite")
        assert refused.returncode == 1 and refused.stderr == (
            f"lenet-tf: error: {target}: exists and is not a TFLite model exported by lenet_tf; not replacing it\n")
        assert target.read_bytes() == theirs and sorted(p.name for p in tmp_path.iterdir()) == ["mine.tflite"]
    target.unlink()
    for flags in ((), ("--overwrite",)):  # written, then replaced: it is ours
        done = cli("export", "--checkpoint", synthetic_model, "--format", "tflite", "--out", target, *flags)
        assert done.returncode == 0, done.stderr
    assert exported_record(target.read_bytes())["checkpoint"].startswith(str(synthetic_model))
    assert tflite_probabilities(target, np.zeros([2, 28, 28], np.uint8)).shape == (2, 10)


def test_export_errors_are_one_line(tmp_path, synthetic_model, cli):
    wrong_format = cli("export", "--checkpoint", synthetic_model, "--quantize", "dynamic", "--out", tmp_path / "x")
    assert wrong_format.returncode == 1 and wrong_format.stderr == (
        "lenet-tf: error: --quantize dynamic needs --format tflite\n")
    default = cli("export", "--checkpoint", synthetic_model, "--quantize", "none", "--out", tmp_path / "saved")
    assert default.returncode == 0 and (tmp_path / "saved" / "saved_model.pb").is_file()  # none: the default
    (tmp_path / "a.png").write_bytes(b"")
    not_a_run = cli("export", "--checkpoint", tmp_path / "a.png", "--out", tmp_path / "y")
    assert not_a_run.stderr == (f"lenet-tf: error: {tmp_path / 'a.png'}: is a file, not a checkpoint folder or "
                                "Saver prefix\n")
    with pytest.raises(CheckpointError, match="is a folder"):
        export_tflite(synthetic_model, tmp_path, "none")
    assert not list(tmp_path.glob("*.tflite")) and not (tmp_path / "y").exists()


def test_default_file_names_per_quantization(tmp_path, synthetic_model, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for quantize, name in [("none", "lenet5.tflite"), ("dynamic", "lenet5-dynamic.tflite")]:
        done = cli("export", "--checkpoint", synthetic_model, "--format", "tflite", "--quantize", quantize)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "export" / name).stat().st_size > 0


def test_int8_needs_calibration_that_spans_the_pixel_range(synthetic_model, synthetic_splits):
    digits = unpad_images(synthetic_splits.train_images[:20])
    assert calibration_digits(digits, count=5).shape == (5, 28, 28)
    with pytest.raises(ValueError, match="needs calibration_images"):
        convert(synthetic_model, "int8")
    with pytest.raises(ConfigError, match="do not span 0..255"):
        convert(synthetic_model, "int8", calibration_images=np.clip(digits, 0, 100))


def with_model_option(real_model_dir, folder: Path, option: str) -> Path:
    """A copy of the real run in ``folder`` whose run.json turns ``option`` on: the same weights, read through a
    network that prepares its pictures in the graph."""
    shutil.copytree(real_model_dir[0], folder)
    run = json.loads((folder / "run.json").read_text())
    run["model"][option] = True
    (folder / "run.json").write_text(json.dumps(run))
    return folder


def test_a_deskewing_model_exports_and_reads_like_its_checkpoint(tmp_path, real_model_dir, real_mnist):
    """Deskewing resamples with gathers in the exported graph: TFLite runs it, and reads as TrainedModel does."""
    folder = with_model_option(real_model_dir, tmp_path / "deskew", "deskew")
    digits = real_mnist.test_images[:500]
    with TrainedModel(folder) as model:
        expected = model.predict(digits).probabilities
    probabilities = tflite_probabilities(export_tflite(folder, tmp_path / "deskew.tflite", "none"), digits)
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    with pytest.raises(ConfigError, match="--quantize dynamic"):  # 8-bit resampling positions: refused, not shipped
        export_tflite(folder, tmp_path / "deskew-int8.tflite", "int8", data_dir=REAL_MNIST)
    assert not (tmp_path / "deskew-int8.tflite").exists()


def test_an_uninverting_model_exports_and_reads_inverted_bands_like_its_checkpoint(tmp_path, real_model_dir,
                                                                                   real_mnist):
    """The inverted regions are found with poolings over the batch laid out as channels: TFLite runs them too."""
    folder = with_model_option(real_model_dir, tmp_path / "uninvert", "uninvert")
    digits = real_mnist.test_images[:200].copy()
    digits[:, 8:15] = 255 - digits[:, 8:15]  # a band of glare across each digit
    with TrainedModel(folder) as model:
        expected = model.predict(digits).probabilities
    with TrainedModel(real_model_dir[0]) as model:
        assert (model.predict(digits).probabilities.argmax(1) != expected.argmax(1)).sum() > 10  # it matters
    probabilities = tflite_probabilities(export_tflite(folder, tmp_path / "uninvert.tflite", "none"), digits)
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    with pytest.raises(ConfigError, match="with uninvert .*--quantize dynamic"):  # white paper in 8 bits: refused
        # before its calibration digits are looked for: no MNIST is needed to be told
        export_tflite(folder, tmp_path / "uninvert-int8.tflite", "int8", data_dir=tmp_path / "no-mnist")
    assert not (tmp_path / "uninvert-int8.tflite").exists()


def test_export_says_which_outputs_it_wrote(tmp_path, calibrated_model_dir, synthetic_model, cli):
    """The export's one line names ``digits`` and ``novelty`` where the file has them: a calibrated run's SavedModel
    and float32 TFLite file, not its quantized file nor an uncalibrated run's."""
    exports = [("saved", calibrated_model_dir, []), ("f.tflite", calibrated_model_dir, ["--format", "tflite"]),
               ("q.tflite", calibrated_model_dir, ["--format", "tflite", "--quantize", "dynamic"]),
               ("plain.tflite", synthetic_model, ["--format", "tflite"])]
    lines = [cli("export", "--checkpoint", folder, *flags, "--out", tmp_path / name).stdout
             for name, folder, flags in exports]
    assert [("novelty" in line) for line in lines] == [True, True, False, False], lines


def test_a_calibrated_model_says_not_a_digit_in_float32_only(tmp_path, calibrated_model_dir, real_mnist):
    """``digits`` and ``novelty`` as the checkpoint gives them (a letter -1, a blank -1); quantized: no head."""
    from images import letter_image

    from lenet_tf.data.images import to_mnist

    letter = to_mnist(np.asarray(letter_image("A"), np.float32))
    digits = np.stack([*real_mnist.test_images[:20], letter, np.zeros((28, 28), np.uint8)])
    with TrainedModel(calibrated_model_dir, precision="fp32") as model:
        expected = model.predict(digits)
    outputs = tflite_outputs(export_tflite(calibrated_model_dir, tmp_path / "lenet5.tflite"), digits)
    assert set(outputs) == {"probabilities", "digits", "novelty"}
    assert outputs["digits"].tolist() == np.where(expected.rejected | expected.blank, -1, expected.classes).tolist()
    assert outputs["digits"][-2:].tolist() == [-1, -1]
    np.testing.assert_allclose(outputs["novelty"], expected.novelty, rtol=1e-4, atol=1e-3)
    quantized = tflite_outputs(export_tflite(calibrated_model_dir, tmp_path / "q.tflite", "dynamic"), digits)
    assert set(quantized) == {"probabilities"}
