"""A cluster whose members fail (issue 22, items 6-8): 1 ps + 2 workers as real processes on 127.0.0.1, on the
small synthetic digits; every wait is bounded."""

import json
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from ports import free_ports

from lenet_tf.core.errors import ConfigError
from lenet_tf.runs import checkpoint
from lenet_tf.training.cluster import parse_role
from lenet_tf.training.watchdog import reachable

MEMBER_TIMEOUT = 2  # seconds a member may stop answering (the default is 5)
GRACE = 3  # lenet_tf.training.watchdog.EXIT_GRACE_SECONDS
ROLES = {"ps": ["--job", "ps"], "chief": ["--job", "chief"], "worker 1": ["--job", "worker", "--task", "1"]}


def start_cluster(tmp_path, synthetic_dir, roles=tuple(ROLES), epochs=300, join_timeout=60):
    ps, *workers = (f"127.0.0.1:{port}" for port in free_ports(3))
    out = tmp_path / "model"
    command = [sys.executable, "-m", "lenet_tf", "train", "--cluster", json.dumps({"ps": [ps], "worker": workers}),
               "--epochs", str(epochs), "--out", str(out), "--data-dir", str(synthetic_dir), "--skip-checksum",
               "--valid-size", "100", "--batch-size", "32", "--no-progress", "--join-timeout", str(join_timeout),
               "--member-timeout", str(MEMBER_TIMEOUT),
               # The plain recipe: no synthetic digits (a worker makes them before its server starts, for 15-20 s
               # where the cache does not hold them yet, longer than the join test's 4 s join timeout), and the
               # failures are the subject, not the recipe (test_cluster.py trains the default one).
               "--preset", "plain"]
    processes = {role: subprocess.Popen(command + ROLES[role], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True) for role in roles}
    return processes, out, ps, workers


def ends(processes, timeout):
    """Each process's exit status, its last stderr line and the seconds until it ended (all killed at timeout)."""
    began, results = time.monotonic(), {}
    for role, process in processes.items():
        try:
            _, stderr = process.communicate(timeout=max(0.1, timeout - (time.monotonic() - began)))
        except subprocess.TimeoutExpired:
            for p in processes.values():
                p.kill()
            pytest.fail(f"{role} still runs {timeout} s later")
        results[role] = (process.returncode, (stderr.strip().splitlines() or [""])[-1], time.monotonic() - began)
        print(f"--- {role}: exit {process.returncode} after {results[role][2]:.1f} s\n{stderr[-3000:]}")  # on failure
    return results


