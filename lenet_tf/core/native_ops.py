"""Two native TensorFlow ops for the hot spots of a training step, compiled once per machine:

* ``conv_pool`` (``native/conv_pool.cc``): LeNet-5's first block, a 5x5 VALID convolution of a one-channel image,
  2x2 max pooling, bias and ReLU, with its gradients. oneDNN's kernels are slow on that shape (one input channel,
  six outputs, a full-resolution tensor between convolution and pooling): on an Intel Xeon with AMX they took
  more than half of a training step. The op computes each pooled value and where its maximum was in one pass,
  and the gradients from the pooled gradient without a full-resolution tensor in the graph.
* ``affine_warp`` (``native/affine_warp.cc``): the augmentation's bilinear resampling under one affine map per
  image, vectorised, where TensorFlow's ImageProjectiveTransformV3 takes about 11 ns a pixel.

The library is built with the machine's C++ compiler against the installed TensorFlow, for this CPU
(``-march=native``), into ``$XDG_CACHE_HOME/lenet_tf/native/<key>/`` (the key hashes the source, TensorFlow's
version, the compiler and the CPU's flags), under a file lock so that concurrent processes build it once.
Where it cannot be built (no compiler, no headers) :func:`load` returns None with the reason, and training
keeps TensorFlow's kernels. Whether each op is used is decided by measuring it against TensorFlow's on this machine
(:func:`faster_than_tf`, per op), never assumed; ``LENET_TF_NATIVE=0`` turns them off.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from lenet_tf.core.errors import OutputError
from lenet_tf.core.outputs import cache_home, private_folder, publish, remove_tree, write_atomic
from lenet_tf.core.processes import python_module, run_bounded
from lenet_tf.core.regular_files import open_regular
from lenet_tf.core.precision import cpu_flags
from lenet_tf.core.kernels import TF_KERNELS, Kernels
from lenet_tf.core.tf import session_config, tf, tf1
from lenet_tf.core import json_text

SOURCES = tuple(Path(__file__).with_name("native") / name for name in ("conv_pool.cc", "affine_warp.cc"))
HEADERS = (Path(__file__).with_name("native") / "tf_op.h",)
NATIVE_ENV = "LENET_TF_NATIVE"  # "0": never build nor use the native op
_LIBRARY = "lenet_ops.so"
_CHOICE = "choice.json"
_BUILD_SECONDS = 300  # a build (or another process's) taking longer is given up


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def _flags() -> list[str]:
    """The compile flags: TensorFlow's own, optimised for this CPU. ``-mno-avx512fp16``: the Eigen headers
    TensorFlow ships do not compile with GCC 12's AVX512-FP16 (Sapphire Rapids) types."""
    flags = ["-fPIC", "-O3", "-march=native", "-Wno-deprecated-declarations"]
    if "avx512_fp16" in cpu_flags():
        flags.append("-mno-avx512fp16")
    return flags + tf.sysconfig.get_compile_flags()


def _run_compiler(commands: list[list[str]]) -> None:
    """Runs the compiler commands side by side (one per core is what a build of two sources needs).

    Raises:
      RuntimeError: one failed, with its first error line.
    """
    failures = []
    with concurrent.futures.ThreadPoolExecutor(len(commands)) as pool:
        for future in [pool.submit(run_bounded, command, _BUILD_SECONDS) for command in commands]:
            try:
                status, stderr = future.result()
            except subprocess.TimeoutExpired:  # its whole process group was killed (cc1plus too)
                failures.append(f"the compiler took more than {_BUILD_SECONDS} s")
                continue
            if status != 0:
                errors = [line for line in stderr.splitlines() if "error" in line] or stderr.splitlines()
                failures.append((errors or [f"the compiler failed ({status})"])[0].strip())
    if failures:
        raise RuntimeError(failures[0])


