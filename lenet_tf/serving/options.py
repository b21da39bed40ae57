"""The HTTP server's limits, importable without its web stack (the command line reads their defaults)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from lenet_tf.core.options import SECONDS
from lenet_tf.serving.batching import BatchingOptions
from lenet_tf.serving.bodies import BodyLimits


@dataclass(frozen=True)
class ServerOptions:
    """The server's limits; :mod:`lenet_tf.serving.server`'s docstring says where each applies."""

    batching: BatchingOptions = field(default_factory=BatchingOptions)
    body: BodyLimits = field(default_factory=BodyLimits)
    header_timeout: float = 10.0  # seconds for a request's headers
    request_timeout: float = 30.0  # seconds from a complete body to the answer (504 after)
    prepare_timeout: float = 10.0  # seconds to decode and prepare a request's pictures (422 after; 503 unstarted)
    keep_alive_timeout: int = 5  # seconds an idle kept-alive connection stays open
    max_connections: int = 2048  # open connections (and requests in progress) before uvicorn answers 503
    prepare_threads: int = max(2, os.cpu_count() or 1)  # threads decoding and preparing uploads

    def __post_init__(self) -> None:
        for name in ("header_timeout", "request_timeout", "prepare_timeout"):
            SECONDS.check(name, getattr(self, name))  # as the flags check them: NaN would hang or fail every request
