"""A local web demo and HTTP API: draw a digit in the browser, or POST an image, get the prediction.

Run it with ``lenet-tf serve``; the model is loaded once at start-up. Endpoints: ``GET /`` (the drawing page),
``POST /predict`` (an image upload or JSON ``{"pixels": [[...28 values...] x 28]}``), ``GET /health``,
TensorFlow Serving's REST API under ``/v1/models/lenet5`` (see :mod:`lenet_tf.serving.tf_serving`) and the framework's
``/docs`` (OpenAPI).

How a request goes: uvicorn reads its headers (``header_timeout``, :mod:`lenet_tf.serving.connections`); the whole
body is read with a size limit and a deadline (:mod:`lenet_tf.serving.bodies`); only then the request takes a place
among the ``max_batch_size * max_enqueued_batches`` admitted at once (one more gets 503 with ``Retry-After``). Uploads
are decoded and prepared in a thread pool (TF Serving bodies of a few digits are parsed on the event loop: a tenth
of a millisecond); the digits then join the micro-batching queue (:mod:`lenet_tf.serving.batching`), whose one
thread runs the model on the requests queued together; a request not answered within ``request_timeout`` gets 504.

The two predict routes (``/predict`` and TF Serving's ``:predict``) are answered by plain ASGI code in front of
FastAPI, which serves everything else: FastAPI's per-request machinery alone would cost more than the model does.
They answer other methods 405 with ``Allow``, and :mod:`lenet_tf.serving.openapi_doc` describes them in
``/openapi.json``. Every refusal is 4xx JSON; a response sent before its body was read closes the connection
(:func:`lenet_tf.serving.connections.close_unless_body_read`); pictures are prepared within ``prepare_timeout``;
``/health`` answers 503 once the batching thread has died.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from importlib.util import find_spec
from pathlib import Path
from typing import Callable

import numpy as np
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from starlette.exceptions import HTTPException

from lenet_tf.core.errors import CheckpointError, ConfigError
from lenet_tf.data.images import BLANK_REASON, blank_digits
from lenet_tf.serving import openapi_doc, tf_serving
from lenet_tf.serving.batching import Batcher, Classifier, QueueFull
from lenet_tf.serving.bodies import (MAX_UPLOAD_BYTES, BodyLimits, ClientGone, RequestError, header,  # noqa: F401
                                     media_type, read_body)
from lenet_tf.serving.connections import close_unless_body_read
from lenet_tf.serving.options import ServerOptions
from lenet_tf.serving.predict import DigitResult, rejection_reason
from lenet_tf.serving.uploads import image_digit, image_upload, multipart_file, pixels_digit

try:
    from orjson import dumps as _dumps
except ImportError:  # pragma: no cover - orjson comes with the 'serve' extra
    import json

    def _dumps(value) -> bytes:
        return json.dumps(value).encode()

INLINE_PARSE_BYTES = 16 * 1024  # TF Serving bodies up to this (5 digits) are parsed on the event loop: < 0.3 ms
INLINE_RENDER_DIGITS = 16  # answers of up to this many digits are written on the event loop
_log = logging.getLogger("lenet_tf.serving")
_TF_PREDICT = re.compile(r"/v1/models/([^/]+?)(?:/versions/([^/]+))?:predict")
_TF_STATUS = re.compile(r"models/[^/:]+(?:/versions/[^/:]+)?(?:/metadata)?")  # the GET routes, below /v1/


@dataclass(frozen=True)
class ServedModel:
    """A loaded classifier and what ``/health`` and the TF Serving API say about it (no file paths)."""

    classify: Classifier  # uint8 [N, 28, 28] -> float32 [N, 10], or [N, 11] with the novelty score last
    source: str  # "checkpoint" or "saved_model"
    epoch: int | None = None  # the training epoch, when known
    version: int = 1  # the TF Serving version number
    threshold: float | None = None  # with rejection statistics: the novelty above which it is "not a digit"

    @staticmethod
    def joined(probabilities: np.ndarray, novelty: np.ndarray) -> np.ndarray:
        """A calibrated classifier's outputs: probabilities ``[N, 10]`` and novelty ``[N]`` as one array
        ``[N, 11]``, so that the batcher slices both alike (:meth:`split` undoes it)."""
        return np.concatenate([probabilities, novelty[:, None]], axis=1)

    def split(self, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The classifier's outputs ``[N, 10 or 11]`` as probabilities ``[N, 10]`` and novelty scores ``[N]``
        (``None`` without rejection statistics)."""
        if self.threshold is None:
            return outputs, None
        return outputs[:, :-1], outputs[:, -1]

    def describe(self) -> dict:
        """The public description: model name, version, source and epoch."""
        return {"model": tf_serving.MODEL_NAME, "version": self.version, "source": self.source, "epoch": self.epoch}


