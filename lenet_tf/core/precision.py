"""Numeric precision of the graphs: fp32, or bfloat16 where the CPU computes it natively.

``bf16`` is TensorFlow's oneDNN graph rewrite (``auto_mixed_precision_onednn_bfloat16``): a session option
that runs convolutions, matrix products and the elementwise ops between them in bfloat16 while variables,
Adam's state, checkpoints, softmax and the loss stay float32 (and, by the lists below, batch-norm statistics
too). The graphs themselves are unchanged, so checkpoints written in either precision load in the other.

``auto`` picks bf16 only where it was measured to pay (docs/speed.md): a CPU with AMX-BF16 or AVX512-BF16
and oneDNN on. Elsewhere the rewrite is emulated and far slower (≈ 1.5k vs 9k training img/s on an AVX2 CPU),
and TensorFlow has no bfloat16 rewrite for graphs on a GPU, so ``auto`` is fp32 there.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from lenet_tf.core.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_ENV = "LENET_TF_PRECISION"
# The CPU flags that decide (and that the benchmark reports); names as in /proc/cpuinfo.
FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
NATIVE_BF16 = ("amx_bf16", "avx512_bf16")


def _cpuinfo_value(keys: tuple[str, ...], cpuinfo: str) -> str:
    """The first value of any of ``keys`` in ``/proc/cpuinfo`` (empty when absent or without such a file)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in keys:
                    return value.strip()
    except OSError:
        pass
    return ""


@functools.lru_cache(maxsize=None)
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where there is no such file)."""
    return frozenset(_cpuinfo_value(("flags", "Features"), cpuinfo).split())


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (empty where there is none)."""
    return _cpuinfo_value(("model name",), cpuinfo)


def cpu_features(flags: frozenset[str] | None = None) -> dict[str, bool]:
    """Which of :data:`FEATURES` the CPU has."""
    flags = cpu_flags() if flags is None else flags
    return {name: name in flags for name in FEATURES}


@dataclass(frozen=True)
class Precision:
    """The precision a command runs in, and why."""

    requested: str
    used: str  # "fp32" or "bf16"
    reason: str
    features: dict

    def describe(self) -> str:
        """One line for stderr: the choice, its reason and the CPU features."""
        flags = " ".join(name if on else f"-{name}" for name, on in self.features.items())
        return f"precision {self.used} (asked {self.requested}: {self.reason}); CPU features: {flags}"

    def to_dict(self) -> dict:
        """JSON-ready record for ``run.json``."""
        return {"requested": self.requested, "used": self.used, "reason": self.reason,
                "cpu_features": dict(self.features)}


def requested_precision(precision: str | None = None) -> str:
    """``precision``, else ``$LENET_TF_PRECISION``, else ``auto``; checked against :data:`PRECISIONS`."""
    value = precision or os.environ.get(PRECISION_ENV) or "auto"
    if value not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {value!r}")
    return value


def choose(precision: str | None = None, *, gpu: bool | None = None, flags: frozenset[str] | None = None,
           onednn: bool | None = None) -> Precision:
    """Resolves ``auto`` (or ``$LENET_TF_PRECISION``) to fp32 or bf16 for this machine.

    Args:
      precision: ``auto``, ``fp32`` or ``bf16``; ``None`` reads ``$LENET_TF_PRECISION`` (default ``auto``).
      gpu, flags, onednn: the machine's facts, detected when ``None`` (tests pass them in).

    Raises:
      ConfigError: an unknown precision, or bf16 where the graphs run on a GPU (the rewrite is CPU-only).
    """
    requested = requested_precision(precision)
    features = cpu_features(flags)
    if gpu is None:
        from lenet_tf.core.tf import gpu_available

        gpu = gpu_available()
    if onednn is None:
        onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0"
    native = [name for name in NATIVE_BF16 if features[name]]
    if requested == "bf16":
        if gpu:
            raise ConfigError("bf16 is TensorFlow's oneDNN rewrite for CPUs, but the graphs run on a GPU here; "
                              "use --precision fp32")
        if not onednn:
            raise ConfigError("bf16 needs oneDNN, which TF_ENABLE_ONEDNN_OPTS=0 turns off; use --precision fp32")
        reason = f"native {native[0]}" if native else "no native bf16 on this CPU: emulated and slow"
        return Precision(requested, "bf16", reason, features)
    if requested == "fp32":
        return Precision(requested, "fp32", "as asked", features)
    if gpu:
        return Precision(requested, "fp32", "GPU: TensorFlow has no bf16 graph rewrite there", features)
    if not onednn:
        return Precision(requested, "fp32", "oneDNN is off", features)
    if native:
        return Precision(requested, "bf16", f"CPU has {native[0]}", features)
    return Precision(requested, "fp32", "no native bf16 on this CPU", features)
