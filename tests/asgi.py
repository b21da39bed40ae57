"""A synchronous httpx client that calls an ASGI app in this process, through httpx's public ``ASGITransport``.

It replaces ``starlette.testclient.TestClient`` (which with httpx is deprecated in favour of httpx2): the app runs
on one event loop in a daemon thread shared by every client, so requests made from several threads at once reach
the app concurrently, as they would in a server.
"""

from __future__ import annotations

import asyncio
import functools
import threading

import httpx


@functools.cache
def _loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="asgi-client-loop", daemon=True).start()
    return loop


class _SyncASGITransport(httpx.BaseTransport):
    def __init__(self, app) -> None:
        self._transport = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def call() -> httpx.Response:
            response = await self._transport.handle_async_request(request)
            raw = b"".join([chunk async for chunk in response.stream])  # still encoded: the client decodes it
            return httpx.Response(response.status_code, headers=response.headers, stream=httpx.ByteStream(raw))

        return asyncio.run_coroutine_threadsafe(call(), _loop()).result(timeout=120)


def asgi_client(app) -> httpx.Client:
    """An ``httpx.Client`` whose requests go to ``app`` (base URL ``http://testserver``); ``client.app`` is it."""
    client = httpx.Client(transport=_SyncASGITransport(app), base_url="http://testserver")
    client.app = app
    return client
