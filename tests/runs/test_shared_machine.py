"""Issue 32, item 4: another user, a hanging compiler, NFS and busy readers never cost a run or a traceback."""

import errno
import fcntl
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lenet_tf.core import native_ops, outputs, processes
from lenet_tf.core.errors import CheckpointError, OutputError
from lenet_tf.runs import lock

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------ compiler


def test_a_hanging_compiler_is_killed_with_its_children_and_training_keeps_tensorflow_s_kernels(
        tmp_path, monkeypatch):
    compiler = tmp_path / "g++"
    pid_file = tmp_path / "child.pid"
    # Like g++ whose cc1plus hangs: a child that keeps stderr open and outlives a killed driver.
    compiler.write_text(f"#!/bin/sh\nsleep 60 & echo $! > {pid_file}\nwait\n")
    compiler.chmod(0o755)
    monkeypatch.setattr(native_ops, "_BUILD_SECONDS", 1)
    began = time.monotonic()
    with pytest.raises(RuntimeError, match="took more than 1 s"):
        native_ops._run_compiler([[str(compiler)]])
    assert time.monotonic() - began < 10
    child = int(pid_file.read_text())
    time.sleep(0.2)
    try:  # the whole process group went (gone, or a zombie its new parent has not reaped yet)
        state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        state = "gone"
    assert state in ("gone", "Z"), f"the compiler's child {child} still runs (state {state})"


def test_the_build_lock_wait_is_bounded(tmp_path):
    holder = os.open(tmp_path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        with pytest.raises(RuntimeError, match="kept building for more than"):
            with native_ops._folder_lock(tmp_path, wait=0.3):
                pass
    finally:
        os.close(holder)


def test_the_native_cache_is_private_and_links_are_not_followed(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = native_ops._private_build_dir(outputs.cache_home() / "native" / "k")
    for part in (outputs.cache_home(), folder.parent, folder):
        assert os.stat(part).st_mode & 0o777 == 0o700
    os.chmod(folder, 0o777)
    with pytest.raises(OutputError, match="others may write it"):
        native_ops._private_build_dir(folder)
    os.chmod(folder, 0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (folder / ".lock").symlink_to(victim)  # planted: opening it for writing would truncate the victim
    with pytest.raises(OSError):
        with native_ops._folder_lock(folder, wait=0.1):
            pass
    assert victim.read_text() == "precious"
    other = tmp_path / "xdg2" / "lenet_tf"
    other.parent.mkdir()
    other.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(OutputError, match="symbolic link"):
        outputs.private_folder(other)
    if os.geteuid() == 0:  # root can hand a folder to another user
        stranger = tmp_path / "stranger"
        stranger.mkdir(mode=0o700)
        os.chown(stranger, 12345, 12345)
        with pytest.raises(OutputError, match="belongs to another user"):
            outputs.private_folder(stranger)


# ------------------------------------------------------------------------------------------- subprocesses


def test_python_children_never_import_from_the_current_folder(tmp_path):
    (tmp_path / "json").mkdir()
    marker = tmp_path / "planted-ran"
    (tmp_path / "json" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    done = subprocess.run(processes.python_module("json.tool", "--help"), cwd=tmp_path, capture_output=True,
                          timeout=60)
    assert done.returncode == 0 and not marker.exists()


def test_every_python_child_of_the_package_is_started_with_dash_p():
    offenders = []
    for path in list((REPO / "lenet_tf").rglob("*.py")) + list((REPO / "benchmarks").rglob("*.py")):
        text = path.read_text()
        offenders += [f"{path.relative_to(REPO)}: {m.group(0)}"
                      for m in re.finditer(r"sys\.executable,(?!\s*\"-P\")[^\]\n]*", text)
                      if path.name != "processes.py"]
    assert not offenders, offenders


# ------------------------------------------------------------------------------------------------- locks


def test_lock_files_are_private_and_any_flock_error_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()  # a folder of the user's: the writer leaves it, and its lock files, in place
    with lock.writing(tmp_path / "run"):
        with lock.updating(tmp_path / "run"):
            pass
    for name in (lock.WRITER_LOCK, lock.RECORD_LOCK, lock.TURNSTILE_LOCK):
        assert os.stat(tmp_path / "run" / name).st_mode & 0o777 == 0o600, name

    real = fcntl.flock

    def nfs_flock(fd, operation):  # NFS: flock is a POSIX lock, so an exclusive one needs a writable descriptor
        if operation & fcntl.LOCK_EX and os.O_ACCMODE & fcntl.fcntl(fd, fcntl.F_GETFL) == os.O_RDONLY:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return real(fd, operation)

    monkeypatch.setattr(fcntl, "flock", nfs_flock)
    lock.refuse_if_written(tmp_path / "run", "training folder")  # no EBADF traceback

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(CheckpointError, match=r"cannot be locked \(No locks available\)"):
        lock.refuse_if_written(tmp_path / "run", "training folder")


def test_overlapping_readers_cannot_starve_the_writer(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    with lock.writing(folder):
        pass
    stop = threading.Event()

    def reader():
        while not stop.is_set():  # two readers whose shared locks always overlap
            with lock.reading(folder):
                time.sleep(0.05)

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.02)
    try:
        began = time.monotonic()
        with lock.updating(folder, wait=3):
            pass
        assert time.monotonic() - began < 1.0
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)


def test_a_reader_holding_the_record_makes_the_writer_skip_it_not_fail(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    with lock.writing(folder):
        pass
    with lock.reading(folder):
        with pytest.raises(lock.RecordBusy, match="readers kept run.json locked for 0.2 s"):
            with lock.updating(folder, wait=0.2):
                pass
    with lock.updating(folder, wait=0.2):  # and the next attempt, once the reader is gone, gets it
        pass


# ------------------------------------------------------------------------------------- truthful endings


def test_a_failed_training_leaves_no_new_folder_behind(tmp_path):
    from lenet_tf.core.errors import DataError
    from lenet_tf.training.trainer import TrainConfig, train

    out = tmp_path / "new"
    with pytest.raises(DataError):
        train(TrainConfig(epochs=1), out, data_dir=tmp_path / "no-mnist-here", progress=False)
    assert not out.exists()


def test_an_interrupt_before_the_first_epoch_does_not_promise_resume(tmp_path):
    from lenet_tf.cli.train import _interrupted_state

    assert "no epoch was finished, so" in _interrupted_state(tmp_path) and "--resume" not in _interrupted_state(
        tmp_path)


def test_a_cluster_member_says_its_port_is_open_and_what_to_firewall():
    from lenet_tf.training.cluster import Role, open_port_warning

    role = Role({"ps": ["127.0.0.1:2222"], "worker": ["127.0.0.1:2223"]}, "ps", 0)
    line = open_port_warning(role)
    assert line.startswith("lenet-tf: warning: ps 0 listens on port 2222 of every interface")
    assert "without authentication" in line and "firewall port 2222" in line
