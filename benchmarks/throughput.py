"""Training/inference images per second of lenet_tf vs a feed_dict TF1 loop, Keras and PyTorch.

Usage: python benchmarks/throughput.py [--json results.json] [--steps 100 --repeats 5] [--precision auto|fp32|bf16]
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from lenet_tf.benchmark.throughput import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
