"""Training LeNet-5 on MNIST: the library function :func:`train`, which `lenet-tf train` calls."""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from lenet_tf.core import native_ops
from lenet_tf.core.errors import ConfigError
from lenet_tf.core.kernels import TF_KERNELS, Kernels
from lenet_tf.core.precision import choose, requested_precision
from lenet_tf.core.tf import default_towers, graph_control_flow, session_config, tf, tf1
from lenet_tf.data.augment import affine_sample
from lenet_tf.data.mnist import Splits, load_mnist, split
from lenet_tf.inference import EVAL_BATCH_SIZE, MODEL_SCOPE, InferenceGraph, ensemble_members
from lenet_tf.model import LeNet5
from lenet_tf.rejection import RejectionStats
from lenet_tf.runs import checkpoint, lock
from lenet_tf.training.batches import TrainingBatches, choose_warp
from lenet_tf.training.config import TrainConfig
from lenet_tf.training.loop import RunRecorder, epoch_batches, restore_last, run_epoch, start_timings
from lenet_tf.training.step import training_step

__all__ = ["TrainConfig", "TrainResult", "train", "resume_config"]


@dataclass
class TrainResult:
    """What a finished run measured; the same facts are in ``out_dir/run.json``."""

    out_dir: Path
    history: list[dict]
    best_epoch: int
    valid_accuracy: float
    test_accuracy: float
    test_loss: float
    seconds: float
    images_per_second: float
    timing: dict = field(default_factory=dict)  # wall seconds per phase of the command (lenet_tf.core.timing)
    calibration: dict | None = None  # with TrainConfig.calibrate: lenet_tf.rejection.calibration.Calibration

    @classmethod
    def from_run(cls, out_dir: Path, run: dict) -> TrainResult:
        """The result recorded in a finished run's ``run.json`` contents."""
        return cls(out_dir, run["history"], run["best"]["epoch"], run["best"]["valid_accuracy"],
                   run["test"]["accuracy"], run["test"]["loss"], run["seconds"], run["images_per_second"],
                   run.get("timing", {}))


STEPS_PER_CALL = 16  # training steps per session call (TrainGraph.steps): 0.13-0.2 ms per call, 16 steps ≈ 40 ms


Notice = Callable[[str], None]  # one line for the user (the command line prints "lenet-tf: LINE" on stderr)


def kernels_named(name: str) -> Kernels:
    """The kernels called ``name`` (:data:`lenet_tf.core.options.KERNEL_NAMES`), building the native ones here.

    Raises:
      ValueError: an unknown name, or ``native`` where it cannot be built (the message says why).
    """
    if name in TF_KERNELS:
        return TF_KERNELS[name]
    if name == "native":
        built = native_ops.kernels()
        if built is None:
            raise ValueError(f"kernels 'native' is not available here: {native_ops.unavailable_reason()}")
        return built
    raise ValueError(f"kernels must be one of {', '.join((*TF_KERNELS, 'native'))}, got {name!r}")


def choose_kernels(model: dict, precision: str, notice: Notice | None = None) -> tuple[Kernels, dict]:
    """The :class:`LeNet5` kernels training uses, and why: ``model["kernels"]`` when given, else the native
    first block where it builds and was measured faster than TensorFlow's kernels on this machine
    (:func:`lenet_tf.core.native_ops.faster_than_tf`), else ``"nn"``. ``notice`` hears when the native ops are
    about to be compiled (once per machine, a few seconds)."""
    name = model.get("kernels")
    if name is not None:
        try:
            return kernels_named(name), {"used": name, "reason": "as asked"}
        except ValueError as err:
            raise ConfigError(str(err)) from None
    folder = native_ops.pending_build()
    if folder is not None and notice:
        notice(f"compiling the native ops for this CPU, once (about 10 s), into {folder}")
    faster, reason = native_ops.faster_than_tf("conv_pool", precision)
    return kernels_named("native" if faster else "nn"), {"used": "native" if faster else "nn", "reason": reason}


