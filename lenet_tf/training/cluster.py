"""Data-parallel training on TensorFlow's own distributed runtime (``tf.compat.v1.train.Server``).

One or more parameter servers hold the variables (``replica_device_setter``); every worker reads its own shard
of the training set and computes gradients on it; ``SyncReplicasOptimizer`` averages one gradient from each
worker per step, so the updates are synchronous. Worker 0 is the chief: it initialises the variables,
validates and checkpoints after every epoch in the usual training-folder layout (``lenet-tf evaluate`` reads
it), and tests the best epoch at the end. Parameter servers stop by themselves once every worker is done.

The cluster comes from ``--cluster '{"ps": [...], "worker": [...]}' --job worker --task 0`` or, like other
TensorFlow programs, from ``TF_CONFIG`` (``{"cluster": {...}, "task": {"type": "worker", "index": 0}}``). The spec
is checked before any server starts (:mod:`lenet_tf.training.cluster_spec`).

When a member fails, every process ends in bounded time (:mod:`lenet_tf.training.watchdog`): each waits at most
``join_timeout`` seconds for the others to come, and a member that stops answering for ``member_timeout`` seconds
ends the run, with one line naming it; SIGINT/SIGTERM end any role within
:data:`~lenet_tf.training.watchdog.EXIT_GRACE_SECONDS` seconds.
The chief's ``run.json`` always holds its last finished epoch. There is no recovery: the synchronous optimizer
aggregates a gradient from every worker of the spec, so a run whose member is gone is started again.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lenet_tf.core.errors import ConfigError, TrainingError
from lenet_tf.core.precision import Precision, choose
from lenet_tf.core.quiet import ExpectedThreadFailures
from lenet_tf.core.tf import default_towers, tf, tf1
from lenet_tf.data.mnist import Splits
from lenet_tf.inference import InferenceGraph, ensemble_members
from lenet_tf.runs import checkpoint, lock
from lenet_tf.training.batches import TrainingBatches
from lenet_tf.training.cluster_spec import member_name, own_port_problem, spec_problems
from lenet_tf.training.config import TrainConfig
from lenet_tf.training.loop import RunRecorder, epoch_batches, run_epoch, start_timings
from lenet_tf.training.step import training_step
from lenet_tf.training.trainer import MODEL_SCOPE, Notice, TrainResult, load_splits, with_rejection
from lenet_tf.training.watchdog import (JOIN_TIMEOUT_SECONDS, MEMBER_TIMEOUT_SECONDS, PROBE_SECONDS, MemberError,
                                        Watchdog)

_DONE_QUEUE = "lenet_tf_workers_done"
_JOINED_QUEUE = "lenet_tf_workers_joined"


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

    @property
    def address(self) -> str:
        return self.cluster[self.job][self.index]

    def others(self, jobs: tuple[str, ...] = ("ps", "worker")) -> dict[str, str]:
        """The other members of these jobs, by name (``ps 0``, ``chief (worker 0)``, ``worker 1``)."""
        return {member_name(job, index): address for job in jobs for index, address in enumerate(self.cluster[job])
                if (job, index) != (self.job, self.index)}


def open_port_warning(role: Role) -> str:
    """The start-up line that says this member's gRPC port is open to every network the machine is on."""
    port = role.address.rsplit(":", 1)[-1]
    return (f"lenet-tf: warning: {member_name(role.job, role.index)} listens on port {port} of every interface "
            f"(TensorFlow's gRPC server binds all of them, whatever host {role.address} names) and accepts any "
            "peer without authentication: a peer that reaches it can run graphs, reading and writing files as this "
            f"user; firewall port {port} so that only the cluster's hosts reach it (docs/distributed.md)")


