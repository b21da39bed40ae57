"""Data: the IDX format, the MNIST files (verified, cached, padded, split), users' images turned into
MNIST-style digits, and in-graph augmentation."""

from lenet_tf.core.lazy import lazy_exports

__all__ = ["Mnist", "Splits", "load_mnist", "pad_images", "split"]
__getattr__ = lazy_exports(__name__, {"load_mnist": "mnist", "split": "mnist", "pad_images": "mnist", "Mnist": "mnist", "Splits": "mnist"})
