"""Serving a trained model: predicting files, exporting a SavedModel or TFLite model, the HTTP server
with its page and TensorFlow Serving's REST protocol."""

from lenet_tf.core.lazy import lazy_exports

__all__ = ["export_saved_model", "export_tflite", "predict_files", "serve"]
__getattr__ = lazy_exports(__name__, {"predict_files": "predict", "export_saved_model": "saved_model", "export_tflite": "tflite", "serve": "server"})
