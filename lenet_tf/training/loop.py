"""What every trainer shares: the epoch loop with its progress bar, and the run's record — run.json, the
checkpoints and the TensorBoard summaries. The single-process trainer (:mod:`lenet_tf.training.trainer`) and a cluster's
chief (:mod:`lenet_tf.training.cluster`) both use them, so both write the same run.json and the same logs."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from lenet_tf.runs import checkpoint
from lenet_tf.core import timing
from lenet_tf.core.tf import IMPORT_SECONDS, IMPORT_STARTED, tf, tf1
from lenet_tf.data.mnist import Splits
from lenet_tf.core.errors import CheckpointError, OutputError, TrainingError
from lenet_tf.core.outputs import remove_tree, warn
from lenet_tf.core.quiet import ExpectedThreadFailures
from lenet_tf.core.regular_files import check_folder, describe
from lenet_tf.inference import InferenceGraph
from lenet_tf.rejection import remove_foreign_head

# One training step on a batch of training-set indices: returns the batch's loss, accuracy and the global step.
Step = Callable[[np.ndarray], tuple[float, float, int]]
Steps = Callable[[list[np.ndarray]], list[tuple[float, float, int]]]  # several batches in one call
_BATCH_SUMMARY_EVERY = 25
_RUN_LOGS = re.compile(r"run-\d{8}-\d{6}-[0-9a-f]{6}")


def epoch_batches(indices: np.ndarray, batch_size: int, seed: list[int], min_last: int = 1) -> list[np.ndarray]:
    """``indices`` shuffled by a generator seeded with ``seed`` and cut into batches; a last batch smaller than
    ``min_last`` joins the one before it. The order depends only on the seed, so a resumed run sees the same
    batches as an uninterrupted one."""
    order = np.random.default_rng(seed).permutation(indices).astype(np.int32)
    starts = list(range(0, len(order), batch_size))
    if len(starts) > 1 and len(order) - starts[-1] < min_last:
        starts.pop()
    return [order[start:end] for start, end in zip(starts, starts[1:] + [len(order)])]


def start_timings() -> timing.Timings:
    """A wall-time record from the start of the ``lenet-tf`` command that trains (:func:`timing.command`), with what
    came before the trainer: start-up, and TensorFlow's import if the command did it. Training called from Python
    outside a command is timed from the call (both 0)."""
    started = timing.command_started()
    timings = timing.Timings(started)
    tf_import = IMPORT_SECONDS if started is not None and IMPORT_STARTED >= started else 0.0
    timings.add("startup", max(0.0, timings.elapsed() - tf_import))
    timings.add("tf_import", tf_import)
    return timings


def _recorded_logs(out: Path, run: dict | None) -> Path | None:
    """The TensorBoard folder a run record names (``logs``, relative to its training folder), if any."""
    logs = (run or {}).get("logs")
    return out / logs if isinstance(logs, str) and logs else None


def run_log_folder(out: Path, logdir: str | Path | None, previous: dict | None = None) -> Path:
    """The TensorBoard folder of a run: the resumed run's own, else a new ``run-DATE-TIME-ID`` subfolder of
    ``logdir`` (default ``out/logs``), so that no two runs' curves ever mix.

    Raises:
      CheckpointError: ``logdir`` is a file, a symbolic link or FIFO, or cannot be created.
    """
    resumed = _recorded_logs(out, previous)
    if resumed is not None and resumed.is_dir() and not resumed.is_symlink():
        return resumed
    base = Path(logdir) if logdir else out / "logs"
    folder = base / f"run-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    try:
        check_folder(base, "TensorBoard folder")
        folder.mkdir(parents=True)
    except OSError as err:
        raise CheckpointError(describe(err)) from None
    return folder


def remove_replaced_logs(out: Path, replaced: dict | None) -> None:
    """Deletes the TensorBoard folder of a replaced run, only if it is one of ours: a real folder named as
    :func:`run_log_folder` names them, holding nothing but event files."""
    folder = _recorded_logs(out, replaced)
    if folder is not None:
        _remove_run_logs(folder, "the replaced run's TensorBoard folder")


def _remove_run_logs(folder: Path, what: str) -> None:
    """Deletes ``folder`` if it is a real folder named as :func:`run_log_folder` names them, holding nothing but
    event files (warns when that fails)."""
    if not _RUN_LOGS.fullmatch(folder.name) or folder.is_symlink() or not folder.is_dir():
        return
    entries = list(folder.iterdir())
    if all(e.name.startswith("events.out.tfevents.") and e.is_file() and not e.is_symlink() for e in entries):
        warning = remove_tree(folder, what)
        if warning:
            warn(warning)


class RunRecorder:
    """The record of one training run in its output folder: ``run.json``, the checkpoints it points at (see
    :mod:`lenet_tf.runs.checkpoint`) and the TensorBoard summaries (in a folder of the run's own, see
    :func:`run_log_folder`). ``previous`` is the record being resumed; ``replaced`` that of a run being replaced
    (``--overwrite``), whose checkpoints and logs are deleted with this run's first record."""

    def __init__(self, out: Path, config, model: dict, splits: Splits, graph: tf.Graph, *, precision: dict,
                 previous: dict | None = None, replaced: dict | None = None, logdir: str | Path | None = None,
                 extra: dict | None = None, timings: timing.Timings | None = None) -> None:
        self.out, self.replaced = out, replaced
        self.stale = checkpoint.owned_checkpoints(replaced) if replaced else set()
        self.timings = timings or start_timings()
        self.run = {
            "format": checkpoint.RUN_FORMAT,
            "id": (previous or {}).get("id") or checkpoint.new_run_id(),  # a resumed run keeps its own
            "model": model,
            "train": config.to_record(),
            "precision": precision,
            **(extra or {}),
            "data": {"train": len(splits.train_labels), "valid": len(splits.valid_labels),
                     "test": len(splits.test_labels)},
            "history": [],
            "checkpoints": [],
            "complete": False,
        }
        if previous:
            self.run.update(history=previous["history"], best=previous["best"], last=previous["last"],
                            checkpoints=sorted(checkpoint.owned_checkpoints(previous)))
            checkpoint.remove_orphans(out, previous)  # a killed writer's unrecorded epoch (under the writer lock)
            if config.epochs != previous["train"].get("epochs"):
                self.run["resumed"] = [*previous.get("resumed", []),
                                       {"at_epoch": len(previous["history"]), "epochs": config.epochs}]
        logs = run_log_folder(out, logdir, previous)
        self.run["logs"] = os.path.relpath(logs, out) if logs.is_relative_to(out) else str(logs.resolve())
        with self.timings.phase("tensorboard"), graph.as_default():
            # Event files are named by the second and the host; a suffix of its own keeps this run from appending
            # to (or replacing) another run's file started in the same second.
            self.writer = tf1.summary.FileWriter(str(logs), graph, filename_suffix=f".{uuid.uuid4().hex[:12]}")
        self._quiet_writer = _WriterFailuresDeferred()
        self._new_logs = None if previous else logs  # this run's own new folder (a resumed run's is kept)

    @property
    def epochs_done(self) -> int:
        """Epochs recorded so far (including those of a resumed run)."""
        return len(self.run["history"])

    def batch_loss(self, loss: float, step: int) -> None:
        """A TensorBoard point of the training loss of one batch."""
        self.writer.add_summary(_scalars({"train/batch_loss": loss}), step)

    def record_epoch(self, saver: tf1.train.Saver, session: tf1.Session, stats: dict, step: int) -> None:
        """Checkpoints a finished, validated epoch and points ``run.json`` at it (see
        :func:`lenet_tf.runs.checkpoint.record_epoch`), then writes its TensorBoard scalars."""
        with self.timings.phase("checkpoints"):
            checkpoint.record_epoch(saver, session, self.out, self.run, stats, self.stale)
        if self.replaced:  # a replaced run's folders went with this run's first record; its logs go now
            remove_replaced_logs(self.out, self.replaced)
            checkpoint.remove_orphans(self.out, self.replaced)
            remove_foreign_head(self.out, self.run["id"])
        self.stale, self.replaced = set(), None
        self.writer.add_summary(_scalars({
            "train/loss": stats["loss"], "train/accuracy": stats["train_accuracy"],
            "valid/loss": stats["valid_loss"], "valid/accuracy": stats["valid_accuracy"],
            "learning_rate": stats["learning_rate"],
        }), step)
        self._writer_call(self.writer.flush)

    def validate_and_record(self, stats: dict, saver: tf1.train.Saver, session: tf1.Session,
                            inference: InferenceGraph, splits: Splits, global_step: tf.Variable) -> None:
        """Adds the validation loss and accuracy to an epoch's ``stats``, then records the epoch (see
        :meth:`record_epoch`) at the current ``global_step``."""
        with self.timings.phase("validation"):
            valid = inference.run(session, splits.valid_images, splits.valid_labels)
        stats.update(valid_loss=valid.loss, valid_accuracy=valid.accuracy(splits.valid_labels))
        self.record_epoch(saver, session, stats, session.run(global_step))

    def finish(self, saver: tf1.train.Saver, session: tf1.Session, inference: InferenceGraph, splits: Splits):
        """Restores the best epoch, tests it, and completes ``run.json``; returns the run record."""
        with self.timings.phase("test"):
            saver.restore(session, checkpoint.checkpoint_prefix(self.out, "best", self.run))
            test = inference.run(session, splits.test_images, splits.test_labels)
        history = self.run["history"]
        seconds = sum(h["seconds"] for h in history)
        self.run.update(
            complete=True,
            test={"accuracy": test.accuracy(splits.test_labels), "loss": test.loss},
            seconds=seconds,
            images_per_second=sum(h["images"] for h in history) / seconds,
        )
        total = self.timings.elapsed()
        self.timings.add("other", total - sum(self.timings.seconds.values()))
        self.run["timing"] = {**self.timings.to_dict(), "total": round(total, 3)}
        checkpoint.write_json_atomic(self.out / checkpoint.RUN_FILE, self.run)
        return self.run

    def close(self, *, report: bool = True) -> None:
        """Flushes and closes the TensorBoard writer; a write that failed is an :class:`OutputError`, or is dropped
        with ``report=False`` (another error, reported instead, is ending the run)."""
        try:
            self._writer_call(self.writer.close)
        except OutputError:
            if report:
                raise
        finally:
            self._quiet_writer.close()

    def abandon(self) -> None:
        """After a run failed or was stopped: closes the writer; when the run recorded no epoch, deletes the
        TensorBoard folder it made, then ``out/logs`` if that is left empty (a run with a record keeps its logs)."""
        self.close(report=False)
        if self._new_logs is None or self.run["history"]:
            return
        _remove_run_logs(self._new_logs, "the failed run's TensorBoard folder")
        if self._new_logs.parent == self.out / "logs":
            with contextlib.suppress(OSError):
                self._new_logs.parent.rmdir()  # only when empty

    def _writer_call(self, method: Callable[[], None]) -> None:
        """Calls the writer's ``flush`` or ``close``, which re-raise its thread's failed write (a full disk)."""
        try:
            method()
        except (RuntimeError, OSError) as err:
            reason = str(err).split("\n", 1)[0].rsplit("; ", 1)[-1]  # "PATH; No space left on device\n\tFailed…"
            raise OutputError(f"{self.out / self.run['logs']}: cannot write the TensorBoard log ({reason}); the "
                              "epochs recorded so far are untouched") from None


