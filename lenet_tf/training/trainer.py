"""Training LeNet-5 on MNIST: the library function :func:`train`, which `lenet-tf train` calls."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from lenet_tf.runs import checkpoint, lock
from lenet_tf.core.tf import default_towers, graph_control_flow, session_config, tf, tf1
from lenet_tf.data.augment import augment_images, capture_distort
from lenet_tf.data.mnist import Splits, load_mnist, split
from lenet_tf.core.errors import ConfigError
from lenet_tf.inference import EVAL_BATCH_SIZE, MODEL_SCOPE, InferenceGraph, ensemble_members
from lenet_tf.training.styles import StyleMix
from lenet_tf.training.loop import RunRecorder, epoch_batches, restore_last, run_epoch, start_timings
from lenet_tf.model import LeNet5
from lenet_tf.objectives import correct, cross_entropy, scale_images, training_op
from lenet_tf.core.options import RANGES, SCHEDULES
from lenet_tf.core import native_ops
from lenet_tf.core.precision import PRECISIONS, choose, report_use


@dataclass
class TrainConfig:
    """Everything that defines a training run; ``model`` holds extra :class:`LeNet5` arguments."""

    epochs: int = 10
    batch_size: int = 128
    # Chosen on validation accuracy (docs/accuracy.md): cosine decay from 2e-3 beat a constant 1e-3
    # and exponential decay.
    learning_rate: float = 2e-3
    schedule: str = "cosine"
    lr_decay: float = 0.8
    weight_decay: float = 0.0
    label_smoothing: float = 0.0  # training targets: 1 - ε on the label, ε/10 on every class
    augment: bool = False
    augment_strength: float = 1.0  # scales the shift/rotation/shear/zoom/elastic limits of lenet_tf.data.augment
    clean_epochs: int = 0  # with augment, the last epochs (all, if fewer) train on the undistorted images
    elastic_alpha: float = 0.0  # elastic distortion's displacement scale in pixels (0: none), with augment
    elastic_sigma: float = 4.0  # its smoothness: Gaussian stddev in pixels
    # With augment, changes of how a digit was captured (lenet_tf.data.augment.capture_distort; 0: off).
    pen_width: float = 0.0  # largest blend towards a 3x3 dilation or erosion, in [0, 1]
    blur: float = 0.0  # Gaussian sigma in pixels, blended in by a random weight
    low_res: float = 0.0  # probability of a coarse scan (down to 16 or 12 pixels and back)
    gamma: float = 0.0  # pixel values raised to exp(u), u uniform in [-gamma, gamma]
    paper: float = 0.0  # largest grey level of the paper in the digit's box
    # Style options (lenet_tf.training.styles; 0: off), also off in the clean epochs. aspect works with augment.
    aspect: float = 0.0  # the width scaled by exp(u), u uniform in [-aspect, aspect]
    fill_box: float = 0.0  # share of digits stretched to fill a square box (aspect ratio not kept)
    restroke: float = 0.0  # share of digits redrawn along their skeleton with a random round pen
    synthetic: float = 0.0  # share of each batch replaced by synthetic digits (fonts, stroke templates)
    # Decay of an exponential moving average of the weights (0: off). When on, validation, checkpoints
    # and everything loaded from them use the averaged weights.
    weight_averaging: float = 0.0
    seed: int = 0
    valid_size: int = 5000
    towers: int = 0  # shards per batch run in parallel; 0 picks one per CPU core (1 on a GPU)
    precision: str | None = None  # auto, fp32 or bf16 (lenet_tf.core.precision); None: $LENET_TF_PRECISION, else auto
    # LeNet5 members trained side by side on the same batches (member k seeded apart, under scope lenet5_k), their
    # probabilities averaged at inference; 1 is a single model, checkpointed exactly as ever.
    ensemble: int = 1
    model: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Raises :class:`ConfigError` for any value out of range, before any work starts."""
        try:
            for name, allowed in RANGES.items():
                if hasattr(self, name):
                    allowed.check(name.replace("_", " "), getattr(self, name))
        except ValueError as err:
            raise ConfigError(str(err)) from None
        checks = [
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"),
            (isinstance(self.towers, int) and 0 <= self.towers <= self.batch_size,
             f"towers must lie in 0..batch size, got {self.towers}"),
            (self.precision in (None, *PRECISIONS),
             f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        try:
            LeNet5(**self.model)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model: {err}") from None

    def capture_distortions(self) -> dict:
        """The keyword arguments of :func:`lenet_tf.data.augment.capture_distort`."""
        return {"pen_width": self.pen_width, "blur": self.blur, "low_res": self.low_res, "gamma": self.gamma,
                "paper": self.paper}

    @property
    def styles(self) -> bool:
        """Whether a style option (fill box, restroke, synthetic) is on."""
        return bool(self.fill_box or self.restroke or self.synthetic)

    def augments_epoch(self, epoch: int) -> bool:
        """Whether (0-based) ``epoch`` trains on distorted images: with ``augment`` or a style option, all but the
        clean epochs."""
        return (self.augment or self.styles) and epoch < self.epochs - self.clean_epochs

    def learning_rate_at(self, epoch: int) -> float:
        """The learning rate used throughout (0-based) ``epoch``."""
        if self.schedule == "exponential":
            return self.learning_rate * self.lr_decay ** epoch
        if self.schedule == "cosine":
            return self.learning_rate * 0.5 * (1 + math.cos(math.pi * epoch / self.epochs))
        return self.learning_rate


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

    @classmethod
    def from_run(cls, out_dir: Path, run: dict) -> TrainResult:
        """The result recorded in a finished run's ``run.json`` contents."""
        return cls(out_dir, run["history"], run["best"]["epoch"], run["best"]["valid_accuracy"],
                   run["test"]["accuracy"], run["test"]["loss"], run["seconds"], run["images_per_second"],
                   run.get("timing", {}))


class Augmentation:
    """A config's in-graph augmentation of training batches, switched off for the clean epochs by a feed."""

    def __init__(self, config: TrainConfig, shards: int = 1, native_warp: bool = False) -> None:
        """``shards``, ``native_warp``: how resampling runs (:func:`lenet_tf.data.augment.affine_sample`)."""
        self.config = config
        self.shards, self.native_warp = shards, native_warp
        # Fed 0 for the clean epochs, which leaves the images unchanged.
        self.strength = tf1.placeholder_with_default(float(config.augment_strength), [], name="augment_strength")

    def __call__(self, images: tf.Tensor, global_step: tf.Tensor) -> tf.Tensor:
        """``images`` distorted as configured (unchanged without ``augment``), seeded by the step."""
        if not self.config.augment:
            return images
        seed = tf.stack([self.config.seed, global_step])
        images = augment_images(images, seed, self.strength, elastic_alpha=self.config.elastic_alpha,
                                elastic_sigma=self.config.elastic_sigma, max_aspect=self.config.aspect,
                                shards=self.shards, native=self.native_warp)
        # The reversed seed gives the capture draws a stream of their own, independent of the affine ones.
        return capture_distort(images, seed[::-1], self.strength, **self.config.capture_distortions())

    def feed(self, augment: bool) -> dict:
        """The feed for a step: strength 0 to leave a step undistorted, else nothing (nor without ``augment``)."""
        distorts = self.config.augment or self.config.styles
        return {self.strength: 0.0} if distorts and not augment else {}


STEPS_PER_CALL = 16  # training steps per session call (TrainGraph.steps): 0.13-0.2 ms per call, 16 steps ≈ 40 ms


def choose_kernels(model: dict, precision: str) -> dict:
    """The :class:`LeNet5` kernels training uses, and why: ``model["kernels"]`` when given, else the native
    first block where it builds and was measured faster than TensorFlow's kernels on this machine
    (:func:`lenet_tf.core.native_ops.faster_than_tf`), else ``"nn"``."""
    if "kernels" in model:
        return {"used": model["kernels"], "reason": "as asked"}
    faster, reason = native_ops.faster_than_tf("conv_pool", precision)
    return {"used": "native" if faster else "nn", "reason": reason}


def choose_warp(config: TrainConfig, precision: str) -> dict:
    """How augmentation resamples, and why: the native affine warp where it builds and was measured faster than
    TensorFlow's ImageProjectiveTransformV3 here, else that (``"tf"``); nothing to choose without resampling."""
    if not ((config.augment and not config.elastic_alpha) or config.fill_box):
        return {"used": "tf", "reason": "no affine resampling in this configuration"}
    faster, reason = native_ops.faster_than_tf("affine_warp", precision)
    return {"used": "native" if faster else "tf", "reason": reason}


class TrainGraph:
    """The training graph: the training set lives in the graph, each step is fed only batch indices."""

    def __init__(self, config: TrainConfig, splits: Splits) -> None:
        self.precision = choose(config.precision)  # a session option: the graph and variables stay float32
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf1.set_random_seed(config.seed)
            # Local variables: initialised from the arrays once, never written to checkpoints.
            self._images_init = tf1.placeholder(tf.uint8, splits.train_images.shape)
            self._labels_init = tf1.placeholder(tf.int32, splits.train_labels.shape)
            local = [tf1.GraphKeys.LOCAL_VARIABLES]
            images = tf1.Variable(self._images_init, trainable=False, collections=local, name="train_images")
            labels = tf1.Variable(self._labels_init, trainable=False, collections=local, name="train_labels")
            # A session call runs several steps, one row of batch indices each, in an in-graph loop: a call costs
            # 0.13-0.2 ms whatever it runs, 5-8% of a step (docs/speed.md).
            self.indices = tf1.placeholder(tf.int32, [None, None], name="batch_indices")  # [steps, batch]
            self.learning_rate = tf1.placeholder(tf.float32, [], name="learning_rate")
            self.global_step = tf1.train.get_or_create_global_step()
            self.towers = config.towers or default_towers(config.batch_size)
            self.kernels = choose_kernels(config.model, self.precision.used)
            self.warp = choose_warp(config, self.precision.used)
            native_warp = self.warp["used"] == "native"
            self.augmentation = Augmentation(config, self.towers, native_warp)
            self.styles = StyleMix(config, splits.train_images, self.towers, native_warp)
            self.members = ensemble_members({**config.model, "name": MODEL_SCOPE, "seed": config.seed,
                                             "kernels": self.kernels["used"]}, config.ensemble)
            self.net = self.members[0]
            # Weight averaging: num_updates makes the early averages follow the weights closely (decay
            # (1+t)/(10+t) at step t); each step updates the averages, the swap op exchanges them with the weights.
            averager = (tf1.train.ExponentialMovingAverage(config.weight_averaging, num_updates=self.global_step)
                        if config.weight_averaging else None)

            def body(i, losses, accuracies):
                with self.graph.name_scope(None):  # the step's ops and Adam's variables named as outside a loop
                    loss, accuracy, train_op = self._step_ops(config, images, labels, self.indices[i], averager)
                with tf.control_dependencies([train_op]):  # the next step reads the variables this one wrote
                    return i + 1, losses.write(i, loss), accuracies.write(i, accuracy)

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

    def start(self, splits: Splits) -> tf1.Session:
        """Opens a session with fresh variables and the training set loaded into the graph."""
        session = tf1.Session(graph=self.graph, config=session_config(self.towers, self.precision.used))
        report_use(self.precision)
        session.run(self.init, {self._images_init: splits.train_images, self._labels_init: splits.train_labels,
                                **self.styles.feed()})
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

    def _step_ops(self, config: TrainConfig, images: tf.Variable, labels: tf.Variable, indices: tf.Tensor,
                  averager: tf1.train.ExponentialMovingAverage | None) -> tuple[tf.Tensor, tf.Tensor, tf.Operation]:
        """One training step on the training images at ``indices``: its loss, accuracy and update op (followed by
        the ``averager``'s update, with weight averaging)."""
        batch_images = scale_images(tf.gather(images, indices))
        batch_labels = tf.gather(labels, indices)
        if config.styles:
            batch_images, batch_labels = self.styles(batch_images, batch_labels, indices,
                                                     self.augmentation.strength, self.global_step)
        batch_images = self.augmentation(batch_images, self.global_step)
        # Data parallelism inside one step: the batch is split into one shard per tower, whose ops run on
        # their own core; the loss is the mean over the whole batch and batch norm's statistics are the
        # whole batch's, so the loss and gradient are those of one batch, whatever the number of towers.
        logits = [net(batch_images, training=True, shards=self.towers) for net in self.members]
        losses = [tf.reduce_mean(cross_entropy(x, batch_labels, config.label_smoothing)) for x in logits]
        # An ensemble minimises the sum of its members' losses: each member gets its own gradient, as alone.
        total = losses[0] if len(losses) == 1 else tf.add_n(losses)
        loss = total if len(losses) == 1 else total * (1.0 / len(losses))  # reported: the members' mean
        scores = logits[0] if len(logits) == 1 else tf.add_n([tf.nn.softmax(x) for x in logits])
        accuracy = tf.reduce_mean(correct(scores, batch_labels))
        variables = [v for net in self.members for v in net.trainable_variables]
        train_op = training_op(total, self.learning_rate, variables,
                               [op for net in self.members for op in net.update_ops], config.weight_decay,
                               self.global_step)
        if averager:
            with tf.control_dependencies([train_op]):
                train_op = averager.apply(variables)
        return loss, accuracy, train_op

    def steps(self, session: tf1.Session, batches: list[np.ndarray], learning_rate: float,
              augment: bool = True) -> list[tuple[float, float, int]]:
        """One Adam step per batch of training-image indices (batches of one size), all in one session call,
        undistorted when not ``augment``; returns each step's batch loss, accuracy and step number."""
        if self.first_step_seconds is None and len(batches) > 1:  # time the first step (graph set-up) alone
            return (self.steps(session, batches[:1], learning_rate, augment)
                    + self.steps(session, batches[1:], learning_rate, augment))
        feed = {self.indices: np.stack(batches), self.learning_rate: learning_rate,
                **self.augmentation.feed(augment)}
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


def stored_config(run: dict) -> TrainConfig:
    """The :class:`TrainConfig` a run record was trained with (fields it predates take their defaults)."""
    known = {f.name for f in fields(TrainConfig)}
    values = {key: value for key, value in run.get("train", {}).items() if key in known}
    model = {key: value for key, value in run["model"].items() if key not in ("name", "seed")}
    return TrainConfig(**{**values, "model": model})


def resume_config(out_dir: str | Path, **overrides) -> TrainConfig:
    """The configuration of the run in ``out_dir`` with ``overrides`` applied (``model`` ones merged), for
    ``train(..., resume=True)``; only a different ``epochs`` is accepted there."""
    stored = stored_config(checkpoint.read_run(out_dir))
    model = {**stored.model, **overrides.pop("model", {})}
    return replace(stored, **overrides, model=model)


def _check_resumable(config: TrainConfig, run: dict, out: Path) -> None:
    """Raises unless ``config`` is the run's stored configuration, but for ``epochs`` (not fewer than trained)."""
    stored = asdict(stored_config(run))
    given = asdict(config)
    differing = [f"{key} {given[key]!r} (stored {stored[key]!r})" for key in given  # checkpoints are fp32 in
                 if key not in ("epochs", "model", "precision") and given[key] != stored[key]]  # any precision
    expected = {**run["model"], "name": MODEL_SCOPE}
    model = LeNet5(MODEL_SCOPE, seed=config.seed, **config.model).get_config()
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

    The process holds ``out_dir``'s writer lock throughout (:mod:`lenet_tf.runs.lock`): another writer of the
    folder is refused at once, with ``CheckpointError``, and so is this one while another holds it.

    Raises:
      ConfigError, DataError, CheckpointError, TrainingError: with a one-line message.
    """
    config.validate()
    with lock.writing(out_dir, what="training folder", create=not resume):
        return _train_locked(config, out_dir, data_dir=data_dir, splits=splits, verify_checksums=verify_checksums,
                             resume=resume, overwrite=overwrite, logdir=logdir, progress=progress)


def _train_locked(config: TrainConfig, out_dir: str | Path, *, data_dir: str | Path | None, splits: Splits | None,
                  verify_checksums: bool, resume: bool, overwrite: bool, logdir: str | Path | None,
                  progress: bool) -> TrainResult:
    """:func:`train`, once the folder's writer lock is held."""
    out, previous = checkpoint.prepare_output_dir(out_dir, resume=resume, overwrite=overwrite)
    replaced = None
    if resume:
        _check_resumable(config, previous, out)
        if previous.get("complete") and len(previous["history"]) == config.epochs:
            return TrainResult.from_run(out, previous)
    elif previous:
        replaced, previous = previous, None
    timings = start_timings()
    with timings.phase("data"):
        if splits is None:
            splits = load_splits(config, data_dir, verify_checksums)
    with timings.phase("graph"):
        graph = TrainGraph(config, splits)
    recorder = RunRecorder(out, config, graph.net.get_config(), splits, graph.graph,
                           precision=graph.precision.to_dict(), previous=previous, replaced=replaced, logdir=logdir,
                           extra={"kernels": graph.kernels, "warp": graph.warp}, timings=timings)
    try:
        with recorder.timings.phase("session"):
            session = graph.start(splits)
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
    finally:
        recorder.close()
    return TrainResult.from_run(out, run)
