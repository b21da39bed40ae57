"""Writing a command's output files and folders durably and atomically, and never over something unasked.

Everything lenet_tf publishes (checkpoints' epoch folders, ``run.json``, exports, ``.tflite`` files, figures,
caches) goes through :func:`publish` (or :func:`write_atomic`, which stages a file and calls it), in the order git
and SQLite use: the new object's data fsynced, then its folders, then the rename that publishes it, then the
parent folder fsynced, and only then is what it replaced deleted. A failing fsync or rename is an error and leaves
the previous object at the path; a failing deletion afterwards is only a warning (the new object is already
there), never an abort.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
import stat
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

from lenet_tf.core.errors import OutputError

TMP_PREFIX = ".tmp-lenet_tf-"
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2  # renameat2(2) flags (linux/fs.h)
_AT_FDCWD = -100


def describe_os_error(err: OSError) -> str:
    """The reason of an OSError without its Python decoration ("No space left on device")."""
    return err.strerror or str(err)


def warn(message: str) -> None:
    """Prints a warning line on stderr: something that did not stop the command (a leftover that could not be
    deleted) but that the user may want to act on."""
    print(f"lenet-tf: warning: {message}", file=sys.stderr, flush=True)


def current_umask() -> int:
    """The process's umask (reading it means setting it, so it is put back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def cache_home() -> Path:
    """The folder lenet_tf caches into: ``$XDG_CACHE_HOME/lenet_tf``, else ``~/.cache/lenet_tf``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")) / "lenet_tf"


def private_folder(folder: str | os.PathLike) -> Path:
    """Creates ``folder`` (mode 0700, parents as needed) or checks the one there: a real folder (not a symbolic
    link), owned by this user, that no one else may write. For caches whose contents are trusted (code is loaded
    from them), so that another user of the machine cannot plant anything there.

    Raises:
      OutputError: it is a link or a file, belongs to another user, or is group- or world-writable.
    """
    folder = Path(folder)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(folder)
    except OSError as err:
        raise OutputError(f"{folder}: cannot create the folder ({describe_os_error(err)})") from None
    if not stat.S_ISDIR(info.st_mode):
        raise OutputError(f"{folder}: is {'a symbolic link' if stat.S_ISLNK(info.st_mode) else 'not a folder'}, "
                          "expected a private folder; it is not used")
    if info.st_uid != os.geteuid():
        raise OutputError(f"{folder}: belongs to another user (uid {info.st_uid}); it is not used")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise OutputError(f"{folder}: others may write it (mode {stat.S_IMODE(info.st_mode):o}); it is not used "
                          "(chmod 700 it)")
    return folder


def make_folder(folder: str | os.PathLike) -> Path:
    """Creates ``folder`` (and its parents) if needed.

    Raises:
      OutputError: it is a file, or cannot be created.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{folder}: is a file, expected a folder") from None
    except OSError as err:
        raise OutputError(f"{folder}: cannot create the folder ({describe_os_error(err)})") from None
    return folder


def check_new_files(paths: list[Path], overwrite: bool, flag: str = "--overwrite") -> None:
    """Raises unless every path is free, or (with ``overwrite``) an existing regular file that may be replaced.

    Call it for all of a command's outputs before writing the first, so a refusal leaves nothing half-done.
    """
    for path in paths:
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise OutputError(f"{path}: exists and is not a regular file; it is left alone")
        if path.exists() and not overwrite:
            raise OutputError(f"{path}: already exists; pass {flag} to replace it")


def not_writable(folder: str | os.PathLike, err: OSError) -> str:
    """The one-line refusal for an output ``folder`` that cannot be made or written, naming the cause."""
    return f"{folder}: output folder is not writable ({describe_os_error(err)})"


def check_writable_folder(folder: str | os.PathLike) -> None:
    """Raises OutputError unless a file can be created in ``folder`` now (one is, and deleted at once): for an
    output written only after long work, or before a run's first checkpoint."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=TMP_PREFIX):
            pass
    except OSError as err:
        raise OutputError(not_writable(folder, err)) from None


# ------------------------------------------------------------------------------------------------- durability


def sync_path(path: str | os.PathLike) -> None:
    """fsync(2) of a file or folder (never following a symbolic link). Raises the OSError of a failure."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(root: str | os.PathLike) -> None:
    """fsync of every regular file under ``root``, then of every folder, the deepest first and ``root`` last (a
    file: just that file). Links and special files are not followed."""
    root = Path(root)
    if not root.is_dir() or root.is_symlink():
        sync_path(root)
        return
    for folder, folders, files in os.walk(root, topdown=False):
        for name in files:
            if stat.S_ISREG(os.lstat(os.path.join(folder, name)).st_mode):
                sync_path(os.path.join(folder, name))
        sync_path(folder)


def remove_tree(path: str | os.PathLike, what: str = "") -> str | None:
    """Deletes a file or folder tree that has been replaced or is left over; returns ``None``, or a warning
    naming what is left when it cannot be deleted (never raises an OSError: the work it cleans up after is done).
    A symbolic link is removed, never followed."""
    path = Path(path)
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        return (f"{path}: {what + ' ' if what else ''}could not be deleted ({describe_os_error(err)}); "
                "delete it by hand")
    return None


