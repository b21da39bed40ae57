"""The OpenAPI description of the routes :class:`lenet_tf.serving.server.ServingApp` answers itself, and of every
status code the server may return, so that ``/openapi.json`` is a contract a client generator or schemathesis can
hold the server to (``tests/serving/test_openapi.py`` runs ``schemathesis --checks all`` against a live server).
"""

from __future__ import annotations

from lenet_tf.serving.tf_serving import (IMAGES_SIGNATURE_NAME, MAX_INSTANCES, MAX_VERSION, MODEL_NAME,
                                         SIGNATURE_NAME, error_key)

_PICTURE_TYPES = ("image/png", "image/jpeg", "image/bmp", "image/gif", "image/tiff", "image/webp",
                  "application/octet-stream")


def _error(key: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {
        "type": "object", "required": [key], "properties": {key: {"type": "string"}}}}}}


def _errors(key: str, statuses: dict[int, str]) -> dict:
    return {str(status): _error(key, text) for status, text in statuses.items()}


_BODY_ERRORS = {400: "malformed request (bad JSON, multipart form or Content-Length; TF Serving: a bad tensor or a "
                     "picture that cannot be read)",
                405: "a method other than POST (the `Allow` header says POST)",
                408: "the body did not arrive in time (the connection is closed)",
                413: "the body or the picture is too large (bytes or pixels)",
                503: "server busy (`Retry-After`), or the model's thread has stopped",
                504: "the model did not answer within the request timeout"}
TF_SERVING_RESPONSES = _errors("error", {400: "malformed request (e.g. a version that is not a number)",
                                         404: "no such model or version"})
HEALTH_RESPONSES = {"503": {"description": "the model's batching thread has stopped",
                            "content": {"application/json": {"schema": {"type": "object"}}}}}

_PROBABILITIES = {"type": "array", "items": {"type": "number"}, "minItems": 10, "maxItems": 10}
_DIGIT_RESULT = {"type": "object", "required": ["digit", "probability", "top3", "probabilities", "reason", "input"],
                 "properties": {
                     "digit": {"type": ["integer", "null"], "description": "null when the picture holds no digit, or is "
                                                                  "not a digit (a run calibrated by `lenet-tf calibrate`)"},
                     "probability": {"type": ["number", "null"]},
                     "top3": {"type": "array", "items": {"type": "array"}},
                     "probabilities": _PROBABILITIES,
                     "reason": {"type": ["string", "null"], "description": "why there is no digit, else null"},
                     "input": {"type": "array", "description": "the 28x28 grey levels the network saw"},
                     "note": {"type": "string", "description": "what of the file was not read"}}}
_GREY = {"type": "integer", "minimum": 0, "maximum": 255}
_DIGIT = {"type": "array", "minItems": 28, "maxItems": 28,
          "items": {"type": "array", "minItems": 28, "maxItems": 28, "items": _GREY}}
_PIXELS = {"type": "array", "minItems": 28, "maxItems": 28, "items": {
    "type": "array", "minItems": 28, "maxItems": 28, "items": {"type": "number", "minimum": 0, "maximum": 255}}}
_B64 = {"type": "object", "required": ["b64"], "additionalProperties": False,
        "properties": {"b64": {"type": "string", "format": "byte"}}}
_TF_REQUEST = {
    "type": "object",
    "description": f'Row format `{{"instances": [digit, ...]}}` or columnar `{{"inputs": [digit, ...]}}` of uint8 '
                   f"28x28 digits (or [N,28,28,1]), at most {MAX_INSTANCES}; with "
                   f'`"signature_name": "{IMAGES_SIGNATURE_NAME}"`, encoded PNG/JPEG/BMP/GIF/TIFF/WebP pictures '
                   '`{"b64": "..."}` instead.',
    "properties": {"signature_name": {"type": "string", "enum": ["", SIGNATURE_NAME, IMAGES_SIGNATURE_NAME]},
                   "instances": {"type": "array", "minItems": 1, "maxItems": MAX_INSTANCES,
                                 "items": {"anyOf": [_DIGIT, _B64]}},
                   "inputs": {"type": "array", "minItems": 1, "maxItems": MAX_INSTANCES,
                              "items": {"anyOf": [_DIGIT, _B64]}}},
    "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}]}
_TF_RESPONSE = {"type": "object", "description": "row format answers `predictions`, columnar `outputs`: `classes` "
                                                 "and `probabilities`; the class of a digit with no ink is -1; a "
                                                 "calibrated run adds `digits`, -1 also for what is not a digit, "
                                                 "and `novelty`, the score above its threshold for those",
                "properties": {"predictions": {"type": "array"}, "outputs": {"type": "object"}}}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": [MODEL_NAME]},
         "description": f"the model's name: `{MODEL_NAME}` (any other gets 404)"}


