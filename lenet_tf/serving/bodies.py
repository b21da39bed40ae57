"""Reading request bodies off an ASGI connection: a size limit, a deadline, and clean refusals.

A body must arrive within ``timeout`` seconds of the request's headers, extended by one second for every
``min_rate`` bytes received: a client sending at ``min_rate`` bytes/s or faster always gets through; a slower one
gets 408 and its connection closed. Nothing is queued for the model before the whole body is here, so slow clients
hold only their own connection.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from lenet_tf.core.options import SECONDS, Range

# A 12-megapixel phone JPEG is 3-6 MB (8 MB at high quality); also bounds a TF Serving request: ~3,000 MNIST digits
# as json.dumps writes them, or a dozen phone pictures in base64. `lenet-tf serve --max-upload-bytes` sets it.
MAX_UPLOAD_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class BodyLimits:
    """How large a body may be and how fast it must arrive."""

    max_bytes: int = MAX_UPLOAD_BYTES
    timeout: float = 10.0  # seconds for a body, from its headers
    min_rate: float = 16 * 1024  # bytes/s that extend the deadline by one second each

    def __post_init__(self) -> None:
        for name, accepted in RANGES.items():
            accepted.check(name, getattr(self, name))


# What each limit accepts (``lenet-tf serve``'s flags too).
RANGES = {"max_bytes": Range(int, 1), "timeout": SECONDS, "min_rate": Range(float, 0, low_open=True)}


class RequestError(Exception):
    """A request the server refuses: its HTTP status and a one-line reason; ``close`` drops the connection."""

    def __init__(self, status: int, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.status, self.message, self.close = status, message, close


class ClientGone(Exception):
    """The client closed its connection before its request was answered: nothing to send."""


def header(scope: dict, name: bytes) -> str | None:
    """The value of the request header ``name`` (lower case), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def media_type(scope: dict) -> str:
    """The request's media type, lower-cased without parameters (``Application/JSON; charset=x`` ->
    ``application/json``); media types are case-insensitive (RFC 9110, 8.3.1)."""
    return (header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()


async def read_body(scope: dict, receive, limits: BodyLimits = BodyLimits()) -> bytes:
    """The whole request body.

    Raises:
      RequestError: 400 for a bad Content-Length, 413 past ``limits.max_bytes`` (declared or streamed), 408 when
        it does not arrive in time (both close the connection); 415 for a Content-Encoding (a gzipped body would
        be read as garbage).
      ClientGone: the client hung up.
    """
    encoding = header(scope, b"content-encoding")
    if encoding is not None and encoding.strip().lower() not in ("", "identity"):
        raise RequestError(415, f"Content-Encoding {encoding[:40]!r} is not supported: send the body uncompressed",
                           close=True)
    declared = header(scope, b"content-length")
    if declared is not None and not (declared.isascii() and declared.isdigit()):
        raise RequestError(400, f"bad Content-Length {declared[:40]!r}", close=True)
    if declared is not None and (len(declared) > 18 or int(declared) > limits.max_bytes):
        raise RequestError(413, f"upload too large: Content-Length {declared[:40]} (limit {limits.max_bytes} "
                                "bytes)", close=True)
    chunks, size = [], 0
    start = asyncio.get_running_loop().time()
    try:
        async with asyncio.timeout_at(start + limits.timeout) as window:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limits.max_bytes:
                    raise RequestError(413, f"upload too large (limit {limits.max_bytes} bytes)", close=True)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
                window.reschedule(start + limits.timeout + size / limits.min_rate)
    except TimeoutError:
        raise RequestError(408, f"request body too slow: {size} bytes in {limits.timeout:g} s plus one second "
                                f"per {limits.min_rate:g} bytes", close=True) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
