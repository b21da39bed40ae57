"""The order of the system calls that publish a checkpoint (issue 32, item 1), traced with strace over a real
three-epoch training: data fsynced, then its folder, then the rename that publishes it, then the parent folder,
and only then the deletion of what it replaces."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

STRACE = shutil.which("strace")
CALLS = "fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat,rmdir"
# 1234 fsync(6</run/.tmp-x/ckpt.index>) = 0 | 1234 renameat2(AT_FDCWD</w>, "/a", AT_FDCWD</w>, "/b", ...) = 0
_LINE = re.compile(r"^\d+\s+(?P<call>\w+)\((?P<args>.*)\)\s+=\s+(?P<result>-?\d+)")
_FD_PATH = re.compile(r"^\d+<(?P<path>[^>]*)>")
_STRINGS = re.compile(r'"((?:[^"\\]|\\.)*)"')


def parse(trace: str) -> list[tuple[str, list[str]]]:
    """The successful calls of an ``strace -f -y`` log as (call, paths): the fd's path of an fsync, source and
    target of a rename, the removed path of an unlink or rmdir."""
    events = []
    for line in trace.splitlines():
        match = _LINE.match(line)
        if not match or match["result"] != "0":
            continue
        call, args = match["call"], match["args"]
        strings = _STRINGS.findall(args)
        if call in ("fsync", "fdatasync"):
            fd = _FD_PATH.match(args)
            paths = [fd["path"]] if fd else []
        elif call == "unlinkat":
            fd = _FD_PATH.match(args)
            base = fd["path"] if fd and not strings[0].startswith("/") else ""
            paths = [os.path.join(base, strings[0])]
        else:
            paths = strings
        events.append((call.replace("fdatasync", "fsync"), paths))
    return events


def first(events, start, predicate) -> int | None:
    return next((i for i in range(start, len(events)) if predicate(events[i])), None)


@pytest.mark.skipif(STRACE is None, reason="strace is not installed (apt-get install strace)")
def test_a_training_syncs_each_checkpoint_before_publishing_it_and_deletes_only_after(tmp_path, synthetic_dir):
    out, log = tmp_path / "run", tmp_path / "trace"
    done = subprocess.run(
        [STRACE, "-f", "-y", "-qq", "-e", "signal=none", "-e", f"trace={CALLS}", "-o", str(log),
         sys.executable, "-P", "-m", "lenet_tf", "train", "--epochs", "3", "--out", str(out), "--data-dir",
         str(synthetic_dir), "--skip-checksum", "--valid-size", "100", "--batch-size", "32", "--no-progress",
         "--no-calibrate"], capture_output=True, text=True, timeout=240, env={**os.environ, "LENET_TF_NATIVE": "0"})
    if done.returncode != 0 and "ptrace" in done.stderr:
        pytest.skip(f"strace cannot trace here: {done.stderr.strip().splitlines()[0]}")
    assert done.returncode == 0, done.stderr
    events = parse(log.read_text())
    run = str(out)

    def synced(path):
        return lambda event: event[0] == "fsync" and event[1] == [path]

    epochs = [i for i, (call, paths) in enumerate(events)
              if call.startswith("rename") and len(paths) == 2 and re.fullmatch(rf"{re.escape(run)}/epoch-\d{{4}}",
                                                                                paths[1])]
    records = [i for i, (call, paths) in enumerate(events)
               if call.startswith("rename") and len(paths) == 2 and paths[1] == f"{run}/run.json"]
    deletions = [i for i, (call, paths) in enumerate(events)
                 if call in ("unlink", "unlinkat", "rmdir") and paths
                 and re.match(rf"{re.escape(run)}/epoch-\d{{4}}(/|$)", paths[0])]
    assert len(epochs) == 3 and len(records) >= 3 and deletions, f"unexpected trace: {events}"

    for i in epochs:  # each checkpoint's files, then its folder, are synced before it is renamed into place
        staged = events[i][1][0]
        before = {paths[0] for call, paths in events[:i] if call == "fsync" and paths}
        files = {os.path.join(staged, name) for name in ("ckpt.index", "ckpt.data-00000-of-00001")}
        assert files <= before, f"{files - before} not synced before {events[i]}"
        last_file = max(j for j in range(i) if events[j][0] == "fsync" and events[j][1][0] in files)
        assert first(events, last_file, synced(staged)) < i, f"{staged} not synced after its files, before renaming"
        assert first(events, i, synced(run)) < min(r for r in records if r > i), \
            f"{run} not synced between publishing {events[i][1][1]} and the record naming it"
    for i in records:  # run.json: its data synced before the rename, its folder after
        assert synced(events[i][1][0])(events[i - 1]), f"{events[i][1][0]} not synced just before {events[i]}"
        assert synced(run)(events[i + 1]), f"{run} not synced just after {events[i]}"
    for i in deletions:  # an old epoch goes only after a record published and synced since the newest epoch
        newest = max(j for j in epochs if j < i)
        record = min((r for r in records if r > newest), default=len(events))
        assert record < i and first(events, record, synced(run)) < i, \
            f"{events[i]} deleted before the record replacing it was on disk"