class TrainGraph:
    """The training graph: the training set lives in the graph, each step is fed only batch indices."""

    def __init__(self, config: TrainConfig, splits: Splits, notice: Notice | None = None) -> None:
        self.precision = choose(config.precision)  # a session option: the graph and variables stay float32
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf1.set_random_seed(config.seed)
            self.towers = config.towers or default_towers(config.batch_size)
            kernels, self.kernels = choose_kernels(config.model, self.precision.used, notice)
            self.warp = choose_warp(config, self.precision.used)
            if config.model.get("deskew"):  # its resampling in one kernel, as the augmentation's
                native = self.warp["used"] == "native"
                kernels = replace(kernels, warp=functools.partial(affine_sample, native=native))
            self.batches = TrainingBatches(config, splits.train_images, splits.train_labels, shards=self.towers,
                                           warp=self.warp["used"])
            # A session call runs several steps, one row of batch indices each, in an in-graph loop: a call costs
            # 0.13-0.2 ms whatever it runs, 5-8% of a step (docs/speed.md).
            self.indices = tf1.placeholder(tf.int32, [None, None], name="batch_indices")  # [steps, batch]
            self.learning_rate = tf1.placeholder(tf.float32, [], name="learning_rate")
            self.global_step = tf1.train.get_or_create_global_step()
            self.members = ensemble_members({**config.model, "name": MODEL_SCOPE, "seed": config.seed,
                                             "kernels": kernels}, config.ensemble)
            self.net = self.members[0]
            # Weight averaging: num_updates makes the early averages follow the weights closely (decay
            # (1+t)/(10+t) at step t); each step updates the averages, the swap op exchanges them with the weights.
            averager = (tf1.train.ExponentialMovingAverage(config.weight_averaging, num_updates=self.global_step)
                        if config.weight_averaging else None)

            def body(i, losses, accuracies):
                with self.graph.name_scope(None):  # the step's ops and Adam's variables named as outside a loop
                    images, labels = self.batches.batch(self.indices[i], self.global_step)
                    step = training_step(config, self.members, images, labels, self.learning_rate,
                                         self.global_step, towers=self.towers, averager=averager)
                with tf.control_dependencies([step.train_op]):  # the next step reads the variables this one wrote
                    return i + 1, losses.write(i, step.loss), accuracies.write(i, step.accuracy)

            steps = tf.shape(self.indices)[0]
            with graph_control_flow():
                _, losses, accuracies = tf.while_loop(
                    lambda i, *_: i < steps, body,
                    [tf.constant(0), tf.TensorArray(tf.float32, steps), tf.TensorArray(tf.float32, steps)],
                    parallel_iterations=1, back_prop=False, name="steps")
                self.losses, self.accuracies = losses.stack(), accuracies.stack()
            with tf.control_dependencies([self.losses, self.accuracies]):
                steps_done = tf.identity(self.global_step.read_value())
            self.train_op = steps_done.op
            self._swap_averages = _swap_averages(averager, self.members) if averager else None
            self.inference = InferenceGraph(self.members, default_towers(EVAL_BATCH_SIZE))
            self.saver = tf1.train.Saver(max_to_keep=None)
            self.init = [tf1.global_variables_initializer(), tf1.local_variables_initializer()]
            self._step_fetches = [self.losses, self.accuracies, steps_done]
        self.graph.finalize()
        self.first_step_seconds = None  # the first step also optimises the graph and builds the kernels

    def start(self) -> tf1.Session:
        """Opens a session with fresh variables and the training set loaded into the graph."""
        session = tf1.Session(graph=self.graph, config=session_config(self.towers, self.precision.used))
        session.run(self.init, self.batches.init_feed())
        return session

    @contextlib.contextmanager
    def averaged_weights(self, session: tf1.Session):
        """Within the block the network holds the averaged weights (when weight averaging is on)."""
        if self._swap_averages is None:
            yield
            return
        session.run(self._swap_averages)
        try:
            yield
        finally:
            session.run(self._swap_averages)

    def steps(self, session: tf1.Session, batches: list[np.ndarray], learning_rate: float,
              augment: bool = True) -> list[tuple[float, float, int]]:
        """One Adam step per batch of training-image indices (batches of one size), all in one session call,
        undistorted when not ``augment``; returns each step's batch loss, accuracy and step number."""
        if self.first_step_seconds is None and len(batches) > 1:  # time the first step (graph set-up) alone
            return (self.steps(session, batches[:1], learning_rate, augment)
                    + self.steps(session, batches[1:], learning_rate, augment))
        feed = {self.indices: np.stack(batches), self.learning_rate: learning_rate,
                **self.batches.feed(augment)}
        began = time.perf_counter()
        losses, accuracies, last = session.run(self._step_fetches, feed)
        if self.first_step_seconds is None:
            self.first_step_seconds = time.perf_counter() - began
        first = int(last) - len(batches) + 1
        return [(float(loss), float(accuracy), first + k) for k, (loss, accuracy) in enumerate(zip(losses, accuracies))]

    def step(self, session: tf1.Session, indices: np.ndarray, learning_rate: float,
             augment: bool = True) -> tuple[float, float, int]:
        """One Adam step on the training images at ``indices`` (undistorted when not ``augment``);
        returns the batch loss, accuracy and step."""
        return self.steps(session, [indices], learning_rate, augment)[0]


