"""The training output folder: crash-safe checkpoints and the run record that points at them.

Layout of the folder (``SavedModel/`` by default)::

    run.json            hyper-parameters, model config, history, pointers to the best and last epoch,
                        and the checkpoint folders this run owns
    epoch-0007/ckpt.*   a tf.compat.v1.train.Saver checkpoint (weights + Adam state)
    epoch-0007/run-id   the ``id`` of the run that wrote it (see :func:`remove_orphans`)

Only regular files and real folders are followed: a ``run.json`` or epoch folder that is a symbolic link, FIFO or
the like is refused and left alone. Writers and readers of one folder take its locks (:mod:`lenet_tf.runs.lock`).

Each checkpoint is written into a hidden temporary folder, synced and renamed to a name that is free
(``epoch-0007``, or ``epoch-0007-2`` if something else already has that name), and ``run.json`` is replaced
atomically afterwards (both with :func:`lenet_tf.core.outputs.publish`: data, folder, rename, parent folder), so an
interruption or a power cut at any moment leaves the previous state intact. Nothing is ever replaced: the only
things this module deletes are checkpoint folders that ``run.json`` lists as the run's own and no longer points
at, and only after the record that drops them is on disk; one that cannot be deleted is a warning and stays listed,
to be deleted with a later epoch.

A writer killed between publishing an epoch's folder and recording it leaves a folder ``run.json`` does not name;
every folder a run writes holds its ``run-id``, so that the run's next writer (``--resume``, ``--overwrite``) can tell
its own leftovers (:func:`remove_orphans`) from anything else, which stays untouched.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path

from lenet_tf.core.checkpoint_paths import (CHECKPOINT_NAME, RUN_FILE, checkpoint_prefix,  # noqa: F401 (re-exported)
                                            describe_tf_error, read_run, resolve_checkpoint)
from lenet_tf.core.tf import tf, tf1
from lenet_tf.core.errors import CheckpointError, OutputError
from lenet_tf.core.outputs import (TMP_PREFIX, check_writable_folder, current_umask, describe_os_error, not_writable,
                                   publish, remove_tree, warn, write_atomic)
from lenet_tf.runs import lock

RUN_FORMAT = 2  # 2 added "checkpoints"; format 1 records are read as owning their best and last folders
RUN_ID_FILE = "run-id"  # in each checkpoint folder: the id of the run that wrote it


def new_run_id() -> str:
    """A run's ``id`` (32 hex digits), recorded in ``run.json`` and in each of its checkpoint folders."""
    return uuid.uuid4().hex


def describe_run(run: dict) -> str:
    """A short description of a run record for messages, e.g. "10 epochs, finished"."""
    epochs = len(run.get("history", []))
    state = "finished" if run.get("complete") else "unfinished"
    return f"{epochs} epoch{'s' if epochs != 1 else ''}, {state}"


def prepare_output_dir(out_dir: str | os.PathLike, *, resume: bool = False, overwrite: bool = False
                       ) -> tuple[Path, dict | None]:
    """Creates ``out_dir`` if needed and checks that a run may be written there.

    Returns the folder and the run record already in it (``None`` when there is none). A folder holding a run is
    refused unless ``resume`` (continue it) or ``overwrite`` (replace it, once the new run has written its first
    checkpoint); a ``run.json`` that is not a lenet_tf run record is never replaced.

    Raises:
      CheckpointError: the folder is not writable, or holds a run and neither flag allows touching it.
    """
    if resume and overwrite:
        raise CheckpointError("--resume continues the run in --out and --overwrite replaces it: pass only one")
    out = Path(out_dir)
    if resume:
        previous = read_run(out)
    else:
        previous = None
        if (out / RUN_FILE).exists() or (out / RUN_FILE).is_symlink():
            try:
                previous = read_run(out)
            except CheckpointError as err:
                raise CheckpointError(f"{err}; it is not replaced: choose another --out") from None
            if not overwrite:
                raise CheckpointError(f"{out}: holds a lenet_tf run ({describe_run(previous)}); pass --resume to "
                                      "continue it or --overwrite to replace it, or choose another --out")
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out}: is a file, expected an output folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CheckpointError(not_writable(out, err)) from None
    try:
        check_writable_folder(out)
    except OutputError as err:
        raise CheckpointError(str(err)) from None
    return out, previous


