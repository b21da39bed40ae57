"""A smoke run of the throughput benchmark: a few steps of two contenders, each in its own process."""

import json
import subprocess
import sys


def test_benchmark_smoke_run_writes_json(tmp_path, real_mnist):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "lenet_tf", "benchmark", "--steps", "3", "--repeats", "1",
                           "--warmup", "1", "--only", "lenet_tf", "feed_dict", "--no-default-env", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"lenet_tf", "feed_dict"}
    assert all(r["train"] > 0 and r["inference"] > 0 for r in report["results"].values())
    assert report["ratios"]["feed_dict"]["train"] == report["results"]["lenet_tf"]["train"] / report["results"][
        "feed_dict"]["train"]
    assert "lenet_tf ×train" in done.stdout and report["machine"]["train_flops_per_image"] == 2 * (
        3 * 416520 - 117600)


def test_benchmark_bf16_rows_and_cpu_features(tmp_path, real_mnist):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "lenet_tf", "benchmark", "--steps", "3", "--repeats", "2",
                           "--warmup", "1", "--only", "lenet_tf", "--precision", "bf16", "--no-default-env",
                           "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["settings"]["precisions"] == ["fp32", "bf16"] and report["settings"]["interleaved"]
    assert {name: r["precision"] for name, r in report["results"].items()} == {"lenet_tf": "fp32",
                                                                               "lenet_tf bf16": "bf16"}
    assert set(report["machine"]["cpu_features"]) == {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
    reference = report["reference"]
    other = "lenet_tf" if reference == "lenet_tf bf16" else "lenet_tf bf16"
    assert report["ratios"][other]["train"] == report["results"][reference]["train"] / report["results"][other]["train"]
    assert "avx512_bf16" in done.stdout and "lenet_tf bf16" in done.stdout