def _swap_averages(averager: tf1.train.ExponentialMovingAverage, members: list[LeNet5]) -> tf.Operation:
    """An op that exchanges the networks' trainable variables with their moving averages (weight averaging)."""
    variables = [v for net in members for v in net.trainable_variables]
    averages = [averager.average(v) for v in variables]
    weight_values = [tf.identity(v.read_value()) for v in variables]
    average_values = [tf.identity(a.read_value()) for a in averages]
    with tf.control_dependencies(weight_values + average_values):  # read everything before overwriting
        return tf.group(*(v.assign(a) for v, a in zip(variables, average_values)),
                        *(a.assign(w) for a, w in zip(averages, weight_values)))


def load_splits(config: TrainConfig, data_dir: str | Path | None, verify: bool) -> Splits:
    """MNIST from ``data_dir``, split by the config's validation size and seed."""
    return split(load_mnist(data_dir, verify=verify), config.valid_size, config.seed)


def resume_config(out_dir: str | Path, **overrides) -> TrainConfig:
    """The configuration of the run in ``out_dir`` with ``overrides`` applied (``model`` ones merged), for
    ``train(..., resume=True)``; only a different ``epochs`` is accepted there."""
    run = checkpoint.read_run(out_dir)
    return TrainConfig.from_record(run.get("train", {}), run["model"]).with_overrides(**overrides)


def check_resumable(config: TrainConfig, run: dict, out: Path) -> None:
    """Raises unless ``config`` is the run's stored configuration, but for ``epochs`` (not fewer than trained)."""
    stored = TrainConfig.from_record(run.get("train", {}), run["model"]).to_record()
    given = config.to_record()
    differing = [f"{key} {given[key]!r} (stored {stored[key]!r})" for key in given  # checkpoints are fp32 in
                 if key not in ("epochs", "model", "precision", "calibrate")  # any precision; calibrating
                 and given[key] != stored[key]]  # comes after training
    expected = {**run["model"], "name": MODEL_SCOPE}
    model = LeNet5(MODEL_SCOPE, seed=config.seed, **{k: v for k, v in config.model.items() if k != "kernels"}
                   ).get_config()
    differing += [f"model {key} {model[key]!r} (stored {expected.get(key)!r})" for key in model
                  if key != "seed" and model[key] != expected.get(key)]
    if differing:
        raise ConfigError(f"{out}: --resume continues the stored configuration, but {'; '.join(differing)} "
                          "differ; only --epochs may change (train a new run in another --out, or --overwrite)")
    done = len(run["history"])
    if config.epochs < done:
        raise ConfigError(f"{out}: has {done} trained epochs; --epochs {config.epochs} would drop some "
                          f"(pass more than {done} to train further)")
    checkpoint.checkpoint_prefix(out, "last", run)


def describe_resume(config: TrainConfig, run: dict) -> str:
    """What ``train(config, resume=True)`` will do with the run ``run``, in one line."""
    done = len(run["history"])
    if done >= config.epochs:
        if run.get("complete"):
            return f"the run is complete ({done} of {config.epochs} epochs); pass --epochs N > {done} to train further"
        return f"all {done} epochs are trained; testing the best one"
    plan = f"resuming at epoch {done + 1} of {config.epochs}"
    if config.epochs != run["train"].get("epochs"):
        plan += (f" (was {run['train'].get('epochs')}: the {config.schedule} schedule"
                 + (" and the clean epochs" if config.augment and config.clean_epochs else "")
                 + f" now run over {config.epochs} epochs, lr {config.learning_rate_at(done):.3g} from here)")
    return plan


def train(
    config: TrainConfig,
    out_dir: str | Path = "SavedModel",
    *,
    data_dir: str | Path | None = None,
    splits: Splits | None = None,
    verify_checksums: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    logdir: str | Path | None = None,
    progress: bool = True,
    notice: Notice | None = None,
) -> TrainResult:
    """Trains LeNet-5, keeping the epoch with the best validation accuracy, and tests it.

    Args:
      config: hyper-parameters; validated before anything is read or written.
      out_dir: checkpoint folder (see :mod:`lenet_tf.runs.checkpoint`). A folder that already holds a run is refused
        unless ``resume`` or ``overwrite`` is set.
      data_dir: MNIST folder (see :func:`lenet_tf.data.mnist.resolve_data_dir`); ignored when ``splits`` is given.
      splits: ready data instead of loading MNIST.
      verify_checksums: check the MNIST files against the official SHA-256 values.
      resume: continue the run in ``out_dir`` from its last saved epoch (weights, Adam state, history). ``config``
        must be the stored one (:func:`resume_config`) except ``epochs``, which may extend the run: the schedule
        (and the clean epochs) are then laid over the new epoch count for the epochs still to train. A complete run
        with nothing left to train is returned as it is, without writing anything.
      overwrite: replace the run in ``out_dir``; its checkpoints are deleted only once this run has saved its
        first epoch, and nothing else in the folder is touched.
      logdir: TensorBoard folder; defaults to ``out_dir/logs``.
      progress: show a progress bar per epoch.
      notice: called with a line for the user when work starts in a precision, and before the native ops are
        compiled (once per machine).

    The process holds ``out_dir``'s writer lock throughout (:mod:`lenet_tf.runs.lock`): another writer of the
    folder is refused at once, with ``CheckpointError``, and so is this one while another holds it.

    Raises:
      ConfigError, DataError, CheckpointError, TrainingError: with a one-line message.
    """
    config.validate()
    config = config.with_overrides(precision=requested_precision(config.precision))  # recorded as resolved
    with lock.writing(out_dir, what="training folder", create=not resume):
        return _train_locked(config, out_dir, data_dir=data_dir, splits=splits, verify_checksums=verify_checksums,
                             resume=resume, overwrite=overwrite, logdir=logdir, progress=progress, notice=notice)


