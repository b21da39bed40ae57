"""Commands that write never destroy a run or a user's files (docs/reliability.md, "What is never lost")."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lenet_tf.cli.commands import main
from lenet_tf.runs import checkpoint, lock
from lenet_tf.training import trainer as train_module
from lenet_tf.core.errors import CheckpointError, ConfigError
from lenet_tf.evaluation.figures import FIGURES
from lenet_tf.serving.saved_model import export_saved_model
from lenet_tf.training.trainer import TrainConfig, resume_config, train

FAST = dict(batch_size=32, learning_rate=3e-3, valid_size=100)


def run(out, splits, **overrides):
    return train(TrainConfig(**{"epochs": 1, **FAST, **overrides}), out, splits=splits, progress=False)


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, synthetic_splits):
    """A finished two-epoch run (copy it before changing it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    run(out, synthetic_splits, epochs=2)
    return out


def copy_run(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


# ---------------------------------------------------------------------------------------------- training


def test_training_refuses_a_folder_holding_a_run(tmp_path, finished, synthetic_splits):
    out = copy_run(finished, tmp_path / "run")
    before = snapshot(out)
    with pytest.raises(CheckpointError, match="holds a lenet_tf run .*--resume.*--overwrite"):
        run(out, synthetic_splits)
    assert snapshot(out) == before


def test_overwrite_keeps_the_old_run_until_the_new_one_has_a_checkpoint(tmp_path, finished, synthetic_splits,
                                                                       monkeypatch):
    out = copy_run(finished, tmp_path / "run")
    before = snapshot(out)
    old = json.loads((out / "run.json").read_text())

    def crash(*args, **kwargs):  # a kill between saving the new checkpoint and recording it
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "write_json_atomic", crash)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(epochs=1, seed=1, **FAST), out, splits=synthetic_splits, overwrite=True, progress=False)
    monkeypatch.undo()
    after = snapshot(out)
    assert {name: data for name, data in after.items() if name in before} == before  # all old bytes intact
    assert checkpoint.read_run(out) == old
    assert checkpoint.checkpoint_prefix(out, "best")  # the old best checkpoint is still complete
    result = train(TrainConfig(epochs=1, seed=1, **FAST), out, splits=synthetic_splits, overwrite=True,
                   progress=False)
    new = checkpoint.read_run(out)
    assert new["train"]["seed"] == 1 and result.best_epoch == 1
    old_folders = checkpoint.owned_checkpoints(old)
    assert not any((out / name).exists() for name in old_folders - {new["best"]["dir"]})
    assert new["checkpoints"] == [new["best"]["dir"]] and new["best"]["dir"] not in old_folders


def test_training_never_touches_what_it_did_not_create(tmp_path, synthetic_splits):
    out = tmp_path / "mine"
    (out / "epoch-photos").mkdir(parents=True)
    (out / "epoch-photos" / "a.jpg").write_bytes(b"photo")
    (out / ".tmp-notes.txt").write_text("notes")
    (out / "epoch-0001").mkdir()  # looks like a checkpoint folder, but no run recorded it
    (out / "epoch-0001" / "ckpt.index").write_text("mine")
    before = snapshot(out)
    result = run(out, synthetic_splits, epochs=3)
    assert {name: data for name, data in snapshot(out).items() if name in before} == before
    record = checkpoint.read_run(out)
    assert record["last"]["dir"] == "epoch-0003" and result.best_epoch in (1, 2, 3)
    assert "epoch-0001" not in record["checkpoints"]
    assert set(record["checkpoints"]) == {record["best"]["dir"], record["last"]["dir"]}


# SIGKILL in the window between publishing epoch 2's folder and recording it in run.json.
KILLED_AT_EPOCH_2 = """import os, signal, sys
from lenet_tf.cli.commands import main
from lenet_tf.cli.commands import main
from lenet_tf.runs import checkpoint
record = checkpoint.write_json_atomic
def write(path, run):
    if len(run["history"]) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    record(path, run)
checkpoint.write_json_atomic = write
sys.exit(main(sys.argv[1:]))
"""


