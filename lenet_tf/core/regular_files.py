"""Only regular files and folders are followed: a symbolic link, FIFO, socket or device where one of our files
goes is refused (and never opened in a way that could block, as opening a FIFO for reading does)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_KINDS = [(stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")]


class SpecialFileError(OSError):
    """A path names something other than a regular file (or folder) where one was expected."""


def special_kind(path: str | os.PathLike, *, follow_links: bool = False) -> str | None:
    """What ``path`` is when it is neither absent, a regular file nor a folder ("a FIFO", "a symbolic link", …);
    ``None`` otherwise. Follows a symbolic link only with ``follow_links`` (then a dangling one is absent)."""
    try:
        mode = (os.stat if follow_links else os.lstat)(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), None)


def kind_of(path: str | os.PathLike) -> str:
    """What ``path``, which exists and is no folder, is, for a message: "a file", "a FIFO", "a socket", …"""
    return special_kind(path, follow_links=True) or "a file"


def open_regular(path: str | os.PathLike, flags: int = os.O_RDONLY, mode: int = 0o666, *,
                 follow_links: bool = False) -> int:
    """``os.open`` that never blocks on a FIFO and, unless ``follow_links`` (for a file only read, such as a data
    set linked into place), never follows a symbolic link; returns the descriptor.

    Raises:
      SpecialFileError: ``path`` is not a regular file (the message says what it is).
      OSError: it cannot be opened.
    """
    no_follow = 0 if follow_links else os.O_NOFOLLOW
    try:
        fd = os.open(path, flags | no_follow | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as err:
        if err.errno == errno.ELOOP and not follow_links:
            raise SpecialFileError(errno.ELOOP, "is a symbolic link, not a regular file", str(path)) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        kind = special_kind(path, follow_links=follow_links)
        raise SpecialFileError(errno.EINVAL, f"is {kind}, not a regular file" if kind else "not a regular file",
                               str(path))
    os.set_blocking(fd, True)
    return fd


def read_regular(path: str | os.PathLike, *, follow_links: bool = False) -> bytes:
    """The bytes of a regular file (see :func:`open_regular`)."""
    fd = open_regular(path, follow_links=follow_links)
    with os.fdopen(fd, "rb") as file:
        return file.read()


def describe(err: OSError) -> str:
    """A :class:`SpecialFileError` or other OSError as ``path: reason``."""
    reason = err.strerror or str(err)
    return f"{err.filename}: {reason}" if err.filename else reason


def check_folder(path: str | os.PathLike, what: str = "folder") -> Path:
    """Raises :class:`SpecialFileError` unless ``path`` is absent or a real folder (not a link to one)."""
    path = Path(path)
    kind = special_kind(path)
    if kind:
        raise SpecialFileError(errno.EINVAL, f"is {kind}, not a {what}; it is left alone", str(path))
    if path.exists() and not path.is_dir():
        raise SpecialFileError(errno.ENOTDIR, f"is a file, expected a {what}", str(path))
    return path
