"""The flags of the throughput benchmark, importable without TensorFlow (so its ``--help`` is instant).

The benchmark itself is :mod:`lenet_tf.benchmark.throughput`; ``lenet-tf benchmark`` and ``benchmarks/throughput.py`` both
parse with :func:`build_parser`.
"""

from __future__ import annotations

import argparse

from lenet_tf.core.options import Range, path_flag

# The contenders of lenet_tf.benchmark.throughput.CONTENDERS, in the order they run.
CONTENDERS = ("lenet_tf", "feed_dict", "keras", "torch")
DESCRIPTION = "Training and inference throughput of lenet_tf against the alternatives, measured in one run."
# The counts each worker is given (lenet_tf.benchmark.torch_worker parses them too): a timed repeat needs a step
# and a median a round.
STEPS, REPEATS, WARMUP = Range(int, 1), Range(int, 1), Range(int, 0)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Flags of the benchmark (also used by ``lenet-tf benchmark``)."""
    parser = parser or argparse.ArgumentParser(prog="throughput", description=DESCRIPTION)
    parser.add_argument("--data-dir", type=path_flag, help="MNIST folder (default: as for training)")
    parser.add_argument("--steps", type=STEPS.parse, default=100,
                        help="training steps per timed repeat (default: 100)")
    parser.add_argument("--repeats", type=REPEATS.parse, default=5,
                        help="timed rounds, each contender once per round; medians are reported (default: 5)")
    parser.add_argument("--warmup", type=WARMUP.parse, default=30, help="untimed steps first (default: 30)")
    parser.add_argument("--only", nargs="+", choices=sorted(CONTENDERS),
                        help="run only these contenders, each with its extra rows (default: all)")
    parser.add_argument("--no-default-env", action="store_true",
                        help="skip feed_dict's extra run with TF_ENABLE_ONEDNN_OPTS=0 (default: run it)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                        help="also measure bf16 rows: auto = where the CPU computes bf16 natively (AMX-BF16 or "
                             "AVX512-BF16), bf16 = always, fp32 = never (default: $LENET_TF_PRECISION, else auto)")
    parser.add_argument("--worker", choices=sorted(set(CONTENDERS) - {"torch"}), help=argparse.SUPPRESS)
    parser.add_argument("--json", type=path_flag, metavar="PATH",
                        help="also write the figures as JSON ('-': stdout, the table going to stderr; default: none)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --json file (default: off: it is refused)")
    parser.add_argument("--quiet", action="store_true", help="print no table (default: print it)")
    return parser
