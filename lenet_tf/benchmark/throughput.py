"""Training and inference throughput of lenet_tf against the alternatives, measured in one run.

Contenders, all the same LeNet-5 (32x32 input, VALID convs 6/16, fc 120/84/10), Adam, batch 128:

1. ``lenet_tf``: the trainer's own graph and step (:class:`lenet_tf.training.trainer.TrainGraph`).
2. ``feed_dict``: a literal TF1 port of the seed article: float32 numpy batches fed every step,
   one-hot labels, conv -> +bias -> ReLU -> pool.
3. ``keras``: ``model.fit`` / ``model.predict`` of the same network.
4. ``torch``: a plain PyTorch loop, when ``torch`` is installed, in PyTorch's best CPU variants (eager float32,
   channels-last; with bf16 also autocast and channels-last autocast), each in a process that never imports
   TensorFlow (:mod:`lenet_tf.benchmark.torch_worker`). lenet_tf's ratio to the best of them is reported.

With ``--precision`` bf16 (or auto on a CPU with native bf16) each contender also runs in bfloat16 where it can:
lenet_tf and the TF1 port with the oneDNN bf16 rewrite, Keras with the ``mixed_bfloat16`` policy, PyTorch with
``torch.autocast``. Every contender runs in its own process; after warm-up steps the processes take turns, one
timed repeat each per round, so that other load on the machine hits them all alike. Medians are reported. A
contender that fails says why (the last line of its stderr, its exit code or signal).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from lenet_tf.core.errors import LeNetError
from lenet_tf.core.processes import python_module
from lenet_tf.core.tf import enable_bf16, gpu_available, tf, tf1
from lenet_tf.benchmark.flags import build_parser
from lenet_tf.benchmark.protocol import BATCH, Worker, batched, cycling_steps, serve
from lenet_tf.data.mnist import Splits, load_mnist, split
from lenet_tf.inference import EVAL_BATCH_SIZE
from lenet_tf.core.outputs import check_new_files, check_writable_folder, write_atomic
from lenet_tf.core.precision import choose, cpu_features, cpu_model
from lenet_tf.training.trainer import STEPS_PER_CALL, TrainConfig, TrainGraph

# Multiply-accumulates of one forward pass: conv1, conv2, fc1, fc2, logits.
FORWARD_MACS = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10
# Training = forward + weight gradients + input gradients of every layer but the first.
TRAIN_FLOPS = 2 * (3 * FORWARD_MACS - 28 * 28 * 6 * 25)


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
    session = graph.start()
    run_steps = cycling_steps(len(order), lambda chunk: graph.steps(session, [order[b] for b in chunk], 1e-3), steps,
                              per_call=STEPS_PER_CALL)  # as lenet-tf train runs them
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
    run_steps = cycling_steps(len(train_x), lambda b: session.run(train_op, {x: train_x[b], y: train_y[b]}), steps)
    run_steps(warmup)
    return run_steps, batched(len(test_x), lambda b: session.run(logits, {x: test_x[b]}), EVAL_BATCH_SIZE)


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
    if warmup:  # Keras refuses to fit on no data
        model.fit(train_x[:warmup * BATCH], train_y[:warmup * BATCH], batch_size=BATCH, epochs=1, verbose=0)

    def fit() -> int:
        model.fit(train_x, train_y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
        return n

    model.predict(test_x[:EVAL_BATCH_SIZE], batch_size=EVAL_BATCH_SIZE, verbose=0)
    return fit, lambda: len(model.predict(test_x, batch_size=EVAL_BATCH_SIZE, verbose=0))


TF_CONTENDERS = {"lenet_tf": bench_lenet_tf, "feed_dict": bench_feed_dict, "keras": bench_keras}
CONTENDERS = (*TF_CONTENDERS, "torch")
# PyTorch's variants per precision (lenet_tf.benchmark.torch_worker.VARIANTS) and their rows' names.
TORCH_VARIANTS = {"fp32": {"torch": "eager", "torch channels_last": "channels_last"},
                  "bf16": {"torch bf16": "bf16", "torch channels_last bf16": "channels_last_bf16"}}
# The literal port as TensorFlow runs it with oneDNN off: its default on CPUs without AVX-512.
ONEDNN_OFF = "feed_dict_onednn_off"
# lenet_tf with TensorFlow's kernels only (LENET_TF_NATIVE=0): what the native ops bring, in the same run.
NATIVE_OFF = "lenet_tf_native_off"


def row_name(contender: str, precision: str) -> str:
    """The name of a contender's row: ``lenet_tf``, ``lenet_tf bf16``, …"""
    return contender if precision == "fp32" else f"{contender} {precision}"


