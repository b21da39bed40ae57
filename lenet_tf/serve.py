"""A local web demo and HTTP API: draw a digit in the browser, or POST an image, get the prediction.

Run it with ``lenet-tf serve``; the model is loaded once at start-up. Endpoints: ``GET /`` (the drawing page),
``POST /predict`` (an image upload or JSON ``{"pixels": [[...28 values...] x 28]}``), ``GET /health`` and the
framework's ``/docs`` (OpenAPI).
"""

from __future__ import annotations

import io
import json
import os
from importlib import resources
from typing import Callable

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from PIL import Image, UnidentifiedImageError

from lenet_tf.errors import LeNetError
from lenet_tf.predict import top_k
from lenet_tf.preprocess import grayscale, to_mnist

MAX_UPLOAD_BYTES = 2 * 1024 * 1024
MAX_IMAGE_PIXELS = 4096 * 4096
Classifier = Callable[[np.ndarray], np.ndarray]  # uint8 digits [N, 28, 28] -> probabilities [N, 10]


def checkpoint_classifier(checkpoint_dir: str | os.PathLike) -> tuple[Classifier, dict]:
    """A classifier backed by a training folder's best checkpoint, and a description of it."""
    from lenet_tf.trained import TrainedModel

    model = TrainedModel(checkpoint_dir)
    info = {"source": "checkpoint", "path": model.checkpoint, "epoch": model.epoch, "precision": model.precision.used}
    return (lambda digits: model.predict(digits).probabilities), info


def saved_model_classifier(export_dir: str | os.PathLike) -> tuple[Classifier, dict]:
    """A classifier backed by a SavedModel written by ``lenet-tf export`` (in bf16 where
    :func:`lenet_tf.precision.choose` says so)."""
    from lenet_tf._tf import tf
    from lenet_tf.errors import CheckpointError
    from lenet_tf.precision import choose

    precision = choose().used
    if precision == "bf16":  # the exported graph is float32; this process's grappler rewrites it
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    try:
        serve = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{export_dir}: not a lenet_tf SavedModel ({err})") from None
    return (lambda digits: serve(images=tf.constant(digits))["probabilities"].numpy()), {
        "source": "saved_model", "path": str(export_dir), "precision": precision}


def _decode_upload(data: bytes) -> np.ndarray:
    if not data:
        raise HTTPException(400, "empty upload: send a PNG or JPEG image")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise HTTPException(413, f"image too large: {image.width}x{image.height} pixels")
            return grayscale(image)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise HTTPException(415, "not an image: send a PNG, JPEG, BMP or GIF file") from None


def _decode_json(data: bytes) -> np.ndarray:
    try:
        pixels = np.asarray(json.loads(data)["pixels"], dtype=np.float32)
    except (ValueError, KeyError, TypeError):
        raise HTTPException(422, 'expected JSON {"pixels": [[28 numbers] x 28]} with grey levels 0..255') from None
    if pixels.shape != (28, 28) or not np.isfinite(pixels).all():
        raise HTTPException(422, f"pixels must be a 28x28 array of finite numbers, got shape {list(pixels.shape)}")
    return pixels


def create_app(classifier: Classifier, info: dict) -> FastAPI:
    """The web application around an already loaded ``classifier``."""
    app = FastAPI(title="lenet_tf", description="LeNet-5 handwritten digit recognition", version="1")
    page = resources.files("lenet_tf").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/health")
    def health() -> dict:
        """Liveness and what model is loaded."""
        return {"status": "ok", **info}

    @app.post("/predict")
    async def predict(request: Request) -> dict:
        """Classify one digit: a raw image body, a multipart upload (field ``file``), or JSON pixels."""
        content_type = request.headers.get("content-type", "")
        length = int(request.headers.get("content-length") or 0)
        if length > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"upload too large: {length} bytes (limit {MAX_UPLOAD_BYTES})")
        if content_type.startswith("multipart/form-data"):
            form = await request.form()
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise HTTPException(400, "multipart upload needs a file field named 'file'")
            data = await upload.read(MAX_UPLOAD_BYTES + 1)
        else:
            data = await request.body()
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"upload too large (limit {MAX_UPLOAD_BYTES} bytes)")
        gray = _decode_json(data) if content_type.startswith("application/json") else _decode_upload(data)
        try:
            digit_image = to_mnist(gray, "upload")
        except LeNetError as err:
            raise HTTPException(422, str(err).removeprefix("upload: ")) from None
        probabilities = classifier(digit_image[np.newaxis])[0]
        top3 = top_k(probabilities)
        return {"digit": top3[0][0], "probability": top3[0][1], "top3": top3,
                "probabilities": probabilities.tolist(), "input": digit_image.tolist()}

    return app


def serve(checkpoint: str | None, saved_model: str | None, host: str, port: int) -> None:
    """Loads the model once and serves the app with uvicorn until interrupted."""
    import uvicorn

    classifier, info = saved_model_classifier(saved_model) if saved_model else checkpoint_classifier(checkpoint)
    uvicorn.run(create_app(classifier, info), host=host, port=port, log_level="warning")
