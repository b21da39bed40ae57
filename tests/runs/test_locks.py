"""One training folder, several processes (issue 22, items 1-5): one writer at a time, readers that always see a
consistent run, only regular files followed, one TensorBoard folder per run. Real processes, bounded waits."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lenet_tf.core.errors import CheckpointError
from lenet_tf.runs import checkpoint, lock
from lenet_tf.serving.tflite import export_tflite
from lenet_tf.trained import TrainedModel
from lenet_tf.training.trainer import TrainConfig, resume_config, train

FAST = dict(batch_size=32, learning_rate=3e-3, valid_size=100)
# The plain recipe: these tests are about the folder, not the training.
SMALL = ["--preset", "plain", "--skip-checksum", "--valid-size", "100", "--batch-size", "32", "--no-progress"]


def lenet_tf(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "lenet_tf", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


def within(seconds: float, function, *args, **kwargs):
    """Calls ``function`` in a thread and fails the test if it has not returned after ``seconds`` (a FIFO opened
    for reading would block for ever); returns its result or raises its exception."""
    outcome = {}

    def call():
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as err:  # noqa: BLE001 - handed to the test
            outcome["error"] = err

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{function.__name__} blocked for more than {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def epochs_recorded(out: Path) -> int:
    try:
        return len(json.loads((out / "run.json").read_text())["history"])
    except (OSError, ValueError):
        return 0


def test_one_writer_at_a_time_readers_see_whole_epochs_and_a_killed_writers_lock_is_free(
        tmp_path, synthetic_dir, synthetic_splits):
    out = tmp_path / "t4"
    writer = subprocess.Popen([sys.executable, "-m", "lenet_tf", "train", "--data-dir", synthetic_dir, "--epochs",
                               "300", "--out", out, *SMALL], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: epochs_recorded(out) >= 1 or writer.poll() is not None, 120, "the first epoch")
        assert writer.poll() is None, writer.communicate()[1]

        # 3. Readers beside the writer: every TrainedModel gets the epoch run.json names, while epochs go by and
        # their folders are deleted (without the record lock, some restores find their folder gone).
        seen, began = set(), time.monotonic()
        while len(seen) < 6 and time.monotonic() - began < 60:
            with TrainedModel(out, which="last") as model:
                seen.add(model.epoch)
                assert model.checkpoint.endswith(f"epoch-{model.epoch:04d}/ckpt")
        assert len(seen) >= 6, f"the run advanced too slowly to test the readers: epochs {sorted(seen)}"

        # 1, 2. Every other writer is refused at once, naming the holder; nothing of the run is touched.
        holder = f"pid {writer.pid} (`lenet-tf train --data-dir {synthetic_dir}"
        config = TrainConfig(epochs=1, **FAST)
        for attempt in (dict(), dict(overwrite=True), dict(resume=True)):
            began = time.monotonic()
            with pytest.raises(CheckpointError, match="training folder in use by " + holder.replace("(", r"\(")):
                train(resume_config(out) if attempt.get("resume") else config, out, splits=synthetic_splits,
                      progress=False, **attempt)
            assert time.monotonic() - began < 2
        refused = lenet_tf("train", "--data-dir", synthetic_dir, "--epochs", 1, "--overwrite", "--out", out, *SMALL)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        line = refused.stderr.strip().splitlines()[-1]
        assert line.startswith(f"lenet-tf: error: {out}: training folder in use by {holder}") and " since " in line
        assert writer.poll() is None  # the first run goes on
        with lock.reading(out):  # (without the lock, run.json may name a folder being deleted)
            record = checkpoint.read_run(out)
            assert all((out / record[which]["dir"] / "ckpt.index").is_file() for which in ("best", "last"))
    finally:
        writer.kill()
        writer.wait(timeout=30)

    # A lock whose holder died is free: the killed run is resumed at once, from its last recorded epoch.
    done = epochs_recorded(out)
    result = train(resume_config(out, epochs=done + 1), out, splits=synthetic_splits, resume=True, progress=False)
    assert [h["epoch"] for h in result.history] == list(range(1, done + 2))
    assert sorted(p.name for p in out.glob("epoch-*")) == sorted(checkpoint.read_run(out)["checkpoints"])


def test_two_fresh_runs_started_together_leave_one_run_and_no_orphan(tmp_path, synthetic_dir):
    out = tmp_path / "c"
    command = [sys.executable, "-m", "lenet_tf", "train", "--data-dir", str(synthetic_dir), "--epochs", "2", "--out",
               str(out), *SMALL]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(run.wait(timeout=180), run.communicate()[1].strip().splitlines()[-1]) for run in runs]
    assert sorted(status for status, _ in results) == [0, 1], results
    (_, refusal), = [result for result in results if result[0] == 1]
    assert "training folder in use by pid" in refusal or "holds a lenet_tf run (2 epochs, finished)" in refusal
    record = checkpoint.read_run(out)
    assert sorted(p.name for p in out.glob("epoch-*")) == sorted(record["checkpoints"])  # nothing unlisted
    assert [p.name for p in (out / "logs").iterdir()] == [Path(record["logs"]).name]


def test_a_reader_of_a_folder_with_no_finished_epoch_is_told_it_is_being_trained(tmp_path):
    out = tmp_path / "fresh"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom lenet_tf.runs import lock\n"
                               f"with lock.writing({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CheckpointError, match=f"being trained by pid {holder.pid} .*no epoch is finished yet"):
            TrainedModel(out)
    finally:
        holder.kill()
        holder.wait(timeout=30)


# ----------------------------------------------------------------------- 4. only regular files are followed


@pytest.fixture(scope="module")
def finished(tmp_path_factory, synthetic_splits):
    out = tmp_path_factory.mktemp("finished") / "run"
    train(TrainConfig(epochs=1, **FAST), out, splits=synthetic_splits, progress=False)
    return out


def test_a_symlinked_run_record_is_refused_and_nothing_of_the_users_is_deleted(tmp_path, finished,
                                                                                synthetic_splits):
    out = tmp_path / "mine"
    (out / "epoch-0001").mkdir(parents=True)
    (out / "epoch-0001" / "mine.txt").write_text("my notes")
    (out / "run.json").symlink_to(finished / "run.json")  # another run's record, naming epoch-0001
    with pytest.raises(CheckpointError, match="run.json: is a symbolic link, not a regular file; it is left alone"):
        train(TrainConfig(epochs=1, **FAST), out, splits=synthetic_splits, overwrite=True, progress=False)
    assert (out / "epoch-0001" / "mine.txt").read_text() == "my notes"
    with pytest.raises(CheckpointError, match="is a symbolic link"):
        TrainedModel(out)


def test_a_symlinked_epoch_folder_is_not_followed(tmp_path, finished):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished, out)
    best = checkpoint.read_run(out)["best"]["dir"]
    (out / best).rename(tmp_path / "elsewhere")
    (out / best).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CheckpointError, match=f"{best}: is a symbolic link, not a checkpoint folder"):
        TrainedModel(out)


def test_fifos_where_our_files_go_are_refused_without_blocking(tmp_path, finished, synthetic_splits):
    out = tmp_path / "fifo-run"
    out.mkdir()
    os.mkfifo(out / "run.json")
    for call in (lambda: train(TrainConfig(epochs=1, **FAST), out, splits=synthetic_splits, overwrite=True,
                               progress=False),
                 lambda: TrainedModel(out)):
        with pytest.raises(CheckpointError, match="run.json: is a FIFO, not a regular file; it is left alone"):
            within(20, call)
    target = tmp_path / "model.tflite"
    os.mkfifo(target)
    with pytest.raises(CheckpointError, match="model.tflite: is a FIFO, not a regular file"):
        within(20, export_tflite, finished, target, overwrite=True)
    assert (out / "run.json").is_fifo() and target.is_fifo()


def test_a_logdir_that_is_a_file_or_a_link_is_one_line(tmp_path, synthetic_dir, cli):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    (tmp_path / "link").symlink_to(tmp_path)
    for logdir, message in ((blocker, "is a file, expected a TensorBoard folder"),
                            (tmp_path / "link", "is a symbolic link, not a TensorBoard folder")):
        result = cli("train", "--data-dir", synthetic_dir, "--epochs", 1, "--out", tmp_path / "out", "--logdir",
                     logdir, *SMALL)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip().splitlines()[-1] == f"lenet-tf: error: {logdir}: {message}" + (
            "; it is left alone" if "link" in message else "")
    assert blocker.read_text() == "mine"


# ---------------------------------------------------------------------------- 5. one TensorBoard folder per run


def test_an_overwritten_runs_event_files_go_and_never_mix_with_the_new_ones(tmp_path, synthetic_splits):
    out = tmp_path / "run"
    train(TrainConfig(epochs=1, **FAST), out, splits=synthetic_splits, progress=False)
    first = out / checkpoint.read_run(out)["logs"]
    (out / "logs" / "my-notes.txt").write_text("mine")
    assert first.parent == out / "logs" and list(first.glob("events.out.tfevents.*"))
    train(TrainConfig(epochs=1, seed=1, **FAST), out, splits=synthetic_splits, overwrite=True, progress=False)
    second = out / checkpoint.read_run(out)["logs"]
    assert second != first and not first.exists() and list(second.glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (out / "logs").iterdir()) == sorted([second.name, "my-notes.txt"])
    train(resume_config(out, epochs=2), out, splits=synthetic_splits, resume=True, progress=False)
    assert out / checkpoint.read_run(out)["logs"] == second  # a resumed run goes on in its own folder


def test_the_lock_files_refuse_links_and_exports_lock_their_target(tmp_path, finished):
    out = tmp_path / "linked"
    out.mkdir()
    (out / lock.WRITER_LOCK).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CheckpointError, match="is a symbolic link, not a regular file; it is left alone"):
        with lock.writing(out):
            pass
    target = tmp_path / "export" / "m.tflite"
    with lock.writing_target(target):  # another export of the same target is refused meanwhile
        holder = subprocess.run([sys.executable, "-m", "lenet_tf", "export", "--checkpoint", finished, "--format",
                                 "tflite", "--out", target], capture_output=True, text=True, timeout=120)
    assert holder.returncode == 1
    assert f"export target in use by pid {os.getpid()}" in holder.stderr.strip().splitlines()[-1]
    assert not target.exists()