def write_json_atomic(path: str | os.PathLike, data: dict) -> None:
    """Writes ``data`` as JSON to a temporary file in the same folder, synced, then renames it over ``path``."""
    try:
        write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2)))
    except OutputError as err:
        raise CheckpointError(str(err)) from None


def free_name(folder: Path, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``, … : the first name nothing in ``folder`` has."""
    name, n = base, 1
    while (folder / name).exists() or (folder / name).is_symlink():
        n += 1
        name = f"{base}-{n}"
    return name


def save(saver: tf1.train.Saver, session: tf1.Session, out_dir: Path, name: str, run_id: str | None = None) -> str:
    """Saves a checkpoint as ``out_dir/NAME/ckpt`` via a temporary folder, where NAME is ``name`` or, if that is
    taken, the next free variant (see :func:`free_name`); returns NAME. Never replaces anything. ``run_id`` is
    written first, as ``NAME/run-id``, marking the folder (and its temporary folder) as the run's own."""
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=TMP_PREFIX))
        if run_id:
            (tmp / RUN_ID_FILE).write_text(run_id)
        saver.save(session, str(tmp / CHECKPOINT_NAME), write_meta_graph=False, write_state=False)
        name = free_name(out_dir, name)
        os.chmod(tmp, 0o777 & ~current_umask())
        publish(tmp, out_dir / name)  # never replaces: a folder of that name appearing meanwhile fails
    except (OSError, tf.errors.OpError) as err:
        if tmp is not None:  # ours, unrecorded: after a failed publish, wherever it is
            remove_tree(out_dir / name if (out_dir / name).exists() and not tmp.exists() else tmp)
        reason = describe_os_error(err) if isinstance(err, OSError) else describe_tf_error(err)
        raise CheckpointError(
            f"{out_dir / name}: cannot save checkpoint ({reason}); the previous one is untouched") from None
    return name


def owned_checkpoints(run: dict) -> set[str]:
    """The checkpoint folders a run record owns (format 1 records: the best and the last)."""
    if "checkpoints" in run:
        return set(run["checkpoints"])
    return {run[which]["dir"] for which in ("best", "last") if which in run}


def record_epoch(saver: tf1.train.Saver, session: tf1.Session, out_dir: Path, run: dict, stats: dict,
                 stale: set[str] = frozenset()) -> list[str]:
    """Checkpoints a finished epoch, then atomically points ``run.json`` at it.

    ``run["best"]`` follows the highest ``stats["valid_accuracy"]``, ``run["last"]`` the newest epoch. Then the
    run's own checkpoint folders that neither points at any more are deleted, together with ``stale``: folders
    of a run that this one replaces (``--overwrite``), which are only deleted once this run's record is written.

    Never aborts for what is only housekeeping: readers that hold the record lock longer than
    :data:`lenet_tf.runs.lock.UPDATE_WAIT_SECONDS` leave this epoch to be recorded with the next one (or by the
    run's final record), and a folder that cannot be deleted stays listed for a later epoch. Each such event is
    printed as a warning line (:func:`lenet_tf.core.outputs.warn`) and returned.

    Raises:
      CheckpointError: the checkpoint or ``run.json`` cannot be written; the previous record is then intact.
    """
    name = save(saver, session, out_dir, f"epoch-{stats['epoch']:04d}", run.get("id"))
    run["history"].append(stats)
    run["last"] = {"epoch": stats["epoch"], "dir": name}
    if "best" not in run or stats["valid_accuracy"] > run["best"]["valid_accuracy"]:
        run["best"] = {"epoch": stats["epoch"], "dir": name, "valid_accuracy": stats["valid_accuracy"]}
    keep = {run["best"]["dir"], run["last"]["dir"]}
    owned = owned_checkpoints(run) | {name} | set(stale)
    # Listed until they are gone, so that a crash in between leaves them to the next epoch's clean-up.
    run["checkpoints"] = sorted(owned)
    run["format"] = RUN_FORMAT
    warnings, left = [], set()
    try:
        with lock.updating(out_dir):  # readers see the old record and its folders, or the new one
            write_json_atomic(out_dir / RUN_FILE, run)
            for folder in sorted(owned - keep):
                warning = None if (out_dir / folder).is_symlink() else remove_checkpoint(out_dir / folder)
                if warning:
                    warnings.append(f"{warning}; it stays listed in {RUN_FILE} and is deleted with a later epoch")
                    left.add(folder)
    except lock.RecordBusy as busy:
        warnings.append(f"{busy}; epoch {stats['epoch']} is saved in {out_dir / name} and recorded with the next")
        left = owned - keep
    except CheckpointError:
        _remove_unless_recorded(out_dir, name)
        raise
    run["checkpoints"] = sorted(keep | left)
    for warning in warnings:
        warn(warning)
    return warnings


