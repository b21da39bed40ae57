"""The command line: train, evaluate in a fresh process, errors, interruption. Commands run in this process (the
``cli`` fixture) except where a fresh process or a signal is what the test is about."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lenet_tf.data.mnist import MNIST_FILES

SMALL = ["--skip-checksum", "--valid-size", "100", "--batch-size", "32", "--lr", "0.003", "--no-progress",
         "--no-calibrate"]


def lenet_tf(*args, timeout=180, **kwargs):
    return subprocess.run([sys.executable, "-m", "lenet_tf", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def error_line(result):
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    return lines[-1]


def test_train_then_evaluate_in_a_fresh_process(tmp_path, synthetic_dir, cli):
    out = tmp_path / "model"
    trained = cli("train", "--data-dir", synthetic_dir, "--epochs", 2, "--out", out, "--json", *SMALL)
    assert trained.returncode == 0, trained.stderr
    summary = json.loads(trained.stdout)
    evaluated = lenet_tf("evaluate", "--checkpoint", out, "--data-dir", synthetic_dir, "--skip-checksum", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["accuracy"] == pytest.approx(summary["test_accuracy"])
    assert report["count"] == 200 and sum(map(sum, report["confusion"])) == 200
    assert report["epoch"] == summary["best_epoch"]
    text = cli("evaluate", "--checkpoint", out, "--data-dir", synthetic_dir, "--skip-checksum")
    assert text.returncode == 0 and f"accuracy {summary['test_accuracy']:.4%}" in text.stdout
    assert "confusion matrix" in text.stdout


@pytest.mark.parametrize("command", [("export", "--out"), ("serve", "--saved-model"), ("evaluate", "--data-dir"),
                                     ("train", "--out"), ("train", "--logdir"), ("evaluate", "--report"),
                                     ("predict", "--checkpoint"), ("benchmark", "--json"), ("predict", "images")])
def test_an_empty_path_is_refused_not_taken_for_the_default(tmp_path, monkeypatch, cli, command):
    monkeypatch.chdir(tmp_path)  # where the defaults (SavedModel/, export/) would be; `predict ''` would read it
    (tmp_path / "x.png").write_bytes(b"")
    args = [command[0], ""] if command[1] == "images" else [*command, "", *(["x.png"] * (command[0] == "predict"))]
    done = cli(*args)
    assert done.returncode == 2 and done.stderr.splitlines()[-1] == (
        f"lenet-tf {command[0]}: error: argument {command[1]}: must name a path, got ''")
    assert [path.name for path in tmp_path.iterdir()] == ["x.png"]


@pytest.mark.parametrize("robustness", [[], ["--robustness", "valid"]])
def test_evaluate_names_a_folder_that_is_no_run_before_it_looks_for_mnist(tmp_path, cli, robustness):
    (tmp_path / "not_a_run").mkdir()
    done = cli("evaluate", "--checkpoint", tmp_path / "not_a_run", "--data-dir", tmp_path / "no_mnist", *robustness)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "not_a_run" in done.stderr
    assert "no_mnist" not in done.stderr and not (tmp_path / "no_mnist").exists()


def test_an_ensemble_run_predicts_with_tta_and_notes_a_multi_frame_file(tmp_path, synthetic_dir, cli):
    from PIL import Image, ImageDraw

    out = tmp_path / "ensemble"
    trained = cli("train", "--data-dir", synthetic_dir, "--epochs", 1, "--ensemble", 2, "--out", out, *SMALL)
    assert trained.returncode == 0, trained.stderr
    assert json.loads((out / "run.json").read_text())["train"]["ensemble"] == 2
    frames = [Image.new("L", (60, 80), "white") for _ in range(2)]
    for frame, x in zip(frames, (20, 40)):
        ImageDraw.Draw(frame).line([(x, 10), (x, 70)], fill="black", width=7)
    frames[0].save(tmp_path / "animated.gif", save_all=True, append_images=frames[1:])
    predicted = cli("predict", tmp_path / "animated.gif", "--checkpoint", out, "--tta", "--json")
    assert predicted.returncode == 0, predicted.stderr
    [result] = json.loads(predicted.stdout)
    assert result["note"] == "2 frames: read the first" and 0 <= result["digit"] <= 9
    text = cli("predict", tmp_path / "animated.gif", "--checkpoint", out)
    assert text.returncode == 0 and text.stdout.rstrip().endswith("(2 frames: read the first)")


def test_flags_override_the_preset(tmp_path, synthetic_dir, cli):
    out = tmp_path / "m"
    result = cli("train", "--data-dir", synthetic_dir, "--preset", "best", "--epochs", 1, "--out", out,
                      "--elastic", 20, "--dropout", 0.1, *SMALL)
    assert result.returncode == 0, result.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["train"]["epochs"] == 1 and run["train"]["elastic_alpha"] == 20 and run["train"]["augment"]
    assert run["model"]["batch_norm"] and run["model"]["dropout"] == 0.1


def test_target_accuracy_guard(tmp_path, synthetic_dir, cli):
    result = cli("train", "--data-dir", synthetic_dir, "--epochs", 1, "--out", tmp_path / "m",  # learns nothing
                 *SMALL, "--lr", 1e-9, "--target-accuracy", 0.99)
    assert result.returncode == 1
    assert "is below the target" in error_line(result)


@pytest.mark.parametrize("args, message", [
    (["train", "--epochs", "0"], "--epochs: must be ≥ 1"),
    (["train", "--batch-size", "-5"], "--batch-size: must be ≥ 1"),
    (["train", "--lr", "0"], "--lr: must be a finite number > 0"),
    (["train", "--elastic", "-1"], "--elastic: must be a finite number in [0, 100], got -1"),
    (["train", "--weight-decay", "nan"], "--weight-decay: must be a finite number ≥ 0"),
    (["train", "--lr-decay", "2"], "--lr-decay: must be a finite number in (0, 1], got 2"),
    (["train", "--dropout", "1"], "--dropout: must be a finite number in [0, 1), got 1"),
    (["train", "--ensemble", "0"], "--ensemble: must be in [1, 64], got 0"),
    (["train", "--ensemble", "1e3"], "--ensemble: must be a whole number in [1, 64], got 1e3"),
    (["train", "--blur", "1e6"], "--blur: must be a finite number in [0, 8], got 1e6"),  # was: a kernel for ever
    (["train", "--gamma", "1e300"], "--gamma: must be a finite number in [0, 5], got 1e300"),  # was: exit 0
    (["train", "--lr", "1e39"], "--lr: must be a finite number > 0, got 1e39"),  # infinite in float32
    (["train", "--elastic-sigma", "1e300"], "--elastic-sigma: must be a finite number in (0, 16], got 1e300"),
    (["train", "--epochs", "1e3"], "--epochs: must be a whole number ≥ 1, got 1e3"),
    (["serve", "--batch-timeout-micros", "2.5"], "--batch-timeout-micros: must be a whole number in [0, 10000000], "
                                                 "got 2.5"),
    (["train", "--join-timeout", "nan"], "--join-timeout: must be a finite number in (0, 1e+06), got nan"),
    (["train", "--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_bad_arguments_exit_2_with_usage(args, message, cli):
    result = cli(*args)
    assert result.returncode == 2 and message in result.stderr


def test_data_and_checkpoint_errors_are_one_line(tmp_path, synthetic_dir, cli, monkeypatch):
    # Downloads go through a proxy that refuses at once, so the test never waits on the network.
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    missing = cli("train", "--data-dir", tmp_path / "nothing", "--out", tmp_path / "m", "--no-progress")
    assert missing.returncode == 1
    assert error_line(missing).startswith("lenet-tf: error: ") and "pass --data-dir" in error_line(missing)
    checksum = cli("train", "--data-dir", synthetic_dir, "--out", tmp_path / "m", "--no-progress")
    assert checksum.returncode == 1 and "does not match the official MNIST" in error_line(checksum)
    no_checkpoint = cli("evaluate", "--checkpoint", tmp_path / "none", "--data-dir", synthetic_dir,
                        "--skip-checksum")
    assert no_checkpoint.returncode == 1 and "no such checkpoint folder" in error_line(no_checkpoint)
    debug = cli("--debug", "evaluate", "--checkpoint", tmp_path / "none", "--data-dir", synthetic_dir,
                "--skip-checksum")
    assert debug.returncode == 1 and "Traceback" in debug.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("checksum", [[], ["--skip-checksum"]])
def test_fifos_in_the_data_folder_are_refused_not_waited_on(tmp_path, checksum):
    """What evaluate and export --quantize int8 read first, in a process of its own (a wait would be killed)."""
    for name in MNIST_FILES:
        os.mkfifo(tmp_path / name)  # opened for reading, each would wait forever for a writer
    read = (f"from lenet_tf.data.mnist import load_mnist\nfrom lenet_tf.core.errors import LeNetError\ntry:\n"
            f"    load_mnist({str(tmp_path)!r}, verify={not checksum})\nexcept LeNetError as err:\n    print(err)")
    result = subprocess.run([sys.executable, "-c", read], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout == f"{tmp_path / 'train-images-idx3-ubyte.gz'}: is a FIFO, not a regular file\n"


def digit_pictures(folder, count):
    """``count`` small PNG pictures of a bar in ``folder``."""
    from PIL import Image, ImageDraw

    folder.mkdir(exist_ok=True)
    for index in range(count):
        picture = Image.new("L", (40, 40), "white")
        ImageDraw.Draw(picture).line([(20, 6), (20 + index % 7 - 3, 34)], fill="black", width=4)
        picture.save(folder / f"{index:03d}.png")
    return folder


def test_a_reader_that_closes_the_pipe_ends_predict_quietly(tmp_path, synthetic_model_dir):
    """``lenet-tf predict … | head -1``: the reader has gone before anything is written."""
    folder = digit_pictures(tmp_path / "pictures", 30)
    process = subprocess.Popen([sys.executable, "-m", "lenet_tf", "predict", "--checkpoint", synthetic_model_dir,
                                folder], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the only reader: every write the command makes meets a closed pipe
    process.stdout = None
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 1
    assert "Traceback" not in stderr and "Broken pipe" not in stderr and "Exception ignored" not in stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this platform")
def test_output_that_cannot_be_written_is_one_line(tmp_path, synthetic_model_dir):
    picture = digit_pictures(tmp_path / "pictures", 1) / "000.png"
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "lenet_tf", "predict", "--checkpoint", synthetic_model_dir,
                                 "--json", picture], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert result.returncode == 1 and "Exception ignored" not in result.stderr
    assert error_line(result) == "lenet-tf: error: cannot write the output: No space left on device"
    # Started with its output closed (`>&-`: sys.stdout is None), a command runs as before and prints nothing.
    closed = subprocess.run([sys.executable, "-m", "lenet_tf", "predict", "--checkpoint", synthetic_model_dir,
                             picture], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
                            preexec_fn=lambda: os.close(1))
    assert closed.returncode == 0 and closed.stderr == "", closed.stderr


def test_predict_json_names_a_file_whose_name_is_not_utf8_in_valid_unicode(tmp_path, synthetic_model_dir):
    folder = digit_pictures(tmp_path / "pictures", 1)
    odd = os.fsencode(folder) + b"/\xff\xfe-x.png"
    os.rename(folder / "000.png", odd)
    missing = os.fsencode(folder) + b"/\xff-missing.png"
    result = subprocess.run([sys.executable, "-m", "lenet_tf", "predict", "--checkpoint", str(synthetic_model_dir),
                             "--json", odd, missing], capture_output=True, timeout=120)
    assert result.returncode == 1  # the missing file
    text = result.stdout.decode("utf-8")  # strict: no undecodable byte, and no lone surrogate below
    answers = json.loads(text)
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in json.dumps(answers, ensure_ascii=False))
    json.dumps(answers, ensure_ascii=False).encode("utf-8")  # strict: a lone surrogate would raise
    assert [a["file"] for a in answers] == [f"{folder}/\ufffd\ufffd-x.png", f"{folder}/\ufffd-missing.png"]
    assert 0 <= answers[0]["digit"] <= 9 and answers[0]["error"] is None
    assert answers[1]["error"] == f"{folder}/\ufffd-missing.png: file not found"
    # Plain lines name it so too, even where stdout's encoding is strict (an en_US.UTF-8 locale's is).
    plain = subprocess.run([sys.executable, "-m", "lenet_tf", "predict", "--checkpoint", str(synthetic_model_dir),
                            odd], capture_output=True, timeout=120, env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"})
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.decode("utf-8").startswith(f"{folder}/\ufffd\ufffd-x.png: ")


def test_partial_checkpoint_is_reported(tmp_path, synthetic_dir, cli):
    out = tmp_path / "m"
    assert cli("train", "--data-dir", synthetic_dir, "--epochs", 1, "--out", out, *SMALL).returncode == 0
    for data_file in out.glob("epoch-*/ckpt.data-*"):
        data_file.write_bytes(data_file.read_bytes()[:100])
    result = cli("evaluate", "--checkpoint", out, "--data-dir", synthetic_dir, "--skip-checksum")
    assert result.returncode == 1 and error_line(result).startswith("lenet-tf: error: ")
    for index in out.glob("epoch-*/ckpt.index"):
        index.unlink()
    result = cli("evaluate", "--checkpoint", out, "--data-dir", synthetic_dir, "--skip-checksum")
    assert result.returncode == 1 and "checkpoint files are missing" in error_line(result)


def test_sigterm_mid_training_keeps_the_last_epoch_and_resume_finishes(tmp_path, synthetic_dir, cli):
    out = tmp_path / "m"
    args = ["train", "--data-dir", synthetic_dir, "--out", out, "--skip-checksum", "--valid-size", "100",
            "--batch-size", "4", "--no-progress"]
    process = subprocess.Popen([sys.executable, "-m", "lenet_tf", *map(str, args), "--epochs", "200"],
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "run.json").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert (out / "run.json").exists(), "the first epoch never finished"
    time.sleep(0.5)  # now somewhere in the middle of a later epoch
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 130 and "continue with --resume" in stderr
    record = json.loads((out / "run.json").read_text())
    saved = record["last"]["epoch"]
    assert 1 <= saved < 200 and not record["complete"]
    resumed = cli(*args, "--epochs", saved + 1, "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads((out / "run.json").read_text())
    assert [h["epoch"] for h in final["history"]] == list(range(1, saved + 2))
    assert final["history"][:saved] == record["history"] and final["complete"]
    assert not list(out.glob(".tmp-*"))


def test_a_full_disk_under_the_tensorboard_log_is_one_line_and_keeps_the_epochs(tmp_path, synthetic_dir, tmpfs):
    """TensorFlow's event writer fails in a thread of its own: it printed an ERROR line and the thread's traceback,
    and its close() a traceback of the command's own."""
    logs = tmpfs("8k")
    out = tmp_path / "model"
    done = lenet_tf("train", "--data-dir", synthetic_dir, "--epochs", 2, "--out", out, "--logdir", logs, *SMALL)
    assert done.returncode == 1 and "Traceback" not in done.stderr and "ERROR" not in done.stderr, done.stderr
    assert error_line(done).startswith(f"lenet-tf: error: {logs}") and error_line(done).endswith(
        ": cannot write the TensorBoard log (No space left on device); the epochs recorded so far are untouched")
    run = json.loads((out / "run.json").read_text())
    assert run["complete"] is False and len(run["history"]) >= 1
    assert all((out / folder / "ckpt.index").is_file() for folder in run["checkpoints"])


