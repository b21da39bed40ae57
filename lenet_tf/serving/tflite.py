"""Exporting a trained checkpoint as a TensorFlow Lite model, and running one.

The ``.tflite`` model is the inference graph only (``LeNet5(training=False)``: no dropout, batch norm with its
moving averages, folded into constants; the members of a ``--ensemble N`` run with their probabilities averaged).
Its input ``images`` is uint8 ``[N, 28, 28]``, raw MNIST-style digits (white ink on black) as in the SavedModel's
signature; its output ``probabilities`` is ``[N, 10]``. A calibrated run's model (:mod:`lenet_tf.rejection`), in
float32 (``none``), also outputs ``digits`` (int64 ``[N]``: the class, or -1 for a blank input or "not a digit")
and ``novelty`` (float32 ``[N]``), as the SavedModel does; quantized weights move the head's score by up to 17
units (dynamic), so the quantized models have no head. Quantization:

* ``none``: float32 weights and arithmetic; float32 probabilities.
* ``dynamic``: int8 weights, float32 activations (dynamic-range quantization); float32 probabilities.
* ``int8``: full integer: int8 weights and activations, their ranges calibrated on :data:`CALIBRATION_DIGITS`
  training digits. Input uint8 with scale 1 and zero point 0 (the raw pixels, as in the other modes); output
  uint8 probabilities with scale 1/256 and zero point 0 (``p = q / 256``).

:func:`tflite_outputs` runs any of them and returns its outputs by name; :func:`tflite_probabilities` the
float32 probabilities.

Every file records what it was exported from (:func:`lenet_tf.serving.saved_model.export_record`) as JSON in its
metadata entry :data:`METADATA`; ``--overwrite`` replaces only a file that has it.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from lenet_tf.core.tf import session_config, tf, tf1
from lenet_tf.core.errors import CheckpointError, ConfigError
from lenet_tf.inference import ensemble_members, mean_probabilities, restore_members
from lenet_tf.objectives import scale_images
from lenet_tf.rejection import feature_tensor, usable_head
from lenet_tf.serving.saved_model import digit_classes, export_record, rejection_outputs
from lenet_tf.core.options import TFLITE_QUANTIZATIONS
from lenet_tf.core.outputs import make_folder, write_atomic
from lenet_tf.core.quiet import quiet_stderr
from lenet_tf.core.regular_files import read_regular, special_kind
from lenet_tf.core import json_text
from lenet_tf.runs import lock
from lenet_tf.trained import TrainedModel

CALIBRATION_DIGITS = 300
_TFLITE_IDENTIFIER = b"TFL3"  # the flatbuffer's file identifier, bytes 4..8 of every .tflite file
METADATA = "lenet_tf"  # the name of the model metadata entry that marks a .tflite file as ours
_CALIBRATION_BATCH = 10


def calibration_digits(train_images: np.ndarray, count: int = CALIBRATION_DIGITS, seed: int = 0) -> np.ndarray:
    """A fixed random sample of ``count`` training digits, uint8 ``[count, 28, 28]``, for int8 calibration."""
    picked = np.random.default_rng(seed).choice(len(train_images), min(count, len(train_images)), replace=False)
    return train_images[np.sort(picked)]


# The in-graph picture preparations that full integer quantization breaks, and what it costs them (2026-12-06/07).
_INT8_LOSES = {
    "deskew": "its resampling positions in 8 bits: 96.3% against 98.7% of MNIST test",
    "uninvert": "its test for white paper in 8 bits: 54.7% against 76.2% of MNIST test digits under a band of glare",
}


def convert(checkpoint_dir: str | os.PathLike, quantize: str = "none",
            calibration_images: np.ndarray | None = None) -> bytes:
    """The ``.tflite`` flatbuffer of a checkpoint (any form :class:`TrainedModel` takes).

    Args:
      checkpoint_dir: training folder, epoch folder or Saver prefix.
      quantize: one of :data:`lenet_tf.core.options.TFLITE_QUANTIZATIONS` (see the module docstring).
      calibration_images: uint8 ``[N, 28, 28]`` digits spanning 0..255; required for ``int8``.
    """
    if quantize not in TFLITE_QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {', '.join(TFLITE_QUANTIZATIONS)}, got {quantize!r}")
    if quantize == "int8" and calibration_images is None:
        raise ValueError("int8 quantization needs calibration_images")
    with lock.reading(checkpoint_dir):  # run.json and the checkpoint it names stay together meanwhile
        config = TrainedModel.read_config(checkpoint_dir)
        _refuse_lossy_int8(config, quantize)
        return _convert(config, quantize, calibration_images)


def _refuse_lossy_int8(config: dict, quantize: str) -> None:
    """ConfigError naming each of :data:`_INT8_LOSES` that a run's ``config`` has on, for ``quantize="int8"``."""
    lost = [option for option in _INT8_LOSES if config["model"].get(option)] if quantize == "int8" else []
    if lost:
        reasons = "; ".join(f"{option}: {_INT8_LOSES[option]}" for option in lost)
        raise ConfigError(f"--quantize int8 loses the accuracy of a model with {' and '.join(lost)} ({reasons}); "
                          "use --quantize dynamic (the float accuracy) or --quantize none")