def start_server(role: Role) -> tf1.train.Server:
    """This member's TensorFlow gRPC server, after :func:`open_port_warning` on stderr. TF 1's server has no
    bind-address option (it listens on ``0.0.0.0``/``[::]``), so the host in the cluster spec cannot restrict it."""
    print(open_port_warning(role), file=sys.stderr, flush=True)
    return tf1.train.Server(tf1.train.ClusterSpec(role.cluster), job_name=role.job, task_index=role.index)


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
    problems = spec_problems(spec)
    if problems:
        raise ConfigError("\n".join(f"bad cluster spec: {problem}" for problem in problems))
    job = "worker" if job == "chief" else job
    if job not in ("ps", "worker") or task is None or not 0 <= int(task) < len(spec[job]):
        raise ConfigError(f"task must be ps or worker with an index into the cluster, got {job} {task}")
    role = Role({"ps": list(spec["ps"]), "worker": list(spec["worker"])}, job, int(task))
    problem = own_port_problem(role.address)
    if problem:
        raise ConfigError(f"bad cluster spec: {job}[{task}] {problem}")
    return role


def _filters(role: Role) -> tf1.ConfigProto:
    """Lets a session talk only to the parameter servers and its own task, never wait on the other workers."""
    return tf1.ConfigProto(device_filters=["/job:ps", f"/job:{role.job}/task:{role.index}"])


def cluster_precision(requested: str | None) -> Precision:
    """A cluster trains in fp32: the oneDNN bfloat16 rewrite makes fused kernels that the distributed runtime's
    devices do not have (measured: an InvalidArgumentError on _FusedConv2D). ``bf16`` asked for is refused."""
    chosen = choose(requested)
    if chosen.requested == "bf16":
        raise ConfigError("--precision bf16 is not available in cluster mode (TensorFlow's distributed runtime has "
                          "no kernels for the bf16 rewrite); pass --precision fp32 or auto")
    return Precision(chosen.requested, "fp32", "cluster mode: the bf16 rewrite has no distributed kernels",
                     chosen.features)


def _done_queue(role: Role, name: str = _DONE_QUEUE) -> tf1.FIFOQueue:
    """A queue of worker indices on the first parameter server, shared by every process of the cluster."""
    with tf1.device("/job:ps/task:0"):
        return tf1.FIFOQueue(role.workers, tf.int32, shapes=[], shared_name=name, name=name.replace("lenet_tf_", ""))


def check_distributable(config: TrainConfig) -> None:
    """Raises :class:`ConfigError` for a configuration out of range or using what TensorFlow's distributed runtime
    lacks (the options' declarations say which: :meth:`TrainConfig.cluster_refusals`); every role calls it before
    its server starts, so that a refused run starts nowhere."""
    config.validate()
    refusals = config.cluster_refusals()
    if refusals:
        raise ConfigError("; ".join(refusals))


def run_parameter_server(role: Role, *, join_timeout: float = JOIN_TIMEOUT_SECONDS,
                         member_timeout: float = MEMBER_TIMEOUT_SECONDS) -> None:
    """Serves variables until every worker has reported that it is done.

    Raises:
      MemberError: a worker never came within ``join_timeout`` s, or stopped answering for ``member_timeout`` s
        before it was done (see :mod:`lenet_tf.training.watchdog`).
    """
    server = start_server(role)
    workers = role.others(("worker",))
    with Watchdog(workers, join_timeout=join_timeout, member_timeout=member_timeout) as watchdog, \
            tf.Graph().as_default():
        watchdog.wait_for_members()
        done = _done_queue(role).dequeue()
        with tf1.Session(server.target, config=_filters(role)) as session:
            finished: set[int] = set()
            while len(finished) < role.workers:
                if watchdog.failure:
                    raise MemberError(watchdog.failure)
                try:  # short waits, so that a signal or a gone worker is noticed between them
                    index = int(session.run(done, options=tf1.RunOptions(timeout_in_ms=500)))
                except tf.errors.DeadlineExceededError:
                    continue
                finished.add(index)
                watchdog.release(member_name("worker", index))


