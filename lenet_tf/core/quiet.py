"""Keeping TensorFlow quiet: its start-up and C++ log lines are hidden unless you are debugging.

Importing TensorFlow prints lines on stderr that no log level reaches (absl's "All log messages before
absl::InitializeLog() is called…", the oneDNN notice, "Could not find cuda drivers…"), so the import runs with
file descriptor 2 redirected into a temporary file, which is replayed only if the import fails. Later C++ logging
is turned down with ``TF_CPP_MIN_LOG_LEVEL=3`` (unless you set it), TensorFlow's Python logger and absl to errors,
and Python warnings raised inside TensorFlow/Keras are ignored.

libtiff, which PIL uses for compressed TIFF files, prints its warnings and errors on stderr too; its handlers are
unset once, process-wide (:func:`silence_libtiff`), so that decoding needs no redirection and no lock: PIL reports
the failure itself.

Set ``LENET_TF_DEBUG=1`` (``lenet-tf --debug`` does) to see all of it again.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
import sys
import tempfile
import threading
import warnings
from types import ModuleType
from typing import Callable, Iterator

DEBUG_ENV = "LENET_TF_DEBUG"
_FD2 = threading.Lock()  # one redirection of file descriptor 2 at a time: they would restore each other's
_NOISY_MODULES = r"(tensorflow|keras|tf_keras|absl|google\.protobuf|ml_dtypes|h5py)(\.|$)"


def debugging() -> bool:
    """Whether ``LENET_TF_DEBUG`` asks for TensorFlow's own log output."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def quiet_stderr(replay: bool = True) -> Iterator[None]:
    """Sends everything written to file descriptor 2 inside the block (C++ and Python alike) to a temporary file.

    What was written is replayed on stderr when the block raises (unless not ``replay``: the caller reports the
    error its own way; nor when the user interrupted it); when :func:`debugging`, nothing is hidden. Threads take
    turns in such blocks.
    """
    if debugging():
        yield
        return
    sys.stderr.flush()
    try:
        sink = tempfile.TemporaryFile()
    except OSError:  # no writable temporary folder: better chatter than a failure
        yield
        return
    with sink, _FD2:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to hide
            yield
            return
        os.dup2(sink.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        except KeyboardInterrupt:
            failed = False  # Ctrl-C: the lines explain no failure
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed and replay:
                sink.seek(0)
                sys.stderr.write(sink.read().decode(errors="replace"))
                sys.stderr.flush()


class ExpectedThreadFailures:
    """Until :meth:`close`, a thread's uncaught exception that ``expected(args)`` (a
    :class:`threading.ExceptHookArgs`) calls expected prints no traceback; any other goes to the hook that was in
    place before. :meth:`close` puts that hook back, unless another was installed since."""

    def __init__(self, expected: Callable[[threading.ExceptHookArgs], bool]) -> None:
        self._expected, self._previous = expected, threading.excepthook
        threading.excepthook = self._hook

    def _hook(self, args: threading.ExceptHookArgs) -> None:
        if not self._expected(args):
            self._previous(args)

    def close(self) -> None:
        """Puts back the hook that was in place before, unless another was installed since (that one stays)."""
        if threading.excepthook == self._hook:
            threading.excepthook = self._previous


@functools.cache
def silence_libtiff() -> bool:
    """Unsets libtiff's error and warning handlers (its public ``TIFFSetErrorHandler``/``TIFFSetWarningHandler``)
    in the copy PIL has loaded, once; returns whether it was found. Thread-safe and fd-free: the handlers are
    process-wide settings, not a redirection of stderr. Nothing is changed when :func:`debugging`."""
    if debugging():
        return False
    from PIL import Image  # noqa: F401 - loads PIL's C module, and with it the libtiff it links

    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:  # PIL's wheels bundle a renamed libtiff
            paths = {line.split()[-1] for line in maps if "/libtiff" in line}
    except OSError:  # not Linux
        paths = set()
    found = False
    for path in sorted(paths) or filter(None, [ctypes.util.find_library("tiff")]):
        try:
            library = ctypes.CDLL(path)
            library.TIFFSetErrorHandler.restype = library.TIFFSetWarningHandler.restype = ctypes.c_void_p
            library.TIFFSetErrorHandler.argtypes = library.TIFFSetWarningHandler.argtypes = [ctypes.c_void_p]
            library.TIFFSetErrorHandler(None)
            library.TIFFSetWarningHandler(None)
            found = True
        except (OSError, AttributeError):
            continue
    return found


def import_tensorflow(importer: Callable[[], ModuleType] | None = None) -> ModuleType:
    """Imports TensorFlow without its log chatter (see the module docstring); returns the ``tensorflow`` module.

    ``importer`` does the import itself (default: ``import tensorflow``)."""
    if not debugging():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category, module=_NOISY_MODULES)
    with quiet_stderr():
        if importer is None:
            import tensorflow as tf
        else:
            tf = importer()
    if not debugging():
        tf.get_logger().setLevel(logging.ERROR)
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    return tf
