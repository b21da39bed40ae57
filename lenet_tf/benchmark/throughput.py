"""Training and inference throughput of lenet_tf against the alternatives, measured in one run.

Contenders, all the same LeNet-5 (32x32 input, VALID convs 6/16, fc 120/84/10), Adam, batch 128:

1. ``lenet_tf``: the trainer's own graph and step (:class:`lenet_tf.training.trainer.TrainGraph`).
2. ``feed_dict``: a literal TF1 port of the seed article: float32 numpy batches fed every step,
   one-hot labels, conv -> +bias -> ReLU -> pool.
3. ``keras``: ``model.fit`` / ``model.predict`` of the same network.
4. ``torch``: a plain PyTorch loop, when ``torch`` is installed.

With ``--precision`` bf16 (or auto on a CPU with native bf16) each contender also runs in bfloat16 where it can:
lenet_tf and the TF1 port with the oneDNN bf16 rewrite, Keras with the ``mixed_bfloat16`` policy, PyTorch with
``torch.autocast``. Every contender runs in its own process; after warm-up steps the processes take turns, one
timed repeat each per round, so that other load on the machine hits them all alike. Medians are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from lenet_tf.core.tf import enable_bf16, gpu_available, tf, tf1
from lenet_tf.benchmark.flags import build_parser
from lenet_tf.data.mnist import Splits, load_mnist, split
from lenet_tf.inference import EVAL_BATCH_SIZE
from lenet_tf.core.outputs import check_new_files, write_atomic
from lenet_tf.core.precision import choose, cpu_features, cpu_model
from lenet_tf.training.trainer import TrainConfig, TrainGraph

BATCH = 128
# Multiply-accumulates of one forward pass: conv1, conv2, fc1, fc2, logits.
FORWARD_MACS = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10
# Training = forward + weight gradients + input gradients of every layer but the first.
TRAIN_FLOPS = 2 * (3 * FORWARD_MACS - 28 * 28 * 6 * 25)


def _rate(run: Callable[[], int]) -> float:
    """Images per second of one call of ``run`` (which returns how many images it processed)."""
    began = time.perf_counter()
    images = run()
    return images / (time.perf_counter() - began)


def _cycling_steps(count: int, step: Callable[[slice], None], steps: int) -> Callable[..., int]:
    """``run_steps(n=steps)``: n training steps on consecutive batches, wrapping around ``count`` examples."""
    position = 0

    def run_steps(n: int = steps) -> int:
        nonlocal position
        for _ in range(n):
            if position + BATCH > count:
                position = 0
            step(slice(position, position + BATCH))
            position += BATCH
        return n * BATCH

    return run_steps


def _batched(count: int, predict: Callable[[slice], object]) -> Callable[[], int]:
    """``infer()``: one inference pass over ``count`` examples in batches of EVAL_BATCH_SIZE."""
    def infer() -> int:
        for start in range(0, count, EVAL_BATCH_SIZE):
            predict(slice(start, start + EVAL_BATCH_SIZE))
        return count

    return infer


def gemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    """The machine's float32 matrix-multiply rate through numpy, GFLOP/s."""
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    a @ a
    began = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return 2 * size ** 3 * repeats / (time.perf_counter() - began) / 1e9


# ------------------------------------------------------------------------------------------- contenders
# Each one builds its model, runs the warm-up steps and returns (train, infer): functions that run one timed
# repeat (``steps`` training steps, one inference pass over the test set) and return the images processed.

def bench_lenet_tf(splits: Splits, steps: int, warmup: int, precision: str):
    """The shipped training step and inference graph."""
    graph = TrainGraph(TrainConfig(precision=precision), splits)
    order = np.random.default_rng(0).permutation(len(splits.train_labels)).astype(np.int32)
    session = graph.start(splits)
    run_steps = _cycling_steps(len(order), lambda batch: graph.step(session, order[batch], 1e-3), steps)
    run_steps(warmup)
    images = splits.test_images
    graph.inference.run(session, images[:EVAL_BATCH_SIZE])
    return run_steps, lambda: len(graph.inference.run(session, images).probabilities)


