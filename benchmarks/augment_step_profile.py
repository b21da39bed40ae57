"""Where a recipe's training step goes: mean step time with its augmentation on and off (ratio, same run), and the
op time per op type from RunMetadata step stats, with the CPU's name.

    python benchmarks/augment_step_profile.py --preset robust [--steps 60] [--set epochs=12 --set blur=0]
"""

from __future__ import annotations

import argparse
import ast
import collections
import platform
import subprocess
import time

import numpy as np

from lenet_tf.core.tf import tf1
from lenet_tf.data.mnist import load_mnist, split
from lenet_tf.training.presets import preset_config
from lenet_tf.training.trainer import TrainGraph


def cpu_name() -> str:
    """The CPU's model name from lscpu (else the platform's processor string)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="plain")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a TrainConfig override (Python literal), e.g. blur=0 or model={'batch_norm': False}")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    overrides = {key: ast.literal_eval(value) for key, value in (item.split("=", 1) for item in args.set)}
    config = preset_config(args.preset, **overrides)
    splits = split(load_mnist(), config.valid_size, config.seed)
    graph = TrainGraph(config, splits)
    rng = np.random.default_rng(0)
    batches = [rng.choice(len(splits.train_labels), config.batch_size, replace=False).astype(np.int32)
               for _ in range(args.steps)]
    print(f"{cpu_name()}; preset {args.preset} {overrides or ''}; {args.steps} steps of {config.batch_size}")
    with graph.start() as session:
        for augment in (True, False):  # warm up both paths
            graph.step(session, batches[0], 1e-3, augment)
        means = {}
        for augment in (True, False):
            began = time.perf_counter()
            for batch in batches:
                graph.step(session, batch, 1e-3, augment)
            means[augment] = (time.perf_counter() - began) / len(batches)
        print(f"step: {1e3 * means[True]:.1f} ms distorted, {1e3 * means[False]:.1f} ms clean "
              f"(ratio {means[True] / means[False]:.2f})")
        options = tf1.RunOptions(trace_level=tf1.RunOptions.FULL_TRACE)
        per_type: dict[str, float] = collections.Counter()
        for batch in batches[:10]:
            metadata = tf1.RunMetadata()
            feed = {graph.indices: batch[None], graph.learning_rate: 1e-3}  # one step per call
            session.run(graph.train_op, feed, options=options, run_metadata=metadata)
            for device in metadata.step_stats.dev_stats:
                for node in device.node_stats:
                    kind = node.timeline_label.split("(")[0].split(" = ")[-1].strip() or node.node_name
                    per_type[kind] += (node.all_end_rel_micros) / 10
    total = sum(per_type.values())
    print(f"op time per step by op type (summed over threads, {total / 1e3:.1f} ms):")
    for kind, micros in sorted(per_type.items(), key=lambda item: -item[1])[:25]:
        print(f"  {kind:<40} {micros / 1e3:8.2f} ms  {micros / total:6.1%}")


if __name__ == "__main__":
    main()