def test_resume_removes_a_killed_writers_unrecorded_epoch_and_nothing_else(tmp_path, synthetic_dir):
    out, common = tmp_path / "run", ["--preset", "plain", "--data-dir", str(synthetic_dir), "--skip-checksum",
                                     "--valid-size", "100", "--batch-size", "32", "--no-progress"]
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_EPOCH_2, "train", "--epochs", "3", "--out", str(out),
                             *common], capture_output=True, text=True, timeout=180)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    record = checkpoint.read_run(out)
    assert (out / "epoch-0002" / "ckpt.index").is_file() and record["checkpoints"] == ["epoch-0001"]
    run_id = record["id"]
    # Beside the leftover: a killed save's hidden folder, another run's checkpoint, and a folder of the user's.
    shutil.copytree(out / "epoch-0002", out / ".tmp-lenet_tf-killed")
    shutil.copytree(out / "epoch-0002", out / "epoch-0008")
    (out / "epoch-0008" / checkpoint.RUN_ID_FILE).write_text(checkpoint.new_run_id())
    (out / "epoch-0009").mkdir()
    (out / "epoch-0009" / checkpoint.RUN_ID_FILE).write_text("not a run of ours")
    foreign = {name: data for name, data in snapshot(out).items() if name.startswith(("epoch-0008", "epoch-0009"))}

    assert main(["train", "--resume", "--out", str(out), *common]) == 0
    record = checkpoint.read_run(out)
    assert [h["epoch"] for h in record["history"]] == [1, 2, 3] and record["last"]["dir"] == "epoch-0003"
    assert record["id"] == run_id == (out / "epoch-0003" / checkpoint.RUN_ID_FILE).read_text()  # kept on resume
    assert not (out / ".tmp-lenet_tf-killed").exists()
    assert {name: data for name, data in snapshot(out).items() if name.startswith(("epoch-0008", "epoch-0009"))
            } == foreign
    assert sorted(p.name for p in out.glob("epoch-*")) == sorted({*record["checkpoints"], "epoch-0008", "epoch-0009"})


def test_an_epoch_whose_record_cannot_be_written_leaves_no_folder(tmp_path, synthetic_splits, monkeypatch):
    out = tmp_path / "run"
    record = checkpoint.write_json_atomic

    def failing(path, run):
        if len(run["history"]) == 2:
            raise CheckpointError(f"{path}: cannot write (No space left on device); the previous file is untouched")
        record(path, run)
    monkeypatch.setattr(checkpoint, "write_json_atomic", failing)
    with pytest.raises(CheckpointError, match="No space left on device"):
        run(out, synthetic_splits, epochs=3)
    assert checkpoint.read_run(out)["checkpoints"] == ["epoch-0001"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith((".lenet_tf.", "logs"))) == [
        "epoch-0001", "run.json"]


def test_resume_refuses_a_different_configuration_and_writes_nothing(tmp_path, finished, synthetic_splits):
    out = copy_run(finished, tmp_path / "run")
    before = snapshot(out)
    with pytest.raises(ConfigError, match=r"learning_rate 0\.5 \(stored 0\.003\).*only --epochs may change"):
        train(resume_config(out, learning_rate=0.5), out, splits=synthetic_splits, resume=True, progress=False)
    with pytest.raises(ConfigError, match=r"weight_averaging 0\.999 \(stored 0\.0\)"):
        train(resume_config(out, weight_averaging=0.999), out, splits=synthetic_splits, resume=True, progress=False)
    with pytest.raises(ConfigError, match="has 2 trained epochs; --epochs 1 would drop some"):
        train(resume_config(out, epochs=1), out, splits=synthetic_splits, resume=True, progress=False)
    done = train(resume_config(out), out, splits=synthetic_splits, resume=True, progress=False)  # nothing to do
    assert done.best_epoch == checkpoint.read_run(out)["best"]["epoch"]
    assert snapshot(out) == before


