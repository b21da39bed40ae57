"""Reading a training folder without writing it: its run record, the Saver prefix of an epoch, and the forms of
checkpoint path users pass (``SavedModel``, ``SavedModel/epoch-0007``, ``SavedModel/epoch-0007/ckpt``).

On the ground floor so that :class:`lenet_tf.model.LeNet5` can restore from a training folder without the writing
machinery (:mod:`lenet_tf.runs`). Only regular files and real folders are followed.
"""

from __future__ import annotations

import os
from pathlib import Path

from lenet_tf.core.errors import CheckpointError
from lenet_tf.core.regular_files import SpecialFileError, kind_of, read_regular
from lenet_tf.core.tf import tf, tf1
from lenet_tf.core import json_text

RUN_FILE = "run.json"
CHECKPOINT_NAME = "ckpt"


def describe_tf_error(err: tf.errors.OpError) -> str:
    """The one line of a TensorFlow error that says what went wrong (its first line is often only
    "Graph execution error:")."""
    noise = ("Graph execution error", "Detected at node", "Node:", "File ", "[[", "Hint:")
    for line in err.message.splitlines():
        line = line.strip()
        if line and not line.startswith(noise):
            return line.rsplit("; ", 1)[-1]  # "path.tempstate123; No space left on device" -> the cause
    return err.message.strip().splitlines()[0] if err.message.strip() else type(err).__name__


def _valid_folder_name(name) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name and "\\" not in name


def _check_record(run, path: Path) -> None:
    """Raises CheckpointError unless ``run`` has the fields every reader relies on, pointing inside the folder."""
    def bad(what: str):
        return CheckpointError(f"{path}: not a valid lenet_tf run record ({what})")

    if not isinstance(run, dict) or not isinstance(run.get("model"), dict):
        raise bad("no model configuration")
    if "best" not in run:
        raise bad("no finished epoch recorded")
    for which in ("best", "last"):
        if which not in run:
            continue
        pointer = run[which]
        if not isinstance(pointer, dict) or not isinstance(pointer.get("epoch"), int):
            raise bad(f"'{which}' must be an object with an epoch number")
        if not _valid_folder_name(pointer.get("dir")):
            raise bad(f"'{which}.dir' must name a checkpoint folder inside the run folder, got {pointer.get('dir')!r}")
    if "checkpoints" in run and not (isinstance(run["checkpoints"], list)
                                     and all(map(_valid_folder_name, run["checkpoints"]))):
        raise bad("'checkpoints' must list folder names inside the run folder")
    if not isinstance(run.get("history", []), list) or not isinstance(run.get("train", {}), dict):
        raise bad("'history' must be a list and 'train' an object")


def read_run(out_dir: str | os.PathLike) -> dict:
    """Loads and checks ``run.json`` of a training folder.

    Raises:
      CheckpointError: the folder or its run record is missing, unreadable or malformed.
    """
    path = Path(out_dir) / RUN_FILE
    if Path(out_dir).is_file():
        raise CheckpointError(f"{out_dir}: is a file, not a checkpoint folder (a training folder holds run.json)")
    if not Path(out_dir).is_dir():
        raise CheckpointError(f"{out_dir}: no such checkpoint folder (train first with `lenet-tf train`)")
    try:
        run = json_text.loads(read_regular(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; {out_dir} holds no finished epoch") from None
    except SpecialFileError as err:
        raise CheckpointError(f"{path}: {err.strerror}; it is left alone") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable run record ({err})") from None
    _check_record(run, path)
    return run


def checkpoint_prefix(out_dir: str | os.PathLike, which: str = "best", run: dict | None = None) -> str:
    """The Saver prefix of the ``best`` or ``last`` epoch's checkpoint in a training folder."""
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    run = run or read_run(out_dir)
    folder = Path(out_dir) / run[which]["dir"]
    if folder.is_symlink():
        raise CheckpointError(f"{folder}: is a symbolic link, not a checkpoint folder of the run; it is left alone")
    prefix = folder / CHECKPOINT_NAME
    if not Path(str(prefix) + ".index").is_file():
        raise CheckpointError(f"{prefix}: checkpoint files are missing (partial or deleted checkpoint)")
    return str(prefix)


def resolve_checkpoint(path: str | os.PathLike, which: str = "best") -> str:
    """The Saver prefix that ``path`` names, in any of the forms a user may pass.

    Args:
      path: a training folder (``SavedModel``: its ``which`` epoch), an epoch folder (``SavedModel/epoch-0007``),
        a Saver prefix (``SavedModel/epoch-0007/ckpt``, or one of its ``.index``/``.data-*`` files), or a folder
        that a plain ``tf.compat.v1.train.Saver`` wrote with its ``checkpoint`` state file (its latest save).
      which: ``"best"`` or ``"last"`` epoch of a training folder; the other forms name one checkpoint already.

    Raises:
      CheckpointError: ``path`` is none of these, or its checkpoint files are missing.
    """
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    given = Path(path)
    if (given.suffix == ".index" or given.suffix.startswith(".data-")) and given.is_file():
        given = given.with_suffix("")  # one of the checkpoint's files: its prefix
    if Path(f"{given}.index").is_file():
        return str(given)
    if (given / RUN_FILE).exists() or (given / RUN_FILE).is_symlink():  # read_run refuses anything but a file
        return checkpoint_prefix(given, which)
    if (given / f"{CHECKPOINT_NAME}.index").is_file():
        return str(given / CHECKPOINT_NAME)
    if given.is_dir():
        latest = tf1.train.latest_checkpoint(str(given))
        if latest and Path(f"{latest}.index").is_file():
            return latest
        raise CheckpointError(f"{path}: holds no checkpoint (expected {RUN_FILE} of a training folder, "
                              f"{CHECKPOINT_NAME}.index of an epoch folder, or a Saver's `checkpoint` file)")
    if given.exists():  # a file, a FIFO, a socket, …
        raise CheckpointError(f"{path}: is {kind_of(given)}, not a checkpoint folder or Saver prefix")
    raise CheckpointError(f"{path}: no such checkpoint folder or Saver prefix (expected a training folder such as "
                          "SavedModel, an epoch folder such as SavedModel/epoch-0007, or a prefix such as "
                          "SavedModel/epoch-0007/ckpt; train first with `lenet-tf train`)")
