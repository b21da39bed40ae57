"""Writing a command's output files (figures, JSON) atomically, and never over something unasked."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from lenet_tf.core.errors import OutputError

TMP_PREFIX = ".tmp-lenet_tf-"


def describe_os_error(err: OSError) -> str:
    """The reason of an OSError without its Python decoration ("No space left on device")."""
    return err.strerror or str(err)


def current_umask() -> int:
    """The process's umask (reading it means setting it, so it is put back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def cache_home() -> Path:
    """The folder lenet_tf caches into: ``$XDG_CACHE_HOME/lenet_tf``, else ``~/.cache/lenet_tf``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")) / "lenet_tf"


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


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None], *, sync: bool = False) -> Path:
    """Calls ``write(tmp)`` on a temporary file beside ``path``, then renames it to ``path``.

    Whatever ``write`` raises (it may also check, at the last moment, that ``path`` may still be replaced)
    leaves ``path`` as it was and no temporary file behind.

    Raises:
      OutputError: the file cannot be written; ``path`` is then as it was.
    """
    path = Path(path)
    tmp = None
    try:
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=path.suffix)
        os.close(handle)
        tmp = Path(name)
        write(tmp)
        if sync:
            with open(tmp, "rb+") as written:
                os.fsync(written.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OutputError(
                f"{path}: cannot write ({describe_os_error(err)}); the previous file is untouched") from None
        raise
    return path