def checkpoint_model(checkpoint_dir: str | os.PathLike, tta: bool = False, precision: str | None = None
                     ) -> ServedModel:
    """A training folder's best checkpoint (an ensemble's members averaged; with ``tta``, over a few affine
    variants of each digit too), served as version 1."""
    from lenet_tf.trained import TrainedModel

    model = TrainedModel(checkpoint_dir, precision=precision, tta=tta)
    if model.rejection is None:
        return ServedModel(lambda digits: model.predict(digits).probabilities, "checkpoint", epoch=model.epoch)

    def classify(digits: np.ndarray) -> np.ndarray:
        predictions = model.predict(digits)
        return ServedModel.joined(predictions.probabilities, predictions.novelty)
    return ServedModel(classify, "checkpoint", epoch=model.epoch, threshold=model.rejection.threshold)


def saved_model_dir(export_dir: str | os.PathLike) -> tuple[Path, int]:
    """The SavedModel folder to load and its version, given a SavedModel or a TF Serving base folder.

    As in TensorFlow Serving, a folder whose sub-folders are numbers (``lenet5/1``, ``lenet5/2``) serves the highest
    of them as that version; a SavedModel folder whose own name is a number is that version, any other one is 1.
    """
    path = Path(export_dir)
    if not (path / "saved_model.pb").exists() and path.is_dir():
        versions = [(version, p) for p in path.iterdir()
                    if (version := tf_serving.version_number(p.name)) is not None and (p / "saved_model.pb").exists()]
        if versions:
            version, folder = max(versions)
            return folder, version
    own = tf_serving.version_number(path.name)
    return path, 1 if own is None else own


