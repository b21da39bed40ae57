"""Where a command's wall time goes: seconds per named phase, measured with a monotonic clock."""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

STARTED = time.perf_counter()  # when lenet_tf.core.timing was first imported: the start of a `lenet-tf` process

_commands: list[float] = []  # the start of each command running in this process, innermost last


@contextlib.contextmanager
def command(started: float | None = None) -> Iterator[None]:
    """Marks a command as running: within the block :func:`command_started` is ``started`` (default: now)."""
    _commands.append(time.perf_counter() if started is None else started)
    try:
        yield
    finally:
        _commands.pop()


def command_started() -> float | None:
    """When the running command started (:func:`command`), or None outside any (a library call from Python)."""
    return _commands[-1] if _commands else None


class Timings:
    """Accumulates seconds per phase from ``started`` on (default: now), keeping the order in which phases first
    appear."""

    def __init__(self, started: float | None = None) -> None:
        self.started = time.perf_counter() if started is None else started  # a time.perf_counter() value
        self.seconds: dict[str, float] = {}

    def elapsed(self) -> float:
        """Seconds since ``started``."""
        return time.perf_counter() - self.started

    def add(self, phase: str, seconds: float) -> None:
        """Adds ``seconds`` to ``phase``."""
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Times the block into phase ``name`` (also when it raises)."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - began)

    def to_dict(self) -> dict[str, float]:
        """The phases in seconds, rounded to milliseconds."""
        return {name: round(seconds, 3) for name, seconds in self.seconds.items()}


def format_timing(timing: dict[str, float]) -> str:
    """One line: ``timing: tf_import 3.10 s, data 0.21 s, … (total 20.5 s)``."""
    parts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in timing.items() if name != "total")
    total = f" (total {timing['total']:.1f} s)" if "total" in timing else ""
    return f"timing: {parts}{total}"
