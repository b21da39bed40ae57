"""What a connection may hold: a header deadline, and no keep-alive past a body left unread.

:func:`header_deadline_protocol`: uvicorn's httptools connection whose requests must send their headers within
``header_timeout`` seconds (from the connection's opening, or from the first byte of a later request on a kept-alive
connection); otherwise the client gets 408 and the connection is closed. Idle kept-alive connections are closed
after uvicorn's ``timeout_keep_alive``; bodies have their own deadline (:mod:`lenet_tf.serving.bodies`). This is the
one place that relies on uvicorn's protocol class (its ``connection_made``/``on_message_begin``/
``on_headers_complete`` callbacks); ``tests/serving/test_connections.py`` fails by name if uvicorn changes them.

:func:`close_unless_body_read` (plain ASGI): a response sent before its request's body was read says
``connection: close``, so uvicorn closes the connection once it is sent. Otherwise the body's remaining bytes would
sit between two requests, where no deadline watches them: a client that declared ``Content-Length: 100`` on
``GET /health`` and then sent one byte a minute held its connection for ever.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_TOO_SLOW = b'{"error": "request headers too slow"}'
_408 = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(_TOO_SLOW), _TOO_SLOW))


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
