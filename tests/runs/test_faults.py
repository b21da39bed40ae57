"""Fault injection (issue 32, item 3), as SQLite's I/O error tests do it: for each of os.rename, os.replace,
os.fsync, shutil.rmtree, os.unlink and renameat2, and each call index K of a `train --overwrite`, a
`train --resume` and an `export --overwrite`, the K-th call fails (ENOSPC or EIO). Afterwards the folder holds a run
(or an export) that loads, the user's file beside it is untouched, and the command either succeeded (a failed
cleanup is a warning) or printed one error line and exited 1."""

import errno
import os
import shutil
from pathlib import Path

import pytest

from lenet_tf.cli.commands import main
from lenet_tf.core import outputs
from lenet_tf.core.tf import tf
from lenet_tf.runs import checkpoint
from lenet_tf.serving.saved_model import is_our_export
from synthetic import write_mnist_dir

FUNCTIONS = [(os, "rename"), (os, "replace"), (os, "fsync"), (shutil, "rmtree"), (os, "unlink"),
             (outputs, "_renameat2")]
NOTE = b"the user's own notes"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny training folder (one epoch) and an export of it, each with a file of the user's beside ours."""
    root = tmp_path_factory.mktemp("faults")
    data = write_mnist_dir(root / "mnist", train=120, test=30)
    # The plain recipe: the faults are in what a command writes, not in what it trains (2x faster than the default).
    common = ["--preset", "plain", "--data-dir", str(data), "--skip-checksum", "--valid-size", "30", "--batch-size", "32",
              "--no-progress"]
    assert main(["train", "--epochs", "1", "--out", str(root / "run"), *common]) == 0
    assert main(["export", "--checkpoint", str(root / "run"), "--out", str(root / "export")]) == 0
    (root / "run" / "notes.txt").write_bytes(NOTE)
    return root, common


def commands(root: Path, common: list[str], work: Path) -> dict:
    return {
        "overwrite": ["train", "--epochs", "1", "--seed", "3", "--overwrite", "--out", str(work / "run"), *common],
        "resume": ["train", "--resume", "--epochs", "2", "--out", str(work / "run"), *common],
        "export": ["export", "--checkpoint", str(work / "run"), "--out", str(work / "export"), "--overwrite"],
    }


def fresh(root: Path, work: Path) -> Path:
    shutil.copytree(root / "run", work / "run")
    shutil.copytree(root / "export", work / "export")
    return work


@pytest.fixture(scope="module")
def calls(world, tmp_path_factory):
    """How often each command calls each function when nothing fails: {(command, name): count}."""
    root, common = world
    counted = {}
    for command in ("overwrite", "resume", "export"):
        work = fresh(root, tmp_path_factory.mktemp(f"count-{command}"))
        with pytest.MonkeyPatch.context() as patch:
            counters = {name: Injector(patch, module, name) for module, name in FUNCTIONS}
            assert main(commands(root, common, work)[command]) == 0
        counted.update({(command, name): counter.calls for name, counter in counters.items()})
    return counted


def loads(work: Path, command: str) -> None:
    """The state the command worked on loads: a run whose best and last checkpoints read, or an export."""
    assert (work / "run" / "notes.txt").read_bytes() == NOTE
    run = checkpoint.read_run(work / "run")
    for which in ("best", "last"):
        tf.train.load_checkpoint(checkpoint.checkpoint_prefix(work / "run", which, run)).get_variable_to_shape_map()
    if command == "export":
        assert is_our_export(work / "export")
        assert tf.saved_model.contains_saved_model(str(work / "export"))


class Injector:
    """Counts the calls of ``module.name``; the ``fail_at``-th raises ``error`` instead."""

    def __init__(self, monkeypatch, module, name, fail_at: int = 0, error: int = errno.ENOSPC):
        self.calls, real = 0, getattr(module, name)

        def call(*args, **kwargs):
            self.calls += 1
            if self.calls == fail_at:
                raise OSError(error, os.strerror(error), str(args[0]) if args else None)
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, call)


@pytest.mark.parametrize("command", ["overwrite", "resume", "export"])
@pytest.mark.parametrize("module, name", FUNCTIONS, ids=[name for _, name in FUNCTIONS])
def test_any_failing_call_leaves_a_loadable_state_and_one_line(world, calls, tmp_path, command, module, name,
                                                               capsys):
    root, common = world
    capsys.readouterr()
    for k in range(1, calls[command, name] + 1):
        work = fresh(root, tmp_path / f"k{k}")
        with pytest.MonkeyPatch.context() as patch:
            Injector(patch, module, name, fail_at=k, error=errno.EIO if k % 2 else errno.ENOSPC)
            status = main(commands(root, common, work)[command])
        err = capsys.readouterr().err
        assert "Traceback" not in err, err
        errors = [line for line in err.splitlines() if line.startswith("lenet-tf: error:")]
        assert (status, len(errors)) in ((0, 0), (1, 1)), f"{name} call {k}: status {status}\n{err}"
        loads(work, command)