class _SessionHook(tf1.train.SessionRunHook):
    """Keeps the raw session (the chief validates and checkpoints through it, outside the monitored steps) and,
    on the chief, releases the workers still waiting for a synchronous step once the last one is done."""

    def __init__(self, worker: _WorkerGraph, last_step: int, watchdog: Watchdog) -> None:
        self.worker, self.last_step, self.watchdog = worker, last_step, watchdog
        self.join_timeout = watchdog.join_timeout
        self.session: tf1.Session | None = None
        self.reached = 0  # the shared step count seen in this session once it came near the last step

    def after_create_session(self, session, coord):
        """Every worker has joined before the first step: a chief alone would otherwise train by itself."""
        self.session = session
        if not self.worker.role.is_chief:
            session.run(self.worker.join)
        elif self.worker.joined is not None:
            try:
                session.run(self.worker.joined, options=tf1.RunOptions(timeout_in_ms=int(self.join_timeout * 1000)))
            except tf.errors.DeadlineExceededError:
                raise MemberError(f"{', '.join(self.worker.role.others(('worker',)))}: not all joined the training "
                                  f"session within {self.join_timeout:g} s") from None

    def before_run(self, run_context):
        return tf1.train.SessionRunArgs(self.worker.global_step)

    def after_run(self, run_context, run_values):
        if int(run_values.results) + 1 < self.last_step:
            return
        # The steps are done: the workers may end now.
        self.reached = max(self.reached, int(run_context.session.run(self.worker.global_step)))
        self.watchdog.release(*self.worker.role.others(("worker",)))
        if self.worker.role.is_chief:
            # Workers may already wait for the next synchronous step, which will never come: give each
            # one token so that it returns, sees the final step count and stops.
            try:
                run_context.session.run(self.worker.release_tokens)
            except tf.errors.CancelledError:
                pass  # the token queue is already closed: no worker is left waiting on it


class _WorkerGraph:
    """The replicated training graph: variables on the parameter servers; the training set, its distortions and
    the computation on this worker; the step is the single-process trainer's (:func:`training_step`)."""

    def __init__(self, config: TrainConfig, role: Role, splits: Splits) -> None:
        self.config, self.role = config, role
        cluster = tf1.train.ClusterSpec(role.cluster)
        worker_device = f"/job:worker/task:{role.index}"
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf1.set_random_seed(config.seed)
            device = tf1.train.replica_device_setter(worker_device=worker_device, cluster=cluster)
            with tf1.device(device):
                with tf1.device(worker_device):  # local variables: each worker holds its own copy of the data
                    self.batches = TrainingBatches(config, splits.train_images, splits.train_labels)
                self.indices = tf1.placeholder(tf.int32, [None], name="batch_indices")
                # A variable, not a fed placeholder: the chief's queue runner applies the averaged gradients
                # without any feed. The chief sets it at the start of each epoch.
                self.learning_rate = tf1.get_variable("learning_rate", [], trainable=False,
                                                      initializer=tf1.constant_initializer(config.learning_rate))
                self.new_learning_rate = tf1.placeholder(tf.float32, [], name="new_learning_rate")
                self.set_learning_rate = tf1.assign(self.learning_rate, self.new_learning_rate)
                self.global_step = tf1.train.get_or_create_global_step()
                # Images fed to a training step by any worker: what the chief records per epoch (never saved).
                self.images_trained = tf1.get_variable("images_trained", [], tf.int64, trainable=False,
                                                       initializer=tf1.zeros_initializer())
                self.count_images = tf1.assign_add(self.images_trained, tf.shape(self.indices, out_type=tf.int64)[0])
                self.members = ensemble_members({**config.model, "name": MODEL_SCOPE, "seed": config.seed},
                                                config.ensemble)
                self.net = self.members[0]
                self.optimizer = tf1.train.SyncReplicasOptimizer(
                    tf1.train.AdamOptimizer(self.learning_rate), replicas_to_aggregate=role.workers,
                    total_num_replicas=role.workers)
                images, labels = self.batches.batch(self.indices, self.global_step)
                step = training_step(config, self.members, images, labels, self.learning_rate, self.global_step,
                                     towers=config.towers or default_towers(config.batch_size),
                                     optimizer=self.optimizer)
                self.loss, self.accuracy, self.train_op = step.loss, step.accuracy, step.train_op
                self.inference = InferenceGraph(self.members)
                self.release_tokens = self.optimizer.get_init_tokens_op(role.workers)
            variables = [v for net in self.members for v in net.variables]
            self.saver = tf1.train.Saver(var_list=variables + [self.global_step], max_to_keep=None)
            # The chief restores its best epoch to test it with this one: the shared step count stays where the run
            # ended, which the other workers read to know it was complete (restoring an earlier epoch's count made
            # one look "the run ended at step 31 of 32").
            self.best_restorer = tf1.train.Saver(var_list=variables)
            self.done = _done_queue(role).enqueue(role.index)
            joined = _done_queue(role, _JOINED_QUEUE)
            self.join = joined.enqueue(role.index)  # every non-chief worker, once its session is ready
            self.joined = joined.dequeue_many(role.workers - 1) if role.workers > 1 else None  # the chief
            self.scaffold = tf1.train.Scaffold(local_init_feed_dict=self.batches.init_feed())