def _literal_port(x: tf.Tensor) -> tf.Tensor:
    """The seed article's network: tf.Variable weights, truncated normal(0.1), classic layer order."""
    def weights(shape):
        return tf1.Variable(tf1.truncated_normal(shape, stddev=0.1))

    def conv_relu_pool(h, shape):
        h = tf.nn.relu(tf.nn.conv2d(h, weights(shape), 1, "VALID") + tf1.Variable(tf.zeros(shape[-1])))
        return tf.nn.max_pool2d(h, 2, 2, "VALID")

    def dense(h, shape):
        return tf.matmul(h, weights(shape)) + tf1.Variable(tf.zeros(shape[-1]))

    h = conv_relu_pool(conv_relu_pool(x, [5, 5, 1, 6]), [5, 5, 6, 16])
    h = tf.nn.relu(dense(tf.reshape(h, [-1, 400]), [400, 120]))
    h = tf.nn.relu(dense(h, [120, 84]))
    return dense(h, [84, 10])


def bench_feed_dict(splits: Splits, steps: int, warmup: int, precision: str):
    """A literal TF1 port: numpy float32 batches through feed_dict each step."""
    train_x = splits.train_images.astype(np.float32) / 255
    test_x = splits.test_images.astype(np.float32) / 255
    train_y = splits.train_labels
    with tf.Graph().as_default() as graph:
        x = tf1.placeholder(tf.float32, (None, 32, 32, 1))
        y = tf1.placeholder(tf.int32, (None,))
        logits = _literal_port(x)
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=tf.one_hot(y, 10), logits=logits))
        train_op = tf1.train.AdamOptimizer(1e-3).minimize(loss)
        init = tf1.global_variables_initializer()
    config = tf1.ConfigProto()  # default settings, as a plain script would have them
    if precision == "bf16":
        enable_bf16(config)
    session = tf1.Session(graph=graph, config=config)
    session.run(init)
    run_steps = _cycling_steps(len(train_x), lambda b: session.run(train_op, {x: train_x[b], y: train_y[b]}), steps)
    run_steps(warmup)
    return run_steps, _batched(len(test_x), lambda b: session.run(logits, {x: test_x[b]}))


