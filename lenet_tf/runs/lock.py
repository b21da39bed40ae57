"""Locks on a training folder, so that several processes never race on it.

Two lock files live in the folder. Both are taken with ``flock(2)``, so the operating system drops a lock when
its holder ends, however it ends (``kill -9`` included): a lock is never stale and nothing ever waits forever.

``.lenet_tf.lock``, the **writer lock**
    Held exclusively, for the whole run, by the one process that writes the folder: ``train``, ``train --resume``,
    ``train --overwrite`` and a cluster's chief. It records its holder's pid, host, command and start time. It is
    taken without waiting: a second writer is refused at once, with one line naming the holder.

``.lenet_tf.record.lock``, the **record lock**
    Held exclusively by the writer only while it replaces ``run.json`` and deletes the checkpoint folders that
    ``run.json`` no longer names (milliseconds, once per epoch), and shared by every reader (``evaluate``,
    ``export``, ``predict``, ``serve``, :class:`lenet_tf.trained.TrainedModel`) while it reads ``run.json`` and
    restores the checkpoint that it names. A reader thus always sees one consistent epoch, and never waits for a
    run to end: only for an epoch's record (at most :data:`READ_WAIT_SECONDS`).

``.lenet_tf.turn.lock``, the **turnstile**
    ``flock`` gives a waiting writer no priority: readers whose shared locks overlap would keep it out for ever.
    So a reader passes the turnstile (a shared lock taken and dropped) before it takes the record lock, and the
    writer holds the turnstile exclusively while it waits for the record: no new reader starts meanwhile, and the
    writer waits only for the readers already in. Those it waits for at most :data:`UPDATE_WAIT_SECONDS`; then it
    lets them be (:class:`RecordBusy`) and records the epoch with the next one.

Lock files are created 0600: another user cannot open them, so cannot hold a lock that stalls this user's runs.

An export target is guarded by a writer lock of its own, ``.NAME.lenet_tf.lock`` beside ``NAME`` (the target
itself is replaced by a rename, so the lock cannot live inside it), which its holder deletes when done: a lock
taken on a file that is no longer at its path is taken again on the one that is, so no two holders ever meet.
A training folder's lock files stay. ``flock`` works on local file systems and on NFSv4 (where Linux emulates
it with POSIX record locks, so an exclusive lock needs a descriptor open for writing: every exclusive lock here is
taken on one); a reader of a folder it may not write skips the lock. Any error of ``flock`` itself (``ENOLCK``: an
NFS server without locking) is one line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from lenet_tf.core.checkpoint_paths import RUN_FILE
from lenet_tf.core.errors import CheckpointError
from lenet_tf.core.outputs import describe_os_error, not_writable
from lenet_tf.core.regular_files import SpecialFileError, kind_of, open_regular, read_regular
from lenet_tf.core import json_text

WRITER_LOCK = ".lenet_tf.lock"
RECORD_LOCK = ".lenet_tf.record.lock"
TURNSTILE_LOCK = ".lenet_tf.turn.lock"
LOCK_MODE = 0o600
READ_WAIT_SECONDS = 30.0
UPDATE_WAIT_SECONDS = 10.0
_POLL_SECONDS = 0.02


def _command() -> str:
    """This process's command line, as the user typed it (``python -m lenet_tf`` for the module's entry)."""
    argv = list(sys.argv) or ["python"]
    if argv[0].endswith(("lenet_tf/__main__.py", "lenet_tf\\__main__.py")):
        argv[0] = "lenet-tf"
    else:
        argv[0] = Path(argv[0]).name or argv[0]
    return " ".join(argv)


def _holder_info() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(),
            "since": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}


def _read_holder(path: Path, tries: int = 1) -> dict | None:
    """The holder recorded in a writer lock file (``None`` if it records none, e.g. its holder ended)."""
    for attempt in range(tries):  # a holder that has just taken the lock writes its line within microseconds
        if attempt:
            time.sleep(_POLL_SECONDS)
        try:
            info = json_text.loads(read_regular(path) or b"null")
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict):
            return info
    return None


def describe_holder(info: dict | None) -> str:
    """``pid 1234 (`lenet-tf train --out t4`) since 2026-12-02 08:51:03 UTC``, for messages."""
    if not info:
        return "another process (it recorded no details)"
    host = info.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"pid {info.get('pid')}{where} (`{info.get('command')}`) since {info.get('since')}"


def _open_lock_file(path: Path, writer: bool) -> int | None:
    """A descriptor of the lock file ``path``, created if absent. A writer gets one or an error; a reader falls
    back to reading it, and gets ``None`` if even that fails (a folder it may not write: a writer of ours would
    have had to create the file first)."""
    def special(err: SpecialFileError) -> CheckpointError:
        return CheckpointError(f"{path}: {err.strerror}; it is left alone (remove it)")

    try:
        fd = open_regular(path, os.O_RDWR | os.O_CREAT, LOCK_MODE)
        if os.fstat(fd).st_uid == os.geteuid() and os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, LOCK_MODE)  # made by an older version, 0644: others could lock it
        return fd
    except SpecialFileError as err:
        raise special(err) from None
    except OSError as err:
        if writer:
            raise CheckpointError(not_writable(path.parent, err)) from None
    try:
        return open_regular(path)  # a shared lock needs no write access
    except SpecialFileError as err:
        raise special(err) from None
    except OSError:
        return None


def _flock(fd: int, operation: int, wait: float, path: Path) -> bool:
    """Takes ``flock(fd, operation)``, retrying for up to ``wait`` seconds; returns whether it was taken.

    Raises:
      CheckpointError: flock itself failed (a file system without locks), naming ``path`` and the cause.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_SECONDS)
        except OSError as err:
            raise CheckpointError(f"{path}: cannot be locked ({describe_os_error(err)}); does this file system "
                                  "support locks (NFS needs lockd)?") from None


