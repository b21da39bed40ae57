"""LeNet-5 on MNIST with TensorFlow's low-level graph API (``tf.compat.v1``)."""

__version__ = "0.1.0"

__all__ = ["LeNet5", "__version__"]


def __getattr__(name: str):
    # Imported lazily so that `lenet-tf` can configure TensorFlow's logging before TensorFlow loads.
    if name == "LeNet5":
        from lenet_tf.model import LeNet5

        return LeNet5
    raise AttributeError(f"module 'lenet_tf' has no attribute {name!r}")
