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
