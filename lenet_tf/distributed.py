"""Data-parallel training on TensorFlow's own distributed runtime (``tf.compat.v1.train.Server``).

One or more parameter servers hold the variables (``replica_device_setter``); every worker reads its own shard
of the training set and computes gradients on it; ``SyncReplicasOptimizer`` averages one gradient from each
worker per step, so the updates are synchronous. Worker 0 is the chief: it initialises the variables,
validates and checkpoints after every epoch in the usual training-folder layout (``lenet-tf evaluate`` reads
it), and tests the best epoch at the end. Parameter servers stop by themselves once every worker is done.

The cluster comes from ``--cluster '{"ps": [...], "worker": [...]}' --job worker --task 0`` or, like other
TensorFlow programs, from ``TF_CONFIG`` (``{"cluster": {...}, "task": {"type": "worker", "index": 0}}``).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lenet_tf import checkpoint
from lenet_tf._tf import tf, tf1
from lenet_tf.data import Splits, load_mnist, split
from lenet_tf.errors import ConfigError
from lenet_tf.inference import InferenceGraph
from lenet_tf.model import LeNet5
from lenet_tf.objectives import correct, cross_entropy, scale_images, with_weight_decay
from lenet_tf.precision import choose, enable_bf16
from lenet_tf.train import MODEL_SCOPE, Augmentation, TrainConfig, TrainResult

_DONE_QUEUE = "lenet_tf_workers_done"


@dataclass(frozen=True)
class Role:
    """This process's place in the cluster."""

    cluster: dict
    job: str
    index: int

    @property
    def workers(self) -> int:
        return len(self.cluster["worker"])

    @property
    def is_chief(self) -> bool:
        return self.job == "worker" and self.index == 0


def parse_role(cluster: str | None = None, job: str | None = None, task: int | None = None) -> Role:
    """Reads the cluster from the arguments, else from ``$TF_CONFIG``; checks it is usable."""
    if cluster is None:
        if "TF_CONFIG" not in os.environ:
            raise ConfigError("no cluster given: pass --cluster, --job and --task, or set TF_CONFIG")
        try:
            tf_config = json.loads(os.environ["TF_CONFIG"])
            spec, job, task = tf_config["cluster"], tf_config["task"]["type"], tf_config["task"]["index"]
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"TF_CONFIG is not valid: {err}") from None
    else:
        try:
            spec = json.loads(cluster)
        except ValueError as err:
            raise ConfigError(f"--cluster is not JSON: {err}") from None
    if not isinstance(spec, dict) or not spec.get("ps") or not spec.get("worker"):
        raise ConfigError('the cluster needs at least one "ps" and one "worker" address')
    job = "worker" if job == "chief" else job
    if job not in ("ps", "worker") or task is None or not 0 <= int(task) < len(spec[job]):
        raise ConfigError(f"task must be ps or worker with an index into the cluster, got {job} {task}")
    return Role({"ps": list(spec["ps"]), "worker": list(spec["worker"])}, job, int(task))


def _filters(role: Role, precision: str = "fp32") -> tf1.ConfigProto:
    """Lets a session talk only to the parameter servers and its own task, never wait on the other workers;
    with ``precision`` ``"bf16"``, adds the oneDNN bfloat16 rewrite."""
    config = tf1.ConfigProto(device_filters=["/job:ps", f"/job:{role.job}/task:{role.index}"])
    if precision == "bf16":
        enable_bf16(config)
    return config


def _done_queue(role: Role) -> tf1.FIFOQueue:
    with tf1.device("/job:ps/task:0"):
        return tf1.FIFOQueue(role.workers, tf.int32, shapes=[], shared_name=_DONE_QUEUE, name="workers_done")


def run_parameter_server(role: Role, timeout_s: float = 24 * 3600) -> None:
    """Serves variables until every worker has reported that it is done."""
    server = tf1.train.Server(tf1.train.ClusterSpec(role.cluster), job_name="ps", task_index=role.index)
    with tf.Graph().as_default():
        done = _done_queue(role).dequeue_many(role.workers)
        with tf1.Session(server.target, config=_filters(role)) as session:
            session.run(done, options=tf1.RunOptions(timeout_in_ms=int(timeout_s * 1000)))


