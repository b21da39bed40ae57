"""TensorFlow Serving's REST protocol for the ``serving_default`` signature that ``lenet-tf export`` writes.

The signature (see :mod:`lenet_tf.serving.saved_model`) has one input, ``images`` (uint8 ``[N, 28, 28]`` or
``[N, 28, 28, 1]``, raw 0..255 grey levels, white ink on black), and the outputs ``classes`` (int64 ``[N]``) and
``probabilities`` (float32 ``[N, 10]``), and of a calibrated run ``digits`` and ``novelty`` (see
:func:`predict_response`). The functions here turn a predict request body into that input and the
model's probabilities into the response TensorFlow Serving would send, following its documented REST API
(https://www.tensorflow.org/tfx/serving/api_rest): row format ``{"instances": [...]}`` answers
``{"predictions": [{"classes": c, "probabilities": [...]}, ...]}``, columnar format ``{"inputs": ...}`` answers
``{"outputs": {"classes": [...], "probabilities": [[...]]}}``. A digit with no ink (a blank picture) gets class
``-1`` (:data:`NO_DIGIT`), its probabilities as the network computed them.

The second signature, ``predict_images``, takes the same input name with encoded PNG/JPEG pictures (DT_STRING
``[N]``, sent as ``{"b64": "..."}``) and returns the same outputs. No HTTP here: :mod:`lenet_tf.serving.server` routes.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import numpy as np

from lenet_tf.serving.json_tensors import (MAX_RANK, TensorError, check_containers, dense_leaves, integer_array,
                                           leading_shape)

MODEL_NAME = "lenet5"
SIGNATURE_NAME = "serving_default"
IMAGES_SIGNATURE_NAME = "predict_images"  # encoded PNG/JPEG bytes in, the same outputs
INPUT_NAME = "images"
DIGIT_SHAPE = (28, 28)
NO_DIGIT = -1  # the class answered for a digit with no ink (a blank picture)
MAX_INSTANCES = 8192  # digits or pictures per predict request
MAX_CONTAINERS = 1 << 20  # JSON lists and objects per request body (~60 MB once parsed): 1,290 digits as [N,28,28,1]
MAX_VERSION = 2 ** 63 - 1  # TF Serving's model versions are int64

try:  # orjson parses a digit's 784 numbers several times faster; json gives the reference messages
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson comes with the 'serve' extra
    _fast_loads = json.loads


class BadRequest(ValueError):
    """The request body does not fit the protocol or the signature (TensorFlow Serving answers 400)."""


@dataclass(frozen=True)
class PredictRequest:
    """The input of one predict call: ``images`` uint8 ``[N, 28, 28]`` (``serving_default``) or a list of N
    encoded pictures as bytes (``predict_images``); ``columnar`` when sent as ``inputs``."""

    images: np.ndarray | list[bytes]
    columnar: bool
    signature: str = SIGNATURE_NAME


def parse_json(body: bytes):
    """The JSON value of ``body``.

    Raises:
      BadRequest: not JSON (or nested too deeply).
    """
    try:
        return _fast_loads(body)
    except ValueError:
        pass  # Python's parser decides, with its messages (it also takes integers beyond 64 bits)
    try:
        return json.loads(body)
    except RecursionError:
        raise BadRequest("JSON Parse error: nested too deeply") from None
    except ValueError as err:  # also invalid UTF-8 and integers of more than 4300 digits
        raise BadRequest(f"JSON Parse error: {err}") from None


def parse_predict_request(body: bytes) -> PredictRequest:
    """Reads a predict request body (JSON) into uint8 digits, or into encoded pictures for ``predict_images``.

    The body's lists and objects are counted before it is parsed, and the tensor's shape, count and leaf types
    are checked before any array is made: no body within the upload limit makes this allocate more than a few
    times its size.

    Raises:
      BadRequest: not JSON, not an object, an unknown signature or input name, both or neither of ``instances``
        and ``inputs``, a shape other than [N,28,28] / [N,28,28,1], more than MAX_INSTANCES digits or pictures,
        more than MAX_CONTAINERS lists and objects, or values that are not integers in 0..255 (booleans
        included; ``predict_images``: values that are not ``{"b64": "..."}`` base64 strings).
    """
    try:
        check_containers(body, MAX_CONTAINERS)
    except TensorError as err:
        raise BadRequest(f"JSON Value: {err} (send digits as [N,28,28] rather than [N,28,28,1] in large batches)"
                         ) from None
    request = parse_json(body)
    if not isinstance(request, dict):
        raise BadRequest("JSON Value: the request must be a JSON object")
    signature = request.get("signature_name", "")
    if not isinstance(signature, str):
        raise BadRequest("'signature_name' key must be a string value.")
    if signature not in ("", SIGNATURE_NAME, IMAGES_SIGNATURE_NAME):
        raise BadRequest(f'Serving signature name: "{signature[:100]}" not found in signature def')
    encoded = signature == IMAGES_SIGNATURE_NAME
    if "instances" in request and "inputs" in request:
        raise BadRequest("Not formatted correctly: expecting only one of 'inputs' or 'instances' keys to exist")
    if "instances" in request:
        values, columnar, where = _unwrap_instances(request["instances"]), False, "instances"
    elif "inputs" in request:
        values, columnar, where = request["inputs"], True, "inputs"
        if isinstance(values, dict) and not _is_b64(values):
            _check_input_names(values, "'inputs' object")
            values = values[INPUT_NAME]
    else:
        raise BadRequest("Missing 'inputs' or 'instances' key")
    if encoded:
        return PredictRequest(_encoded_images(values, where), columnar, IMAGES_SIGNATURE_NAME)
    return PredictRequest(_images(values, where, b"true" in body or b"false" in body), columnar)


def _is_b64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _check_input_names(item: dict, where: str) -> None:
    if set(item) != {INPUT_NAME}:
        raise BadRequest(f"{where} has keys {sorted(item)[:10]}: the signature's only input is '{INPUT_NAME}'")


def _unwrap_instances(instances) -> list:
    """The tensor values of row-format ``instances``: either all bare values or all ``{"images": value}``
    (a ``{"b64": ...}`` object is a bare value)."""
    if not isinstance(instances, list):
        raise BadRequest("Expecting 'instances' to be a list/array")
    if not instances:
        raise BadRequest("No values in 'instances' array")
    named = isinstance(instances[0], dict) and not _is_b64(instances[0])
    for k, item in enumerate(instances):
        if (isinstance(item, dict) and not _is_b64(item)) != named:
            kinds = ("object", "value/list") if named else ("value/list", "object")
            raise BadRequest(f"Expecting {kinds[0]} but got {kinds[1]} at item {k} of 'instances' list")
        if named:
            _check_input_names(item, f"item {k} of 'instances' list")
    return [item[INPUT_NAME] for item in instances] if named else instances


def _encoded_images(values, where: str) -> list[bytes]:
    """The pictures of a ``predict_images`` request: a list of ``{"b64": "..."}``, decoded."""
    if not isinstance(values, list) or not values:
        raise BadRequest(f"{where}: input '{INPUT_NAME}' of {IMAGES_SIGNATURE_NAME} is a list of encoded "
                         'PNG/JPEG images, each {"b64": "<base64>"}')
    if len(values) > MAX_INSTANCES:
        raise BadRequest(f"{where}: at most {MAX_INSTANCES} pictures per request, got {len(values)}")
    pictures = []
    for k, value in enumerate(values):
        if not (_is_b64(value) and isinstance(value["b64"], str)):
            raise BadRequest(f"{where}: item {k} of input '{INPUT_NAME}' is not {{\"b64\": \"<base64>\"}} "
                             f"(the encoded PNG/JPEG bytes of {IMAGES_SIGNATURE_NAME})")
        try:
            pictures.append(base64.b64decode(value["b64"], validate=True))
        except ValueError:
            raise BadRequest(f"{where}: item {k} of input '{INPUT_NAME}': 'b64' is not valid base64") from None
    return pictures


def _images(value, where: str, may_hold_booleans: bool = True) -> np.ndarray:
    """Nested lists of grey levels as uint8 digits ``[N, 28, 28]`` (a trailing channel axis of 1 is dropped),
    checked for shape, count and types before any array is made (:mod:`lenet_tf.serving.json_tensors`);
    ``may_hold_booleans``: whether the body spelt ``true`` or ``false`` anywhere."""
    shape = leading_shape(value)
    if shape[1:] not in (DIGIT_SHAPE, (*DIGIT_SHAPE, 1)) or not shape[0]:
        try:  # the shape was read down the first items: ragged lists are not that shape, nor any
            dense_leaves(value, shape)
        except TensorError as err:
            raise BadRequest(f"{where}: input '{INPUT_NAME}' is {err}") from None
        raise BadRequest(f"{where}: input '{INPUT_NAME}' must have shape [N,28,28] or [N,28,28,1], "
                         f"got [{','.join(map(str, shape))}{',...' if len(shape) > MAX_RANK else ''}]")
    if shape[0] > MAX_INSTANCES:
        raise BadRequest(f"{where}: at most {MAX_INSTANCES} digits per request, got {shape[0]}")
    try:
        array = integer_array(value, shape, 0, 255, may_hold_booleans)
    except TensorError as err:
        detail = f"input '{INPUT_NAME}' is uint8: {err}" if "values" in str(err) else str(err)
        raise BadRequest(f"{where}: {detail}") from None
    return array.reshape(-1, *DIGIT_SHAPE).astype(np.uint8)


def _float32(value: np.float32) -> float:
    """``value`` rounded as TensorFlow Serving writes a float: 6 significant digits, or 9 when 6 do not round-trip.

    Python's JSON encoder then writes the shortest decimal of the result, which is that same text.
    """
    text = f"{value:g}"
    if np.float32(text) != value:
        text = f"{value:.9g}"
    return float(text)


def predict_response(probabilities: np.ndarray, columnar: bool, blank: np.ndarray | None = None,
                     novelty: np.ndarray | None = None, threshold: float | None = None) -> dict:
    """The response to a predict request, from float32 probabilities ``[N, 10]``; the class of a ``blank`` digit
    (bool ``[N]``: no ink, see :func:`lenet_tf.data.images.blank_digits`) is -1, as the exported graph says it.
    With a calibrated model's ``novelty`` (float32 ``[N]``) and ``threshold``, as a calibrated run's export: a
    ``novelty`` output and a ``digits`` output, the class or -1 for a non-digit (novelty above the threshold) or
    a blank."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    classes = probabilities.argmax(axis=1)
    classes = (classes if blank is None else np.where(blank, NO_DIGIT, classes)).tolist()
    rows = [[_float32(p) for p in row] for row in probabilities]
    outputs = {"classes": classes, "probabilities": rows}
    if novelty is not None:
        novelty = np.asarray(novelty, dtype=np.float32)
        outputs["digits"] = [NO_DIGIT if no else c for c, no in zip(classes, (novelty > threshold).tolist())]
        outputs["novelty"] = [_float32(value) for value in novelty]
    if columnar:
        return {"outputs": outputs}
    return {"predictions": [dict(zip(outputs, values)) for values in zip(*outputs.values())]}


