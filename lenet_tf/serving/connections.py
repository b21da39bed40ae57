"""uvicorn's httptools connection with a header deadline: a request's headers must arrive within
``header_timeout`` seconds (from the connection's opening, or from the first byte of a later request on a kept-alive
connection); otherwise the client gets 408 and the connection is closed. Idle kept-alive connections are closed
after uvicorn's ``timeout_keep_alive``; bodies have their own deadline (:mod:`lenet_tf.serving.bodies`).
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