class _WorkerSessionCreator(tf1.train.WorkerSessionCreator):
    """A non-chief worker's session: the chief's initialisation is checked for every half second (TensorFlow's
    default waits 30 s between checks), at most ``max_wait_secs``."""

    def _get_session_manager(self):
        if not self._session_manager:
            self._session_manager = tf1.train.SessionManager(
                local_init_op=self._scaffold.local_init_op, local_init_feed_dict=self._scaffold.local_init_feed_dict,
                ready_op=self._scaffold.ready_op, ready_for_local_init_op=self._scaffold.ready_for_local_init_op,
                graph=tf1.get_default_graph(), recovery_wait_secs=0.5)
        return self._session_manager


@contextlib.contextmanager
def _expected_queue_runner_cancellation():
    """When the chief's session closes, the SyncReplicasOptimizer's token queue runner is still waiting for
    gradients that will never come; closing cancels it, and TensorFlow reports that expected CancelledError as a
    thread traceback on stderr. Within the block (and until those threads have ended) exactly that is silenced."""
    silenced = ExpectedThreadFailures(lambda args: issubclass(args.exc_type, tf.errors.CancelledError)
                                      and args.thread is not None and args.thread.name.startswith("QueueRunnerThread"))
    try:
        yield
    finally:
        for thread in threading.enumerate():
            if thread.name.startswith("QueueRunnerThread"):
                thread.join(timeout=10)
        silenced.close()


def train_worker(
    config: TrainConfig,
    role: Role,
    out_dir: str | Path = "SavedModel",
    *,
    data_dir: str | Path | None = None,
    splits: Splits | None = None,
    verify_checksums: bool = True,
    overwrite: bool = False,
    logdir: str | Path | None = None,
    progress: bool = True,
    join_timeout: float = JOIN_TIMEOUT_SECONDS,
    member_timeout: float = MEMBER_TIMEOUT_SECONDS,
    notice: Notice | None = None,
) -> TrainResult | None:
    """Trains as one worker of the cluster; the chief returns the result (others return ``None``).

    The chief writes ``out_dir`` exactly like :func:`lenet_tf.training.trainer.train` (the same run.json, checkpoints and
    TensorBoard logs in ``logdir``, default ``out_dir/logs``, and a progress bar), holding its writer lock: a folder
    holding a run is refused unless ``overwrite``. The other workers write nothing.

    Every member must come within ``join_timeout`` seconds; one that stops answering for ``member_timeout`` seconds
    ends the run (see :mod:`lenet_tf.training.watchdog`); the chief's last finished epoch stays valid.

    Raises:
      MemberError: a member never came or is gone (the message names it).
    """
    check_distributable(config)
    folder_lock = lock.writing(out_dir, what="training folder") if role.is_chief else contextlib.nullcontext()
    with folder_lock:
        timings = start_timings()
        out, previous = Path(out_dir), None
        if role.is_chief:
            out, previous = checkpoint.prepare_output_dir(out_dir, overwrite=overwrite)
        if splits is None:
            splits = load_splits(config, data_dir, verify_checksums)
        worker = _WorkerGraph(config, role, splits)
        precision = cluster_precision(config.precision)
        if notice:
            notice(precision.describe())
        server = start_server(role)
        note = f"; the last finished epoch stays in {out}" if role.is_chief else ""
        with Watchdog(role.others(), join_timeout=join_timeout, member_timeout=member_timeout,
                      interrupted_note=note) as watchdog:
            watchdog.wait_for_members()
            recorder = None
            if role.is_chief:
                recorder = RunRecorder(out, config, worker.net.get_config(), splits, worker.graph,
                                       precision=precision.to_dict(), replaced=previous, logdir=logdir,
                                       extra={"cluster": {"ps": len(role.cluster["ps"]), "workers": role.workers,
                                                          "joined": list(role.cluster["worker"])},
                                              **CLUSTER_KERNELS},
                                       timings=timings)
            run = _run_session(worker, config, splits, server, watchdog, recorder, progress)
        return with_rejection(TrainResult.from_run(out, run), config, splits) if run else None