def _version(compiler: str) -> str:
    try:
        return subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30,
                              start_new_session=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def build_dir(compiler: str) -> Path:
    """The folder of this source built with ``compiler`` for this TensorFlow and CPU."""
    texts = [path.read_text(encoding="utf-8") for path in SOURCES + HEADERS]
    identity = [texts, tf.__version__, _version(compiler), sorted(cpu_flags()), _flags(), tf.sysconfig.get_link_flags()]
    key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
    return cache_home() / "native" / key


def _private_build_dir(folder: Path) -> Path:
    """``folder`` and the cache folders above it up to :func:`cache_home`, created 0700 or checked: real
    folders of this user that no one else may write (code is loaded from here).

    Raises:
      OutputError: one of them is a link, another user's, or group- or world-writable.
    """
    for part in [cache_home(), cache_home() / "native", folder]:
        private_folder(part)
    return folder


def pending_build() -> Path | None:
    """The folder the ops are about to be compiled into by the next :func:`load`, or None (already built here,
    turned off, or no compiler): a caller may say so first, since it takes a few seconds, once per machine."""
    if _load.cache_info().currsize or os.environ.get(NATIVE_ENV) == "0":
        return None
    compiler = _compiler()
    if compiler is None:
        return None
    folder = build_dir(compiler)
    return None if (folder / _LIBRARY).is_file() else folder


@contextlib.contextmanager
def _folder_lock(folder: Path, wait: float | None = None) -> Iterator[None]:
    """Holds ``folder``'s exclusive lock (``.lock``, flock; opened without following a link, 0600): one process
    builds or measures at a time. Waits at most ``wait`` s (default: a build's bound plus a minute).

    Raises:
      RuntimeError: another process held it all that time.
    """
    wait = _BUILD_SECONDS + 60 if wait is None else wait
    fd = open_regular(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the descriptor closes
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"{folder}: another process kept building for more than {wait:.0f} s")
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def _build(compiler: str, folder: Path) -> Path:
    """The library in ``folder``, compiled first if absent (once across processes: a file lock, then a rename)."""
    library = folder / _LIBRARY
    _private_build_dir(folder)
    if _trusted_file(library):
        return library
    with _folder_lock(folder):  # another process building waits here, then finds the library
        if _trusted_file(library):
            return library
        work = Path(tempfile.mkdtemp(dir=folder, prefix=".tmp-lenet_tf-"))
        try:
            objects = [work / f"{source.stem}.o" for source in SOURCES]
            _run_compiler([[compiler, "-c", str(source), "-o", str(target), *_flags()]
                           for source, target in zip(SOURCES, objects)])
            _run_compiler([[compiler, "-shared", *map(str, objects), "-o", str(work / _LIBRARY),
                            *tf.sysconfig.get_link_flags()]])
            publish(work / _LIBRARY, library, replace=True)
        finally:
            remove_tree(work)
    return library


