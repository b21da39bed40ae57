"""Op time per op type of one training step (TensorFlow RunMetadata step stats), with the CPU's name.

Builds a preset's training graph (:class:`lenet_tf.training.trainer.TrainGraph`), warms it up, traces
``--traces`` steps and prints, per op type, the mean time its kernels took per step (summed over the towers'
cores, so the total exceeds the step's wall time when ops overlap), the share of that total and the op count.

Usage: python benchmarks/profile_step.py [--preset plain] [--precision auto|fp32|bf16] [--kernels auto|...]
       [--traces 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from lenet_tf.core.precision import cpu_features, cpu_model  # noqa: E402
from lenet_tf.core.tf import tf, tf1  # noqa: E402
from lenet_tf.data.mnist import load_mnist, split  # noqa: E402
from lenet_tf.training.presets import PRESETS, preset_config  # noqa: E402
from lenet_tf.training.trainer import STEPS_PER_CALL, TrainGraph  # noqa: E402


def op_times(step_stats) -> tuple[dict[str, float], dict[str, int]]:
    """Seconds and kernel count per op type in one step's ``StepStats`` (CPU devices only)."""
    seconds, counts = collections.Counter(), collections.Counter()
    for device in step_stats.dev_stats:
        for node in device.node_stats:
            # timeline_label reads "name = Type(inputs)"; node_name alone has no type
            label = node.timeline_label.split(" = ", 1)
            op_type = label[1].split("(", 1)[0] if len(label) == 2 else node.node_name
            if op_type in ("_SOURCE", "NoOp"):
                continue
            seconds[op_type] += node.op_end_rel_micros / 1e6
            counts[op_type] += 1
    return dict(seconds), dict(counts)


def profile(preset: str, precision: str | None, kernels: str | None, traces: int, warmup: int) -> dict:
    """Per op type: mean seconds per step and kernel count, plus the traced and untraced step wall times."""
    overrides = {"precision": precision}
    if kernels:
        overrides["model"] = {"kernels": kernels}
    config = preset_config(preset, **overrides)
    splits = split(load_mnist(), config.valid_size, config.seed)
    graph = TrainGraph(config, splits)
    order = np.random.default_rng(0).permutation(len(splits.train_labels)).astype(np.int32)
    batches = [order[i:i + config.batch_size] for i in range(0, len(order) - config.batch_size, config.batch_size)]
    session = graph.start()
    chunks = [batches[k:k + STEPS_PER_CALL] for k in range(0, warmup, STEPS_PER_CALL)]  # as training runs them
    for chunk in chunks:
        graph.steps(session, chunk, 1e-3)
    began = time.perf_counter()
    for chunk in chunks:
        graph.steps(session, chunk, 1e-3)
    untraced = (time.perf_counter() - began) / sum(map(len, chunks))
    options = tf1.RunOptions(trace_level=tf1.RunOptions.FULL_TRACE)
    total, counts = collections.Counter(), {}
    for k in range(traces):
        meta = tf1.RunMetadata()
        feed = {graph.indices: batches[k % len(batches)][None], graph.learning_rate: 1e-3}  # one step per call
        session.run(graph.train_op, feed, options=options, run_metadata=meta)
        seconds, counts = op_times(meta.step_stats)
        total.update(seconds)
    session.close()
    return {"cpu": cpu_model(), "cpu_features": cpu_features(), "tensorflow": tf.__version__, "preset": preset,
            "precision": graph.precision.used, "kernels": graph.net.kernels, "towers": graph.towers,
            "batch": config.batch_size, "step_ms": untraced * 1e3,
            "ops": {name: {"ms": total[name] / traces * 1e3, "count": counts.get(name, 0)}
                    for name in sorted(total, key=total.get, reverse=True)}}


def format_profile(result: dict) -> str:
    """The table: op type, ms per step, share, kernels per step."""
    flags = " ".join(name if on else f"-{name}" for name, on in result["cpu_features"].items())
    op_total = sum(row["ms"] for row in result["ops"].values())
    lines = [f"CPU: {result['cpu']} x{os.cpu_count()} ({flags}), TensorFlow {result['tensorflow']}",
             f"preset {result['preset']}, {result['precision']}, kernels {result['kernels']}, "
             f"{result['towers']} towers, batch {result['batch']}: step {result['step_ms']:.2f} ms wall "
             f"(untraced), op time {op_total:.2f} ms in {sum(r['count'] for r in result['ops'].values())} kernels",
             "", f"{'op type':<28}{'ms/step':>9}{'share':>8}{'kernels':>9}"]
    for name, row in result["ops"].items():
        lines.append(f"{name:<28}{row['ms']:>9.3f}{row['ms'] / op_total:>8.1%}{row['count']:>9}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="plain", help="training recipe (default: plain)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), help="default: as training would choose")
    parser.add_argument("--kernels", help="LeNet5 kernels variant (default: the model's default)")
    parser.add_argument("--traces", type=int, default=20, help="traced steps averaged (default: 20)")
    parser.add_argument("--warmup", type=int, default=64,
                        help="untraced steps, twice: warm-up, then timed (default: 64)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    result = profile(args.preset, args.precision, args.kernels, args.traces, args.warmup)
    print(format_profile(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