_libc = None


def _renameat2(source: Path, target: Path, flags: int) -> bool:
    """``renameat2(source, target, flags)``; ``False`` where the kernel, C library or file system lacks it (the
    caller falls back), the OSError of any other failure."""
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    function = getattr(_libc, "renameat2", None)
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), ctypes.c_uint(flags)) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):  # EINVAL: this file system has no such flag
        return False
    raise OSError(code, os.strerror(code), str(source), None, str(target))


def rename_noreplace(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Renames ``source`` to ``target``, failing with FileExistsError if ``target`` exists (``RENAME_NOREPLACE``;
    elsewhere a check, then ``os.rename``, which still refuses a folder that is not empty)."""
    source, target = Path(source), Path(target)
    if _renameat2(source, target, _RENAME_NOREPLACE):
        return
    if target.exists() or target.is_symlink():
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
    os.rename(source, target)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive within the block take effect when it ends (in the main thread; elsewhere
    the block is unprotected): for the two renames of a replacement that must not be parted."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {number: signal.signal(number, lambda number, frame: caught.append(number))
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in caught[:1]:
            os.kill(os.getpid(), number)  # delivered now, to the handler the process had


def _exchange(staged: Path, target: Path) -> Path:
    """Puts ``staged`` at ``target`` and the object that was there aside; returns where it now is. At every moment
    one of them is at ``target``."""
    if _renameat2(staged, target, _RENAME_EXCHANGE):
        return staged  # one atomic step: the old object now has the staged name
    holder = Path(tempfile.mkdtemp(dir=target.parent, prefix=TMP_PREFIX))
    aside = holder / target.name
    with signals_deferred():
        try:
            os.rename(target, aside)
        except BaseException:
            remove_tree(holder)
            raise
        try:
            os.rename(staged, target)
        except BaseException:
            os.rename(aside, target)  # put the old one back: the path is never left empty
            remove_tree(holder)
            raise
    return holder


class NotSyncedError(OSError):
    """The object was published (renamed into place), but the fsync of its folder that makes that durable failed."""


def publish(staged: str | os.PathLike, target: str | os.PathLike, *, replace: bool = False) -> list[str]:
    """Makes the finished file or folder ``staged`` (beside ``target``, on its file system) appear at ``target``.

    Order: ``staged``'s data and folders fsynced; the rename; ``target``'s folder fsynced; then (``replace``) the
    object ``target`` held deleted. A file replaces a file with one atomic rename; a folder replaces a folder by
    an exchange (``renameat2(RENAME_EXCHANGE)``, or two renames undone on failure, with SIGINT/SIGTERM held back
    between them), so a failing call or a signal at any point leaves the old or the new object at ``target``.
    Without ``replace`` an existing ``target`` is never replaced (FileExistsError).

    Returns:
      Warnings: what could not be deleted after publishing (see :func:`remove_tree`).

    Raises:
      OSError: of an fsync or the rename; ``target`` then holds what it held, ``staged`` is left to the caller.
      NotSyncedError: the final fsync of ``target``'s folder failed after the rename: ``target`` then holds the
        new object, and the replaced one is kept (where the caller's staging folder is).
    """
    staged, target = Path(staged), Path(target)
    sync_tree(staged)
    old = None
    if not replace:
        rename_noreplace(staged, target)
    elif staged.is_dir() and target.is_dir() and not target.is_symlink():
        old = _exchange(staged, target)
    else:
        os.replace(staged, target)  # a file: atomic, and the kernel frees the old one once nothing holds it
    try:
        sync_path(target.parent)
    except OSError as err:
        raise NotSyncedError(err.errno, err.strerror, str(target.parent)) from None
    warning = remove_tree(old, "the replaced copy") if old is not None else None
    return [warning] if warning else []


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Calls ``write(tmp)`` on a temporary file beside ``path``, then publishes it at ``path`` (:func:`publish`:
    synced, renamed, its folder synced).

    Whatever ``write`` raises (it may also check, at the last moment, that ``path`` may still be replaced)
    leaves ``path`` as it was and no temporary file behind.

    Raises:
      OutputError: the file cannot be written; ``path`` is then as it was, which the message says when there was
        a file (or, if only the final sync of its folder failed, holds the new file, which the message says).
    """
    path = Path(path)
    tmp = None
    try:
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=path.suffix)
        os.close(handle)
        tmp = Path(name)
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        publish(tmp, path, replace=True)
    except BaseException as err:
        if tmp is not None and not isinstance(err, NotSyncedError):
            remove_tree(tmp)
        if isinstance(err, OSError):
            if isinstance(err, NotSyncedError):
                raise OutputError(f"{path}: written, but its folder could not be synced to disk "
                                  f"({describe_os_error(err)})") from None
            previous = "; the previous file is untouched" if os.path.lexists(path) else ""
            raise OutputError(f"{path}: cannot write ({describe_os_error(err)}){previous}") from None
        raise
    return path