def _start(contender: str, precision: str, args: argparse.Namespace) -> list[Worker]:
    """The worker processes of a contender's rows in ``precision`` (PyTorch's: one per variant)."""
    common = ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    common += ["--data-dir", str(args.data_dir)] if args.data_dir else []
    env = {"TF_CPP_MIN_LOG_LEVEL": "3"}
    if contender == "torch":
        return [Worker(name, precision, python_module("lenet_tf.benchmark.torch_worker", "--variant", variant,
                                                       "--eval-batch", str(EVAL_BATCH_SIZE), *common), env)
                for name, variant in TORCH_VARIANTS[precision].items()]
    name = row_name(contender, precision)
    if contender == ONEDNN_OFF:
        contender, env["TF_ENABLE_ONEDNN_OPTS"] = "feed_dict", "0"
    if contender == NATIVE_OFF:
        contender, env["LENET_TF_NATIVE"] = "lenet_tf", "0"
    command = python_module("lenet_tf.benchmark.throughput", "--worker", contender, "--precision", precision,
                            *common)
    return [Worker(name, precision, command, env)]


def _worker(args: argparse.Namespace) -> int:
    """The worker side of a TensorFlow contender (:func:`lenet_tf.benchmark.protocol.serve`)."""
    def build():
        splits = split(load_mnist(args.data_dir), 5000, 0)
        return TF_CONTENDERS[args.worker](splits, args.steps, args.warmup, args.precision)

    return serve(build, "pip install lenet_tf[bench]")


def _precisions(args: argparse.Namespace) -> list[str]:
    """fp32, plus bf16 when ``--precision`` (auto: where this CPU computes bf16 natively) asks for it."""
    return ["fp32"] + (["bf16"] if choose(args.precision).used == "bf16" else [])


def run_benchmark(args: argparse.Namespace) -> dict:
    """Runs the selected contenders on MNIST, each in its own process, in interleaved rounds; returns images/s
    (medians over the rounds) and the ratios of the shipped lenet_tf (in the precision ``auto`` picks).

    Raises:
      LeNetError: no contender could be measured (the message says why each was not).
    """
    precisions = _precisions(args)
    rows = []
    for name in args.only or CONTENDERS:
        rows += [(name, p) for p in precisions]
        rows += [(NATIVE_OFF, precisions[-1])] if name == "lenet_tf" else []  # the same, TensorFlow's kernels only
        rows += [(ONEDNN_OFF, "fp32")] if name == "feed_dict" and not args.no_default_env else []
    workers, notes = [], {}
    for worker in (w for contender, p in rows for w in _start(contender, p, args)):
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
    if not results:
        raise LeNetError("no contender was measured: " + "; ".join(f"{name}: {note}" for name, note in notes.items()))
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
        torch_rows = {name: result for name, result in results.items() if name.startswith("torch")}
        if torch_rows:  # against PyTorch's best variant, kind by kind
            best = {kind: max(torch_rows, key=lambda name: torch_rows[name][kind]) for kind in ("train", "inference")}
            report["best_torch"] = {kind: {"row": best[kind], "ratio": results[ours][kind] / torch_rows[best[kind]][kind]}
                                    for kind in ("train", "inference")}
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
        f"{'×train':>17}{'×inference':>12}",
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
    if "best_torch" in report:
        best = report["best_torch"]
        lines.append(f"{ours} vs the best PyTorch variant: train ×{best['train']['ratio']:.2f} ({best['train']['row']}), "
                     f"inference ×{best['inference']['ratio']:.2f} ({best['inference']['row']})")
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
        check_writable_folder(Path(args.json).parent)
    load_mnist(args.data_dir)  # a data problem is one error here, not one note per contender
    report = run_benchmark(args)
    if not args.quiet:  # with --json - stdout is the JSON document alone
        print(format_report(report), file=sys.stderr if args.json == "-" else sys.stdout)
    if args.json == "-":
        print(json.dumps(report, indent=2))
    elif args.json:
        write_atomic(args.json, lambda tmp: tmp.write_text(json.dumps(report, indent=2)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