def test_resume_extends_a_finished_run_on_the_stated_schedule(tmp_path, finished, synthetic_splits):
    out = copy_run(finished, tmp_path / "run")
    old = checkpoint.read_run(out)
    config = resume_config(out, epochs=4)
    assert train_module.describe_resume(config, old) == (
        "resuming at epoch 3 of 4 (was 2: the cosine schedule now run over 4 epochs, lr 0.0015 from here)")
    result = train(config, out, splits=synthetic_splits, resume=True, progress=False)
    record = checkpoint.read_run(out)
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4] and record["history"][:2] == old["history"]
    assert [h["learning_rate"] for h in record["history"][2:]] == pytest.approx(
        [config.learning_rate_at(2), config.learning_rate_at(3)])
    assert record["train"]["epochs"] == 4 and record["resumed"] == [{"at_epoch": 2, "epochs": 4}]


def test_resume_with_a_foreign_architectures_record_is_one_line(tmp_path, finished, synthetic_splits):
    out = copy_run(finished, tmp_path / "run")
    record = checkpoint.read_run(out)
    record["model"]["batch_norm"] = True  # run.json swapped with a batch-norm run's
    (out / "run.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="does not match the run's recorded configuration"):
        train(resume_config(out, epochs=3), out, splits=synthetic_splits, resume=True, progress=False)


@pytest.mark.parametrize("change, message", [
    (lambda r: r["best"].pop("dir"), "'best.dir' must name a checkpoint folder"),
    (lambda r: r.update(best=[1, 2]), "'best' must be an object"),
    (lambda r: r["best"].update(dir="../other/epoch-0001"), "inside the run folder"),
    (lambda r: r["last"].update(dir="/etc"), "inside the run folder"),
    (lambda r: r.update(checkpoints=["../x"]), "'checkpoints' must list folder names"),
    (lambda r: r.pop("model"), "no model configuration"),
])
def test_malformed_run_records_are_refused(tmp_path, finished, change, message):
    out = copy_run(finished, tmp_path / "run")
    record = checkpoint.read_run(out)
    change(record)
    (out / "run.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=message):
        checkpoint.read_run(out)


def test_a_full_disk_names_the_cause(tmpfs, synthetic_splits):
    full_disk = tmpfs("300k")  # room for the run record, not for a checkpoint
    with pytest.raises(CheckpointError, match="cannot save checkpoint .*No space left on device"):
        run(full_disk / "out", synthetic_splits)
    assert not list((full_disk / "out").glob("epoch-*")) and not list((full_disk / "out").glob(".tmp-*"))


# ------------------------------------------------------------------------------------------------ export


def test_export_never_deletes_a_foreign_folder(tmp_path, finished):
    docs = tmp_path / "mydocs"
    (docs / "thesis").mkdir(parents=True)
    (docs / "thesis" / "ch1.tex").write_text("chapter one")
    for target in (docs, finished):  # a user's folder, and the training folder itself
        before = snapshot(target)
        with pytest.raises(CheckpointError, match="not empty and not a lenet_tf export"):
            export_saved_model(finished, target, overwrite=True)
        assert snapshot(target) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_export_replaces_only_an_earlier_export_of_ours(tmp_path, finished):
    target = tmp_path / "empty"
    target.mkdir()
    export_saved_model(finished, target)  # an empty folder is fine
    assert (target / "saved_model.pb").is_file()
    with pytest.raises(CheckpointError, match="holds an earlier export; pass --overwrite"):
        export_saved_model(finished, target)
    (target / "notes.txt").write_text("mine")  # no longer only our export: left alone even with --overwrite
    with pytest.raises(CheckpointError, match="not a lenet_tf export"):
        export_saved_model(finished, target, overwrite=True)
    (target / "notes.txt").unlink()
    stamp = (target / "saved_model.pb").stat().st_mtime_ns
    export_saved_model(finished, target, overwrite=True)
    assert (target / "saved_model.pb").stat().st_mtime_ns != stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_export_into_a_folder_that_may_not_be_written_is_refused_up_front(tmp_path, finished, tmpfs):
    read_only = tmpfs(read_only=True)  # an empty folder that may not be written (on a read-only file system)
    for overwrite in (False, True):
        with pytest.raises(CheckpointError, match=r"tmpfs0: output folder is not writable \(Read-only file system\)$"):
            export_saved_model(finished, read_only, overwrite=overwrite)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmpfs0"] and not any(read_only.iterdir())


# ------------------------------------------------------------------------------- the command line, one line


def one_error_line(result) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_cli_errors_are_one_line(tmp_path, finished, synthetic_dir, cli):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = one_error_line(cli("export", "--checkpoint", finished, "--out", blocker / "export"))
    assert line.startswith("lenet-tf: error:") and "is a file, expected an output folder" in line
    line = one_error_line(cli("evaluate", "--checkpoint", finished, "--data-dir", synthetic_dir, "--skip-checksum",
                              "--report", blocker))
    assert "is a file, expected an output folder" in line
    os.mkfifo(tmp_path / "pipe")  # named for what it is (it was called a file, or a missing checkpoint folder)
    line = one_error_line(cli("evaluate", "--checkpoint", finished, "--data-dir", synthetic_dir, "--skip-checksum",
                              "--report", tmp_path / "pipe"))
    assert line.endswith("pipe: is a FIFO, expected an output folder")
    line = one_error_line(cli("evaluate", "--checkpoint", tmp_path / "pipe", "--data-dir", synthetic_dir))
    assert line.endswith("pipe: is a FIFO, not a checkpoint folder or Saver prefix")
    line = one_error_line(cli("train", "--cluster", '{"ps": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}',
                              "--job", "chief", "--resume", "--out", finished))
    assert "--resume is not available in cluster mode" in line
    out = copy_run(finished, tmp_path / "run")
    before = snapshot(out)
    line = one_error_line(cli("train", "--out", out, "--resume", "--weight-averaging", "0.999",
                              "--data-dir", synthetic_dir, "--skip-checksum"))
    assert "weight_averaging 0.999 (stored 0.0)" in line
    finished_again = cli("train", "--out", out, "--resume", "--data-dir", synthetic_dir, "--skip-checksum")
    assert finished_again.returncode == 0, finished_again.stderr
    assert "the run is complete (2 of 2 epochs); pass --epochs N > 2" in finished_again.stderr
    assert snapshot(out) == before


def test_report_figures_are_not_replaced_without_overwrite(tmp_path, finished, synthetic_dir, cli):
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "per_digit.png").write_bytes(b"my own figure")
    args = ["evaluate", "--checkpoint", finished, "--data-dir", synthetic_dir, "--skip-checksum", "--report", figures]
    line = one_error_line(cli(*args))
    assert "per_digit.png: already exists; pass --overwrite" in line
    assert sorted(p.name for p in figures.iterdir()) == ["per_digit.png"]
    line = one_error_line(cli(*args, "--overwrite"))  # nor with it: not a figure of ours
    assert "per_digit.png: not a figure lenet_tf wrote, so --overwrite leaves it alone" in line
    assert (figures / "per_digit.png").read_bytes() == b"my own figure"
    (figures / "per_digit.png").unlink()
    assert cli(*args).returncode == 0 and cli(*args, "--overwrite").returncode == 0  # its own: replaced
    assert (figures / "per_digit.png").read_bytes().startswith(b"\x89PNG")


def test_a_report_folder_another_evaluate_writes_is_refused(tmp_path, finished, synthetic_dir, cli):
    """Two `evaluate --report` into one folder each checked it was free, then both wrote: the second's figures
    replaced the first's, without --overwrite."""
    figures = tmp_path / "figures"
    args = ["evaluate", "--checkpoint", finished, "--data-dir", synthetic_dir, "--skip-checksum", "--report", figures]
    with lock.writing(figures, what="report folder", remove=True):  # as another evaluate holds it
        line = one_error_line(cli(*args))
        assert list(figures.iterdir()) == [figures / lock.WRITER_LOCK]  # the refused one wrote nothing
    assert line.startswith(f"lenet-tf: error: {figures}: report folder in use by ")
    assert not figures.exists()  # the holder made it and removed it, empty, when done
    assert cli(*args).returncode == 0 and sorted(p.name for p in figures.iterdir()) == sorted(FIGURES)


def test_runs_sharing_a_log_folder_never_write_into_each_others_event_files(tmp_path, synthetic_splits):
    logs = tmp_path / "logs"
    for name in ("a", "b"):  # within the same second: TensorFlow's default file name would be the same
        train(TrainConfig(epochs=1, **FAST), tmp_path / name, splits=synthetic_splits, progress=False, logdir=logs)
    assert len(list(logs.rglob("events.out.tfevents.*"))) == 2
