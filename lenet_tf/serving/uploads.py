"""Turning an uploaded body into an MNIST digit, exactly as ``lenet-tf predict`` prepares a file.

``POST /predict`` takes a raw image body, a multipart form whose ``file`` field is the image, or JSON
``{"pixels": [[28 grey levels] x 28]}``; ``predict_images`` takes encoded pictures. These functions block (PIL and
NumPy work): the server runs them in its thread pool, never on the event loop. Each refusal is a
:class:`~lenet_tf.serving.bodies.RequestError` with one message per cause.
"""

from __future__ import annotations

import io
import json

import numpy as np

from lenet_tf.core.errors import LeNetError
from lenet_tf.data.images import ImageTooLarge, decode_picture, mnist_or_blank
from lenet_tf.serving.bodies import RequestError
from lenet_tf.serving.json_tensors import TensorError, check_containers, dense_leaves, leading_shape, number_array

_EXPECTED_JSON = 'expected JSON {"pixels": [[28 numbers] x 28]} with grey levels 0..255'


def image_digit(data: bytes, name: str = "upload") -> np.ndarray:
    """An encoded picture as a uint8 MNIST digit [28, 28] (decode, then :func:`mnist_or_blank`: all zeros when
    blank)."""
    return image_upload(data, name)[0]


def image_upload(data: bytes, name: str = "upload") -> tuple[np.ndarray, str | None]:
    """An encoded picture as a uint8 MNIST digit [28, 28] (all zeros when blank) and the picture's note (e.g.
    "3 frames: read the first"), else ``None``.

    Raises:
      RequestError: 400 empty, 413 too many pixels, 415 not a readable PNG/JPEG/BMP/GIF/TIFF/WebP (whatever the
        decoder raised).
    """
    if not data:
        raise RequestError(400, f"empty {name}: send a PNG or JPEG image")
    try:
        picture = decode_picture(io.BytesIO(data), name)
    except ImageTooLarge as err:
        raise RequestError(413, str(err)) from None
    except LeNetError as err:  # "upload: not a readable image (image file is truncated ...)", as the CLI says
        raise RequestError(415, str(err)) from None
    return _prepare(picture.gray, name), picture.note


def pixels_digit(data: bytes) -> np.ndarray:
    """JSON ``{"pixels": [[...] x 28]}`` grey levels as a uint8 MNIST digit [28, 28] (all zeros when blank),
    checked as a 28x28 tensor of numbers before any array is made."""
    try:
        check_containers(data, 64)  # a 28x28 array is 29 lists in an object
        pixels = json.loads(data)["pixels"]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise RequestError(422, _EXPECTED_JSON) from None
    shape = leading_shape(pixels)
    try:  # first: the shape is read down the first items, whatever the other rows hold
        dense_leaves(pixels, shape)
    except TensorError as err:
        raise RequestError(422, f"pixels must be a 28x28 array: {err}") from None
    if shape != (28, 28):
        raise RequestError(422, f"pixels must be a 28x28 array, got shape {list(shape)}")
    try:
        pixels = number_array(pixels, shape)
    except TensorError as err:
        raise RequestError(422, f"pixels: {err}") from None
    if not np.isfinite(pixels).all():
        raise RequestError(400, "pixels must be finite numbers: NaN or Infinity found")
    if pixels.min() < 0 or pixels.max() > 255:
        low, high = _exact(pixels.min()), _exact(pixels.max())
        raise RequestError(400, f"pixels must be grey levels 0..255, got {low}..{high}")
    return _prepare(pixels.astype(np.float32), "pixels")


def _exact(value: float) -> str:
    """``value`` shortly (``%g``) unless that rounds it: 255.0000001 is not shown as 255."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def multipart_file(content_type: str, body: bytes) -> bytes:
    """The ``file`` field of a multipart form body, which must end with its closing boundary."""
    from python_multipart import FormParser
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import parse_options_header

    if "boundary=" not in content_type.lower():  # python_multipart would log an error of its own first
        raise RequestError(400, "bad multipart body (no boundary in its Content-Type)")
    files: dict[bytes, bytes] = {}

    def on_file(upload) -> None:
        if upload.field_name in files:
            raise RequestError(400, f"multipart upload has more than one field named "
                                    f"'{upload.field_name.decode('latin-1')[:40]}': send one file per request")
        upload.file_object.seek(0)
        files[upload.field_name] = upload.file_object.read()

    ended: list[bool] = []  # python_multipart takes a body cut short for a whole one, the last part left unread
    try:
        parser = FormParser("multipart/form-data", lambda field: None, on_file, lambda: ended.append(True),
                            boundary=parse_options_header(content_type)[1].get(b"boundary"))
        parser.write(body)
        parser.finalize()
    except (FormParserError, ValueError) as err:
        raise RequestError(400, f"bad multipart body ({err})") from None
    if not ended:
        raise RequestError(400, "bad multipart body (truncated: it ends before its closing boundary)")
    if b"file" not in files:
        raise RequestError(400, "multipart upload needs a file field named 'file'")
    return files[b"file"]


def _prepare(gray: np.ndarray, name: str) -> np.ndarray:
    try:
        return mnist_or_blank(gray, name)
    except LeNetError as err:
        raise RequestError(422, str(err).removeprefix(f"{name}: ")) from None
