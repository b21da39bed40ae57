"""The native ops: the same values and gradients as TensorFlow's kernels, their refusals, build and choice."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lenet_tf.core import native_ops
from lenet_tf.core.tf import tf, tf1
from lenet_tf.data.augment import affine_sample
from lenet_tf.model import LeNet5
from lenet_tf.training.batches import choose_warp
from lenet_tf.training.config import TrainConfig
from lenet_tf.training.trainer import choose_kernels

from graph_run import run

REPO = Path(__file__).resolve().parents[2]


def reference_and_native(images: np.ndarray, filters: np.ndarray, upstream: np.ndarray, biases=None,
                          relu: bool = False):
    """(output, d images, d filters, d biases) from tf.nn's kernels and from the native op, in fp32."""
    biases = np.zeros(filters.shape[-1], np.float32) if biases is None else biases
    with tf.Graph().as_default():
        x, w, b = tf.constant(images), tf.constant(filters), tf.constant(biases)

        def reference():
            out = tf.nn.bias_add(tf.nn.max_pool2d(tf.nn.conv2d(x, w, 1, "VALID"), 2, 2, "VALID"), b)
            return tf.nn.relu(out) if relu else out

        results = []
        for build in (reference, lambda: native_ops.conv_pool(x, w, b, relu=relu)):
            out = build()
            results.append([out, *tf.gradients(out, [x, w, b], grad_ys=tf.constant(upstream))])
        with tf1.Session() as session:
            return session.run(results)


@pytest.mark.native
@pytest.mark.parametrize("count, height, width, channels, relu", [
    (5, 32, 32, 6, True), (5, 32, 32, 6, False), (3, 12, 20, 4, True), (2, 36, 36, 1, False)])
def test_values_and_all_gradients_equal_tf_nn(count, height, width, channels, relu):
    """conv -> pool -> bias (-> ReLU) against tf.nn's kernels: outputs, and gradients for images, filters, biases."""
    rng = np.random.default_rng(count)
    images = rng.random((count, height, width, 1), dtype=np.float32)
    filters = rng.normal(0, 0.5, (5, 5, 1, channels)).astype(np.float32)
    biases = rng.normal(0, 1, channels).astype(np.float32)
    pooled_shape = (count, (height - 4) // 2, (width - 4) // 2, channels)
    upstream = rng.normal(0, 1, pooled_shape).astype(np.float32)
    reference, native = reference_and_native(images, filters, upstream, biases, relu)
    assert native[0].shape == pooled_shape
    if relu:
        assert 0.1 < (reference[0] == 0).mean() < 0.9  # the ReLU is off in places and on in others
    for name, ours, theirs in zip(("output", "d images", "d filters", "d biases"), native, reference):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-3, err_msg=name)
    assert np.abs(reference[2]).max() > 1 and np.abs(reference[3]).max() > 0.5  # real gradients


@pytest.mark.native
def test_the_gradient_goes_to_the_first_maximum_of_a_window_as_max_pool_s():
    images = np.zeros((1, 8, 8, 1), np.float32)  # a constant convolution output: all four values of a window tie
    filters = np.ones((5, 5, 1, 1), np.float32)
    upstream = np.ones((1, 2, 2, 1), np.float32)
    for ours, theirs in zip(*reversed(reference_and_native(images + 1, filters, upstream))):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.native
@pytest.mark.parametrize("shape, message", [
    ((1, 32, 32, 2), "x must be \\[N, H, W, 1\\]"),
    ((1, 31, 32, 1), "even sides"),
    ((1, 40, 40, 1), "at most 32 columns"),
])
def test_shapes_it_cannot_compute_are_refused(shape, message):
    """At run time (shapes unknown when the graph was built): a clear error, no crash, no out-of-bounds read."""
    with tf.Graph().as_default(), tf1.Session() as session:
        images = tf1.placeholder(tf.float32, None)
        pooled = native_ops.conv_pool(images, tf.zeros([5, 5, 1, 6]))
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            session.run(pooled, {images: np.zeros(shape, np.float32)})


def run_python(code: str, cache: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "XDG_CACHE_HOME": str(cache), **env})