class _WriterFailuresDeferred(logging.Filter):
    """While a run records, a failed write of TensorFlow's event writer thread (a full disk) prints neither its
    ERROR log line nor the thread's traceback: the writer raises it again at the next flush or close
    (:meth:`RunRecorder._writer_call`), as one line. :meth:`close` puts both back."""

    def __init__(self) -> None:
        super().__init__()
        logging.getLogger("tensorflow").addFilter(self)
        self._threads = ExpectedThreadFailures(
            lambda args: args.thread is not None and args.thread.name == "EventLoggerThread")

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("EventFileWriter writer thread error")

    def close(self) -> None:
        logging.getLogger("tensorflow").removeFilter(self)
        self._threads.close()


def restore_last(saver: tf1.train.Saver, session: tf1.Session, out: Path, run: dict) -> None:
    """Loads a run's last checkpoint (weights and optimizer state) to resume it.

    Raises:
      CheckpointError: the checkpoint is missing or does not fit the graph built from the run's record.
    """
    prefix = checkpoint.checkpoint_prefix(out, "last", run)
    try:
        saver.restore(session, prefix)
    except tf.errors.OpError as err:
        raise CheckpointError(f"{prefix}: does not match the run's recorded configuration "
                              f"({checkpoint.describe_tf_error(err)})") from None


