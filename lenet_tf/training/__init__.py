"""Training: the options (:mod:`~lenet_tf.training.config`), presets, the graph and its step, the epoch loop and
run record, and the TensorFlow cluster. From Python: ``train(preset_config("default"), "SavedModel")``."""

from lenet_tf.core.lazy import lazy_exports

__all__ = ["TrainConfig", "TrainResult", "preset_config", "train"]
__getattr__ = lazy_exports(__name__, {"train": "trainer", "TrainResult": "trainer", "TrainConfig": "config",
                                      "preset_config": "presets"})