def test_switched_off_it_is_neither_built_nor_chosen_and_asking_for_it_says_why(tmp_path):
    done = run_python(
        "from lenet_tf.model import LeNet5\n"
        "from lenet_tf.training.trainer import kernels_named\n"
        "from lenet_tf.training.batches import choose_warp\n"
        "from lenet_tf.training.config import TrainConfig\n"
        "from lenet_tf.training.trainer import choose_kernels\n"
        "print(choose_kernels({}, 'fp32')[1], choose_warp(TrainConfig(augment=True), 'fp32'))\n"
        "kernels_named('native')\n", tmp_path, LENET_TF_NATIVE="0")
    assert done.stdout.strip() == ("{'used': 'nn', 'reason': 'LENET_TF_NATIVE=0'} "
                                   "{'used': 'tf', 'reason': 'LENET_TF_NATIVE=0'}")
    assert done.stderr.strip().splitlines()[-1] == (
        "ValueError: kernels 'native' is not available here: LENET_TF_NATIVE=0")
    assert not (tmp_path / "lenet_tf" / "native").exists()


def test_a_compiler_that_fails_leaves_training_on_tensorflow_s_kernels_and_no_debris(tmp_path):
    done = run_python(
        "from lenet_tf.core import native_ops\n"
        "from lenet_tf.training.trainer import choose_kernels\n"
        "print(native_ops.unavailable_reason())\n"
        "print(choose_kernels({}, 'fp32')[1]['used'])\n", tmp_path, CXX="false")
    assert done.stdout.splitlines() == ["the native op did not build: the compiler failed (1)", "nn"], done.stderr
    (folder,) = (tmp_path / "lenet_tf" / "native").iterdir()
    assert [path.name for path in folder.iterdir()] == [".lock"]  # no library, no temporary build folder


@pytest.mark.native
def test_processes_starting_together_build_it_once_and_leave_no_temporary_file(tmp_path):
    code = "from lenet_tf.core import native_ops; assert native_ops.load() is not None, native_ops.unavailable_reason()"
    processes = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)}) for _ in range(2)]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    (folder,) = (tmp_path / "lenet_tf" / "native").iterdir()
    assert sorted(path.name for path in folder.iterdir()) == [".lock", "lenet_ops.so"]


@pytest.mark.native
def test_training_takes_what_was_measured_faster_here_and_says_so():
    chosen = choose_kernels({}, "fp32")[1], choose_warp(TrainConfig(augment=True), "fp32")
    measured = json.loads((native_ops._load()[2] / "choice.json").read_text())["fp32"]
    for choice, op, theirs in zip(chosen, ("conv_pool", "affine_warp"), ("nn", "tf")):
        faster, reason = native_ops.faster_than_tf(op, "fp32")
        assert choice == {"used": "native" if faster else theirs, "reason": reason}
        assert reason.startswith(f"native {op} {measured[op]['native_ms']:.3f} ms vs TensorFlow's")
        assert faster == (measured[op]["native_ms"] < measured[op]["tf_ms"])
    assert choose_kernels({"kernels": "matmul"}, "fp32")[1] == {"used": "matmul", "reason": "as asked"}
    assert choose_warp(TrainConfig(), "fp32")["used"] == "tf"  # no augmentation: nothing resampled


@pytest.mark.native
def test_the_native_warp_gives_tensorflow_s_values_with_zeros_outside_and_no_crash_on_nan():
    rng = np.random.default_rng(5)
    images = rng.random((6, 32, 32, 1), dtype=np.float32)
    maps = (rng.normal(0, 0.3, (6, 6)) + [1, 0, 0, 0, 1, 0]).astype(np.float32)
    maps[:, [2, 5]] *= 30  # parts of several outputs fall outside the input
    maps[5] = np.nan
    native, theirs = (run(lambda i, m: affine_sample(i, m, shards=2, native=native), images, maps)
                      for native in (True, False))
    assert 0.05 < (theirs[:5] == 0).mean() < 0.9
    np.testing.assert_allclose(native[:5], theirs[:5], atol=1e-5)  # float rounding (fused multiply-adds)
    assert np.isnan(native[5]).all()


@pytest.mark.native
def test_a_native_network_restores_into_an_nn_network_with_the_same_outputs(tmp_path):
    """The kernels are how a machine computes the network: checkpoints are the same variables either way."""
    images = np.random.default_rng(0).random((4, 32, 32, 1), dtype=np.float32)
    outputs = []
    for kernels in ("native", "nn"):
        with tf.Graph().as_default():
            net = LeNet5(kernels=native_ops.kernels() if kernels == "native" else kernels, seed=3, batch_norm=True)
            x = tf.constant(images)
            logits = net(x)
            with tf1.Session() as session:
                session.run(tf1.global_variables_initializer())
                if kernels == "nn":
                    net.saver().restore(session, str(tmp_path / "ckpt"))
                else:
                    net.saver().save(session, str(tmp_path / "ckpt"))
                outputs.append(session.run(logits))
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)
