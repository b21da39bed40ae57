"""Training: the configuration and graph, the epoch loop and run record, presets, and the TensorFlow
cluster."""

from lenet_tf.core.lazy import lazy_exports

__all__ = ["TrainConfig", "TrainResult", "train"]
__getattr__ = lazy_exports(__name__, {"train": "trainer", "TrainConfig": "trainer", "TrainResult": "trainer"})