def _results(step: Step | Steps, batches: list[np.ndarray], per_call: int, should_stop: Callable[[], bool]):
    """(batch, its step's result) for each batch until ``should_stop()`` (asked before each call); with
    ``per_call`` > 1, ``step`` takes up to that many consecutive batches of one size per call."""
    if per_call == 1:
        for batch in batches:
            if should_stop():
                return
            yield batch, step(batch)
        return
    start = 0
    while start < len(batches) and not should_stop():
        end = start + 1
        while end < len(batches) and end - start < per_call and len(batches[end]) == len(batches[start]):
            end += 1
        yield from zip(batches[start:end], step(batches[start:end]))
        start = end


def run_epoch(step: Step | Steps, batches: list[np.ndarray], *, epoch: int, epochs: int, learning_rate: float,
              recorder: RunRecorder | None, finish: Callable[[dict], None] | None = None, progress: bool = True,
              should_stop: Callable[[], bool] = lambda: False, per_call: int = 1) -> dict:
    """Runs ``step`` over the epoch's ``batches`` with a progress bar, then ``finish(stats)`` (validation and the
    epoch's record) while the bar is still open; returns the epoch's statistics. With ``per_call`` > 1, ``step``
    is a :data:`Steps` that runs up to that many batches per call.

    ``should_stop`` ends the epoch early (a cluster's shared step count reached); ``finish`` may correct the
    images counted (a cluster's chief counts those of every worker).

    Raises:
      TrainingError: the loss became NaN or infinite (the last good checkpoint is kept).
    """
    bar = tqdm(total=len(batches), desc=f"epoch {epoch + 1}/{epochs}", unit="batch", disable=not progress,
               leave=True, dynamic_ncols=True)
    loss_sum = correct_sum = 0.0
    seen = 0
    began = time.perf_counter()
    results = _results(step, batches, per_call, should_stop)
    for i, (batch, (batch_loss, batch_accuracy, global_step)) in enumerate(results):
        bar.update(1)
        if not math.isfinite(batch_loss):
            raise TrainingError(f"loss became {batch_loss} at epoch {epoch + 1}, step {global_step}; try a lower "
                                "--lr (the last good checkpoint is kept)")
        seen += len(batch)
        loss_sum += batch_loss * len(batch)
        correct_sum += batch_accuracy * len(batch)
        if i % _BATCH_SUMMARY_EVERY == 0:
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct_sum / seen:.4f}")
            if recorder:
                recorder.batch_loss(batch_loss, global_step)
    seconds = time.perf_counter() - began
    images = seen
    stats = {"epoch": epoch + 1, "learning_rate": learning_rate, "loss": loss_sum / max(seen, 1),
             "train_accuracy": correct_sum / max(seen, 1), "seconds": seconds, "images": images,
             "images_per_second": images / seconds}
    if recorder:
        recorder.timings.add("epochs", seconds)
    if finish:
        finish(stats)
        bar.set_postfix(loss=f"{stats['loss']:.4f}", acc=f"{stats['train_accuracy']:.4f}",
                        valid=f"{stats['valid_accuracy']:.4f}")
    bar.close()
    return stats


def _scalars(values: dict[str, float]) -> tf1.Summary:
    return tf1.Summary(value=[tf1.Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()])
