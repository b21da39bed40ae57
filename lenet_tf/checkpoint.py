"""The training output folder: crash-safe checkpoints and the run record that points at them.

Layout of the folder (``SavedModel/`` by default)::

    run.json            hyper-parameters, model config, history, pointers to the best and last epoch
    epoch-0007/ckpt.*   a tf.compat.v1.train.Saver checkpoint (weights + Adam state)

Each checkpoint is written into a hidden temporary folder and renamed into place, and ``run.json`` is
replaced atomically afterwards, so an interruption at any moment leaves the previous state intact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from lenet_tf._tf import tf, tf1
from lenet_tf.errors import CheckpointError

RUN_FILE = "run.json"
CHECKPOINT_NAME = "ckpt"
_TMP_PREFIX = ".tmp-"


def _describe(err: OSError) -> str:
    return err.strerror or str(err)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(tmp: Path, final: Path, mode: int) -> None:
    """Gives a temporary file or folder the usual permissions, then renames it to ``final``."""
    os.chmod(tmp, mode & ~_umask())
    os.replace(tmp, final)


def prepare_output_dir(out_dir: str | os.PathLike) -> Path:
    """Creates ``out_dir`` if needed, checks it is writable and removes leftovers of interrupted writes."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not out.is_dir():
            raise CheckpointError(f"{out}: is a file, expected an output folder")
        with tempfile.NamedTemporaryFile(dir=out, prefix=_TMP_PREFIX):
            pass
    except OSError as err:
        raise CheckpointError(f"{out}: output folder is not writable ({_describe(err)})") from None
    for leftover in out.glob(_TMP_PREFIX + "*"):
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    return out


def write_json_atomic(path: str | os.PathLike, data: dict) -> None:
    """Writes ``data`` as JSON to a temporary file in the same folder, then renames it over ``path``."""
    path = Path(path)
    tmp_name = None
    try:
        handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX, suffix=".json")
        with os.fdopen(handle, "w") as tmp:
            json.dump(data, tmp, indent=2)
            tmp.flush()
            os.fsync(tmp.fileno())
        _publish(Path(tmp_name), path, 0o666)
    except OSError as err:
        if tmp_name:
            Path(tmp_name).unlink(missing_ok=True)
        raise CheckpointError(f"{path}: cannot write ({_describe(err)}); the previous file is untouched") from None


def save(saver: tf1.train.Saver, session: tf1.Session, out_dir: Path, name: str) -> str:
    """Saves a checkpoint as ``out_dir/name/ckpt`` via a temporary folder; returns the folder name."""
    final = out_dir / name
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=_TMP_PREFIX))
    try:
        saver.save(session, str(tmp / CHECKPOINT_NAME), write_meta_graph=False, write_state=False)
        if final.exists():
            shutil.rmtree(final)
        _publish(tmp, final, 0o777)
    except (OSError, tf.errors.OpError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = _describe(err) if isinstance(err, OSError) else err.message.splitlines()[0]
        raise CheckpointError(f"{final}: cannot save checkpoint ({reason}); the previous one is untouched") from None
    return name


def prune(out_dir: Path, keep: set[str]) -> None:
    """Removes checkpoint folders of earlier epochs that ``run.json`` no longer points at."""
    for folder in out_dir.glob("epoch-*"):
        if folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)


def read_run(out_dir: str | os.PathLike) -> dict:
    """Loads ``run.json`` of a training folder.

    Raises:
      CheckpointError: the folder or its run record is missing or unreadable.
    """
    path = Path(out_dir) / RUN_FILE
    if not Path(out_dir).is_dir():
        raise CheckpointError(f"{out_dir}: no such checkpoint folder (train first with `lenet-tf train`)")
    try:
        run = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; {out_dir} holds no finished epoch") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable run record ({err})") from None
    if not isinstance(run, dict) or "model" not in run or "best" not in run:
        raise CheckpointError(f"{path}: not a lenet_tf run record")
    return run


def checkpoint_prefix(out_dir: str | os.PathLike, which: str = "best", run: dict | None = None) -> str:
    """The Saver prefix of the ``best`` or ``last`` epoch's checkpoint in a training folder."""
    run = run or read_run(out_dir)
    prefix = Path(out_dir) / run[which]["dir"] / CHECKPOINT_NAME
    if not Path(str(prefix) + ".index").exists():
        raise CheckpointError(f"{prefix}: checkpoint files are missing (partial or deleted checkpoint)")
    return str(prefix)


def record_epoch(saver: tf1.train.Saver, session: tf1.Session, out_dir: Path, run: dict, stats: dict) -> None:
    """Checkpoints a finished epoch, then atomically points ``run.json`` at it.

    ``run["best"]`` follows the highest ``stats["valid_accuracy"]``, ``run["last"]`` the newest epoch; checkpoints
    that neither points at any more are removed.
    """
    name = save(saver, session, out_dir, f"epoch-{stats['epoch']:04d}")
    run["history"].append(stats)
    run["last"] = {"epoch": stats["epoch"], "dir": name}
    if "best" not in run or stats["valid_accuracy"] > run["best"]["valid_accuracy"]:
        run["best"] = {"epoch": stats["epoch"], "dir": name, "valid_accuracy": stats["valid_accuracy"]}
    write_json_atomic(out_dir / RUN_FILE, run)
    prune(out_dir, {run["best"]["dir"], run["last"]["dir"]})


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
    if (given / RUN_FILE).is_file():
        return checkpoint_prefix(given, which)
    if (given / f"{CHECKPOINT_NAME}.index").is_file():
        return str(given / CHECKPOINT_NAME)
    if given.is_dir():
        latest = tf1.train.latest_checkpoint(str(given))
        if latest and Path(f"{latest}.index").is_file():
            return latest
        raise CheckpointError(f"{path}: holds no checkpoint (expected {RUN_FILE} of a training folder, "
                              f"{CHECKPOINT_NAME}.index of an epoch folder, or a Saver's `checkpoint` file)")
    raise CheckpointError(f"{path}: no such checkpoint folder or Saver prefix (expected a training folder such as "
                          "SavedModel, an epoch folder such as SavedModel/epoch-0007, or a prefix such as "
                          "SavedModel/epoch-0007/ckpt; train first with `lenet-tf train`)")