def _version(version: int) -> dict:
    return {"name": "version", "in": "path", "required": True, "schema": {"type": "string", "enum": [str(version)]},
            "description": f"the served version, `{version}` (another number in 0..{MAX_VERSION} gets 404, "
                           "anything else 400)"}


def _json_ok(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _tf_predict(summary: str, parameters: list[dict]) -> dict:
    return {"post": {
        "tags": ["TensorFlow Serving"], "summary": summary, "parameters": parameters,
        "requestBody": {"required": True, "content": {"application/json": {"schema": _TF_REQUEST}}},
        "responses": {"200": _json_ok("predictions (row format) or outputs (columnar)", _TF_RESPONSE),
                      **_errors("error", {**_BODY_ERRORS, 404: "no such model or version",
                                          422: "the pictures took too long to prepare"})}}}


def predict_routes(max_bytes: int, version: int) -> dict:
    """The ``paths`` entries of ``/predict`` and TF Serving's two ``:predict`` routes (bodies up to ``max_bytes``;
    the model's ``version``)."""
    picture = {"schema": {"type": "string", "format": "binary"}}
    upload = {
        "description": f"A picture (up to {max_bytes:,} bytes), a multipart form whose field `file` is one, or "
                       'JSON `{"pixels": [[28 grey levels 0..255] x 28]}` (white ink on black or the reverse).',
        "required": True,
        "content": {**{kind: picture for kind in _PICTURE_TYPES},
                    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                        "file": {"type": "string", "format": "binary"}}}},
                    "application/json": {"schema": {"type": "object", "required": ["pixels"],
                                                    "properties": {"pixels": _PIXELS}}}}}
    return {
        "/predict": {"post": {
            "summary": "Classify one digit",
            "description": "Answers the digit (null with a `reason` for a blank picture, or for one that is not a "
                           "digit when the run was calibrated with `lenet-tf calibrate`), its probability, the top "
                           "3, all 10 probabilities and the 28x28 input the network saw.",
            "requestBody": upload,
            "responses": {"200": _json_ok("the prediction", _DIGIT_RESULT),
                          **_errors("detail", {**_BODY_ERRORS, 415: "not a PNG/JPEG/BMP/GIF/TIFF/WebP picture "
                                                                    "that can be read",
                                               422: "JSON that is not 28x28 pixels, or pictures too slow to "
                                                    "prepare"})}}},
        "/v1/models/{name}:predict": _tf_predict("TF Serving predict", [_NAME]),
        "/v1/models/{name}/versions/{version}:predict": _tf_predict("TF Serving predict on a given version",
                                                                    [_NAME, _version(version)]),
    }


def complete(schema: dict, max_bytes: int, version: int) -> None:
    """Adds the predict routes to FastAPI's document ``schema`` and the statuses every route may answer: 405
    for another method (with ``Allow``); the ``name`` and ``version`` path parameters name the served model."""
    schema["paths"].update(predict_routes(max_bytes, version))
    for route, path in schema["paths"].items():
        for operation in path.values():
            for parameter in operation.get("parameters", []):  # FastAPI's say "any string"
                parameter.update({"name": _NAME, "version": _version(version)}.get(parameter["name"], {}))
            operation["responses"].setdefault("405", _error(error_key(route), "another method (the `Allow` "
                                                                              "header names those this path takes)"))
