"""Names the command line offers as choices, importable without TensorFlow (so ``lenet-tf --help`` is instant).

The implementations live elsewhere: :data:`lenet_tf.model.ACTIVATIONS` maps each activation name to its op and
:class:`lenet_tf.train.TrainConfig` accepts each schedule.
"""

# Max pooling commutes with non-decreasing functions (lenet_tf.model pools before the activation), so
# only monotonic activations are offered.
ACTIVATIONS = ("relu", "elu", "selu", "tanh", "leaky_relu")
EXPORT_FORMATS = ("savedmodel", "tflite")
TFLITE_QUANTIZATIONS = ("none", "dynamic", "int8")  # see lenet_tf.tflite
SCHEDULES = ("constant", "exponential", "cosine")