def wait_for_epochs(out, processes, count=1, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if len(json.loads((out / "run.json").read_text())["history"]) >= count:
                return
        except (OSError, ValueError):
            pass
        if any(p.poll() is not None for p in processes.values()):
            break
        time.sleep(0.05)
    for p in processes.values():
        p.kill()
    pytest.fail(f"no epoch recorded: {[p.communicate()[1][-2000:] for p in processes.values()]}")


def assert_last_epoch_kept(out):
    record = checkpoint.read_run(out)
    assert not record["complete"] and record["history"]
    assert checkpoint.checkpoint_prefix(out, "last", record) and checkpoint.checkpoint_prefix(out, "best", record)


def test_a_killed_worker_ends_the_chief_and_the_ps_naming_it(tmp_path, synthetic_dir):
    processes, out, _, workers = start_cluster(tmp_path, synthetic_dir)
    wait_for_epochs(out, processes)
    processes.pop("worker 1").kill()  # kill -9
    results = ends(processes, timeout=MEMBER_TIMEOUT + GRACE + 20)
    for role in ("chief", "ps"):
        status, line, seconds = results[role]
        assert status == 1 and line == (f"lenet-tf: error: worker 1 ({workers[1]}) stopped answering for "
                                        f"{MEMBER_TIMEOUT} s; the cluster cannot go on without it"), line
    assert_last_epoch_kept(out)


def test_sigterm_ends_the_chief_in_seconds_keeping_its_last_epoch_and_the_others_follow(tmp_path, synthetic_dir):
    processes, out, _, workers = start_cluster(tmp_path, synthetic_dir)
    wait_for_epochs(out, processes)
    chief = processes.pop("chief")
    chief.send_signal(signal.SIGTERM)
    (status, line, seconds), = ends({"chief": chief}, timeout=GRACE + 10).values()
    assert status == 130 and line.startswith("lenet-tf: interrupted") and str(out) in line, line
    assert_last_epoch_kept(out)
    results = ends(processes, timeout=MEMBER_TIMEOUT + GRACE + 20)
    status, line, _ = results["worker 1"]
    assert status == 1, line
    assert f"chief (worker 0) ({workers[0]}) stopped answering" in line or "the chief stopped it" in line, line
    # The ps ends 0 when both workers still reported to it; it names the one that could not when the chief was
    # stopped inside a synchronous step (its watchdog then ends it, and worker 1, without a report). Which of the
    # two happens depends on where the signal found the chief: making it one outcome is a change to the cluster's
    # shutdown (lenet_tf.training.cluster), not to this test.
    status, line, _ = results["ps"]
    gone = (rf"lenet-tf: error: (worker 1|chief \(worker 0\)) \(127\.0\.0\.1:\d+\) stopped answering for "
            rf"{MEMBER_TIMEOUT} s; the cluster cannot go on without it")
    assert (status, line) == (0, "parameter server 0: every worker is done") or (
        status == 1 and re.fullmatch(gone, line)), line


def test_a_member_that_never_comes_is_named_and_sigint_ends_a_waiting_ps(tmp_path, synthetic_dir):
    processes, out, _, workers = start_cluster(tmp_path, synthetic_dir, roles=("ps", "chief"), join_timeout=4)
    results = ends(processes, timeout=90)
    for role in ("ps", "chief"):
        status, line, _ = results[role]
        assert status == 1 and line.startswith(f"lenet-tf: error: worker 1 ({workers[1]}) never came within 4 s"), line
    assert not (out / "run.json").exists()

    processes, _, ps, _ = start_cluster(tmp_path, synthetic_dir, roles=("ps",), join_timeout=600)
    deadline = time.monotonic() + 120
    while not reachable(ps) and time.monotonic() < deadline:  # its server is up: it waits
        assert processes["ps"].poll() is None, processes["ps"].communicate()[1]
        time.sleep(0.05)
    processes["ps"].send_signal(signal.SIGINT)
    (status, line, seconds), = ends(processes, timeout=GRACE + 10).values()
    assert status == 130 and line == "lenet-tf: interrupted"


@pytest.mark.parametrize("spec, message", [
    ({"ps": ["127.0.0.1"], "worker": ["127.0.0.1:2"]}, "ps[0] '127.0.0.1' has no port (expected host:port)"),
    ({"ps": ["127.0.0.1:2348O"], "worker": ["127.0.0.1:2"]}, "ps[0] '127.0.0.1:2348O': port '2348O' is not a number"),
    ({"ps": ["127.0.0.1:2²"], "worker": ["127.0.0.1:2"]}, "ps[0] '127.0.0.1:2²': port '2²' is not a number"),
    ({"ps": "127.0.0.1:1", "worker": ["127.0.0.1:2"]}, '"ps" must be a list of "host:port" addresses'),
    ({"ps": [23480], "worker": ["127.0.0.1:2"]}, 'ps[0] 23480 is not a "host:port" string'),
    ({"ps": ["127.0.0.1:99999"], "worker": ["127.0.0.1:2"]}, "ps[0] '127.0.0.1:99999': port 99999 is out of range 1..65535"),
    ({"ps": ["127.0.0.1:1"], "worker": ["127.0.0.1:1"]}, "worker[0] '127.0.0.1:1' is also ps[0]"),
])
def test_bad_cluster_entries_are_one_line_each(spec, message):
    with pytest.raises(ConfigError) as raised:
        parse_role(json.dumps(spec), "ps", 0)
    assert any(line.startswith(f"bad cluster spec: {message}") for line in str(raised.value).splitlines())


def test_every_bad_entry_and_a_port_in_use_are_named_before_any_server_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"bad cluster spec: ps\\[0\\] 127.0.0.1:{port}: port {port} is in use"):
            parse_role(json.dumps({"ps": [f"127.0.0.1:{port}"], "worker": ["127.0.0.1:2"]}), "ps", 0)
        result = subprocess.run(
            [sys.executable, "-m", "lenet_tf", "train", "--out", str(tmp_path / "m"), "--job", "ps", "--cluster",
             json.dumps({"ps": ["127.0.0.1"], "worker": ["127.0.0.1:2348O", f"127.0.0.1:{port}"]})],
            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "lenet-tf: error: bad cluster spec: ps[0] '127.0.0.1' has no port (expected host:port)",
        "bad cluster spec: worker[0] '127.0.0.1:2348O': port '2348O' is not a number"]
