"""LeNet-5 on MNIST with TensorFlow's low-level graph API (``tf.compat.v1``).

The network to reuse in your own graph is :class:`LeNet5`; training from Python is :mod:`lenet_tf.training`
(``train``, ``TrainConfig``, ``preset_config``). Names are imported on first use, so that ``lenet-tf`` can
configure TensorFlow's logging before TensorFlow loads.
"""

from lenet_tf.core.lazy import lazy_exports

__version__ = "0.1.0"

__all__ = ["LeNet5", "__version__"]
__getattr__ = lazy_exports(__name__, {"LeNet5": "model"})
