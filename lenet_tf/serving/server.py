"""A local web demo and HTTP API: draw a digit in the browser, or POST an image, get the prediction.

Run it with ``lenet-tf serve``; the model is loaded once at start-up. Endpoints: ``GET /`` (the drawing page),
``POST /predict`` (an image upload or JSON ``{"pixels": [[...28 values...] x 28]}``), ``GET /health``,
TensorFlow Serving's REST API under ``/v1/models/lenet5`` (see :mod:`lenet_tf.serving.tf_serving`) and the framework's
``/docs`` (OpenAPI).

Every request body is read with a size limit enforced while it streams in (chunked uploads included). Decoding,
preprocessing and the TensorFlow session run in worker threads, never on the event loop: at most ``workers``
requests at once, up to ``queue`` more wait for a worker, and beyond that the server answers 503 at once.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import warnings
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool

from lenet_tf.serving import tf_serving
from lenet_tf.core.errors import CheckpointError, ConfigError, LeNetError
from lenet_tf.serving.predict import top_k
from lenet_tf.data.images import ImageTooLarge, Picture, decode_picture, to_mnist

MAX_UPLOAD_BYTES = 2 * 1024 * 1024  # also bounds a TF Serving request: about 1,000 digits of JSON
WORKERS = 2  # requests decoded and classified at once (threads); more would only share the same cores
QUEUE = 16  # requests waiting for a worker; one more gets 503 (each holds at most MAX_UPLOAD_BYTES)
Classifier = Callable[[np.ndarray], np.ndarray]  # uint8 digits [N, 28, 28] -> float32 probabilities [N, 10]


@dataclass(frozen=True)
class ServedModel:
    """A loaded classifier and what ``/health`` and the TF Serving API say about it (no file paths)."""

    classify: Classifier
    source: str  # "checkpoint" or "saved_model"
    epoch: int | None = None  # the training epoch, when known
    version: int = 1  # the TF Serving version number

    def describe(self) -> dict:
        """The public description: model name, version, source and epoch."""
        return {"model": tf_serving.MODEL_NAME, "version": self.version, "source": self.source, "epoch": self.epoch}


def checkpoint_model(checkpoint_dir: str | os.PathLike, tta: bool = False) -> ServedModel:
    """A training folder's best checkpoint (an ensemble's members averaged; with ``tta``, over a few affine
    variants of each digit too), served as version 1."""
    from lenet_tf.trained import TrainedModel

    model = TrainedModel(checkpoint_dir, tta=tta)
    return ServedModel(lambda digits: model.predict(digits).probabilities, "checkpoint", epoch=model.epoch)


def saved_model_dir(export_dir: str | os.PathLike) -> tuple[Path, int]:
    """The SavedModel folder to load and its version, given a SavedModel or a TF Serving base folder.

    As in TensorFlow Serving, a folder whose sub-folders are numbers (``lenet5/1``, ``lenet5/2``) serves the highest
    of them as that version; a SavedModel folder whose own name is a number is that version, any other one is 1.
    """
    path = Path(export_dir)
    if not (path / "saved_model.pb").exists() and path.is_dir():
        versions = [int(p.name) for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").exists()]
        if versions:
            return path / str(max(versions)), max(versions)
    return path, int(path.name) if path.name.isdigit() else 1


def saved_model_model(export_dir: str | os.PathLike) -> ServedModel:
    """A SavedModel written by ``lenet-tf export`` (or a TF Serving base folder of them), in bf16 where
    :func:`lenet_tf.core.precision.choose` says so."""
    from lenet_tf.core.tf import tf
    from lenet_tf.core.precision import choose

    path, version = saved_model_dir(export_dir)
    if choose().used == "bf16":  # the exported graph is float32; this process's grappler rewrites it
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    try:
        signature = tf.saved_model.load(str(path)).signatures[tf_serving.SIGNATURE_NAME]
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{export_dir}: not a lenet_tf SavedModel ({err})") from None
    return ServedModel(lambda digits: signature(images=tf.constant(digits))["probabilities"].numpy(),
                       "saved_model", version=version)


def load_model(checkpoint: str | os.PathLike | None, saved_model: str | os.PathLike | None,
               tta: bool = False) -> ServedModel:
    """The SavedModel when given, else the checkpoint (``tta``: checkpoints only)."""
    if saved_model and tta:
        raise ConfigError("--tta needs --checkpoint: a SavedModel serves the graph it was exported with")
    return saved_model_model(saved_model) if saved_model else checkpoint_model(checkpoint, tta)


class RequestError(Exception):
    """A request the server refuses: its HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