def saved_model_model(export_dir: str | os.PathLike, precision: str | None = None) -> ServedModel:
    """A SavedModel written by ``lenet-tf export`` (or a TF Serving base folder of them), in bf16 where
    :func:`lenet_tf.core.precision.choose` says so for ``precision``."""
    from lenet_tf.core.checkpoint_paths import describe_tf_error
    from lenet_tf.core.tf import tf
    from lenet_tf.core.precision import choose

    path, version = saved_model_dir(export_dir)
    if choose(precision).used == "bf16":  # the exported graph is float32; this process's grappler rewrites it
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    try:
        signature = tf.saved_model.load(str(path)).signatures[tf_serving.SIGNATURE_NAME]
    except tf.errors.OpError as err:  # its variables are missing or truncated
        raise CheckpointError(f"{export_dir}: not a usable lenet_tf SavedModel (cannot restore its variables: "
                              f"{describe_tf_error(err)})") from None
    except (OSError, ValueError, KeyError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{export_dir}: not a usable lenet_tf SavedModel ({reason})") from None
    from lenet_tf.serving.saved_model import exported_threshold

    threshold = exported_threshold(path) if "novelty" in signature.structured_outputs else None
    if threshold is None:
        return ServedModel(lambda digits: signature(images=tf.constant(digits))["probabilities"].numpy(),
                           "saved_model", version=version)

    def classify(digits: np.ndarray) -> np.ndarray:
        outputs = signature(images=tf.constant(digits))
        return ServedModel.joined(outputs["probabilities"].numpy(), outputs["novelty"].numpy())
    return ServedModel(classify, "saved_model", version=version, threshold=threshold)


def load_model(checkpoint: str | os.PathLike | None, saved_model: str | os.PathLike | None,
               tta: bool = False, precision: str | None = None) -> ServedModel:
    """The SavedModel when given, else the checkpoint (``tta``: checkpoints only), in ``precision``."""
    if saved_model and tta:
        raise ConfigError("--tta needs --checkpoint: a SavedModel serves the graph it was exported with")
    if saved_model:
        return saved_model_model(saved_model, precision)
    return checkpoint_model(checkpoint, tta, precision)




class Service:
    """What the predict routes share: admission, the preparation thread pool and the micro-batcher."""

    def __init__(self, model: ServedModel, options: ServerOptions) -> None:
        self.model, self.options = model, options
        self.batcher = Batcher(model.classify, options.batching)
        self.pool = ThreadPoolExecutor(options.prepare_threads, thread_name_prefix="lenet-prepare")
        self.capacity, self.admitted = options.batching.max_enqueued_digits, 0

    @contextmanager
    def admit(self):
        """Holds a place for one request whose body has arrived, or refuses it with 503 when all are taken."""
        if self.admitted >= self.capacity:
            raise RequestError(503, f"server busy: {self.capacity} requests already in progress, retry shortly")
        self.admitted += 1  # only the event loop's thread touches the counter
        try:
            yield
        finally:
            self.admitted -= 1

    async def prepare(self, work: Callable, *args):
        """``work(*args)`` in the preparation thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, work, *args)

    async def prepare_pictures(self, work: Callable[..., object], *args):
        """``work(deadline, *args)`` in the preparation thread pool, answered within ``prepare_timeout`` seconds:
        503 when the pool did not even start it by then (busy), 422 when the pictures themselves took longer.
        ``deadline`` (``time.monotonic()`` seconds) lets ``work`` stop between pictures; a picture being decoded
        when the answer goes finishes in the background (its pixels are bounded by MAX_IMAGE_PIXELS)."""
        limit = self.options.prepare_timeout
        deadline, started = time.monotonic() + limit, []

        def timed():
            started.append(True)
            return work(deadline, *args)

        try:
            return await asyncio.wait_for(self.prepare(timed), limit)
        except TimeoutError:
            if not started:
                raise RequestError(503, f"server busy: no thread free to read the pictures within {limit:g} s, "
                                        "retry shortly") from None
            raise RequestError(422, f"the pictures took over {limit:g} s to prepare") from None

    def health(self) -> tuple[int, dict]:
        """``/health``'s status code and answer: 503 when the model's batching thread has died."""
        if self.batcher.alive():
            return 200, {"status": "ok", **self.model.describe()}
        return 503, {"status": "unavailable", "reason": "the model's batching thread has stopped",
                     **self.model.describe()}

    async def classify(self, digits: np.ndarray) -> np.ndarray:
        """Probabilities float32 ``[n, 10]`` of uint8 digits ``[n, 28, 28]``, computed in a shared batch."""
        try:
            future = self.batcher.submit(digits)
        except QueueFull as err:
            raise RequestError(503, f"server busy: {err}, retry shortly") from None
        try:
            async with asyncio.timeout(self.options.request_timeout):
                return await future
        except QueueFull as err:  # the batching thread died with these digits queued
            raise RequestError(503, f"server unavailable: {err}") from None
        except TimeoutError:
            raise RequestError(504, f"no answer within {self.options.request_timeout:g} s: the model is "
                                    "overloaded") from None
        except Exception as err:  # the model itself failed on these digits (others in the batch are unaffected)
            raise RequestError(500, f"the model failed: {type(err).__name__}: {err}") from None

    def check_servable(self, name: str, version: str | None) -> None:
        """Raises 400 for a version that is not a version number (:func:`tf_serving.version_number`, the rule of
        version folders too), 404 for another model or version (TF Serving's words)."""
        number = None if version is None else tf_serving.version_number(version)
        if version is not None and number is None:
            raise RequestError(400, f"Malformed request: version '{version[:40]}' is not a number in "
                                    f"0..{tf_serving.MAX_VERSION}")
        if name != tf_serving.MODEL_NAME or (number is not None and number != self.model.version):
            wanted = f"Latest({name[:100]})" if version is None else f"Specific({name[:100]}, {version})"
            raise RequestError(404, f"Servable not found for request: {wanted}")


def _upload_digit(deadline: float, scope: dict, body: bytes) -> tuple[np.ndarray, str | None]:
    """The digit of a /predict body (JSON pixels, a multipart form's ``file``, or the raw image; all zeros when
    blank) and the picture's note (a multi-frame file's), else ``None`` (one picture: ``deadline`` is not needed
    between pictures)."""
    kind = media_type(scope)
    if kind == "application/json":
        return pixels_digit(body), None
    if kind == "multipart/form-data":
        body = multipart_file(header(scope, b"content-type"), body)
    return image_upload(body)


def _image_digits(deadline: float, pictures: list[bytes]) -> np.ndarray:
    """The encoded pictures of a ``predict_images`` request as uint8 digits [N, 28, 28] (TF Serving's 400 for any
    that cannot be read); stops between pictures once ``deadline`` (``time.monotonic()``) has passed."""
    digits = []
    for k, picture in enumerate(pictures):
        if time.monotonic() > deadline:
            raise RequestError(422, f"the pictures took too long to prepare: {k} of {len(pictures)} done")
        try:
            digits.append(image_digit(picture, f"image {k}"))
        except RequestError as err:
            raise RequestError(400, err.message) from None
    return np.stack(digits)


def _parse_tf_serving(body: bytes) -> tf_serving.PredictRequest:
    try:
        return tf_serving.parse_predict_request(body)
    except tf_serving.BadRequest as err:
        raise RequestError(400, str(err)) from None


def _render_tf_serving(probabilities: np.ndarray, blank: np.ndarray, columnar: bool,
                       novelty: np.ndarray | None = None, threshold: float | None = None) -> bytes:
    return _dumps(tf_serving.predict_response(probabilities, columnar, blank, novelty, threshold))


def _error_body(key: str, message: str) -> bytes:
    """A refusal's JSON body ``{key: message}``, whatever the message echoes of the request: a lone surrogate (a
    JSON string may spell ``"\\ud800"``; UTF-8 cannot encode it) is written as the six characters ``\\ud800``."""
    return _dumps({key: message.encode("utf-8", "backslashreplace").decode("utf-8")})


def _error_response(path: str, message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    """FastAPI's answer refusing a request for ``path``: :func:`_error_body` under its :func:`error_key`."""
    return Response(_error_body(tf_serving.error_key(path), message), status, headers, "application/json")


async def _send_json(send, status: int, body: bytes, close: bool = False,
                     extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    if close:  # rather than read and discard the rest of a refused upload
        headers.append((b"connection", b"close"))
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _headers_only(send):
    """``send``, with every response body sent empty (a HEAD request's answer)."""
    async def without_body(message: dict) -> None:
        await send({**message, "body": b""} if message["type"] == "http.response.body" else message)
    return without_body


class ServingApp:
    """The ASGI application: the predict routes answered directly, everything else by FastAPI (:attr:`api`)."""

    def __init__(self, model: ServedModel, options: ServerOptions = ServerOptions()) -> None:
        self.service = Service(model, options)
        self.api = _fastapi_app(self.service)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.api(scope, receive, send)
        receive, send = close_unless_body_read(scope, receive, send)
        path = scope["path"]
        if path == "/predict":
            handler, args = self.predict, ()
        elif match := _TF_PREDICT.fullmatch(path):
            handler, args = self.tf_predict, match.groups()
        elif scope["method"] == "HEAD":  # wherever GET is answered (RFC 9110): the GET's status and headers only
            return await self.api({**scope, "method": "GET"}, receive, _headers_only(send))
        else:
            return await self.api(scope, receive, send)
        if scope["method"] != "POST":
            return await _send_json(send, 405, _error_body(tf_serving.error_key(path), "Method Not Allowed"),
                                    extra=((b"allow", b"POST"),))
        await self._answer(scope, receive, send, handler, tf_serving.error_key(path), *args)

    async def _answer(self, scope, receive, send, handler, error_key: str, *args) -> None:
        try:
            body = await handler(scope, receive, *args)
        except RequestError as err:
            await _send_json(send, err.status, _error_body(error_key, err.message), close=err.close)
        except ClientGone:
            return  # nobody to answer, nothing to log
        except Exception as err:  # noqa: BLE001 - a bug of ours: one line in the log, JSON for the client
            _log.error("%s %s failed: %s: %s", scope["method"], scope["path"][:200], type(err).__name__, err)
            await _send_json(send, 500, _error_body(error_key, f"internal error ({type(err).__name__})"))
        else:
            await _send_json(send, 200, body)

    async def predict(self, scope, receive) -> bytes:
        """``POST /predict``: one digit as an image, a multipart upload (field ``file``) or JSON pixels."""
        service = self.service
        body = await read_body(scope, receive, service.options.body)
        with service.admit():
            digit, note = await service.prepare_pictures(_upload_digit, scope, body)
            outputs = await service.classify(digit[np.newaxis])
        probabilities, novelty = service.model.split(outputs)
        blank = bool(blank_digits(digit[np.newaxis])[0])
        reason = BLANK_REASON if blank else (
            None if novelty is None else rejection_reason(float(novelty[0]), service.model.threshold))
        result = DigitResult.of(probabilities[0], reason)
        return _dumps({**vars(result), "input": digit.tolist(), **({"note": note} if note else {})})

    async def tf_predict(self, scope, receive, name: str, version: str | None) -> bytes:
        """TF Serving's predict, on ``serving_default`` (uint8 digits) or ``predict_images`` (encoded pictures)."""
        service = self.service
        service.check_servable(name, version)
        body = await read_body(scope, receive, service.options.body)
        with service.admit():
            if len(body) <= INLINE_PARSE_BYTES:
                request = _parse_tf_serving(body)
            else:
                request = await service.prepare(_parse_tf_serving, body)
            digits = request.images
            if request.signature == tf_serving.IMAGES_SIGNATURE_NAME:
                digits = await service.prepare_pictures(_image_digits, digits)
            probabilities, novelty = service.model.split(await service.classify(digits))
        blank = blank_digits(digits)
        threshold = service.model.threshold
        if len(probabilities) <= INLINE_RENDER_DIGITS:
            return _render_tf_serving(probabilities, blank, request.columnar, novelty, threshold)
        return await service.prepare(_render_tf_serving, probabilities, blank, request.columnar, novelty, threshold)


def _fastapi_app(service: Service) -> FastAPI:
    """The page, /health, TF Serving's status and metadata, and the 4xx answers to unknown TF Serving routes."""
    model = service.model
    app = FastAPI(title="lenet_tf", description="LeNet-5 handwritten digit recognition", version="1")
    page = resources.files("lenet_tf.serving").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.exception_handler(RequestError)
    async def refuse(request: Request, err: RequestError) -> Response:
        return _error_response(request.url.path, err.message, err.status)

    @app.exception_handler(HTTPException)  # FastAPI's own refusals (405 for a method a route does not take)
    async def refuse_http(request: Request, err: HTTPException) -> Response:
        return _error_response(request.url.path, str(err.detail), err.status_code, err.headers)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    @app.get("/health", responses=openapi_doc.HEALTH_RESPONSES)
    async def health() -> JSONResponse:
        """Liveness (503 once the model's batching thread has died) and which model is loaded (name, version,
        source, epoch)."""
        status, answer = service.health()
        return JSONResponse(answer, status)

    tf_doc = {"tags": ["TensorFlow Serving"], "responses": openapi_doc.TF_SERVING_RESPONSES}

    @app.get("/v1/models/{name}", **tf_doc)
    async def tf_serving_status(name: str) -> dict:
        """TF Serving model status: the loaded version, AVAILABLE."""
        service.check_servable(name, None)
        return tf_serving.model_status(model.version)

    @app.get("/v1/models/{name}/versions/{version}", **tf_doc)
    async def tf_serving_version_status(name: str, version: str) -> dict:
        """TF Serving model status of one version: AVAILABLE when it is the loaded one."""
        service.check_servable(name, version)
        return tf_serving.model_status(model.version)

    @app.get("/v1/models/{name}/metadata", **tf_doc)
    async def tf_serving_metadata(name: str) -> dict:
        """TF Serving model metadata: the ``serving_default`` and ``predict_images`` signatures."""
        service.check_servable(name, None)
        return tf_serving.model_metadata(model.version, model.threshold is not None)

    @app.get("/v1/models/{name}/versions/{version}/metadata", **tf_doc)
    async def tf_serving_version_metadata(name: str, version: str) -> dict:
        """TF Serving model metadata of one version (the loaded one)."""
        service.check_servable(name, version)
        return tf_serving.model_metadata(model.version, model.threshold is not None)

    @app.api_route("/v1/{path:path}", methods=["GET", "POST"], include_in_schema=False)
    async def tf_serving_unknown(path: str, request: Request) -> Response:
        if _TF_STATUS.fullmatch(path):  # a POST to the status or metadata of a model: those are GET only
            return _error_response(request.url.path, "Method Not Allowed", 405, {"Allow": "GET"})
        raise RequestError(400, f"Malformed request: {request.method} /v1/{path[:200]} (this server implements "
                                "status, metadata and :predict of model lenet5)")

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            openapi_doc.complete(schema, service.options.body.max_bytes, model.version)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app


def create_app(model: ServedModel, options: ServerOptions = ServerOptions()) -> ServingApp:
    """The ASGI application around an already loaded ``model`` (see the module docstring for the limits)."""
    return ServingApp(model, options)


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: any free port), not yet listening.

    Raises:
      ConfigError: the address does not resolve, or the port is taken or not allowed.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as err:
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restarted server gets its port back at once
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return sock


def serve(checkpoint: str | None, saved_model: str | None, host: str, port: int,
          ready: Callable[[str], None] = lambda url: None, tta: bool = False,
          options: ServerOptions = ServerOptions(), precision: str | None = None) -> None:
    """Binds ``host:port``, loads the model once (in ``precision``: :func:`lenet_tf.core.precision.choose`), then
    serves until interrupted.

    ``ready(url)`` is called once the model is loaded and the server accepts connections. A taken port or a
    model that fails to load raises a :class:`LeNetError` before that.
    """
    import uvicorn

    from lenet_tf.serving.connections import CLIENT_FAULT_FILTER, header_deadline_protocol

    sock = listening_socket(host, port)  # first: a taken port fails before seconds of model loading
    try:
        model = load_model(checkpoint, saved_model, tta, precision)
        bound = sock.getsockname()[1]
        url = f"http://{f'[{host}]' if ':' in host else host}:{bound}/"

        class Server(uvicorn.Server):
            async def startup(self, sockets=None) -> None:
                await super().startup(sockets)
                if self.started:
                    ready(url)

        # PIL warns about pictures it still opens; the server refuses those (413) under its lower pixel limit.
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        # python_multipart logs why it refuses a malformed form; that reason is the client's 400 answer instead.
        logging.getLogger("python_multipart").setLevel(logging.CRITICAL)
        config = uvicorn.Config(
            create_app(model, options), http=header_deadline_protocol(options.header_timeout),
            loop="uvloop" if find_spec("uvloop") else "asyncio", lifespan="off", log_level="warning",
            timeout_keep_alive=options.keep_alive_timeout, limit_concurrency=options.max_connections)
        logging.getLogger("uvicorn.error").addFilter(CLIENT_FAULT_FILTER)  # after Config set uvicorn's logging up
        Server(config).run(sockets=[sock])
    finally:
        sock.close()
