"""Where a command's wall time goes: seconds per named phase, measured with a monotonic clock."""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

STARTED = time.perf_counter()  # when lenet_tf.core.timing was first imported: the start of a `lenet-tf` command


def since_start() -> float:
    """Seconds since this module was imported (for ``lenet-tf``, since the command started)."""
    return time.perf_counter() - STARTED


class Timings:
    """Accumulates seconds per phase, keeping the order in which phases first appear."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

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
