"""Training and inference throughput of lenet_tf against the alternatives, measured in one run.

Contenders, all the same LeNet-5 (32x32 input, VALID convs 6/16, fc 120/84/10), Adam, batch 128:

1. ``lenet_tf``: the trainer's own graph and step (:class:`lenet_tf.train.TrainGraph`).
2. ``feed_dict``: a literal TF1 port of the seed article: float32 numpy batches fed every step,
   one-hot labels, conv -> +bias -> ReLU -> pool.
3. ``keras``: ``model.fit`` / ``model.predict`` of the same network.
4. ``torch``: a plain PyTorch loop, when ``torch`` is installed.

Each contender trains warm-up steps first, then several timed repeats; the median is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable

import numpy as np

from lenet_tf._tf import gpu_available, tf, tf1
from lenet_tf.benchmark_flags import build_parser
from lenet_tf.data import Splits, load_mnist, split
from lenet_tf.inference import EVAL_BATCH_SIZE
from lenet_tf.train import TrainConfig, TrainGraph

BATCH = 128
# Multiply-accumulates of one forward pass: conv1, conv2, fc1, fc2, logits.
FORWARD_MACS = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10
# Training = forward + weight gradients + input gradients of every layer but the first.
TRAIN_FLOPS = 2 * (3 * FORWARD_MACS - 28 * 28 * 6 * 25)


def _median_rate(run_steps: Callable[[], int], repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        began = time.perf_counter()
        images = run_steps()
        rates.append(images / (time.perf_counter() - began))
    return statistics.median(rates)


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

def bench_lenet_tf(splits: Splits, steps: int, repeats: int, warmup: int) -> dict:
    """The shipped training step and inference graph."""
    graph = TrainGraph(TrainConfig(), splits)
    order = np.random.default_rng(0).permutation(len(splits.train_labels)).astype(np.int32)
    run_steps = _cycling_steps(len(order), lambda batch: graph.step(session, order[batch], 1e-3), steps)

    with graph.start(splits) as session:
        run_steps(warmup)
        train = _median_rate(run_steps, repeats)
        images = splits.test_images
        graph.inference.run(session, images[:EVAL_BATCH_SIZE])
        infer = _median_rate(lambda: len(graph.inference.run(session, images).probabilities), repeats)
    return {"train": train, "inference": infer}


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


def bench_feed_dict(splits: Splits, steps: int, repeats: int, warmup: int) -> dict:
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
    run_steps = _cycling_steps(len(train_x), lambda b: session.run(train_op, {x: train_x[b], y: train_y[b]}), steps)
    infer = _batched(len(test_x), lambda b: session.run(logits, {x: test_x[b]}))

    with tf1.Session(graph=graph) as session:  # default settings, as a plain script would have them
        session.run(init)
        run_steps(warmup)
        return {"train": _median_rate(run_steps, repeats), "inference": _median_rate(infer, repeats)}


def bench_keras(splits: Splits, steps: int, repeats: int, warmup: int) -> dict:
    """Keras ``fit`` and ``predict`` of the same network."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((32, 32, 1)),
        keras.layers.Conv2D(6, 5, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 5, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(120, activation="relu"), keras.layers.Dense(84, activation="relu"),
        keras.layers.Dense(10),
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
    infer = _median_rate(lambda: len(model.predict(test_x, batch_size=EVAL_BATCH_SIZE, verbose=0)), repeats)
    return {"train": _median_rate(fit, repeats), "inference": infer}


def bench_torch(splits: Splits, steps: int, repeats: int, warmup: int) -> dict:
    """A plain PyTorch loop (CPU), when torch is installed."""
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

    def step(batch: slice) -> None:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(train_x[batch]), train_y[batch]).backward()
        optimizer.step()

    def predict(batch: slice) -> None:
        with torch.no_grad():
            model(test_x[batch])

    run_steps = _cycling_steps(len(train_x), step, steps)
    infer = _batched(len(test_x), predict)
    run_steps(warmup)
    return {"train": _median_rate(run_steps, repeats), "inference": _median_rate(infer, repeats)}


