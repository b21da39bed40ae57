"""A command line that feels native: no TensorFlow chatter on stderr, and no TensorFlow import just to parse flags."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from lenet_tf.benchmark import flags as benchmark_flags
from lenet_tf.core import options
from lenet_tf.training import presets
from lenet_tf.core.quiet import DEBUG_ENV, quiet_stderr

HEAVY = ("tensorflow", "sklearn", "matplotlib", "keras", "PIL", "fastapi")
# What `lenet-tf` may print on stderr: its own lines and tqdm progress bars ("epoch 1/1:  50%|█████     | 8/16 …").
OWN_LINE = re.compile(r"^(lenet-tf: |.*\d+%\|)")


def user_env(**extra):
    """The environment of a user who set nothing (without what importing lenet_tf here set)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", DEBUG_ENV)}
    return {**env, **extra}


def command(*args) -> list[str]:
    return [sys.executable, "-m", "lenet_tf", *map(str, args)]


def lenet_tf(*args, **kwargs):
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=180, env=user_env(), **kwargs)


def foreign_lines(stderr: str) -> list[str]:
    pieces = (piece.strip() for piece in re.split(r"[\r\n]", stderr))
    return [piece for piece in pieces if piece and not OWN_LINE.match(piece)]


PARSES = [
    ["train"], ["train", "--preset", "best", "--activation", "elu", "--schedule", "exponential"],
    ["evaluate", "--which", "last"], ["predict", "a.png"], ["export"], ["serve", "--port", "9"],
    ["benchmark", "--only", "lenet_tf"],
    ["--help"], ["train", "--help"], ["evaluate", "--help"], ["predict", "--help"], ["export", "--help"],
    ["serve", "--help"], ["benchmark", "--help"],
    ["train", "--epochs", "0"], ["frobnicate"], ["benchmark", "--only", "nobody"],
]
_CHECK_IMPORTS = """
import json, sys
from lenet_tf.cli.commands import build_parser
parser = build_parser()
for argv in json.loads(sys.argv[1]):
    try:
        parser.parse_args(argv)
    except SystemExit:
        pass
    print(json.dumps([argv, sorted(name for name in {heavy} if name in sys.modules)]))
"""


def test_parsing_any_command_imports_no_heavy_module():
    done = subprocess.run([sys.executable, "-c", _CHECK_IMPORTS.format(heavy=HEAVY), json.dumps(PARSES)],
                          capture_output=True, text=True, timeout=60, env=user_env())
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("[[")]
    assert [argv for argv, _ in results] == PARSES
    assert {tuple(argv): loaded for argv, loaded in results if loaded} == {}


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["benchmark", "--help"], ["export", "--help"]])
def test_help_exits_0_with_usage_and_nothing_else(args):
    done = lenet_tf(*args)
    assert done.returncode == 0 and done.stdout.startswith("usage: lenet-tf") and done.stderr == ""


def test_flag_error_is_usage_and_one_line():
    done = lenet_tf("train", "--epochs", "0")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("usage: lenet-tf train") and done.stderr.splitlines()[-1] == (
        "lenet-tf train: error: argument --epochs: must be ≥ 1, got 0")


def together(*commands) -> list[subprocess.CompletedProcess]:
    """Runs independent ``lenet-tf`` commands side by side (fresh processes, as :func:`lenet_tf`); their results."""
    started = [subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=user_env()) for args in commands]
    try:
        outputs = [p.communicate(timeout=180) for p in started]
        return [subprocess.CompletedProcess(p.args, p.returncode, *output) for p, output in zip(started, outputs)]
    finally:
        for p in started:
            p.kill()
            p.wait()