def model_status(version: int) -> dict:
    """The ``GetModelStatusResponse`` of a model whose only version is loaded and available."""
    return {"model_version_status": [
        {"version": str(version), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}


def _tensor_info(name: str, dtype: str, dims: list[int] | None) -> dict:
    shape = ({"dim": [], "unknown_rank": True} if dims is None else
             {"dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False})
    return {"dtype": dtype, "tensor_shape": shape, "name": f"{name}:0"}


def model_metadata(version: int, calibrated: bool = False) -> dict:
    """The ``GetModelMetadataResponse``: the two signatures ``lenet-tf export`` writes (``serving_default``'s input
    rank is open; ``predict_images`` takes a vector of encoded pictures); a ``calibrated`` model's have the
    ``digits`` and ``novelty`` outputs too."""
    outputs = {"classes": _tensor_info("classes", "DT_INT64", [-1]),
               "probabilities": _tensor_info("probabilities", "DT_FLOAT", [-1, 10])}
    if calibrated:
        outputs.update(digits=_tensor_info("digits", "DT_INT64", [-1]),
                       novelty=_tensor_info("novelty", "DT_FLOAT", [-1]))
    signatures = {
        SIGNATURE_NAME: {"inputs": {INPUT_NAME: _tensor_info(INPUT_NAME, "DT_UINT8", None)}, "outputs": outputs,
                         "method_name": "tensorflow/serving/predict"},
        IMAGES_SIGNATURE_NAME: {"inputs": {INPUT_NAME: _tensor_info("encoded_images", "DT_STRING", [-1])},
                                "outputs": {name: {**info, "name": f"encoded_{info['name']}"}
                                            for name, info in outputs.items()},
                                "method_name": "tensorflow/serving/predict"},
    }
    return {"model_spec": {"name": MODEL_NAME, "signature_name": "", "version": str(version)},
            "metadata": {"signature_def": {"signature_def": signatures}}}


def version_number(name: str) -> int | None:
    """The version a folder's or a URL's ``name`` is, else ``None``: ASCII digits (``"²".isdigit()``, but no int)
    of a value in 0..MAX_VERSION, as TF Serving reads its version folders (it skips the others)."""
    significant = name.lstrip("0")
    if not (name.isascii() and name.isdigit()) or len(significant) > len(str(MAX_VERSION)):
        return None  # the length first: int() refuses more than 4300 digits
    number = int(significant or "0")
    return number if number <= MAX_VERSION else None


def error_key(path: str) -> str:
    """The key of a refusal's message: ``error`` under TF Serving's ``/v1/`` (as TF Serving answers), else
    ``detail`` (FastAPI's)."""
    return "error" if path.startswith("/v1/") else "detail"
