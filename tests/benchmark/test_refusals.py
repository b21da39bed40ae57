"""What ``lenet-tf benchmark`` refuses, and when: bad counts at parse time, a bad data folder or --json target before
any contender starts, a run where every contender failed with a non-zero exit."""

import json
import os
import sys
from types import SimpleNamespace

import pytest

from conftest import REAL_MNIST

# A worker that is ready at once and answers every request with 1000 images/s; one that fails as it starts.
ANSWERING = ("import json, sys; print(json.dumps({'ready': True}), flush=True)\n"
             "for line in sys.stdin: print(json.dumps({line.strip(): 1000.0}), flush=True)")
FAILING = "import sys; sys.exit('ValueError: no contender here')"


@pytest.fixture
def workers(monkeypatch, real_mnist):
    """Each contender's worker replaced by a process running ``workers.code`` (default: ANSWERING), and the GEMM
    rate by a constant, so a benchmark takes a moment; ``workers.started`` lists the rows started."""
    from lenet_tf.benchmark import throughput
    from lenet_tf.benchmark.protocol import Worker

    fake = SimpleNamespace(code=ANSWERING, started=[])

    def start(contender: str, precision: str, args) -> list[Worker]:
        name = throughput.row_name(contender, precision)
        fake.started.append(name)
        return [Worker(name, precision, [sys.executable, "-c", fake.code], {})]

    monkeypatch.setattr(throughput, "_start", start)
    monkeypatch.setattr(throughput, "gemm_gflops", lambda: 100.0)
    return fake


def benchmark(cli, *args):
    """``lenet-tf benchmark`` of lenet_tf alone in fp32 on the shipped MNIST, with ``args``."""
    return cli("benchmark", "--data-dir", REAL_MNIST, "--only", "lenet_tf", "--precision", "fp32", "--warmup", "0",
               "--steps", "1", "--repeats", "1", *args)


@pytest.mark.parametrize("flag, value, expected", [
    ("--steps", "0", "must be ≥ 1, got 0"), ("--steps", "-3", "must be ≥ 1, got -3"),
    ("--steps", "1.5", "must be a whole number ≥ 1, got 1.5"), ("--repeats", "0", "must be ≥ 1, got 0"),
    ("--warmup", "-5", "must be ≥ 0, got -5")])
def test_counts_out_of_range_are_a_usage_error_before_anything_runs(cli, flag, value, expected):
    done = cli("benchmark", flag, value, "--only", "lenet_tf")
    assert done.returncode == 2 and done.stdout == ""
    assert f"lenet-tf benchmark: error: argument {flag}: {expected}" in done.stderr
    assert "Traceback" not in done.stderr


def test_json_to_stdout_is_the_json_document_alone(cli, workers):
    done = benchmark(cli, "--no-default-env", "--json", "-")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"]["lenet_tf"]["train"] == 1000.0
    assert "×train" in done.stderr  # the table, out of the JSON's way


def test_a_data_folder_that_is_a_file_is_one_error_before_any_contender_starts(cli, workers, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not MNIST")
    done = cli("benchmark", "--data-dir", afile, "--only", "lenet_tf", "--steps", "1", "--repeats", "1")
    assert done.returncode == 1 and workers.started == []
    assert done.stderr.splitlines()[-1] == (f"lenet-tf: error: {afile}: is a file, expected the folder holding the "
                                            "MNIST files")


def test_a_run_where_every_contender_failed_exits_non_zero_saying_why(cli, workers):
    workers.code = FAILING
    done = benchmark(cli)
    assert done.returncode == 1 and "×train" not in done.stdout
    assert done.stderr.splitlines()[-1] == ("lenet-tf: error: no contender was measured: lenet_tf: failed: "
                                            "ValueError: no contender here (exit code 1); lenet_tf_native_off: failed: "
                                            "ValueError: no contender here (exit code 1)")


@pytest.mark.parametrize("only, rows", [("lenet_tf", ["lenet_tf", "lenet_tf_native_off"]),
                                        ("feed_dict", ["feed_dict", "feed_dict_onednn_off"])])
def test_only_runs_the_contenders_named_with_their_extra_rows(cli, workers, only, rows):
    assert benchmark(cli, "--only", only).returncode == 0
    assert workers.started == rows



def _target(tmp_path, case: str) -> tuple:
    """A --json target of each kind refused, and the start of the reason named."""
    if case == "a folder":
        return tmp_path, f"{tmp_path}: exists and is not a regular file"
    if case == "a FIFO":
        os.mkfifo(tmp_path / "fifo")
        return tmp_path / "fifo", f"{tmp_path / 'fifo'}: exists and is not a regular file"
    folder, why = {"missing folder": (tmp_path / "nodir", "No such file"),
                   "folder is a file": (tmp_path / "afile", "Not a directory"),
                   "read-only folder": (tmp_path / "ro", "Permission denied")}[case]
    if case == "folder is a file":
        folder.write_text("")
    if case == "read-only folder":
        if os.geteuid() == 0:
            pytest.skip("root may write any folder")
        folder.mkdir(mode=0o500)
    return folder / "x.json", f"{folder}: output folder is not writable ({why}"


@pytest.mark.parametrize("case", ["missing folder", "folder is a file", "read-only folder", "a folder", "a FIFO"])
def test_a_json_target_that_cannot_be_written_is_refused_before_measuring(cli, workers, tmp_path, case):
    target, reason = _target(tmp_path, case)
    done = benchmark(cli, "--json", target)
    assert done.returncode == 1 and workers.started == []
    assert done.stderr.splitlines()[-1].startswith(f"lenet-tf: error: {reason}")