def test_real_commands_print_only_their_own_lines(tmp_path, synthetic_dir):
    out = tmp_path / "model"
    data = ["--data-dir", synthetic_dir, "--skip-checksum"]
    # The plain recipe, calibrated: the calibration's libraries must print nothing of their own either.
    trained = lenet_tf("train", *data, "--epochs", 1, "--valid-size", 100, "--batch-size", 32, "--out", out,
                       "--preset", "plain", "--calibrate")
    assert trained.returncode == 0, trained.stderr
    assert "epoch 1/1" in trained.stderr and foreign_lines(trained.stderr) == []
    image = tmp_path / "one.png"
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 12:16] = 255
    Image.fromarray(digit).save(image)
    quiet, evaluated, predicted, exported, failed = together(
        ("train", *data, "--epochs", 1, "--valid-size", 100, "--no-progress", "--preset", "plain",
         "--out", tmp_path / "m2"),
        ("evaluate", "--checkpoint", out, *data),
        ("predict", image, "--checkpoint", out),
        ("export", "--checkpoint", out, "--out", tmp_path / "export"),
        ("evaluate", "--checkpoint", tmp_path / "nothing", *data))
    precision_line = r"lenet-tf: precision (fp32|bf16) \(asked \w+: [^)]*\); CPU features: [-\w ]+\n"
    assert quiet.returncode == 0 and re.fullmatch(precision_line, quiet.stderr), quiet.stderr
    assert evaluated.returncode == 0 and "accuracy" in evaluated.stdout
    assert re.fullmatch(precision_line, evaluated.stderr), evaluated.stderr
    assert predicted.returncode == 0 and predicted.stdout.startswith(str(image)) and predicted.stderr == ""
    assert exported.returncode == 0 and exported.stderr == ""
    assert failed.returncode == 1 and failed.stderr.startswith("lenet-tf: error: ")
    assert len(failed.stderr.splitlines()) == 1


def test_python_m_lenet_tf_train_still_parses_train_flags():
    done = subprocess.run([sys.executable, "-m", "lenet_tf.train", "--epochs", "0"], capture_output=True, text=True,
                          timeout=120, env=user_env())
    assert done.returncode == 2 and "--epochs: must be ≥ 1" in done.stderr
    assert foreign_lines(done.stderr.split("usage:")[0]) == []


def test_quiet_stderr_hides_file_descriptor_writes(capfd, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with quiet_stderr():
        os.write(2, b"I0000 cudart_stub.cc:31] Could not find cuda drivers\n")
    print("ours", file=sys.stderr)
    assert capfd.readouterr().err == "ours\n"


def test_quiet_stderr_replays_when_the_block_fails(capfd, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with pytest.raises(ImportError):
        with quiet_stderr():
            os.write(2, b"the reason it failed\n")
            raise ImportError("no tensorflow")
    assert capfd.readouterr().err == "the reason it failed\n"
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C during TensorFlow's import: its start-up lines stay hidden
        with quiet_stderr():
            os.write(2, b"I0000 oneDNN custom operations are on\n")
            raise KeyboardInterrupt
    assert capfd.readouterr().err == ""


def test_quiet_stderr_hides_nothing_when_debugging(capfd, monkeypatch):
    monkeypatch.setenv(DEBUG_ENV, "1")
    with quiet_stderr():
        os.write(2, b"shown\n")
    assert capfd.readouterr().err == "shown\n"


def test_an_expected_thread_failure_prints_nothing_and_another_still_prints_its_traceback():
    script = """
import threading
from lenet_tf.core.quiet import ExpectedThreadFailures

def fail(error):
    def run():
        raise error
    thread = threading.Thread(target=run, name="Worker-1")
    thread.start()
    thread.join()

before = threading.excepthook
silenced = ExpectedThreadFailures(lambda args: issubclass(args.exc_type, KeyError) and args.thread is not None
                                  and args.thread.name == "Worker-1")
fail(KeyError("expected"))
fail(ValueError("a real failure"))
silenced.close()
assert threading.excepthook is before
fail(KeyError("after close"))

silenced = ExpectedThreadFailures(lambda args: True)
later = threading.excepthook = lambda args: None  # someone else's hook, installed after: close leaves it
silenced.close()
assert threading.excepthook is later
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "expected" not in done.stderr
    assert "ValueError: a real failure" in done.stderr and "KeyError: 'after close'" in done.stderr


def test_the_tensorflow_free_names_match_the_implementations():
    from lenet_tf import model
    from lenet_tf.benchmark import throughput as benchmark

    assert list(model.ACTIVATIONS) == list(options.ACTIVATIONS)
    assert list(benchmark.CONTENDERS) == list(benchmark_flags.CONTENDERS)
    assert presets.preset_config("best", epochs=2).epochs == 2
