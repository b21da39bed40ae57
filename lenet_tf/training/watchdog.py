"""Ending a cluster's process in bounded time when a member never comes, stops answering, or a signal asks.

TensorFlow's distributed runtime waits forever for a member that is gone, inside C++ calls that Python's signal
handlers cannot interrupt (they run only once the main thread is back in Python). So every process of a cluster
runs a :class:`Watchdog`:

* **Joining**: :meth:`Watchdog.wait_for_members` waits until every member accepts TCP connections on its address,
  for at most ``join_timeout`` seconds, then names those that never came.
* **Heartbeat**: a thread connects to every member every :data:`PROBE_SECONDS`; a member that refuses (or does not
  answer) for ``member_timeout`` seconds is gone. A member that has legitimately finished is first
  :meth:`released <Watchdog.release>`.
* **Signals**: the thread also receives SIGINT/SIGTERM (through ``signal.set_wakeup_fd``, written by the C-level
  handler even while the main thread is blocked).

On either event the main thread gets :data:`EXIT_GRACE_SECONDS` to end by itself (it raises the failure in one
line if it can); after that the thread prints that line and ends the process with ``os._exit``, once any
checkpoint being recorded is complete (:attr:`Watchdog.recording`): files on disk are only ever replaced
atomically, so the last finished epoch stays valid.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import threading
import time

from lenet_tf.core.errors import TrainingError

PROBE_SECONDS = 0.5
MEMBER_TIMEOUT_SECONDS = 5.0
JOIN_TIMEOUT_SECONDS = 120.0
EXIT_GRACE_SECONDS = 3.0
RECORD_WAIT_SECONDS = 15.0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def reachable(address: str, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


class Watchdog:
    """Watches the cluster's ``members`` (``{"worker 1": "127.0.0.1:2223", ...}``) and this process's signals.

    ``interrupted_note`` is printed after "interrupted" when a signal forces the end (e.g. where the last
    epoch stays). Use as a context manager around the work, from the main thread.
    """

    def __init__(self, members: dict[str, str], *, join_timeout: float = JOIN_TIMEOUT_SECONDS,
                 member_timeout: float = MEMBER_TIMEOUT_SECONDS, interrupted_note: str = "") -> None:
        self.members = dict(members)
        self.join_timeout, self.member_timeout = join_timeout, member_timeout
        self.interrupted_note = interrupted_note
        self.failure: str | None = None  # one line naming the member that is gone
        self.recording = threading.Lock()  # held while a checkpoint is recorded: a forced end waits for it
        self._released: set[str] = set()
        self._done = threading.Event()
        self._joined = threading.Event()  # members are watched from the moment all have come
        self._thread: threading.Thread | None = None
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self._previous_wakeup = -1

    def wait_for_members(self) -> None:
        """Blocks until every member accepts connections.

        Raises:
          MemberError: some never came within ``join_timeout`` seconds (the message names each).
        """
        began = time.monotonic()
        missing = dict(self.members)
        announced = False
        while True:
            missing = {name: address for name, address in missing.items() if not reachable(address)}
            waited = time.monotonic() - began
            if not missing:
                self._joined.set()
                return
            if waited >= self.join_timeout:
                raise MemberError(f"{_names(missing)} never came within {self.join_timeout:g} s (nothing accepts "
                                  "connections there); start every member of the cluster, or check the addresses")
            if not announced and waited >= 5:
                print(f"lenet-tf: waiting for {_names(missing)} (at most {self.join_timeout:g} s)", file=sys.stderr,
                      flush=True)
                announced = True
            time.sleep(PROBE_SECONDS)

    def release(self, *names: str) -> None:
        """Stops watching these members: they may end now (they finished their part)."""
        self._released.update(names)

    def __enter__(self) -> Watchdog:
        if threading.current_thread() is threading.main_thread():
            reader, writer = socket.socketpair()
            reader.setblocking(False)
            writer.setblocking(False)
            self._previous_wakeup = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
            self._wakeup = (reader, writer)
        self._thread = threading.Thread(target=self._watch, name="lenet_tf-watchdog", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=PROBE_SECONDS * 4)
        if self._wakeup is not None:
            signal.set_wakeup_fd(self._previous_wakeup)
            for end in self._wakeup:
                end.close()

    def _watch(self) -> None:
        last_seen: dict[str, float] = {}
        reader = self._wakeup[0] if self._wakeup else None
        while not self._done.is_set():
            if reader is not None:
                ready, _, _ = select.select([reader], [], [], PROBE_SECONDS)
                if ready and self._signalled(reader):
                    self._end(EXIT_INTERRUPTED, "lenet-tf: interrupted" + self.interrupted_note)
                    return
            elif self._done.wait(PROBE_SECONDS):
                return
            if not self._joined.is_set():
                continue
            now = time.monotonic()
            for name, address in self.members.items():
                if name in self._released or reachable(address, timeout=PROBE_SECONDS) or name not in last_seen:
                    last_seen[name] = now
                elif now - last_seen[name] >= self.member_timeout:
                    self.failure = (f"{name} ({address}) stopped answering for {self.member_timeout:g} s; the "
                                    "cluster cannot go on without it")
                    self._end(EXIT_FAILED, f"lenet-tf: error: {self.failure}")
                    return

    @staticmethod
    def _signalled(reader: socket.socket) -> bool:
        try:
            received = reader.recv(64)
        except BlockingIOError:
            return False
        return any(number in (signal.SIGINT, signal.SIGTERM) for number in received)

    def _end(self, status: int, line: str) -> None:
        """Gives the main thread its grace to end by itself, then ends the process."""
        if self._done.wait(EXIT_GRACE_SECONDS):
            return
        if self.recording.acquire(timeout=RECORD_WAIT_SECONDS):  # a checkpoint being recorded is finished first
            if self._done.is_set():
                return
        print(line, file=sys.stderr, flush=True)
        os._exit(status)


class MemberError(TrainingError):
    """A member of the cluster never came or is gone."""


def _names(members: dict[str, str]) -> str:
    return ", ".join(f"{name} ({address})" for name, address in members.items())
