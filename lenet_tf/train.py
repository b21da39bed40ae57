"""Training LeNet-5 on MNIST: a library function (:func:`train`) and ``python -m lenet_tf.train``."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from lenet_tf import checkpoint, timing
from lenet_tf._tf import IMPORT_SECONDS, default_towers, session_config, tf, tf1
from lenet_tf.augment import augment_images
from lenet_tf.data import Splits, load_mnist, split
from lenet_tf.errors import CheckpointError, ConfigError, TrainingError
from lenet_tf.inference import EVAL_BATCH_SIZE, InferenceGraph, shard_batch
from lenet_tf.model import LeNet5
from lenet_tf.objectives import correct, cross_entropy, scale_images, training_op
from lenet_tf.precision import PRECISIONS, choose

SCHEDULES = ("constant", "exponential", "cosine")
MODEL_SCOPE = "lenet5"


@dataclass
class TrainConfig:
    """Everything that defines a training run; ``model`` holds extra :class:`LeNet5` arguments."""

    epochs: int = 10
    batch_size: int = 128
    # Chosen on validation accuracy (README, "Accuracy"): cosine decay from 2e-3 beat a constant 1e-3
    # and exponential decay.
    learning_rate: float = 2e-3
    schedule: str = "cosine"
    lr_decay: float = 0.8
    weight_decay: float = 0.0
    label_smoothing: float = 0.0  # training targets: 1 - ε on the label, ε/10 on every class
    augment: bool = False
    augment_strength: float = 1.0  # scales the shift/rotation/shear/zoom/elastic limits of lenet_tf.augment
    clean_epochs: int = 0  # with augment, the last epochs (all, if fewer) train on the undistorted images
    elastic_alpha: float = 0.0  # elastic distortion's displacement scale in pixels (0: none), with augment
    elastic_sigma: float = 4.0  # its smoothness: Gaussian stddev in pixels
    # Decay of an exponential moving average of the weights (0: off). When on, validation, checkpoints
    # and everything loaded from them use the averaged weights.
    weight_averaging: float = 0.0
    seed: int = 0
    valid_size: int = 5000
    towers: int = 0  # shards per batch run in parallel; 0 picks one per CPU core (1 on a GPU)
    precision: str | None = None  # auto, fp32 or bf16 (lenet_tf.precision); None: $LENET_TF_PRECISION, else auto
    model: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Raises :class:`ConfigError` for any value out of range, before any work starts."""
        checks = [
            (isinstance(self.epochs, int) and self.epochs >= 1, f"epochs must be ≥ 1, got {self.epochs}"),
            (isinstance(self.batch_size, int) and self.batch_size >= 1,
             f"batch size must be ≥ 1, got {self.batch_size}"),
            (math.isfinite(self.learning_rate) and self.learning_rate > 0,
             f"learning rate must be > 0, got {self.learning_rate}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"),
            (0 < self.lr_decay <= 1, f"lr decay must lie in (0, 1], got {self.lr_decay}"),
            (self.weight_decay >= 0, f"weight decay must be ≥ 0, got {self.weight_decay}"),
            (0 <= self.label_smoothing < 1, f"label smoothing must lie in [0, 1), got {self.label_smoothing}"),
            (self.augment_strength >= 0, f"augment strength must be ≥ 0, got {self.augment_strength}"),
            (isinstance(self.clean_epochs, int) and self.clean_epochs >= 0,
             f"clean epochs must be ≥ 0, got {self.clean_epochs}"),
            (self.elastic_alpha >= 0, f"elastic alpha must be ≥ 0, got {self.elastic_alpha}"),
            (self.elastic_sigma > 0, f"elastic sigma must be > 0, got {self.elastic_sigma}"),
            (0 <= self.weight_averaging < 1, f"weight averaging decay must lie in [0, 1), got {self.weight_averaging}"),
            (self.valid_size >= 1, f"valid size must be ≥ 1, got {self.valid_size}"),
            (0 <= self.towers <= self.batch_size, f"towers must lie in 0..batch size, got {self.towers}"),
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

    def augments_epoch(self, epoch: int) -> bool:
        """Whether (0-based) ``epoch`` trains on distorted images: with ``augment``, all but the clean epochs."""
        return self.augment and epoch < self.epochs - self.clean_epochs

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
    timing: dict = field(default_factory=dict)  # wall seconds per phase of the command (lenet_tf.timing)

    @classmethod
    def from_run(cls, out_dir: Path, run: dict) -> TrainResult:
        """The result recorded in a finished run's ``run.json`` contents."""
        return cls(out_dir, run["history"], run["best"]["epoch"], run["best"]["valid_accuracy"],
                   run["test"]["accuracy"], run["test"]["loss"], run["seconds"], run["images_per_second"],
                   run.get("timing", {}))


class Augmentation:
    """A config's in-graph augmentation of training batches, switched off for the clean epochs by a feed."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        # Fed 0 for the clean epochs, which leaves the images unchanged.
        self.strength = tf1.placeholder_with_default(float(config.augment_strength), [], name="augment_strength")

    def __call__(self, images: tf.Tensor, global_step: tf.Tensor) -> tf.Tensor:
        """``images`` distorted as configured (unchanged without ``augment``), seeded by the step."""
        if not self.config.augment:
            return images
        return augment_images(images, tf.stack([self.config.seed, global_step]), self.strength,
                              elastic_alpha=self.config.elastic_alpha, elastic_sigma=self.config.elastic_sigma)

    def feed(self, augment: bool) -> dict:
        """The feed for a step: strength 0 to leave a step undistorted, else nothing (nor without ``augment``)."""
        return {self.strength: 0.0} if self.config.augment and not augment else {}


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
            self.indices = tf1.placeholder(tf.int32, [None], name="batch_indices")
            self.learning_rate = tf1.placeholder(tf.float32, [], name="learning_rate")
            batch_images = scale_images(tf.gather(images, self.indices))
            batch_labels = tf.gather(labels, self.indices)
            self.global_step = tf1.train.get_or_create_global_step()
            self.augmentation = Augmentation(config)
            batch_images = self.augmentation(batch_images, self.global_step)
            self.net = LeNet5(MODEL_SCOPE, seed=config.seed, **config.model)
            self.towers = config.towers or default_towers(config.batch_size)
            # Data parallelism inside one step: every tower runs the shared network on its shard, and the
            # loss is the mean over the whole batch, so the gradient equals the single-tower one.
            losses, hits, update_ops = [], [], []
            for images_shard, labels_shard in zip(*(shard_batch(t, self.towers) for t in (batch_images, batch_labels))):
                logits = self.net(images_shard, training=True)
                update_ops = update_ops or list(self.net.update_ops)  # batch-norm statistics of tower 0
                losses.append(tf.reduce_sum(cross_entropy(logits, labels_shard, config.label_smoothing)))
                hits.append(tf.reduce_sum(correct(logits, labels_shard)))
            count = tf.cast(tf.size(self.indices), tf.float32)
            self.loss = tf.add_n(losses) / count
            self.accuracy = tf.add_n(hits) / count
            self.train_op = training_op(
                self.loss, self.learning_rate, self.net.trainable_variables, update_ops,
                config.weight_decay, self.global_step)
            self._swap_averages = None
            if config.weight_averaging:
                self.train_op, self._swap_averages = _weight_averaging(
                    self.train_op, self.net.trainable_variables, config.weight_averaging, self.global_step)
            self.inference = InferenceGraph(self.net, default_towers(EVAL_BATCH_SIZE))
            self.saver = tf1.train.Saver(max_to_keep=None)
            self.init = [tf1.global_variables_initializer(), tf1.local_variables_initializer()]
            self._step_fetches = [self.train_op, self.loss, self.accuracy, self.global_step]
        self.graph.finalize()
        self.first_step_seconds = None  # the first step also optimises the graph and builds the kernels

    def start(self, splits: Splits) -> tf1.Session:
        """Opens a session with fresh variables and the training set loaded into the graph."""
        session = tf1.Session(graph=self.graph, config=session_config(self.towers, self.precision.used))
        session.run(self.init, {self._images_init: splits.train_images, self._labels_init: splits.train_labels})
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

    def step(self, session: tf1.Session, indices: np.ndarray, learning_rate: float,
             augment: bool = True) -> tuple[float, float, int]:
        """One Adam step on the training images at ``indices`` (undistorted when not ``augment``);
        returns the batch loss, accuracy and step."""
        feed = {self.indices: indices, self.learning_rate: learning_rate, **self.augmentation.feed(augment)}
        began = time.perf_counter()
        _, batch_loss, batch_accuracy, step = session.run(self._step_fetches, feed)
        if self.first_step_seconds is None:
            self.first_step_seconds = time.perf_counter() - began
        return float(batch_loss), float(batch_accuracy), int(step)


def _weight_averaging(train_op: tf.Operation, variables: list[tf.Variable], decay: float,
                      global_step: tf.Variable) -> tuple[tf.Operation, tf.Operation]:
    """Follows every training step with an update of the variables' moving averages; returns that
    training op and an op that exchanges the variables' values with their averages."""
    # num_updates makes the early averages follow the weights closely (decay (1+t)/(10+t) at step t).
    averager = tf1.train.ExponentialMovingAverage(decay, num_updates=global_step)
    with tf.control_dependencies([train_op]):
        train_op = averager.apply(variables)
    averages = [averager.average(v) for v in variables]
    weight_values = [tf.identity(v.read_value()) for v in variables]
    average_values = [tf.identity(a.read_value()) for a in averages]
    with tf.control_dependencies(weight_values + average_values):  # read everything before overwriting
        swap = tf.group(*(v.assign(a) for v, a in zip(variables, average_values)),
                        *(a.assign(w) for a, w in zip(averages, weight_values)))
    return train_op, swap


def _load_splits(config: TrainConfig, data_dir, verify: bool) -> Splits:
    return split(load_mnist(data_dir, verify=verify), config.valid_size, config.seed)


def _resume_state(config: TrainConfig, out_dir: Path) -> dict:
    run = checkpoint.read_run(out_dir)
    expected = LeNet5(MODEL_SCOPE, seed=config.seed, **config.model).get_config()
    if run["model"] != expected:
        raise CheckpointError(f"{out_dir}: holds a different model ({run['model']}); cannot resume with {expected}")
    if run["train"]["seed"] != config.seed or run["train"]["valid_size"] != config.valid_size:
        raise CheckpointError(f"{out_dir}: was trained with another seed or split; resume with the same --seed")
    checkpoint.checkpoint_prefix(out_dir, "last", run)
    return run


def train(
    config: TrainConfig,
    out_dir: str | Path = "SavedModel",
    *,
    data_dir: str | Path | None = None,
    splits: Splits | None = None,
    verify_checksums: bool = True,
    resume: bool = False,
    logdir: str | Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Trains LeNet-5, keeping the epoch with the best validation accuracy, and tests it.

    Args:
      config: hyper-parameters; validated before anything is read or written.
      out_dir: checkpoint folder (see :mod:`lenet_tf.checkpoint`).
      data_dir: MNIST folder (see :func:`lenet_tf.data.resolve_data_dir`); ignored when ``splits`` is given.
      splits: ready data instead of loading MNIST.
      verify_checksums: check the MNIST files against the official SHA-256 values.
      resume: continue from the last saved epoch in ``out_dir`` (weights, Adam state, history).
      logdir: TensorBoard folder; defaults to ``out_dir/logs``.
      progress: show a progress bar per epoch.

    Raises:
      ConfigError, DataError, CheckpointError, TrainingError: with a one-line message.
    """
    timings = timing.Timings()
    timings.add("startup", max(0.0, timing.since_start() - IMPORT_SECONDS))
    timings.add("tf_import", IMPORT_SECONDS)
    config.validate()
    out = Path(out_dir)
    previous = _resume_state(config, out) if resume else None
    out = checkpoint.prepare_output_dir(out)
    with timings.phase("data"):
        if splits is None:
            splits = _load_splits(config, data_dir, verify_checksums)
    with timings.phase("graph"):
        graph = TrainGraph(config, splits)
    with timings.phase("tensorboard"), graph.graph.as_default():
        writer = tf1.summary.FileWriter(str(logdir or out / "logs"), graph.graph)
    run = {
        "format": 1,
        "model": graph.net.get_config(),
        "train": asdict(config),
        "precision": graph.precision.to_dict(),
        "data": {"train": len(splits.train_labels), "valid": len(splits.valid_labels),
                 "test": len(splits.test_labels)},
        "history": [],
        "complete": False,
    }
    with timings.phase("session"):
        session = graph.start(splits)
    with session:
        if previous:
            # With weight averaging, checkpoints hold the averages in the network's variables and the
            # training weights in the averages' slots: leaving the block swaps them back.
            with graph.averaged_weights(session):
                graph.saver.restore(session, checkpoint.checkpoint_prefix(out, "last", previous))
            run.update(history=previous["history"], best=previous["best"], last=previous["last"])
        first_epoch = len(run["history"])
        train_seconds = sum(h["seconds"] for h in run["history"])

        def validate_and_record(stats: dict) -> None:
            with graph.averaged_weights(session):
                with timings.phase("validation"):
                    valid = graph.inference.run(session, splits.valid_images, splits.valid_labels)
                stats.update(valid_loss=valid.loss, valid_accuracy=valid.accuracy(splits.valid_labels))
                with timings.phase("checkpoints"):
                    _record_epoch(session, graph, out, run, stats, writer)

        for epoch in range(first_epoch, config.epochs):
            stats = _train_epoch(session, graph, config, splits, epoch, progress, writer, validate_and_record)
            train_seconds += stats["seconds"]
            timings.add("epochs", stats["seconds"])
        with timings.phase("test"):
            graph.saver.restore(session, checkpoint.checkpoint_prefix(out, "best", run))
            test = graph.inference.run(session, splits.test_images, splits.test_labels)
    writer.close()
    if graph.first_step_seconds is not None:  # out of the epochs: mostly one-off graph optimisation
        timings.add("epochs", -graph.first_step_seconds)
        timings.add("first_step", graph.first_step_seconds)
    images = sum(h["images"] for h in run["history"])
    run.update(
        complete=True,
        test={"accuracy": test.accuracy(splits.test_labels), "loss": test.loss},
        seconds=train_seconds,
        images_per_second=images / train_seconds,
    )
    timings.add("other", timing.since_start() - sum(timings.seconds.values()))
    run["timing"] = {**timings.to_dict(), "total": round(timing.since_start(), 3)}
    checkpoint.write_json_atomic(out / checkpoint.RUN_FILE, run)
    return TrainResult.from_run(out, run)


def _train_epoch(session, graph: TrainGraph, config: TrainConfig, splits: Splits, epoch: int,
                 progress: bool, writer, finish) -> dict:
    """One pass over the shuffled training set, then ``finish(stats)`` (validation and checkpoint) while
    its progress bar is still open; returns the epoch's statistics."""
    count = len(splits.train_labels)
    # The order depends only on (seed, epoch), so a resumed run sees the same batches.
    order = np.random.default_rng([config.seed, epoch]).permutation(count).astype(np.int32)
    learning_rate = config.learning_rate_at(epoch)
    augment = config.augments_epoch(epoch)
    starts = list(range(0, count, config.batch_size))
    if len(starts) > 1 and count - starts[-1] < graph.towers:
        starts.pop()  # a remainder too small to shard across the towers joins the batch before it
    bar = tqdm(starts, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not progress,
               leave=True, dynamic_ncols=True)
    loss_sum = correct_sum = 0.0
    began = time.perf_counter()
    for i, start in enumerate(bar):
        batch = order[start:start + config.batch_size] if start != starts[-1] else order[start:]
        batch_loss, batch_accuracy, step = graph.step(session, batch, learning_rate, augment)
        if not math.isfinite(batch_loss):
            raise TrainingError(
                f"loss became {batch_loss} at epoch {epoch + 1}, step {step}; try a lower --lr "
                "(the last good checkpoint is kept)")
        loss_sum += batch_loss * len(batch)
        correct_sum += batch_accuracy * len(batch)
        if i % 25 == 0:
            bar.set_postfix(loss=f"{loss_sum / (start + len(batch)):.4f}",
                            acc=f"{correct_sum / (start + len(batch)):.4f}")
            writer.add_summary(_scalars({"train/batch_loss": batch_loss}), step)
    seconds = time.perf_counter() - began
    stats = {
        "epoch": epoch + 1,
        "learning_rate": learning_rate,
        "loss": loss_sum / count,
        "train_accuracy": correct_sum / count,
        "seconds": seconds,
        "images": count,
        "images_per_second": count / seconds,
    }
    finish(stats)
    bar.set_postfix(loss=f"{stats['loss']:.4f}", acc=f"{stats['train_accuracy']:.4f}",
                    valid=f"{stats['valid_accuracy']:.4f}")
    bar.close()
    return stats


def _record_epoch(session, graph: TrainGraph, out: Path, run: dict, stats: dict, writer) -> None:
    """Checkpoints the epoch, then atomically points ``run.json`` at it; prunes stale checkpoints."""
    checkpoint.record_epoch(graph.saver, session, out, run, stats)
    step = session.run(graph.global_step)
    writer.add_summary(_scalars({
        "train/loss": stats["loss"], "train/accuracy": stats["train_accuracy"],
        "valid/loss": stats["valid_loss"], "valid/accuracy": stats["valid_accuracy"],
        "learning_rate": stats["learning_rate"],
    }), step)
    writer.flush()


def _scalars(values: dict[str, float]) -> tf1.Summary:
    return tf1.Summary(value=[tf1.Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()])


if __name__ == "__main__":
    import sys

    from lenet_tf.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
