"""The two sides of a benchmark contender's process, without TensorFlow (the PyTorch worker imports it too).

A worker builds its contender, warms it up and prints ``{"ready": true}`` (or ``{"skipped": reason}``) as a JSON
line; then each line ``train`` or ``inference`` on its stdin runs one timed repeat, answered by one JSON line of
images per second. :class:`Worker` is the parent's side: it starts the process and reads the answers, and when
the process dies it reports why (the last line of its stderr and its exit code or signal).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable

BATCH = 128

Contender = Callable[..., tuple[Callable[[], int], Callable[[], int]]]


def rate(run: Callable[[], int]) -> float:
    """Images per second of one call of ``run`` (which returns how many images it processed)."""
    began = time.perf_counter()
    images = run()
    return images / (time.perf_counter() - began)


def cycling_steps(count: int, step: Callable, steps: int, per_call: int = 1) -> Callable[..., int]:
    """``run_steps(n=steps)``: n training steps on consecutive batches, wrapping around ``count`` examples;
    ``step(slice)`` runs one, or with ``per_call`` > 1 ``step([slice, ...])`` runs up to that many at once."""
    position = 0

    def next_batch() -> slice:
        nonlocal position
        if position + BATCH > count:
            position = 0
        position += BATCH
        return slice(position - BATCH, position)

    def run_steps(n: int = steps) -> int:
        done = 0
        while done < n:
            if per_call == 1:
                step(next_batch())
                done += 1
            else:
                chunk = [next_batch() for _ in range(min(per_call, n - done))]
                step(chunk)
                done += len(chunk)
        return n * BATCH

    return run_steps


def batched(count: int, predict: Callable[[slice], object], batch: int) -> Callable[[], int]:
    """``infer()``: one inference pass over ``count`` examples in batches of ``batch``."""
    def infer() -> int:
        for start in range(0, count, batch):
            predict(slice(start, start + batch))
        return count

    return infer


def serve(build: Callable[[], tuple[Callable[[], int], Callable[[], int]]], install_hint: str) -> int:
    """The worker's side: builds the contender (``build()`` returns its train and infer repeats), reports ready
    (or skipped when a module is missing), then answers one request per stdin line until stdin ends."""
    try:
        train, infer = build()
    except ImportError as err:
        print(json.dumps({"skipped": f"{err.name or err} is not installed ({install_hint})"}))
        return 0
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        kind = line.strip()
        print(json.dumps({kind: rate(train if kind == "train" else infer)}), flush=True)
    return 0


def exit_reason(returncode: int | None, stderr: str) -> str:
    """Why a worker stopped answering: the last line of its stderr, and its exit code or signal."""
    if returncode is None:
        status = "stopped answering"
    elif returncode < 0:
        try:
            status = f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            status = f"killed by signal {-returncode}"
    else:
        status = f"exit code {returncode}"
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return f"{lines[-1].strip()} ({status})" if lines else status


class Worker:
    """One contender in its own process, so no thread pool, setting or import leaks between contenders; it
    warms up, then runs one timed repeat per request."""

    def __init__(self, name: str, precision: str, command: list[str], env: dict[str, str]) -> None:
        self.name, self.precision, self.error = name, precision, None
        self.log = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty worker never blocks on it
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                        text=True, env={**os.environ, **env})
        self.ready = self._answer()

    def _answer(self) -> dict:
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        self.process.wait()
        self.log.seek(0)
        return {"error": exit_reason(self.process.returncode, self.log.read())}

    def measure(self, kind: str) -> float | None:
        """Images/s of one timed repeat of ``train`` or ``inference`` (None if the worker failed: see ``error``)."""
        try:
            self.process.stdin.write(kind + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # the worker is gone: _answer reports why
        answer = self._answer()
        if kind not in answer:
            self.error = answer.get("error", str(answer))
            return None
        return answer[kind]

    def close(self) -> None:
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        self.process.wait()
        self.log.close()
