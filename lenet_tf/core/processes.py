"""Starting the package's child processes safely: Python children with ``-P`` (the current folder is not put
first on ``sys.path``, so a ``numpy/`` folder there is never imported), and tools killed with their whole process
group when they overrun (a compiler's ``cc1plus`` holds the output pipe after the driver is killed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def python_module(module: str, *args: str) -> list[str]:
    """The command line running ``python -P -m module args…`` with this interpreter."""
    return [sys.executable, "-P", "-m", module, *args]


def run_bounded(command: list[str], timeout: float) -> tuple[int, str]:
    """Runs ``command`` in a process group of its own (stdout discarded); returns its exit status and stderr.

    Raises:
      subprocess.TimeoutExpired: it ran longer than ``timeout`` s; the whole group has then been killed.
      OSError: it cannot be started.
    """
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.communicate()
        raise
    return process.returncode, stderr