CONTENDERS = {"lenet_tf": bench_lenet_tf, "feed_dict": bench_feed_dict, "keras": bench_keras, "torch": bench_torch}
# The literal port as TensorFlow runs it with oneDNN off: its default on CPUs without AVX-512.
ONEDNN_OFF = "feed_dict_onednn_off"


def _run_worker(name: str, args: argparse.Namespace) -> dict:
    """Measures one contender in a fresh process, so no thread pool or setting leaks between contenders."""
    contender, env = name, {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if name == ONEDNN_OFF:
        contender, env["TF_ENABLE_ONEDNN_OPTS"] = "feed_dict", "0"
    command = [sys.executable, "-m", "lenet_tf.benchmark", "--worker", contender, "--steps", str(args.steps),
               "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    if args.data_dir:
        command += ["--data-dir", str(args.data_dir)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _worker(args: argparse.Namespace) -> int:
    splits = split(load_mnist(args.data_dir), 5000, 0)
    try:
        result = CONTENDERS[args.worker](splits, args.steps, args.repeats, args.warmup)
    except ImportError as err:
        result = {"skipped": f"{err.name or err} is not installed (pip install lenet_tf[bench])"}
    print(json.dumps(result))
    return 0


def run_benchmark(args: argparse.Namespace) -> dict:
    """Runs the selected contenders on MNIST, each in its own process; returns images/s and ratios."""
    names = list(args.only or CONTENDERS) + ([] if args.no_default_env else [ONEDNN_OFF])
    results, notes = {}, {}
    for name in names:
        result = _run_worker(name, args)
        if "train" in result:
            results[name] = result
            if not args.quiet:
                print(f"  {name:<22} train {result['train']:>9,.0f} img/s   "
                      f"inference {result['inference']:>10,.0f} img/s", file=sys.stderr)
        else:
            notes[name] = result.get("skipped") or f"failed: {result['error']}"
    gflops = gemm_gflops()
    report = {
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "tensorflow": tf.__version__, "gpu": gpu_available(), "gemm_gflops": gflops,
                    "train_flops_per_image": TRAIN_FLOPS,
                    "compute_limit_train_images_per_s": gflops * 1e9 / TRAIN_FLOPS},
        "settings": {"batch": BATCH, "steps": args.steps, "repeats": args.repeats, "warmup": args.warmup},
        "results": results,
        "notes": notes,
    }
    if "lenet_tf" in results:
        ours = results["lenet_tf"]
        report["ratios"] = {name: {kind: ours[kind] / other[kind] for kind in ("train", "inference")}
                            for name, other in results.items() if name != "lenet_tf"}
    return report


def format_report(report: dict) -> str:
    """A table of images/s, the ratio of lenet_tf to each contender and the fraction of the compute limit."""
    limit = report["machine"]["compute_limit_train_images_per_s"]
    lines = [
        f"CPU: {report['machine']['processor']} x{report['machine']['cpus']}, TensorFlow "
        f"{report['machine']['tensorflow']}, fp32 GEMM {report['machine']['gemm_gflops']:.0f} GFLOP/s "
        f"-> compute limit {limit:,.0f} training img/s at {TRAIN_FLOPS / 1e6:.2f} MFLOP/image",
        "",
        f"{'contender':<22}{'train img/s':>12}{'of limit':>10}{'inference img/s':>17}"
        f"{'lenet_tf ×train':>17}{'×inference':>12}",
    ]
    for name, result in report["results"].items():
        ratio = report.get("ratios", {}).get(name, {"train": 1.0, "inference": 1.0})
        lines.append(f"{name:<22}{result['train']:>12,.0f}{result['train'] / limit:>10.1%}"
                     f"{result['inference']:>17,.0f}{ratio['train']:>17.2f}{ratio['inference']:>12.2f}")
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
    report = run_benchmark(args)
    if not args.quiet:
        print(format_report(report))
    if args.json == "-":
        print(json.dumps(report, indent=2))
    elif args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