# A cluster's workers build TensorFlow's kernels only: its graph runs on TensorFlow's distributed runtime, which
# every member would need the native ops loaded into (recorded in run.json as a single-process run records them).
CLUSTER_KERNELS = {"kernels": {"used": "nn", "reason": "cluster mode: TensorFlow's kernels only"},
                   "warp": {"used": "tf", "reason": "cluster mode: TensorFlow's kernels only"}}


def _final_step(session: tf1.Session, global_step: tf.Tensor, last_step: int, wait_s: float = 5.0) -> int:
    """The shared step count once the last synchronous update has landed on the parameter server, or as it stands
    after ``wait_s`` seconds: a worker's final gradient may return before the step it completes is applied."""
    deadline = time.monotonic() + wait_s
    while True:
        reached = int(session.run(global_step, options=tf1.RunOptions(timeout_in_ms=5000)))
        if reached >= last_step or time.monotonic() >= deadline:
            return reached
        time.sleep(0.05)


def _run_session(worker: _WorkerGraph, config: TrainConfig, splits: Splits, server: tf1.train.Server,
                 watchdog: Watchdog, recorder: RunRecorder | None, progress: bool) -> dict | None:
    """The monitored training session of :func:`train_worker`; returns the chief's finished run record."""
    role = worker.role
    shard = np.arange(role.index, len(splits.train_labels), role.workers)  # this worker's own examples
    last_step = config.epochs * math.ceil(len(shard) / config.batch_size)
    hook, run = _SessionHook(worker, last_step, watchdog), None
    hooks = [worker.optimizer.make_session_run_hook(role.is_chief), tf1.train.StopAtStepHook(last_step=last_step),
             hook]
    try:
        with worker.graph.as_default(), _expected_queue_runner_cancellation():
            if role.is_chief:
                creator = tf1.train.ChiefSessionCreator(worker.scaffold, master=server.target, config=_filters(role))
            else:
                creator = _WorkerSessionCreator(worker.scaffold, master=server.target, config=_filters(role),
                                                max_wait_secs=watchdog.join_timeout)
            session = tf1.train.MonitoredSession(creator, hooks=hooks, stop_grace_period_secs=5)
            with session:
                _train_epochs(worker, config, splits, shard, session, hook, recorder, progress, watchdog)
                if recorder:
                    run = recorder.finish(worker.best_restorer, hook.session, worker.inference, splits)
    except tf.errors.OpError as err:
        raise MemberError(_failure(watchdog, err)) from None
    finally:  # report even after a failure, so that the parameter servers stop
        # What this worker saw, unless the parameter server tells more: one already gone (its watchdog ended it when
        # the chief stopped) must not make a worker stopped halfway report the run as done.
        reached = hook.reached
        if recorder:
            recorder.close()
        with worker.graph.as_default(), tf1.Session(server.target, config=_filters(role)) as done_session:
            with contextlib.suppress(tf.errors.OpError):  # a parameter server that is gone needs no report
                # (as seen in the session: the chief's restore of its best epoch leaves the shared step count)
                wait = 0.0 if role.is_chief or hook.reached >= last_step else 5.0
                reached = max(hook.reached, _final_step(done_session, worker.global_step, last_step, wait))
                done_session.run(worker.done, options=tf1.RunOptions(timeout_in_ms=5000))
    if not role.is_chief and reached < last_step:
        raise TrainingError(f"the run ended at step {reached} of {last_step}: the chief stopped it")
    if role.is_chief and run is None:
        raise TrainingError(watchdog.failure or "the cluster stopped before the run was complete (a worker or "
                            "parameter server failed); the last finished epoch stays in " + str(recorder.out))
    return run