def _trusted_file(path: Path) -> bool:
    """Whether ``path`` is a regular file (not a link) of this user that no one else may write; one that is not
    is rebuilt over, never loaded."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o022


@functools.lru_cache(maxsize=None)
def _load() -> tuple[object | None, str, Path | None]:
    if os.environ.get(NATIVE_ENV) == "0":
        return None, f"{NATIVE_ENV}=0", None
    compiler = _compiler()
    if compiler is None:
        return None, "no C++ compiler (g++) on this machine", None
    try:
        folder = build_dir(compiler)
        library = tf.load_op_library(str(_build(compiler, folder)))
    except (OSError, RuntimeError, OutputError, subprocess.SubprocessError, tf.errors.OpError) as err:
        return None, f"the native op did not build: {err}", None
    tf1.RegisterGradient("LenetConvPool")(_conv_pool_grad)
    return library, "built for this CPU", folder


def load():
    """The op library (``lenet_conv_pool`` with its gradients, ``lenet_affine_warp``), or None where it cannot be
    built here."""
    return _load()[0]


def kernels() -> Kernels | None:
    """LeNet5's kernels with the native fused first block (``LeNet5(kernels=native_ops.kernels())``), or None
    where the ops cannot be built here (:func:`unavailable_reason` says why)."""
    if load() is None:
        return None
    return Kernels("native", TF_KERNELS["nn"].conv2d, TF_KERNELS["nn"].max_pool, conv_pool)


def unavailable_reason() -> str | None:
    """Why :func:`load` gives None (None when the op is there)."""
    library, reason, _ = _load()
    return None if library is not None else reason


def _conv_pool_grad(op: tf.Operation, dpooled: tf.Tensor, _dargmax: tf.Tensor):
    x, w, _ = op.inputs
    argmax = op.outputs[1]
    library = load()
    d_filters, d_biases = library.lenet_conv_pool_filter_grad(x, argmax, dpooled)
    return (library.lenet_conv_pool_input_grad(w, argmax, dpooled, height=x.shape[1], width=x.shape[2]),
            d_filters, d_biases)


def conv_pool(x: tf.Tensor, filters: tf.Tensor, biases: tf.Tensor | None = None, relu: bool = False) -> tf.Tensor:
    """``max_pool2d(conv2d(x, filters, VALID), 2, 2) + biases``, then ``relu`` if asked, for ``x`` float32
    ``[N, H, W, 1]`` (H-4 and W-4 even, W-4 ≤ 32), ``filters`` ``[5, 5, 1, K]`` and ``biases`` ``[K]`` (None:
    zeros): float32 ``[N, (H-4)/2, (W-4)/2, K]``, differentiable in all three. Pooling before the bias and the
    ReLU is the same function as after them (both are non-decreasing).

    Raises:
      RuntimeError: the op is not available here (see :func:`unavailable_reason`).
    """
    library = load()
    if library is None:
        raise RuntimeError(f"the native conv+pool op is not available: {unavailable_reason()}")
    if biases is None:
        biases = tf.zeros(filters.shape[-1:], tf.float32)
    return library.lenet_conv_pool(tf.cast(x, tf.float32), filters, biases, relu=relu)[0]


def affine_warp(images: tf.Tensor, maps: tf.Tensor) -> tf.Tensor:
    """``images`` float32 ``[N, H, W, 1]`` resampled bilinearly where the affine ``maps`` ``[N, 6]`` send each
    output pixel: ``(x, y)`` reads the input at ``(m0*x + m1*y + m2, m3*x + m4*y + m5)``, 0 outside (the same
    values as ``ImageProjectiveTransformV3``'s to float rounding).

    Raises:
      RuntimeError: the op is not available here (see :func:`unavailable_reason`).
    """
    library = load()
    if library is None:
        raise RuntimeError(f"the native affine warp op is not available: {unavailable_reason()}")
    return library.lenet_affine_warp(images, maps)


def _tf_conv_pool(x: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    return tf.nn.max_pool2d(tf.nn.conv2d(x, w, 1, "VALID"), 2, 2, "VALID")


def _tf_affine_warp(images: tf.Tensor, maps: tf.Tensor) -> tf.Tensor:
    transforms = tf.concat([maps, tf.zeros([tf.shape(maps)[0], 2])], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(images=images, transforms=transforms, output_shape=[32, 32],
                                                 fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")


# What each op does in a training step, built for the measurement: a run's fetch from 64 random images.
def _conv_pool_step(build):
    def fetch(rng):
        x = tf1.Variable(rng.random((64, 32, 32, 1), dtype=np.float32))
        w = tf1.Variable(rng.normal(0, 0.2, (5, 5, 1, 6)).astype(np.float32))
        return tf.gradients(tf.reduce_sum(tf.nn.relu(build(x, w))), w)[0]  # forward and filter gradient
    return fetch


def _warp_step(build):
    def fetch(rng):  # variables, not constants: a graph of constants would be folded before it runs
        images = tf1.Variable(rng.random((64, 32, 32, 1), dtype=np.float32))
        maps = tf1.Variable((rng.normal(0, 0.1, (64, 6)) + [1, 0, 0, 0, 1, 0]).astype(np.float32))
        return build(images, maps)
    return fetch


OPS = {"conv_pool": (conv_pool, _tf_conv_pool, _conv_pool_step),
       "affine_warp": (affine_warp, _tf_affine_warp, _warp_step)}


def _time(fetch, precision: str, repeats: int) -> float:
    """Median seconds of ``repeats`` runs of ``fetch(rng)``'s result."""
    with tf.Graph().as_default() as graph:
        result = fetch(np.random.default_rng(0))
        # One thread per op, as each tower of a training step runs.
        with tf1.Session(graph=graph, config=session_config(2, precision)) as session:
            session.run(tf1.global_variables_initializer())
            for _ in range(5):
                session.run(result)
            times = []
            for _ in range(repeats):
                began = time.perf_counter()
                session.run(result)
                times.append(time.perf_counter() - began)
    return sorted(times)[len(times) // 2]


def _measure(precision: str) -> dict:
    """Per op, medians of interleaved runs in ms: the native op and TensorFlow's kernels on 64 images."""
    measured = {}
    for name, (native, theirs, step) in OPS.items():
        times = {"native_ms": [], "tf_ms": []}
        for _ in range(3):
            times["native_ms"].append(_time(step(native), precision, 15))
            times["tf_ms"].append(_time(step(theirs), precision, 15))
        measured[name] = {key: round(sorted(values)[1] * 1e3, 4) for key, values in times.items()}
    return measured


def faster_than_tf(op: str, precision: str = "fp32") -> tuple[bool, str]:
    """Whether the native ``op`` (a key of :data:`OPS`) beats TensorFlow's kernels for it on this machine in
    ``precision`` (64 images, one thread per op as in training), and why.

    Measured once per machine and precision in a process of its own (oneDNN's thread settings are per process:
    a measurement in the training process would change how its training runs), then read from the build folder.
    """
    library, reason, folder = _load()
    if library is None:
        return False, reason
    path = folder / _CHOICE

    def stored() -> dict | None:
        try:
            measured = json_text.loads(path.read_text(encoding="utf-8"))[precision][op]
        except (OSError, ValueError, TypeError, KeyError):
            return None
        return measured if isinstance(measured, dict) else None

    measured = stored()
    if measured is None:
        try:
            subprocess.run(python_module("lenet_tf.core.native_ops", precision), capture_output=True,
                           timeout=_BUILD_SECONDS, check=True, start_new_session=True)
        except (OSError, subprocess.SubprocessError):
            pass
        measured = stored()
    if measured is None:
        return False, "the native op could not be measured against TensorFlow's kernels"
    faster = measured["native_ms"] < measured["tf_ms"]
    return faster, (f"native {op} {measured['native_ms']:.3f} ms vs TensorFlow's {measured['tf_ms']:.3f} ms "
                    f"per 64 images ({precision})")


def _record_measurement(precision: str) -> None:
    """Measures in this process and stores the result beside the library (see :func:`faster_than_tf`)."""
    library, reason, folder = _load()
    if library is None:
        raise SystemExit(reason)
    path = folder / _CHOICE
    with _folder_lock(folder):
        try:
            choices = json_text.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            choices = {}
        if not isinstance(choices, dict):
            choices = {}
        if isinstance(choices.get(precision), dict) and set(choices[precision]) == set(OPS):
            return  # another process measured while this one waited (delete choice.json to measure again)
        choices[precision] = _measure(precision)
        write_atomic(path, lambda tmp: tmp.write_text(json.dumps(choices, indent=1), encoding="utf-8"))


if __name__ == "__main__":  # python -m lenet_tf.core.native_ops [fp32|bf16]: build, measure, store
    _record_measurement(sys.argv[1] if len(sys.argv) > 1 else "fp32")