def _train_locked(config: TrainConfig, out_dir: str | Path, *, data_dir: str | Path | None, splits: Splits | None,
                  verify_checksums: bool, resume: bool, overwrite: bool, logdir: str | Path | None,
                  progress: bool, notice: Notice | None) -> TrainResult:
    """:func:`train`, once the folder's writer lock is held."""
    out, previous = checkpoint.prepare_output_dir(out_dir, resume=resume, overwrite=overwrite)
    replaced = None
    if resume:
        check_resumable(config, previous, out)
        if previous.get("complete") and len(previous["history"]) == config.epochs:
            result = TrainResult.from_run(out, previous)
            if not config.calibrate or _calibrated(out, previous):
                return result
            # Complete, but its calibration never finished (interrupted, or the run predates it): it does now.
            return with_rejection(result, config, splits or load_splits(config, data_dir, verify_checksums))
    elif previous:
        replaced, previous = previous, None
    timings = start_timings()
    with timings.phase("data"):
        if splits is None:
            splits = load_splits(config, data_dir, verify_checksums)
    with timings.phase("graph"):
        graph = TrainGraph(config, splits, notice)
    recorder = RunRecorder(out, config, graph.net.get_config(), splits, graph.graph,
                           precision=graph.precision.to_dict(), previous=previous, replaced=replaced, logdir=logdir,
                           extra={"kernels": graph.kernels, "warp": graph.warp}, timings=timings)
    try:
        with recorder.timings.phase("session"):
            session = graph.start()
        if notice:
            notice(graph.precision.describe())
        with session:
            if previous:
                # With weight averaging, checkpoints hold the averages in the network's variables and the
                # training weights in the averages' slots: leaving the block swaps them back.
                with graph.averaged_weights(session):
                    restore_last(graph.saver, session, out, previous)

            def validate_and_record(stats: dict) -> None:
                with graph.averaged_weights(session):
                    recorder.validate_and_record(stats, graph.saver, session, graph.inference, splits,
                                                 graph.global_step)

            for epoch in range(recorder.epochs_done, config.epochs):
                learning_rate, augment = config.learning_rate_at(epoch), config.augments_epoch(epoch)
                batches = epoch_batches(np.arange(len(splits.train_labels)), config.batch_size,
                                        [config.seed, epoch], min_last=graph.towers)
                run_epoch(lambda chunk: graph.steps(session, chunk, learning_rate, augment), batches,
                          epoch=epoch, epochs=config.epochs, learning_rate=learning_rate, recorder=recorder,
                          finish=validate_and_record, progress=progress, per_call=STEPS_PER_CALL)
            if graph.first_step_seconds is not None:  # out of the epochs: mostly one-off graph optimisation
                recorder.timings.add("epochs", -graph.first_step_seconds)
                recorder.timings.add("first_step", graph.first_step_seconds)
            run = recorder.finish(graph.saver, session, graph.inference, splits)
    except BaseException:
        recorder.abandon()  # the error that ends the run is the one to report; a run with no record leaves no logs
        raise
    recorder.close()
    return with_rejection(TrainResult.from_run(out, run), config, splits)


def _calibrated(out: Path, run: dict) -> bool:
    """Whether the training folder ``out`` holds "I can't read this" for the best epoch of ``run``, reading the
    features this lenet_tf computes."""
    head = RejectionStats.load(out)
    return head is not None and head.current and head.belongs_to(checkpoint.checkpoint_prefix(out, "best", run), run)


def with_rejection(result: TrainResult, config: TrainConfig, splits: Splits) -> TrainResult:
    """``result``, with "I can't read this" fitted on its best epoch and written beside its ``run.json`` when
    ``config.calibrate`` (:func:`lenet_tf.rejection.calibration.calibrate_model`, on the run's ``splits``). The
    caller holds the training folder's writer lock."""
    if not config.calibrate:
        return result
    from lenet_tf.rejection.calibration import calibrate_model
    from lenet_tf.trained import TrainedModel

    with TrainedModel(result.out_dir, "best", config.precision, reject=False) as model:
        return replace(result, calibration=calibrate_model(model, splits).to_dict())