@contextlib.contextmanager
def writing(folder: str | os.PathLike, lock_name: str = WRITER_LOCK, *, what: str = "", create: bool = True,
            remove: bool = False) -> Iterator[Path]:
    """Holds the writer lock of ``folder`` (created if absent and ``create``) within the block; yields the folder.

    ``lock_name`` names the lock file inside ``folder``; ``what`` (e.g. "training folder") starts the refusal;
    ``remove`` deletes the lock file when done (safe: see :func:`_take`), and the folders this call created when
    they end empty.

    Raises:
      CheckpointError: another process holds the lock (the message names it), or the folder is not usable.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder}: is {kind_of(folder)}, expected an output folder")
    if not create and not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder (train first with `lenet-tf train`)")
    created = not folder.exists()
    made = [f for f in (folder, *folder.parents) if not f.exists()] if created else []  # leaf first
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CheckpointError(not_writable(folder, err)) from None
    path = folder / lock_name
    fd = _take(path, folder, what)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder_info()).encode() + b"\n", 0)
        try:
            yield folder
        finally:
            if remove:
                path.unlink(missing_ok=True)  # while still held: see _take
                with contextlib.suppress(OSError):  # a refused or failed command leaves no new folder
                    for made_folder in made:
                        made_folder.rmdir()  # stops at the first that is not empty
            elif created and not (folder / RUN_FILE).exists():
                _remove_unused(folder)
            else:
                os.ftruncate(fd, 0)  # "no holder" from here on, for messages; the flock goes with the descriptor
    finally:
        os.close(fd)


def _remove_unused(folder: Path) -> None:
    """Deletes a folder that :func:`writing` created and that ended holding no run: its lock files (while the
    writer lock is still held, see :func:`_take`), then the folder if nothing else is in it. A refused or failed
    command thus leaves no new folder behind."""
    for name in (RECORD_LOCK, TURNSTILE_LOCK, WRITER_LOCK):
        with contextlib.suppress(OSError):
            os.unlink(folder / name)
    with contextlib.suppress(OSError):
        folder.rmdir()  # fails, leaving it, if anything else is in it


def _take(path: Path, folder: Path, what: str) -> int:
    """The descriptor of ``path`` with its exclusive flock taken. A holder may delete the file it holds before
    letting go (``writing(remove=True)``): a lock taken on a file no longer at ``path`` is dropped and taken again
    on the file that is."""
    for _ in range(100):
        fd = _open_lock_file(path, writer=True)
        try:
            taken = _flock(fd, fcntl.LOCK_EX, 0.0, path)
        except CheckpointError:
            os.close(fd)
            raise
        if not taken:
            os.close(fd)
            raise _in_use(folder, what, _read_holder(path, tries=10))
        try:
            if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise CheckpointError(f"{path}: the lock file keeps changing; is another program deleting it?")


def _in_use(folder: Path, what: str, holder: dict | None) -> CheckpointError:
    return CheckpointError(f"{folder}: {what + ' ' if what else ''}in use by {describe_holder(holder)}; wait for "
                           "it to end or stop it (a lock whose holder died is free)")


def refuse_if_written(folder: str | os.PathLike, what: str = "") -> None:
    """Raises the refusal of :func:`writing` if another process holds ``folder``'s writer lock now: a probe (the
    lock taken and dropped at once) for a command to fail before its slow start-up; :func:`writing` is what
    excludes."""
    path = Path(folder) / WRITER_LOCK
    try:
        fd = open_regular(path, os.O_RDWR)  # on NFS an exclusive lock needs a descriptor open for writing
    except OSError:
        return  # absent, not a regular file or not writable: writing() says so
    try:
        if not _flock(fd, fcntl.LOCK_EX, 0.0, path):
            raise _in_use(Path(folder), what, _read_holder(path, tries=10))
    finally:
        os.close(fd)


def writing_target(target: str | os.PathLike) -> contextlib.AbstractContextManager:
    """The writer lock of an export target (a SavedModel folder or a ``.tflite`` file): ``.NAME.lenet_tf.lock``
    beside it, so that two exports never race on one target."""
    target = Path(target)
    return writing(target.parent, f".{target.name}{WRITER_LOCK}", what="export target", remove=True)


class RecordBusy(CheckpointError):
    """Readers held a training folder's record lock for the whole of the writer's wait."""


@contextlib.contextmanager
def updating(folder: str | os.PathLike, wait: float | None = None) -> Iterator[None]:
    """The writer's exclusive record lock, for replacing ``run.json`` and deleting folders it no longer names.
    Holds the turnstile while it waits, so readers arriving meanwhile wait for it (see the module docstring).

    Args:
      wait: seconds to wait for the readers already in (default :data:`UPDATE_WAIT_SECONDS`).

    Raises:
      RecordBusy: readers held the record for ``wait`` seconds; nothing was changed (try again later).
      CheckpointError: a lock file cannot be opened or locked.
    """
    wait = UPDATE_WAIT_SECONDS if wait is None else wait
    folder = Path(folder)
    turnstile = _open_lock_file(folder / TURNSTILE_LOCK, writer=True)
    try:
        fd = _open_lock_file(folder / RECORD_LOCK, writer=True)
        try:
            deadline = time.monotonic() + wait
            if not (_flock(turnstile, fcntl.LOCK_EX, wait, folder / TURNSTILE_LOCK)
                    and _flock(fd, fcntl.LOCK_EX, max(0.0, deadline - time.monotonic()), folder / RECORD_LOCK)):
                raise RecordBusy(f"{folder}: readers kept {RUN_FILE} locked for {wait:g} s")
            fcntl.flock(turnstile, fcntl.LOCK_UN)  # the record is ours: readers may queue on it again
            yield
        finally:
            os.close(fd)
    finally:
        os.close(turnstile)


def training_folder(path: str | os.PathLike) -> Path | None:
    """The training folder that ``path`` (the folder, an epoch folder in it, or a Saver prefix or file in one)
    lies in: the nearest of ``path`` and its two parents holding ``run.json`` or a writer lock."""
    path = Path(path)
    for candidate in (path, path.parent, path.parent.parent):
        if (candidate / RUN_FILE).exists() or (candidate / WRITER_LOCK).exists():
            return candidate
    return None


def running_writer(folder: str | os.PathLike) -> dict | None:
    """The holder of ``folder``'s writer lock if it is a live process on this machine (a guess, for messages:
    the holder's details are cleared when it ends, and a killed holder's pid is checked)."""
    info = _read_holder(Path(folder) / WRITER_LOCK) if (Path(folder) / WRITER_LOCK).is_file() else None
    if not info or info.get("host") != socket.gethostname():
        return info
    try:
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        return None
    except (PermissionError, KeyError, TypeError, ValueError):
        pass
    return info


def _pass_turnstile(folder: Path, wait: float) -> bool:
    """Waits (at most ``wait`` seconds) until no writer is waiting for the record; ``True`` unless it timed out.
    A folder without a turnstile (no writer of this version has recorded there) or one this user may not open
    has none to pass."""
    path = folder / TURNSTILE_LOCK
    try:
        fd = open_regular(path)
    except OSError:
        return True
    try:
        return _flock(fd, fcntl.LOCK_SH, wait, path)
    finally:
        os.close(fd)  # dropped at once: the turnstile only orders readers behind a waiting writer


@contextlib.contextmanager
def reading(path: str | os.PathLike, wait: float = READ_WAIT_SECONDS) -> Iterator[None]:
    """Holds the shared record lock of the training folder that ``path`` lies in (see :func:`training_folder`;
    none: no lock) within the block, so that the ``run.json`` read and the checkpoint restored in it agree.

    Raises:
      CheckpointError: the writer kept the record locked for ``wait`` seconds, or the folder is being trained
        and has no finished epoch yet.
    """
    folder = training_folder(path)
    fd = None if folder is None else _open_lock_file(folder / RECORD_LOCK, writer=False)
    try:
        if fd is not None and not (_pass_turnstile(folder, wait)
                                   and _flock(fd, fcntl.LOCK_SH, wait, folder / RECORD_LOCK)):
            raise CheckpointError(f"{folder}: its run record stayed locked for {wait:.0f} s by "
                                  f"{describe_holder(running_writer(folder))}")
        if folder is not None and not (folder / RUN_FILE).exists():
            writer = running_writer(folder)
            if writer:
                raise CheckpointError(f"{folder}: being trained by {describe_holder(writer)}; no epoch is "
                                      "finished yet, try again after the first")
        yield
    finally:
        if fd is not None:
            os.close(fd)
