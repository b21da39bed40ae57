"""What a connection may hold: a header deadline, and no keep-alive past a body left unread.

:func:`header_deadline_protocol`: uvicorn's httptools connection whose requests must send their headers within
``header_timeout`` seconds (from the connection's opening, or from the first byte of a later request on a kept-alive
connection); otherwise the client gets 408 and the connection is closed. Idle kept-alive connections are closed
after uvicorn's ``timeout_keep_alive``; bodies have their own deadline (:mod:`lenet_tf.serving.bodies`). This is the
one place that relies on uvicorn's protocol class (its ``connection_made``/``on_message_begin``/
``on_headers_complete`` callbacks, and ``send_400_response``, which answers bytes its parser refuses: here in JSON,
and :data:`CLIENT_FAULT_FILTER` keeps its warning about them out of the log); ``tests/serving/test_connections.py``
fails by name if uvicorn changes them.

:func:`close_unless_body_read` (plain ASGI): a response sent before its request's body was read says
``connection: close``, so uvicorn closes the connection once it is sent. Otherwise the body's remaining bytes would
sit between two requests, where no deadline watches them: a client that declared ``Content-Length: 100`` on
``GET /health`` and then sent one byte a minute held its connection for ever.
"""

from __future__ import annotations

import asyncio
import json
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _closing_answer(status: str, error: str) -> bytes:
    """A whole HTTP answer with a JSON ``{"error": ...}`` body that closes the connection."""
    body = json.dumps({"error": error}).encode()
    return (b"HTTP/1.1 %s\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
            % (status.encode(), len(body), body))


_408 = _closing_answer("408 Request Timeout", "request headers too slow")
_400 = _closing_answer("400 Bad Request", "not a valid HTTP/1.1 request")
# What uvicorn logs about a client's bytes (a bad request gets the 400 above): bad input leaves the log empty.
_CLIENT_FAULTS = ("Invalid HTTP request received.", "Unsupported upgrade request.",
                  "No supported WebSocket library detected.")


class _ClientFaults(logging.Filter):
    """Drops uvicorn's warnings about malformed requests from its ``uvicorn.error`` log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_CLIENT_FAULTS)


CLIENT_FAULT_FILTER = _ClientFaults()  # one instance: adding it again (another serve() in a process) adds nothing


def header_deadline_protocol(header_timeout: float) -> type[asyncio.Protocol]:
    """An HttpToolsProtocol class whose requests must send their headers within ``header_timeout`` seconds."""

    class HeaderDeadlineProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def send_400_response(self, msg: str) -> None:
            """uvicorn's answer to bytes its parser refuses (a bad request line, length or chunk), in JSON."""
            self._disarm()
            if not self.transport.is_closing():
                self.transport.write(_400)
                self.transport.close()

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.write(_408)
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderDeadlineProtocol


def _declares_body(scope: dict) -> bool:
    for key, value in scope["headers"]:
        if key == b"transfer-encoding" or (key == b"content-length" and value.strip() not in (b"0", b"")):
            return True
    return False


def close_unless_body_read(scope: dict, receive, send):
    """ASGI ``receive`` and ``send`` for an HTTP request such that a response started before the request's body was
    read to its end carries ``connection: close`` (requests without a body pass unchanged)."""
    if not _declares_body(scope):
        return receive, send
    read = False

    async def tracked_receive():
        nonlocal read
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            read = True
        return message

    async def closing_send(message):
        if message["type"] == "http.response.start" and not read:
            headers = list(message.get("headers", ()))
            if not any(key.lower() == b"connection" for key, _ in headers):
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return tracked_receive, closing_send
