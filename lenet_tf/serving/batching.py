"""Server-side micro-batching: concurrent requests share one classifier call, as TensorFlow Serving's batching.

Requests submit uint8 digits ``[n, 28, 28]`` from the event loop; one dedicated thread takes what is queued, up to
``max_batch_size`` digits (waiting at most ``batch_timeout_micros`` for a batch to fill once its first request is
there), runs the classifier once on all of them, and hands each request back its own rows. A request larger than
``max_batch_size`` runs as a batch of its own. At most ``max_enqueued_batches`` batches of digits wait: beyond that
:meth:`Batcher.submit` refuses at once (the server answers 503). A request that gave up (its deadline passed, its
client left) is dropped from the queue before it runs. If a batch of several requests fails, each request is run
again alone, so an error is reported only to the request that causes it.

The classifier is any function uint8 ``[N, 28, 28]`` -> float32 probabilities ``[N, 10]``; it is only ever called
from the batching thread, so a TensorFlow session needs no lock.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from lenet_tf.core.options import Range

Classifier = Callable[[np.ndarray], np.ndarray]  # uint8 digits [N, 28, 28] -> float32 probabilities [N, 10]


@dataclass(frozen=True)
class BatchingOptions:
    """TensorFlow Serving's batching parameters (same names, same meaning)."""

    max_batch_size: int = 64  # digits per classifier call
    batch_timeout_micros: int = 0  # extra wait for a batch to fill once a request is queued; under load batches
    # fill by themselves while the previous one runs, so waiting only adds latency (measured: benchmarks/load.py)
    max_enqueued_batches: int = 64  # queued digits beyond max_batch_size * this are refused (503)

    def __post_init__(self) -> None:
        for name, accepted in RANGES.items():
            accepted.check(name, getattr(self, name))

    @property
    def max_enqueued_digits(self) -> int:
        """How many digits may wait for the classifier at once."""
        return self.max_batch_size * self.max_enqueued_batches


# What each parameter accepts (``lenet-tf serve``'s flags too). TF Serving suggests a batch timeout "slightly above
# zero, e.g. 1 millisecond"; a wait of seconds only delays answers, so 10 s is the most accepted.
RANGES = {"max_batch_size": Range(int, 1), "batch_timeout_micros": Range(int, 0, 10_000_000),
          "max_enqueued_batches": Range(int, 1)}


class QueueFull(Exception):
    """The batching queue holds ``max_enqueued_batches`` batches already, or the batching thread has stopped."""


STOPPED = "the model's batching thread has stopped"


@dataclass
class _Task:
    digits: np.ndarray  # uint8 [n, 28, 28]
    future: asyncio.Future


class Batcher:
    """Queues digits from the event loop and classifies them in batches on one dedicated thread.

    The thread starts with the first request; each request's future is resolved on the event loop that
    submitted it.
    """

    def __init__(self, classify: Classifier, options: BatchingOptions = BatchingOptions()) -> None:
        self.classify, self.options = classify, options
        self.queued = 0  # digits waiting (touched under _ready's lock)
        self.batches = 0  # classifier calls made (for tests and /health)
        self._tasks: deque[_Task] = deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def stop(self) -> None:
        """Stops the batching thread after the batch it is running (queued requests are cancelled)."""
        with self._ready:
            self._stopping = True
            self._ready.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def alive(self) -> bool:
        """Whether the batching thread runs (or has yet to start with the first request)."""
        thread = self._thread
        return not self._stopping and (thread is None or thread.is_alive())

    def submit(self, digits: np.ndarray) -> asyncio.Future:
        """Queues uint8 digits ``[n, 28, 28]``; the future gets their probabilities float32 ``[n, 10]``.

        Raises:
          QueueFull: the queue holds ``max_enqueued_batches`` batches of digits already, or the batching thread
            has stopped (nothing would ever answer).
        """
        future = asyncio.get_running_loop().create_future()
        with self._ready:
            if not self.alive():
                raise QueueFull(STOPPED)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lenet-batcher", daemon=True)
                self._thread.start()
            if self.queued and self.queued + len(digits) > self.options.max_enqueued_digits:
                raise QueueFull(f"{self.queued} digits already wait for the model")
            self.queued += len(digits)
            self._tasks.append(_Task(digits, future))
            self._ready.notify()
        return future

    def _next_batch(self) -> list[_Task] | None:
        """Waits for a first request, then for the batch to fill (or its timeout); None once stopping."""
        limit, timeout = self.options.max_batch_size, self.options.batch_timeout_micros / 1e6
        with self._ready:
            while not self._tasks and not self._stopping:
                self._ready.wait()
            if self._stopping:
                return None
            if timeout:
                deadline = time.monotonic() + timeout
                while self.queued < limit and not self._stopping and (left := deadline - time.monotonic()) > 0:
                    self._ready.wait(left)
            batch, size = [], 0
            while self._tasks and (not batch or size + len(self._tasks[0].digits) <= limit):
                task = self._tasks.popleft()
                self.queued -= len(task.digits)
                if not task.future.cancelled():  # read without the loop: at worst a cancelled one runs
                    batch.append(task)
                    size += len(task.digits)
            return batch

    def _run(self) -> None:
        batch: list[_Task] = []
        try:
            while (batch := self._next_batch()) is not None:
                if batch:
                    _resolve(batch, self._classify_apart(batch))
                    batch = []
        finally:  # stopped, or killed by what no request can be handed (SystemExit, MemoryError in the loop)
            with self._ready:
                left = [*(batch or []), *self._tasks]
                self._tasks.clear()
            stopped = self._stopping and not batch
            _resolve(left, [asyncio.CancelledError() if stopped else QueueFull(STOPPED)] * len(left))

    def _classify_apart(self, batch: list[_Task]) -> list[np.ndarray | BaseException]:
        """Each task's probabilities (or the exception its digits raise) from one classifier call, or from one
        call per task when the batch's call fails."""
        self.batches += 1
        try:
            digits = batch[0].digits if len(batch) == 1 else np.concatenate([task.digits for task in batch])
            probabilities = self.classify(digits)
        except Exception as err:  # noqa: BLE001 - handed to the requests, never lost
            if len(batch) == 1:
                return [err]
            return [outcome for task in batch for outcome in self._classify_apart([task])]
        bounds = np.cumsum([0] + [len(task.digits) for task in batch])
        return [probabilities[start:end] for start, end in zip(bounds[:-1], bounds[1:])]


def _resolve(batch: list[_Task], outcomes: list) -> None:
    """Hands each task its outcome, with one call into each event loop involved (usually one)."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for task, outcome in zip(batch, outcomes):
        by_loop.setdefault(task.future.get_loop(), []).append((task.future, outcome))
    for loop, pairs in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, pairs)
        except RuntimeError:  # that loop is closed: nobody waits any more
            pass


def _settle(pairs: list) -> None:
    """Sets each future's result or exception (on its event loop), unless it gave up meanwhile."""
    for future, outcome in pairs:
        if future.done():
            continue
        if isinstance(outcome, asyncio.CancelledError):
            future.cancel()
        elif isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
