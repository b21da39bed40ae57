"""A smoke run of the throughput benchmark, shared by its tests: a few steps of each contender, each in its own
process."""

import json
import subprocess
import sys
from importlib.util import find_spec

import pytest


TORCH_ROWS = {"torch", "torch channels_last", "torch bf16", "torch channels_last bf16"}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, real_mnist) -> tuple[dict, subprocess.CompletedProcess]:
    """One short benchmark run shared by the tests below: a few steps of lenet_tf, the feed_dict port and PyTorch
    in fp32 and bf16, each contender in its own process; the JSON report and the finished process."""
    out = tmp_path_factory.mktemp("benchmark") / "bench.json"
    done = subprocess.run([sys.executable, "-m", "lenet_tf", "benchmark", "--steps", "3", "--repeats", "2",
                           "--warmup", "1", "--only", "lenet_tf", "feed_dict", "torch", "--precision", "bf16",
                           "--no-default-env", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text()), done


def test_benchmark_smoke_run_writes_json(smoke_run):
    report, done = smoke_run
    torch_rows = TORCH_ROWS if find_spec("torch") else set()
    if not torch_rows:  # without the optional `bench` extra the PyTorch rows are skipped, never failed
        assert report["notes"] and all(note.startswith("torch is not installed") for note in report["notes"].values())
        assert set(report["notes"]) == TORCH_ROWS
    assert set(report["results"]) == {"lenet_tf", "lenet_tf bf16", "lenet_tf_native_off bf16", "feed_dict",
                                      "feed_dict bf16"} | torch_rows
    assert all(r["train"] > 0 and r["inference"] > 0 for r in report["results"].values())
    assert set(report["ratios"]) == set(report["results"]) - {report["reference"]}
    assert report["ratios"]["feed_dict"]["train"] > 0
    # The table names what its ratios are taken against: lenet_tf in the precision `auto` picks on this CPU.
    assert f"× = {report['reference']} / row" in done.stdout and "×train" in done.stdout
    assert report["reference"] == ("lenet_tf bf16" if report["machine"]["precision_auto"] == "bf16" else "lenet_tf")
    assert any(line.startswith("feed_dict ") for line in done.stdout.splitlines())


def test_benchmark_runs_pytorch_in_its_own_process_and_names_its_best_variant(smoke_run):
    pytest.importorskip("torch", reason="PyTorch (the `bench` extra, outside the lock) is not installed: the "
                                        "README's PyTorch comparison cannot run here")
    report, done = smoke_run
    assert set(report["results"]) >= TORCH_ROWS and not report["notes"]
    for kind in ("train", "inference"):
        best = report["best_torch"][kind]
        assert best["row"] in TORCH_ROWS and best["ratio"] > 0
        assert report["results"][best["row"]][kind] == max(report["results"][row][kind] for row in TORCH_ROWS)
    assert "best PyTorch variant" in done.stdout


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


def test_benchmark_bf16_rows_and_cpu_features(smoke_run):
    report, done = smoke_run
    assert report["settings"]["precisions"] == ["fp32", "bf16"] and report["settings"]["interleaved"]
    assert {name: r["precision"] for name, r in report["results"].items() if not name.startswith("torch")} == {
        "lenet_tf": "fp32", "lenet_tf bf16": "bf16", "lenet_tf_native_off bf16": "bf16", "feed_dict": "fp32",
        "feed_dict bf16": "bf16"}
    assert report["reference"] == ("lenet_tf bf16" if report["machine"]["precision_auto"] == "bf16" else "lenet_tf")
    assert set(report["machine"]["cpu_features"]) == {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
    assert "avx512_bf16" in done.stdout and "lenet_tf bf16" in done.stdout
