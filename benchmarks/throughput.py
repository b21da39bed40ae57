"""Training/inference images per second of lenet_tf vs a feed_dict TF1 loop, Keras and PyTorch.

Usage: python benchmarks/throughput.py [--json results.json] [--steps 100 --repeats 5] [--precision auto|fp32|bf16]
(the same as ``lenet-tf benchmark``: its flags, its one-line errors and exit statuses).
"""

import sys

from lenet_tf.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
