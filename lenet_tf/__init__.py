"""LeNet-5 on MNIST with TensorFlow's low-level graph API (``tf.compat.v1``).

The network to reuse in your own graph is :class:`LeNet5`; training from Python is :func:`train` with a
:class:`TrainConfig` (:func:`preset_config` gives a named recipe's). Each name is imported on first use, so that
``lenet-tf`` can configure TensorFlow's logging before TensorFlow loads.
"""

from lenet_tf.core.lazy import lazy_exports

__version__ = "0.1.0"

__all__ = ["LeNet5", "TrainConfig", "TrainResult", "__version__", "preset_config", "train"]
__getattr__ = lazy_exports(__name__, {"LeNet5": "model", "TrainConfig": "training.config",
                                      "preset_config": "training.presets", "train": "training.trainer",
                                      "TrainResult": "training.trainer"})