def remove_checkpoint(folder: Path) -> str | None:
    """Deletes an old epoch folder: the Saver's files and :data:`RUN_ID_FILE`, then the folder when nothing else is
    in it. A file someone else put there keeps the folder (with a warning; it is no checkpoint any more). Returns
    :func:`~lenet_tf.core.outputs.remove_tree`'s warning when a file of ours cannot be deleted."""
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return None
    except OSError:
        return remove_tree(folder, "old checkpoint")
    ours = [e for e in entries if (e.name == RUN_ID_FILE or e.name.startswith(f"{CHECKPOINT_NAME}."))
            and e.is_file() and not e.is_symlink()]
    if len(ours) == len(entries):
        return remove_tree(folder, "old checkpoint")
    for entry in ours:
        if warning := remove_tree(entry, "old checkpoint file"):
            return warning
    others = sorted(e.name for e in entries if e not in ours)
    warn(f"{folder}: old checkpoint deleted, the folder kept: it holds {others[0]!r}"
         + (f" and {len(others) - 1} more" if len(others) > 1 else "") + ", which lenet_tf did not write")
    return None


def _remove_unless_recorded(out_dir: Path, name: str) -> None:
    """After ``run.json`` failed to be written: the epoch folder ``name`` just published goes, unless the record on
    disk names it after all (only the sync of its folder failed); an unreadable record leaves it to
    :func:`remove_orphans`."""
    try:
        recorded = owned_checkpoints(read_run(out_dir)) if (out_dir / RUN_FILE).exists() else set()
    except CheckpointError:
        return
    warning = None if name in recorded else remove_tree(out_dir / name, "the unrecorded checkpoint")
    if warning:
        warn(warning)


def remove_orphans(out_dir: Path, run: dict) -> None:
    """Deletes what a killed writer of ``run`` left in ``out_dir``: the checkpoint folders (``epoch-*``) and
    temporary folders holding ``run``'s ``run-id`` that ``run.json`` does not list. Call it holding the folder's
    writer lock. Anything else, a folder of another run or none, a symbolic link, is left alone; a folder that
    cannot be deleted is a printed warning.
    """
    run_id, owned = run.get("id"), owned_checkpoints(run)
    if not run_id:
        return
    for entry in sorted(out_dir.iterdir()):
        if not (entry.name.startswith(("epoch-", TMP_PREFIX)) and entry.name not in owned) or entry.is_symlink() \
                or not entry.is_dir():
            continue
        marker = entry / RUN_ID_FILE
        try:
            ours = marker.is_file() and not marker.is_symlink() and marker.read_text() == run_id
        except OSError:
            ours = False
        warning = remove_tree(entry, "a killed run's unrecorded checkpoint") if ours else None
        if warning:
            warn(warning)
