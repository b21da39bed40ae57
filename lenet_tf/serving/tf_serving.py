"""TensorFlow Serving's REST protocol for the ``serving_default`` signature that ``lenet-tf export`` writes.

The signature (see :mod:`lenet_tf.serving.saved_model`) has one input, ``images`` (uint8 ``[N, 28, 28]`` or
``[N, 28, 28, 1]``, raw 0..255 grey levels, white ink on black), and two outputs, ``classes`` (int64 ``[N]``) and
``probabilities`` (float32 ``[N, 10]``). The functions here turn a predict request body into that input and the
model's probabilities into the response TensorFlow Serving would send, following its documented REST API
(https://www.tensorflow.org/tfx/serving/api_rest): row format ``{"instances": [...]}`` answers
``{"predictions": [{"classes": c, "probabilities": [...]}, ...]}``, columnar format ``{"inputs": ...}`` answers
``{"outputs": {"classes": [...], "probabilities": [[...]]}}``. No HTTP here: :mod:`lenet_tf.serving.server` routes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

MODEL_NAME = "lenet5"
SIGNATURE_NAME = "serving_default"
INPUT_NAME = "images"
DIGIT_SHAPE = (28, 28)


class BadRequest(ValueError):
    """The request body does not fit the protocol or the signature (TensorFlow Serving answers 400)."""


@dataclass(frozen=True)
class PredictRequest:
    """The input of one predict call: ``images`` uint8 ``[N, 28, 28]``; ``columnar`` when sent as ``inputs``."""

    images: np.ndarray
    columnar: bool


def parse_predict_request(body: bytes) -> PredictRequest:
    """Reads a predict request body (JSON) into uint8 digits.

    Raises:
      BadRequest: not JSON, not an object, an unknown signature or input name, both or neither of ``instances``
        and ``inputs``, a shape other than [N,28,28] / [N,28,28,1], or values that are not integers in 0..255.
    """
    try:
        request = json.loads(body)
    except RecursionError:
        raise BadRequest("JSON Parse error: nested too deeply") from None
    except ValueError as err:  # also invalid UTF-8 and integers of more than 4300 digits
        raise BadRequest(f"JSON Parse error: {err}") from None
    if not isinstance(request, dict):
        raise BadRequest("JSON Value: the request must be a JSON object")
    signature = request.get("signature_name", "")
    if not isinstance(signature, str):
        raise BadRequest("'signature_name' key must be a string value.")
    if signature not in ("", SIGNATURE_NAME):
        raise BadRequest(f'Serving signature name: "{signature}" not found in signature def')
    if "instances" in request and "inputs" in request:
        raise BadRequest("Not formatted correctly: expecting only one of 'inputs' or 'instances' keys to exist")
    if "instances" in request:
        return PredictRequest(_images(_unwrap_instances(request["instances"]), "instances"), columnar=False)
    if "inputs" in request:
        inputs = request["inputs"]
        if isinstance(inputs, dict):
            _check_input_names(inputs, "'inputs' object")
            inputs = inputs[INPUT_NAME]
        return PredictRequest(_images(inputs, "inputs"), columnar=True)
    raise BadRequest("Missing 'inputs' or 'instances' key")


def _check_input_names(item: dict, where: str) -> None:
    if set(item) != {INPUT_NAME}:
        raise BadRequest(f"{where} has keys {sorted(item)}: the signature's only input is '{INPUT_NAME}'")


def _unwrap_instances(instances) -> list:
    """The tensor values of row-format ``instances``: either all bare values or all ``{"images": value}``."""
    if not isinstance(instances, list):
        raise BadRequest("Expecting 'instances' to be a list/array")
    if not instances:
        raise BadRequest("No values in 'instances' array")
    named = isinstance(instances[0], dict)
    for k, item in enumerate(instances):
        if isinstance(item, dict) != named:
            kinds = ("object", "value/list") if named else ("value/list", "object")
            raise BadRequest(f"Expecting {kinds[0]} but got {kinds[1]} at item {k} of 'instances' list")
        if named:
            _check_input_names(item, f"item {k} of 'instances' list")
    return [item[INPUT_NAME] for item in instances] if named else instances


def _images(value, where: str) -> np.ndarray:
    """Nested lists of grey levels as uint8 digits ``[N, 28, 28]`` (a trailing channel axis of 1 is dropped)."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise BadRequest(f"{where}: not a dense tensor (nested lists of unequal lengths, or nested too deeply)"
                         ) from None
    shape = array.shape[:-1] if array.ndim == 4 and array.shape[-1] == 1 else array.shape
    if len(shape) != 3 or shape[1:] != DIGIT_SHAPE:
        raise BadRequest(f"{where}: input '{INPUT_NAME}' must have shape [N,28,28] or [N,28,28,1], "
                         f"got [{','.join(map(str, array.shape))}]")
    if array.dtype.kind not in "iu":  # floats, booleans, strings, objects and integers beyond 64 bits
        raise BadRequest(f"{where}: input '{INPUT_NAME}' is uint8: its values must be integers 0..255, "
                         f"got {_describe(array.dtype)}")
    low, high = array.min(), array.max()
    if low < 0 or high > 255:
        raise BadRequest(f"{where}: input '{INPUT_NAME}' is uint8: its values must lie in 0..255, "
                         f"got {low}..{high}")
    return array.reshape(-1, *DIGIT_SHAPE).astype(np.uint8)


def _describe(dtype: np.dtype) -> str:
    return {"f": "decimal numbers", "b": "booleans", "U": "strings"}.get(dtype.kind, "values of mixed types")


def _float32(value: np.float32) -> float:
    """``value`` rounded as TensorFlow Serving writes a float: 6 significant digits, or 9 when 6 do not round-trip.

    Python's JSON encoder then writes the shortest decimal of the result, which is that same text.
    """
    text = f"{value:g}"
    if np.float32(text) != value:
        text = f"{value:.9g}"
    return float(text)


def predict_response(probabilities: np.ndarray, columnar: bool) -> dict:
    """The response to a predict request, from float32 probabilities ``[N, 10]``."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    classes = probabilities.argmax(axis=1).tolist()
    rows = [[_float32(p) for p in row] for row in probabilities]
    if columnar:
        return {"outputs": {"classes": classes, "probabilities": rows}}
    return {"predictions": [{"classes": c, "probabilities": p} for c, p in zip(classes, rows)]}


def model_status(version: int) -> dict:
    """The ``GetModelStatusResponse`` of a model whose only version is loaded and available."""
    return {"model_version_status": [
        {"version": str(version), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}


def _tensor_info(name: str, dtype: str, dims: list[int] | None) -> dict:
    shape = ({"dim": [], "unknown_rank": True} if dims is None else
             {"dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False})
    return {"dtype": dtype, "tensor_shape": shape, "name": f"{name}:0"}


def model_metadata(version: int) -> dict:
    """The ``GetModelMetadataResponse``: the signature ``lenet-tf export`` writes (its input's rank is open)."""
    signature = {
        "inputs": {INPUT_NAME: _tensor_info(INPUT_NAME, "DT_UINT8", None)},
        "outputs": {"classes": _tensor_info("classes", "DT_INT64", [-1]),
                    "probabilities": _tensor_info("probabilities", "DT_FLOAT", [-1, 10])},
        "method_name": "tensorflow/serving/predict",
    }
    return {"model_spec": {"name": MODEL_NAME, "signature_name": "", "version": str(version)},
            "metadata": {"signature_def": {"signature_def": {SIGNATURE_NAME: signature}}}}