def _convert(config: dict, quantize: str, calibration_images: np.ndarray | None) -> bytes:
    """:func:`convert` of a checkpoint's configuration from :meth:`TrainedModel.read_config`."""
    with tf.Graph().as_default() as graph:
        # Full integer conversion quantizes a float input; the converter then turns it into uint8 (scale 1).
        images = tf1.placeholder(tf.float32 if quantize == "int8" else tf.uint8, [None, 28, 28], name="images")
        # Scale before padding: TFLite's PAD has no uint8 kernel.
        padded = tf.pad(scale_images(images[..., tf.newaxis]), [[0, 0], [2, 2], [2, 2], [0, 0]])
        nets = ensemble_members(config["model"], config["members"])  # one network, or an ensemble averaged
        probabilities = mean_probabilities(nets, padded, name="probabilities")
        outputs = [probabilities]
        head = usable_head(config["checkpoint"], config["run"]) if quantize == "none" else None
        if head:  # "I can't read this", as in the SavedModel
            classes = digit_classes(probabilities, tf.cast(images, tf.float32), "classes")  # TFLite: no uint8 max
            rejection = rejection_outputs(feature_tensor(nets[0].endpoints), classes, head)
            outputs += [rejection["digits"], rejection["novelty"]]
        with tf1.Session(graph=graph, config=session_config()) as session:
            restore_members(nets, session, config["checkpoint"])
            converter = tf1.lite.TFLiteConverter.from_session(session, [images], outputs)
            if quantize != "none":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if quantize == "int8":
                converter.representative_dataset = _representative(calibration_images)
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                converter.inference_input_type = tf.uint8
                converter.inference_output_type = tf.uint8
            with quiet_stderr():
                flatbuffer = converter.convert()
    if quantize == "int8":
        _check_raw_pixel_input(flatbuffer)
    return _with_metadata(flatbuffer, export_record(config, head))


def _with_metadata(flatbuffer: bytes, record: dict) -> bytes:
    """The model ``flatbuffer`` with ``record`` added as JSON in its metadata entry :data:`METADATA`."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    buffer, entry = schema.BufferT(), schema.MetadataT()
    buffer.data = np.frombuffer(json.dumps(record).encode(), dtype=np.uint8)
    entry.name, entry.buffer = METADATA, len(model.buffers)
    model.buffers.append(buffer)
    model.metadata = [*(model.metadata or []), entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def exported_record(flatbuffer: bytes) -> dict | None:
    """What a ``.tflite`` file's bytes record in their metadata entry :data:`METADATA`, or ``None`` when they are
    not a TFLite model exported by lenet_tf."""
    from tensorflow.lite.python import schema_py_generated as schema

    if flatbuffer[4:8] != _TFLITE_IDENTIFIER:
        return None
    try:
        model = schema.Model.GetRootAs(flatbuffer, 0)
        for index in range(model.MetadataLength()):
            entry = model.Metadata(index)
            if entry.Name() == METADATA.encode():
                record = json_text.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
                return record if isinstance(record, dict) else None
    except (struct.error, IndexError, ValueError, TypeError, AttributeError):  # not a flatbuffer: any of these
        return None
    return None


def _representative(images: np.ndarray):
    images = np.asarray(images, dtype=np.float32)

    def batches():
        for start in range(0, len(images), _CALIBRATION_BATCH):
            yield [images[start:start + _CALIBRATION_BATCH]]

    return batches


def _check_raw_pixel_input(flatbuffer: bytes) -> None:
    """The int8 model's input must take raw pixels: the calibration digits have to span 0..255."""
    details = interpreter(flatbuffer).get_input_details()[0]
    if details["quantization"] != (1.0, 0):
        scale, zero = details["quantization"]
        raise ConfigError(f"int8 calibration digits do not span 0..255 (input scale {scale:g}, zero point {zero}); "
                          "calibrate on MNIST training digits")