def bench_keras(splits: Splits, steps: int, warmup: int, precision: str):
    """Keras ``fit`` and ``predict`` of the same network (bf16: the ``mixed_bfloat16`` policy)."""
    import keras

    keras.utils.set_random_seed(0)
    if precision == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = keras.Sequential([
        keras.Input((32, 32, 1)),
        keras.layers.Conv2D(6, 5, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 5, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(120, activation="relu"), keras.layers.Dense(84, activation="relu"),
        keras.layers.Dense(10, dtype="float32"),  # logits and loss in float32, as Keras advises
    ])
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    n = steps * BATCH
    train_x = splits.train_images[:n].astype(np.float32) / 255
    train_y = splits.train_labels[:n]
    test_x = splits.test_images.astype(np.float32) / 255
    model.fit(train_x[:warmup * BATCH], train_y[:warmup * BATCH], batch_size=BATCH, epochs=1, verbose=0)

    def fit() -> int:
        model.fit(train_x, train_y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
        return n

    model.predict(test_x[:EVAL_BATCH_SIZE], batch_size=EVAL_BATCH_SIZE, verbose=0)
    return fit, lambda: len(model.predict(test_x, batch_size=EVAL_BATCH_SIZE, verbose=0))


def bench_torch(splits: Splits, steps: int, warmup: int, precision: str):
    """A plain PyTorch loop (CPU), when torch is installed (bf16: ``torch.autocast``)."""
    import contextlib

    import torch
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    train_x = torch.from_numpy(splits.train_images.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    train_y = torch.from_numpy(splits.train_labels.astype(np.int64))
    test_x = torch.from_numpy(splits.test_images.transpose(0, 3, 1, 2).astype(np.float32) / 255)

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()

    def step(batch: slice) -> None:
        optimizer.zero_grad()
        with autocast():
            loss = nn.functional.cross_entropy(model(train_x[batch]), train_y[batch])
        loss.backward()
        optimizer.step()

    def predict(batch: slice) -> None:
        with torch.no_grad(), autocast():
            model(test_x[batch])

    run_steps = _cycling_steps(len(train_x), step, steps)
    run_steps(warmup)
    return run_steps, _batched(len(test_x), predict)


CONTENDERS = {"lenet_tf": bench_lenet_tf, "feed_dict": bench_feed_dict, "keras": bench_keras, "torch": bench_torch}
# The literal port as TensorFlow runs it with oneDNN off: its default on CPUs without AVX-512.
ONEDNN_OFF = "feed_dict_onednn_off"


def row_name(contender: str, precision: str) -> str:
    """The name of a contender's row: ``lenet_tf``, ``lenet_tf bf16``, …"""
    return contender if precision == "fp32" else f"{contender} {precision}"


class _Worker:
    """One contender in its own process, so no thread pool or setting leaks between contenders; it warms up,
    then runs one timed repeat per request."""

    def __init__(self, contender: str, precision: str, args: argparse.Namespace) -> None:
        self.name, self.precision = row_name(contender, precision), precision
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        if contender == ONEDNN_OFF:
            contender, env["TF_ENABLE_ONEDNN_OPTS"] = "feed_dict", "0"
        command = [sys.executable, "-m", "lenet_tf.benchmark.throughput", "--worker", contender, "--precision", precision,
                   "--steps", str(args.steps), "--warmup", str(args.warmup)]
        if args.data_dir:
            command += ["--data-dir", str(args.data_dir)]
        self.log = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty worker never blocks on it
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                        text=True, env=env)
        self.ready = self._answer()

    def _answer(self) -> dict:
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        self.process.wait()
        self.log.seek(0)
        return {"error": (self.log.read().strip().splitlines() or ["failed"])[-1]}

    def measure(self, kind: str) -> float | None:
        """Images/s of one timed repeat of ``train`` or ``inference`` (None if the worker failed)."""
        try:
            self.process.stdin.write(kind + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # the worker is gone: _answer reports why
        answer = self._answer()
        if kind not in answer:
            self.error = answer.get("error", str(answer))
            return None
        return answer[kind]

    def close(self) -> None:
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        self.process.wait()
        self.log.close()


def _worker(args: argparse.Namespace) -> int:
    """The worker side of :class:`_Worker`: reports ready (or skipped), then answers requests until stdin ends."""
    splits = split(load_mnist(args.data_dir), 5000, 0)
    try:
        train, infer = CONTENDERS[args.worker](splits, args.steps, args.warmup, args.precision)
    except ImportError as err:
        print(json.dumps({"skipped": f"{err.name or err} is not installed (pip install lenet_tf[bench])"}))
        return 0
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        kind = line.strip()
        print(json.dumps({kind: _rate(train if kind == "train" else infer)}), flush=True)
    return 0


def _precisions(args: argparse.Namespace) -> list[str]:
    """fp32, plus bf16 when ``--precision`` (auto: where this CPU computes bf16 natively) asks for it."""
    return ["fp32"] + (["bf16"] if choose(args.precision).used == "bf16" else [])


def run_benchmark(args: argparse.Namespace) -> dict:
    """Runs the selected contenders on MNIST, each in its own process, in interleaved rounds; returns images/s
    (medians over the rounds) and the ratios of the shipped lenet_tf (in the precision ``auto`` picks)."""
    precisions = _precisions(args)
    rows = [(name, p) for name in (args.only or CONTENDERS) for p in precisions]
    rows += [] if args.no_default_env else [(ONEDNN_OFF, "fp32")]
    workers, notes = [], {}
    for contender, p in rows:
        worker = _Worker(contender, p, args)
        if worker.ready.get("ready"):
            workers.append(worker)
        else:
            notes[worker.name] = worker.ready.get("skipped") or f"failed: {worker.ready['error']}"
    rates = {worker.name: {"train": [], "inference": []} for worker in workers}
    try:
        for round_ in range(args.repeats):
            for worker in workers if round_ % 2 == 0 else workers[::-1]:  # alternate who goes first
                for kind in ("train", "inference"):
                    if worker.name in rates:
                        rate = worker.measure(kind)
                        if rate is None:
                            notes[worker.name] = f"failed: {worker.error}"
                            del rates[worker.name]
                        else:
                            rates[worker.name][kind].append(rate)
    finally:
        for worker in workers:
            worker.close()
    precision_of = {worker.name: worker.precision for worker in workers}
    results = {name: {"precision": precision_of[name],
                      **{kind: statistics.median(values) for kind, values in by_kind.items()}}
               for name, by_kind in rates.items()}
    if not args.quiet:
        for name, result in results.items():
            print(f"  {name:<24} train {result['train']:>9,.0f} img/s   inference {result['inference']:>10,.0f} img/s",
                  file=sys.stderr)
    gflops = gemm_gflops()
    features = cpu_features()
    report = {
        "machine": {"processor": cpu_model() or platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "cpu_features": features, "precision_auto": choose("auto").used,
                    "tensorflow": tf.__version__, "gpu": gpu_available(), "gemm_gflops": gflops,
                    "train_flops_per_image": TRAIN_FLOPS,
                    "compute_limit_train_images_per_s": gflops * 1e9 / TRAIN_FLOPS},
        "settings": {"batch": BATCH, "steps": args.steps, "repeats": args.repeats, "warmup": args.warmup,
                     "precisions": precisions, "interleaved": True},
        "results": results,
        "notes": notes,
    }
    ours = row_name("lenet_tf", report["machine"]["precision_auto"])
    ours = ours if ours in results else "lenet_tf"
    if ours in results:
        report["reference"] = ours
        report["ratios"] = {name: {kind: results[ours][kind] / other[kind] for kind in ("train", "inference")}
                            for name, other in results.items() if name != ours}
        # The same ratios taken round by round: robust to load that changes during the run.
        report["paired_ratios"] = {
            name: {kind: statistics.median(a / b for a, b in zip(rates[ours][kind], by_kind[kind]))
                   for kind in ("train", "inference")}
            for name, by_kind in rates.items() if name != ours}
    return report


def format_report(report: dict) -> str:
    """A table of images/s, the ratio of lenet_tf to each contender and the fraction of the compute limit."""
    machine = report["machine"]
    limit = machine["compute_limit_train_images_per_s"]
    flags = " ".join(name if on else f"-{name}" for name, on in machine["cpu_features"].items())
    ours = report.get("reference", "lenet_tf")
    lines = [
        f"CPU: {machine['processor']} x{machine['cpus']} ({flags}; auto precision: {machine['precision_auto']}), "
        f"TensorFlow {machine['tensorflow']}, fp32 GEMM {machine['gemm_gflops']:.0f} GFLOP/s "
        f"-> compute limit {limit:,.0f} training img/s at {TRAIN_FLOPS / 1e6:.2f} MFLOP/image",
        f"{report['settings']['repeats']} interleaved rounds of {report['settings']['steps']} steps; medians; "
        f"× = {ours} / row (paired round by round in brackets)",
        "",
        f"{'contender':<24}{'train img/s':>12}{'of limit':>10}{'inference img/s':>17}"
        f"{'lenet_tf ×train':>17}{'×inference':>12}",
    ]
    for name, result in report["results"].items():
        ratio = report.get("ratios", {}).get(name, {"train": 1.0, "inference": 1.0})
        paired = report.get("paired_ratios", {}).get(name)
        of_limit = f"{result['train'] / limit:>10.1%}" if result["precision"] == "fp32" else " " * 10  # fp32 GEMM
        line = (f"{name:<24}{result['train']:>12,.0f}{of_limit}{result['inference']:>17,.0f}"
                f"{ratio['train']:>17.2f}{ratio['inference']:>12.2f}")
        if paired:
            line += f"   ({paired['train']:.2f} / {paired['inference']:.2f})"
        lines.append(line)
    lines += [f"{name}: {note}" for name, note in report["notes"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints the table (and JSON)."""
    args = build_parser().parse_args(argv)
    return run_and_print(args)


def run_and_print(args: argparse.Namespace) -> int:
    """Runs the benchmark (or, with ``--worker``, one contender) and prints the results."""
    if args.worker:
        return _worker(args)
    if args.json and args.json != "-":  # refused before minutes of measuring, not after
        check_new_files([Path(args.json)], args.overwrite)
    report = run_benchmark(args)
    if not args.quiet:
        print(format_report(report))
    if args.json == "-":
        print(json.dumps(report, indent=2))
    elif args.json:
        write_atomic(args.json, lambda tmp: tmp.write_text(json.dumps(report, indent=2)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