@pytest.mark.parametrize("flag, value, message", [
    ("--target-accuracy", "nan", "must be a finite number in [0, 1], got nan"),  # was taken, and never checked
    ("--target-accuracy", "2", "must be a finite number in [0, 1], got 2"),
    ("--seed", "4294967296", "must be in [0, 4294967295], got 4294967296"),  # was scikit-learn's error, exit 1
])
def test_declared_ranges_are_refused_before_anything_runs(tmp_path, cli, flag, value, message):
    done = cli("train", flag, value, "--out", tmp_path / "run")
    assert done.returncode == 2 and done.stderr.splitlines()[-1] == f"lenet-tf train: error: argument {flag}: {message}"
    assert not (tmp_path / "run").exists()


def test_resume_with_other_flags_is_refused_before_its_plan_is_told(tmp_path, synthetic_dir, cli):
    out = tmp_path / "run"
    assert cli("train", "--data-dir", synthetic_dir, "--epochs", 1, "--out", out, *SMALL).returncode == 0
    done = cli("train", "--data-dir", synthetic_dir, "--epochs", 2, "--out", out, "--resume", "--no-augment", *SMALL)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr  # no "resuming at epoch 2" first
    assert "--resume continues the stored configuration, but augment False (stored True)" in done.stderr


def test_lenet_tf_debug_shows_the_traceback_as_debug_does(tmp_path):
    done = subprocess.run([sys.executable, "-m", "lenet_tf", "evaluate", "--checkpoint", tmp_path / "missing"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "LENET_TF_DEBUG": "1"})
    assert done.returncode == 1 and "Traceback (most recent call last)" in done.stderr
    assert done.stderr.rstrip().splitlines()[-1].startswith(f"lenet-tf: error: {tmp_path / 'missing'}: ")


def test_overwrite_deletes_an_old_checkpoint_but_not_a_users_file_inside_it(tmp_path, synthetic_dir, cli):
    """The old run's epoch folders were removed whole (shutil.rmtree), a note the user kept there with them."""
    out = tmp_path / "run"
    assert cli("train", "--data-dir", synthetic_dir, "--epochs", 1, "--out", out, *SMALL).returncode == 0
    (out / "epoch-0001" / "my-notes.txt").write_text("mine")
    done = cli("train", "--data-dir", synthetic_dir, "--epochs", 1, "--out", out, "--overwrite", *SMALL)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (out / "epoch-0001").iterdir()) == ["my-notes.txt"]
    assert f"lenet-tf: warning: {out / 'epoch-0001'}: old checkpoint deleted, the folder kept: it holds " \
           "'my-notes.txt', which lenet_tf did not write" in done.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["checkpoints"] == ["epoch-0001-2"] and (out / "epoch-0001-2" / "ckpt.index").is_file()