def _failure(watchdog: Watchdog, err: tf.errors.OpError) -> str:
    """The member whose loss made a session call fail, as the watchdog names it (given the time to notice)."""
    deadline = time.monotonic() + watchdog.member_timeout + 2 * PROBE_SECONDS
    while watchdog.failure is None and time.monotonic() < deadline:
        time.sleep(PROBE_SECONDS / 5)
    return watchdog.failure or f"the cluster stopped: {checkpoint.describe_tf_error(err)}"


def _train_epochs(worker: _WorkerGraph, config: TrainConfig, splits: Splits, shard: np.ndarray, session,
                  hook: _SessionHook, recorder: RunRecorder | None, progress: bool, watchdog: Watchdog) -> None:
    """Feeds this worker's shuffled shard for the configured epochs, the chief (with ``recorder``) validating and
    recording each; then keeps feeding until the shared step count is reached (below)."""
    fetches = [worker.train_op, worker.loss, worker.accuracy, worker.global_step, worker.count_images]
    counted = [0]  # images_trained when the chief's previous epoch was recorded

    def stepper(epoch: int):
        feed = worker.batches.feed(config.augments_epoch(min(epoch, config.epochs - 1)))

        def step(batch: np.ndarray) -> tuple[float, float, int]:
            _, loss, accuracy, global_step, _ = session.run(
                fetches, {worker.indices: batch, **feed})
            return float(loss), float(accuracy), int(global_step)
        return step

    def finish(stats: dict) -> None:
        total = int(hook.session.run(worker.images_trained))  # what every worker really trained meanwhile
        stats.update(images=total - counted[0], images_per_second=(total - counted[0]) / stats["seconds"])
        counted[0] = total
        with watchdog.recording:  # a forced end waits for the epoch's record
            recorder.validate_and_record(stats, worker.saver, hook.session, worker.inference, splits,
                                         worker.global_step)

    def batches(epoch: int) -> list[np.ndarray]:
        return epoch_batches(shard, config.batch_size, [config.seed, worker.role.index, epoch])

    for epoch in range(config.epochs):
        if session.should_stop():
            return
        learning_rate = config.learning_rate_at(epoch)
        if worker.role.is_chief:
            session.run(worker.set_learning_rate, {worker.new_learning_rate: learning_rate})
        run_epoch(stepper(epoch), batches(epoch), epoch=epoch, epochs=config.epochs, learning_rate=learning_rate,
                  recorder=recorder, finish=finish if recorder else None, progress=progress and recorder is not None,
                  should_stop=session.should_stop)
    # SyncReplicasOptimizer drops a gradient computed on stale weights, so a worker may end its epochs while the
    # shared step count is still short of the last step; stopping then would leave the others waiting forever for
    # its gradients. It goes on feeding (unrecorded) until the count is reached.
    epoch = config.epochs
    while not session.should_stop():
        step = stepper(epoch)
        for batch in batches(epoch):
            if session.should_stop():
                break
            step(batch)
        epoch += 1