class _ChiefHook(tf1.train.SessionRunHook):
    """On the chief: validate and checkpoint at every epoch boundary, test the best epoch at the end."""

    def __init__(self, worker: _WorkerGraph, splits: Splits, out: Path, run: dict, steps_per_epoch: int,
                 last_step: int):
        self.worker, self.splits, self.out, self.run, self.steps_per_epoch = worker, splits, out, run, steps_per_epoch
        self.last_step = last_step
        self.epoch_began = time.perf_counter()
        self.train_seconds = 0.0

    def before_run(self, run_context):
        return tf1.train.SessionRunArgs(self.worker.global_step)

    def after_run(self, run_context, run_values):
        step = int(run_values.results) + 1
        if step % self.steps_per_epoch == 0 and step // self.steps_per_epoch > len(self.run["history"]):
            self._record(run_context.session, step // self.steps_per_epoch)
        if step >= self.last_step:
            # Workers may already wait for the next synchronous step, which will never come: give each
            # one token so that it returns, sees the final step count and stops.
            try:
                run_context.session.run(self.worker.release_tokens)
            except tf.errors.CancelledError:
                pass  # the token queue is already closed: no worker is left waiting on it

    def _record(self, session, epoch: int) -> None:
        seconds = time.perf_counter() - self.epoch_began
        self.train_seconds += seconds
        valid = self.worker.inference.run(session, self.splits.valid_images, self.splits.valid_labels)
        images = self.steps_per_epoch * self.worker.config.batch_size * len(self.worker.role.cluster["worker"])
        stats = {"epoch": epoch, "learning_rate": self.worker.config.learning_rate_at(epoch - 1),
                 "valid_loss": valid.loss, "valid_accuracy": valid.accuracy(self.splits.valid_labels),
                 "seconds": seconds, "images": images, "images_per_second": images / seconds}
        checkpoint.record_epoch(self.worker.saver, session, self.out, self.run, stats)
        self.epoch_began = time.perf_counter()

    def end(self, session):
        self.worker.saver.restore(session, checkpoint.checkpoint_prefix(self.out, "best", self.run))
        test = self.worker.inference.run(session, self.splits.test_images, self.splits.test_labels)
        images = sum(h["images"] for h in self.run["history"])
        self.run.update(complete=True, seconds=self.train_seconds, images_per_second=images / self.train_seconds,
                        test={"accuracy": test.accuracy(self.splits.test_labels), "loss": test.loss})
        checkpoint.write_json_atomic(self.out / checkpoint.RUN_FILE, self.run)


class _WorkerGraph:
    """The replicated training graph: variables on the parameter servers, computation on this worker."""

    def __init__(self, config: TrainConfig, role: Role) -> None:
        self.config, self.role = config, role
        cluster = tf1.train.ClusterSpec(role.cluster)
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf1.set_random_seed(config.seed)
            device = tf1.train.replica_device_setter(worker_device=f"/job:worker/task:{role.index}",
                                                     cluster=cluster)
            with tf1.device(device):
                self.images = tf1.placeholder(tf.uint8, [None, 32, 32, 1], name="images")
                self.labels = tf1.placeholder(tf.int32, [None], name="labels")
                # A variable, not a fed placeholder: the chief's queue runner applies the averaged gradients
                # without any feed. The chief sets it at the start of each epoch.
                self.learning_rate = tf1.get_variable("learning_rate", [], trainable=False,
                                                      initializer=tf1.constant_initializer(config.learning_rate))
                self.new_learning_rate = tf1.placeholder(tf.float32, [], name="new_learning_rate")
                self.set_learning_rate = tf1.assign(self.learning_rate, self.new_learning_rate)
                self.global_step = tf1.train.get_or_create_global_step()
                self.net = LeNet5(MODEL_SCOPE, seed=config.seed, **config.model)
                self.augmentation = Augmentation(config)  # each worker switches it off in the clean epochs
                logits = self.net(self.augmentation(scale_images(self.images), self.global_step), training=True)
                self.loss = tf.reduce_mean(cross_entropy(logits, self.labels, config.label_smoothing))
                self.accuracy = tf.reduce_mean(correct(logits, self.labels))
                self.optimizer = tf1.train.SyncReplicasOptimizer(
                    tf1.train.AdamOptimizer(self.learning_rate), replicas_to_aggregate=role.workers,
                    total_num_replicas=role.workers)
                with tf.control_dependencies(self.net.update_ops):
                    self.train_op = self.optimizer.minimize(
                        with_weight_decay(self.loss, self.net.trainable_variables, config.weight_decay),
                        global_step=self.global_step, var_list=self.net.trainable_variables)
                self.inference = InferenceGraph(self.net)
                self.release_tokens = self.optimizer.get_init_tokens_op(role.workers)
            self.saver = tf1.train.Saver(var_list=self.net.variables + [self.global_step], max_to_keep=None)
            self.done = _done_queue(role).enqueue(role.index)


def train_worker(
    config: TrainConfig,
    role: Role,
    out_dir: str | Path = "SavedModel",
    *,
    data_dir: str | Path | None = None,
    splits: Splits | None = None,
    verify_checksums: bool = True,
) -> TrainResult | None:
    """Trains as one worker of the cluster; the chief returns the result (others return ``None``)."""
    config.validate()
    if config.weight_averaging:
        raise ConfigError("--weight-averaging is not available in distributed training; pass --weight-averaging 0")
    out = checkpoint.prepare_output_dir(out_dir) if role.is_chief else Path(out_dir)
    if splits is None:
        splits = split(load_mnist(data_dir, verify=verify_checksums), config.valid_size, config.seed)
    shard = np.arange(role.index, len(splits.train_labels), role.workers)  # this worker's own examples
    steps_per_epoch = math.ceil(len(shard) / config.batch_size)
    worker = _WorkerGraph(config, role)
    server = tf1.train.Server(tf1.train.ClusterSpec(role.cluster), job_name="worker", task_index=role.index)
    run = {"format": 1, "model": worker.net.get_config(), "train": asdict(config),
           "precision": choose(config.precision).to_dict(),
           "cluster": {"ps": len(role.cluster["ps"]), "workers": role.workers},
           "data": {"train": len(splits.train_labels), "valid": len(splits.valid_labels),
                    "test": len(splits.test_labels)}, "history": [], "complete": False}
    last_step = config.epochs * steps_per_epoch
    hooks = [worker.optimizer.make_session_run_hook(role.is_chief), tf1.train.StopAtStepHook(last_step=last_step)]
    if role.is_chief:
        hooks.append(_ChiefHook(worker, splits, out, run, steps_per_epoch, last_step))
    try:
        _train_loop(worker, role, config, splits, shard, hooks, server)
    finally:  # report even after a failure, so that the parameter servers stop
        with worker.graph.as_default(), tf1.Session(server.target, config=_filters(role)) as done_session:
            done_session.run(worker.done)
    return TrainResult.from_run(out, run) if role.is_chief else None


def _train_loop(worker: _WorkerGraph, role: Role, config: TrainConfig, splits: Splits, shard: np.ndarray,
                hooks: list, server: tf1.train.Server) -> None:
    """Feeds this worker's shuffled shard until the shared step count is reached."""
    with worker.graph.as_default():
        session = tf1.train.MonitoredTrainingSession(master=server.target, is_chief=role.is_chief, hooks=hooks,
                                                     save_checkpoint_secs=None, save_summaries_steps=None,
                                                     log_step_count_steps=None, stop_grace_period_secs=5,
                                                     config=_filters(role, choose(config.precision).used))
        with session:
            epoch = 0
            while not session.should_stop():
                if role.is_chief:
                    session.run(worker.set_learning_rate, {worker.new_learning_rate: config.learning_rate_at(epoch)})
                order = np.random.default_rng([config.seed, role.index, epoch]).permutation(shard)
                clean = worker.augmentation.feed(config.augments_epoch(epoch))
                for start in range(0, len(order), config.batch_size):
                    if session.should_stop():
                        break
                    batch = order[start:start + config.batch_size]
                    session.run(worker.train_op, {worker.images: splits.train_images[batch],
                                                  worker.labels: splits.train_labels[batch], **clean})
                epoch += 1