async def read_body(request: Request, limit: int = MAX_UPLOAD_BYTES) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise RequestError(400, f"bad Content-Length {declared!r}")
    if declared is not None and int(declared) > limit:
        raise RequestError(413, f"upload too large: Content-Length {declared} (limit {limit} bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"upload too large (limit {limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


class WorkerPool:
    """Runs blocking work in threads, ``workers`` at a time, with ``queue`` more requests admitted to wait."""

    def __init__(self, workers: int = WORKERS, queue: int = QUEUE) -> None:
        self.capacity, self.admitted = workers + queue, 0
        self._slots = asyncio.Semaphore(workers)  # binds to the serving event loop when first waited on

    @asynccontextmanager
    async def admit(self):
        """Holds a place for one request (body included), or refuses it with 503 when all places are taken."""
        if self.admitted >= self.capacity:
            raise RequestError(503, f"server busy: {self.capacity} requests already in progress, retry shortly")
        self.admitted += 1  # only the event loop's thread touches the counter
        try:
            yield
        finally:
            self.admitted -= 1

    async def run(self, work: Callable, *args):
        """``work(*args)`` in a worker thread once one is free."""
        async with self._slots:
            return await run_in_threadpool(work, *args)


def _decode_upload(data: bytes) -> Picture:
    if not data:
        raise RequestError(400, "empty upload: send a PNG or JPEG image")
    try:
        return decode_picture(io.BytesIO(data), "upload")
    except ImageTooLarge as err:
        raise RequestError(413, str(err).removeprefix("upload: ")) from None
    except LeNetError:
        raise RequestError(415, "not an image: send a PNG, JPEG, BMP or GIF file") from None


def _decode_json(data: bytes) -> Picture:
    expected = 'expected JSON {"pixels": [[28 numbers] x 28]} with grey levels 0..255'
    try:
        pixels = np.asarray(json.loads(data)["pixels"], dtype=np.float32)
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
        raise RequestError(422, expected) from None
    if pixels.shape != (28, 28) or not np.isfinite(pixels).all():
        raise RequestError(422, f"pixels must be a 28x28 array of finite numbers, got shape {list(pixels.shape)}")
    return Picture(pixels)


def _predict_one(model: ServedModel, data: bytes, is_json: bool) -> dict:
    """Decodes, prepares and classifies one uploaded digit (runs in a worker thread)."""
    picture = _decode_json(data) if is_json else _decode_upload(data)
    try:
        digit_image = to_mnist(picture.gray, "upload")
    except LeNetError as err:
        raise RequestError(422, str(err).removeprefix("upload: ")) from None
    probabilities = model.classify(digit_image[np.newaxis])[0]
    top3 = top_k(probabilities)
    return {"digit": top3[0][0], "probability": top3[0][1], "top3": top3,
            "probabilities": probabilities.tolist(), "input": digit_image.tolist(),
            **({"note": picture.note} if picture.note else {})}


def _predict_tf_serving(model: ServedModel, body: bytes) -> JSONResponse:
    """Answers a TF Serving predict request (runs in a worker thread, JSON rendering included)."""
    try:
        request = tf_serving.parse_predict_request(body)
    except tf_serving.BadRequest as err:
        raise RequestError(400, str(err)) from None
    probabilities = model.classify(request.images)
    return JSONResponse(tf_serving.predict_response(probabilities, request.columnar))


async def _upload_bytes(request: Request) -> bytes:
    """The image or JSON bytes of a /predict request: the body, or the ``file`` field of a multipart form."""
    body = await read_body(request)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return body

    async def replay() -> dict:  # the form parser reads the body already received, not the socket
        return {"type": "http.request", "body": body, "more_body": False}

    async with Request(request.scope, replay).form() as form:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise RequestError(400, "multipart upload needs a file field named 'file'")
        return await upload.read()


def create_app(model: ServedModel, workers: int = WORKERS, queue: int = QUEUE) -> FastAPI:
    """The web application around an already loaded ``model`` (see the module docstring for the limits)."""
    app = FastAPI(title="lenet_tf", description="LeNet-5 handwritten digit recognition", version="1")
    page = resources.files("lenet_tf.serving").joinpath("static/index.html").read_text(encoding="utf-8")
    pool = WorkerPool(workers, queue)

    @app.exception_handler(RequestError)
    async def refuse(request: Request, err: RequestError) -> JSONResponse:
        # TF Serving's routes answer {"error": ...} as TF Serving does; the demo's routes keep {"detail": ...}.
        key = "error" if request.url.path.startswith("/v1/") else "detail"
        # 413: close the connection rather than read and discard the rest of an oversized upload.
        headers = {503: {"Retry-After": "1"}, 413: {"Connection": "close"}}.get(err.status)
        return JSONResponse({key: err.message}, err.status, headers=headers)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    @app.get("/health")
    async def health() -> dict:
        """Liveness and which model is loaded (name, version, source, epoch)."""
        return {"status": "ok", **model.describe()}

    @app.post("/predict")
    async def predict(request: Request) -> dict:
        """Classify one digit: a raw image body, a multipart upload (field ``file``), or JSON pixels."""
        is_json = request.headers.get("content-type", "").startswith("application/json")
        async with pool.admit():
            data = await _upload_bytes(request)
            return await pool.run(_predict_one, model, data, is_json)

    def check_servable(name: str, version: str | None) -> None:
        if version is not None and not version.isdigit():
            raise RequestError(400, f"Malformed request: version '{version}' is not a number")
        if name != tf_serving.MODEL_NAME or (version is not None and int(version) != model.version):
            wanted = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise RequestError(404, f"Servable not found for request: {wanted}")

    async def tf_predict(request: Request, name: str, version: str | None) -> JSONResponse:
        check_servable(name, version)
        async with pool.admit():
            body = await read_body(request)
            return await pool.run(_predict_tf_serving, model, body)

    @app.post("/v1/models/{name}:predict", tags=["TensorFlow Serving"])
    async def tf_serving_predict(name: str, request: Request) -> JSONResponse:
        """TF Serving predict: ``{"instances": [...]}`` (row) or ``{"inputs": ...}`` (columnar) uint8 digits."""
        return await tf_predict(request, name, None)

    @app.post("/v1/models/{name}/versions/{version}:predict", tags=["TensorFlow Serving"])
    async def tf_serving_predict_version(name: str, version: str, request: Request) -> JSONResponse:
        """TF Serving predict on a given version (this server has one: see ``GET /v1/models/lenet5``)."""
        return await tf_predict(request, name, version)

    @app.get("/v1/models/{name}", tags=["TensorFlow Serving"])
    @app.get("/v1/models/{name}/versions/{version}", tags=["TensorFlow Serving"])
    async def tf_serving_status(name: str, version: str | None = None) -> dict:
        """TF Serving model status (of one version): the loaded version, AVAILABLE."""
        check_servable(name, version)
        return tf_serving.model_status(model.version)

    @app.get("/v1/models/{name}/metadata", tags=["TensorFlow Serving"])
    @app.get("/v1/models/{name}/versions/{version}/metadata", tags=["TensorFlow Serving"])
    async def tf_serving_metadata(name: str, version: str | None = None) -> dict:
        """TF Serving model metadata (of one version): the ``serving_default`` signature."""
        check_servable(name, version)
        return tf_serving.model_metadata(model.version)

    @app.api_route("/v1/{path:path}", methods=["GET", "POST"], include_in_schema=False)
    async def tf_serving_unknown(path: str, request: Request) -> None:
        raise RequestError(400, f"Malformed request: {request.method} /v1/{path} (this server implements status, "
                                "metadata and :predict of model lenet5)")

    return app


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
          ready: Callable[[str], None] = lambda url: None, tta: bool = False) -> None:
    """Binds ``host:port``, loads the model once, then serves until interrupted.

    ``ready(url)`` is called once the model is loaded and the server accepts connections. A taken port or a
    model that fails to load raises a :class:`LeNetError` before that.
    """
    import uvicorn

    sock = listening_socket(host, port)  # first: a taken port fails before seconds of model loading
    try:
        model = load_model(checkpoint, saved_model, tta)
        bound = sock.getsockname()[1]
        url = f"http://{f'[{host}]' if ':' in host else host}:{bound}/"

        class Server(uvicorn.Server):
            async def startup(self, sockets=None) -> None:
                await super().startup(sockets)
                if self.started:
                    ready(url)

        # PIL warns about pictures it still opens; the server refuses those (413) under its lower pixel limit.
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        Server(uvicorn.Config(create_app(model), log_level="warning")).run(sockets=[sock])
    finally:
        sock.close()
