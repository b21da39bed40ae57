"""The benchmark's worker processes: a failed contender says why, and the PyTorch worker never loads TensorFlow."""

import subprocess
import sys

from lenet_tf.benchmark.protocol import Worker


def _worker(code: str) -> Worker:
    return Worker("crashing", "fp32", [sys.executable, "-c", code], {})


def test_a_worker_that_exits_reports_its_last_stderr_line_and_exit_code():
    worker = _worker("import sys; print('loading', file=sys.stderr); sys.exit('ValueError: no data here')")
    worker.close()
    assert worker.ready == {"error": "ValueError: no data here (exit code 1)"}


def test_a_worker_killed_by_a_signal_after_ready_reports_the_signal():
    worker = _worker("import json, os, signal, sys; print(json.dumps({'ready': True}), flush=True); "
                     "sys.stdin.readline(); os.kill(os.getpid(), signal.SIGSEGV)")
    assert worker.ready == {"ready": True}
    assert worker.measure("train") is None
    worker.close()
    assert worker.error == "killed by SIGSEGV"


def test_the_torch_worker_module_never_imports_tensorflow():
    code = ("import sys, lenet_tf.benchmark.torch_worker, lenet_tf.benchmark.protocol; "
            "assert not [m for m in sys.modules if m.startswith('tensorflow')], 'tensorflow was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