def export_tflite(
    checkpoint_dir: str | os.PathLike,
    out: str | os.PathLike,
    quantize: str = "none",
    *,
    overwrite: bool = False,
    data_dir: str | os.PathLike | None = None,
    verify_checksums: bool = True,
) -> Path:
    """Converts a checkpoint and writes the ``.tflite`` file to ``out``; returns its path.

    ``int8`` calibrates on :func:`calibration_digits` of the MNIST training set in ``data_dir`` (see
    :func:`lenet_tf.data.mnist.load_mnist`). The file is written to a temporary name beside ``out``, synced and
    renamed (:func:`lenet_tf.core.outputs.write_atomic`), so ``out`` is never half-written, and holds the old or the
    new model at every moment. An existing ``out`` is an error, unless ``overwrite`` and it is a TFLite model
    exported by lenet_tf (:func:`exported_record`).

    Raises:
      CheckpointError: ``out`` exists (without ``overwrite``); the checkpoint is unusable.
      OutputError: ``out`` cannot be written.
    """
    out = Path(out)
    _check_writable_target(out, overwrite)
    calibration = None
    if quantize == "int8":
        from lenet_tf.data.mnist import load_mnist

        _refuse_lossy_int8(TrainedModel.read_config(checkpoint_dir), quantize)  # before reading MNIST for nothing
        calibration = calibration_digits(load_mnist(data_dir, verify=verify_checksums).train_images)
    flatbuffer = convert(checkpoint_dir, quantize, calibration)

    def write(tmp: Path) -> None:
        tmp.write_bytes(flatbuffer)
        _check_writable_target(out, overwrite)  # again: a file may have appeared during the conversion

    make_folder(out.parent)
    with lock.writing_target(out):
        return write_atomic(out, write)


def _check_writable_target(out: Path, overwrite: bool) -> None:
    """Refuses a folder, an existing file without ``overwrite``, and with it any file that is not a TFLite model
    exported by lenet_tf."""
    kind = special_kind(out)
    if kind:
        raise CheckpointError(f"{out}: is {kind}, not a regular file; it is left alone")
    if out.is_dir():
        raise CheckpointError(f"{out}: is a folder; pass the .tflite file to write")
    if not out.exists():
        return
    if not overwrite:
        raise CheckpointError(f"{out}: already exists; pass --overwrite to replace it")
    try:
        ours = exported_record(read_regular(out)) is not None
    except OSError as err:
        raise CheckpointError(f"{out}: cannot read the existing file ({err.strerror or err})") from None
    if not ours:
        raise CheckpointError(f"{out}: exists and is not a TFLite model exported by lenet_tf; not replacing it")


def interpreter(model: str | os.PathLike | bytes) -> Interpreter:
    """A LiteRT interpreter (``ai_edge_litert``, the successor of ``tf.lite.Interpreter``) of a ``.tflite`` file
    or its bytes, its tensors not yet allocated."""
    with quiet_stderr():
        if isinstance(model, bytes):
            return Interpreter(model_content=model)
        return Interpreter(model_path=str(model))


def tflite_outputs(model: str | os.PathLike | bytes, images: np.ndarray) -> dict[str, np.ndarray]:
    """Runs a ``.tflite`` file (or its bytes) from :func:`export_tflite` on uint8 digits ``[N, 28, 28]``.

    Returns:
      its outputs by name: float32 ``probabilities`` ``[N, 10]`` (dequantized for ``int8`` models) and, of a
      calibrated run's model, int64 ``digits`` ``[N]`` and float32 ``novelty`` ``[N]``.
    """
    images = np.asarray(images, dtype=np.uint8)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"images must be uint8 [N, 28, 28], got {images.shape}")
    runner = interpreter(model)
    source = runner.get_input_details()[0]
    runner.resize_tensor_input(source["index"], images.shape)
    with quiet_stderr():
        runner.allocate_tensors()
        runner.set_tensor(source["index"], images)
        runner.invoke()
    outputs = {}
    for target in runner.get_output_details():
        output = runner.get_tensor(target["index"])
        scale, zero = target["quantization"]
        if scale:
            output = ((output.astype(np.float32) - zero) * scale).astype(np.float32)
        outputs[target["name"].split(":")[0]] = output
    return outputs


def tflite_probabilities(model: str | os.PathLike | bytes, images: np.ndarray) -> np.ndarray:
    """float32 probabilities ``[N, 10]`` of a ``.tflite`` model on uint8 digits ``[N, 28, 28]``
    (:func:`tflite_outputs`)."""
    return tflite_outputs(model, images)["probabilities"]
