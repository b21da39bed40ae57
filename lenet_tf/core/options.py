"""Names and ranges the command line offers, importable without TensorFlow (so ``lenet-tf --help`` is instant).

The implementations live elsewhere: :data:`lenet_tf.model.ACTIVATIONS` maps each activation name to its op,
:class:`lenet_tf.training.config.TrainConfig` accepts each schedule, and :mod:`lenet_tf.core.kernels` (with
:mod:`lenet_tf.core.native_ops` for ``native``) implements each kernel variant.
"""

import math

FLOAT32_MAX = 3.4028234663852886e38  # numpy.finfo(numpy.float32).max, without importing numpy for --help

# Max pooling commutes with non-decreasing functions (lenet_tf.model pools before the activation), so
# only monotonic activations are offered.
ACTIVATIONS = ("relu", "elu", "selu", "tanh", "leaky_relu")
EXPORT_FORMATS = ("savedmodel", "tflite")
TFLITE_QUANTIZATIONS = ("none", "dynamic", "int8")  # see lenet_tf.serving.tflite
SCHEDULES = ("constant", "exponential", "cosine")
KERNEL_NAMES = ("nn", "forward_grad", "matmul", "native")  # how LeNet5 computes convolutions and poolings
MAX_FLAGGED = 0.008  # share of each real validation set "I can't read this" may flag (lenet-tf calibrate)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")  # the files read in a folder
MAX_IMAGE_PIXELS = 4096 * 4096  # larger pictures are refused by predict and serve (a 4096² photo is plenty)


class Range:
    """The values a numeric setting accepts: its type and bounds, each bound open or closed."""

    def __init__(self, kind: type, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False) -> None:
        self.kind, self.low, self.high, self.low_open, self.high_open = kind, low, high, low_open, high_open

    def describe(self) -> str:
        """The range in words: "≥ 1", "a finite number > 0", "a finite number in [0, 1)", …"""
        show = str if self.kind is int else "{:g}".format  # an int bound whole: 10000000, not 1e+07
        if self.low is not None and self.high is not None:
            bounds = (f"in {'(' if self.low_open else '['}{show(self.low)}, {show(self.high)}"
                      f"{')' if self.high_open else ']'}")
        elif self.low is not None:
            bounds = f"{'>' if self.low_open else '≥'} {show(self.low)}"
        else:
            return "a whole number" if self.kind is int else "a finite number"
        return bounds if self.kind is int else f"a finite number {bounds}"

    def contains(self, value) -> bool:
        """Whether ``value`` has the right type and lies within the bounds (NaN and infinities never do)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (self.kind is int and value != int(value)):
            return False
        if not math.isfinite(value) or (self.kind is float and abs(value) > FLOAT32_MAX):
            return False  # the graph's constants are float32: a larger number would be infinite there
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def check(self, name: str, value) -> None:
        """Raises ValueError "NAME must be …, got VALUE" unless ``value`` is in range."""
        if not self.contains(value):
            raise ValueError(f"{name} must be {self.describe()}, got {value!r}")

    def parse(self, text: str):
        """An argparse ``type``: the parsed value, or ArgumentTypeError "must be …, got TEXT"."""
        import argparse

        try:
            value = self.kind(text)
        except ValueError:  # "1e3" or "2.5" for a count: say that it must be whole
            whole = "a whole number " if self.kind is int else ""
            raise argparse.ArgumentTypeError(f"must be {whole}{self.describe()}, got {text}") from None
        if not self.contains(value):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text}")
        return value


# The ranges LeNet5's constructor checks (lenet_tf.model), which training's options reuse (lenet_tf.training.config).
DROPOUT = Range(float, 0, 1, high_open=True)
INIT_STDDEV = Range(float, 0, low_open=True)
CLASS_COUNT = Range(int, 2, 2**31 - 1)  # the logits' width: a tensor dimension
INPUT_MEAN = Range(float)
INPUT_STD = Range(float, 0, low_open=True)
BN_EPSILON = Range(float, 0, low_open=True)
# Members of an ensemble (training's --ensemble, and what a run record may claim): each is a whole LeNet-5 in the graph.
ENSEMBLE = Range(int, 1, 64)
# A timeout flag's seconds (serve's deadlines, train's cluster waits): finite, so timers and clocks never overflow.
SECONDS = Range(float, 0, 1e6, low_open=True, high_open=True)


def path_flag(text: str) -> str:
    """An argparse ``type`` for a file or folder flag: the text, or ArgumentTypeError for an empty one (which would
    silently mean the default folder, or the current one)."""
    if not text:
        import argparse

        raise argparse.ArgumentTypeError("must name a path, got ''")
    return text
