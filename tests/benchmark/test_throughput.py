"""A smoke run of the throughput benchmark: a few steps of two contenders, each in its own process."""

import json
import subprocess
import sys


def test_benchmark_smoke_run_writes_json(tmp_path, real_mnist):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "lenet_tf", "benchmark", "--steps", "3", "--repeats", "1",
                           "--warmup", "1", "--only", "lenet_tf", "feed_dict", "torch", "--precision", "fp32",
                           "--no-default-env", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    torch_rows = {"torch", "torch channels_last"}
    if "torch" in report["notes"]:  # without the optional `bench` extra: skipped, never failed
        assert report["notes"]["torch"].startswith("torch is not installed"), report["notes"]
        torch_rows = set()
    else:  # PyTorch runs in its own process, away from TensorFlow
        assert report["best_torch"]["train"]["row"] in torch_rows and "best PyTorch variant" in done.stdout
    assert set(report["results"]) == {"lenet_tf", "lenet_tf_native_off", "feed_dict"} | torch_rows
    assert all(r["train"] > 0 and r["inference"] > 0 for r in report["results"].values())
    assert set(report["ratios"]) == {"lenet_tf_native_off", "feed_dict"} | torch_rows
    assert report["ratios"]["feed_dict"]["train"] > 0
    assert "lenet_tf ×train" in done.stdout and "feed_dict" in done.stdout


def test_flop_count_is_the_networks():
    """The compute limit the benchmark reports rests on FORWARD_MACS: count them in a built LeNet5 instead."""
    import math

    from lenet_tf import LeNet5
    from lenet_tf.core.tf import tf, tf1
    from lenet_tf.benchmark.throughput import FORWARD_MACS

    with tf.Graph().as_default() as graph:
        LeNet5()(tf1.placeholder(tf.float32, [1, 32, 32, 1]))
    macs = 0
    for op in graph.get_operations():
        if op.type == "Conv2D":  # every output value is a dot product over a k x k x C_in window
            k_h, k_w, c_in, _ = op.inputs[1].shape.as_list()
            macs += math.prod(op.outputs[0].shape.as_list()[1:]) * k_h * k_w * c_in
        elif op.type == "MatMul":
            macs += math.prod(op.inputs[1].shape.as_list())
    assert macs == FORWARD_MACS


def test_benchmark_bf16_rows_and_cpu_features(tmp_path, real_mnist):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "lenet_tf", "benchmark", "--steps", "3", "--repeats", "2",
                           "--warmup", "1", "--only", "lenet_tf", "--precision", "bf16", "--no-default-env",
                           "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["settings"]["precisions"] == ["fp32", "bf16"] and report["settings"]["interleaved"]
    assert {name: r["precision"] for name, r in report["results"].items()} == {
        "lenet_tf": "fp32", "lenet_tf bf16": "bf16", "lenet_tf_native_off bf16": "bf16"}
    assert set(report["machine"]["cpu_features"]) == {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
    assert set(report["ratios"]) == {"lenet_tf", "lenet_tf bf16", "lenet_tf_native_off bf16"} - {report["reference"]}
    assert "avx512_bf16" in done.stdout and "lenet_tf bf16" in done.stdout
