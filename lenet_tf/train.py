"""``python -m lenet_tf.train …``: the same as ``lenet-tf train …``, an entry point like ``__main__``.

The library lives in :mod:`lenet_tf.training`; :func:`train`, :class:`TrainConfig` and :class:`TrainResult` are
re-exported here for code that imports them from ``lenet_tf.train``.
"""

import sys

from lenet_tf.training.config import TrainConfig
from lenet_tf.training.trainer import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]

if __name__ == "__main__":
    from lenet_tf.cli.commands import main

    sys.exit(main(["train", *sys.argv[1:]]))
