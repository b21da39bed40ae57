"""What the README tells a user to run works as written: its Python example, and the installed console script."""

import json
import re
import shutil
import subprocess
from pathlib import Path

from conftest import REAL_MNIST, console_script

from lenet_tf.rejection import RejectionStats
from lenet_tf.training.presets import PRESETS

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_python_block(section: str) -> str:
    """The first fenced ``python`` block under the README heading ``section`` (read from the file, so the test
    runs exactly what users read)."""
    text = README.read_text(encoding="utf-8")
    heading = text.index(f"\n## {section}\n")
    block = re.search(r"```python\n(.*?)```", text[heading:], re.S)
    assert block, f"no python block under '## {section}' in README.md"
    return block.group(1)


def test_the_readme_reuse_example_runs_against_a_trained_folder(tmp_path, synthetic_model_dir, monkeypatch):
    code = readme_python_block("Reusing `LeNet5` in your own graph")
    shutil.copytree(synthetic_model_dir, tmp_path / "SavedModel")  # the example reads the default folder
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(code, "README.md (Reusing LeNet5)", "exec"), scope)
    assert scope["logits"].shape.as_list() == [None, 10] and scope["features"].shape.as_list() == [None, 84]
    assert scope["my_logits"].shape.as_list() == [None, 3]
    assert {v.op.name.split("/")[0] for v in scope["net"].variables} == {"lenet5"}


def test_the_console_script_answers_help():
    """(It runs a real command in tests/test_restore.py: evaluating an epoch folder in a fresh process.)"""
    helped = subprocess.run([console_script(), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: lenet-tf") and helped.stderr == ""


def test_the_readme_training_example_trains_on_mnist(tmp_path, real_mnist, monkeypatch):
    """Run as written, on the shipped MNIST, from a folder of the user's: the run folder it names is complete and
    its record holds the configuration asked for and the timing of the call."""
    code = readme_python_block("Training from Python")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LENET_TF_DATA_DIR", str(REAL_MNIST))
    scope = {}
    exec(compile(code, "README.md (Training from Python)", "exec"), scope)
    result, run = scope["result"], json.loads((tmp_path / "my_run" / "run.json").read_text())
    assert run["complete"] and run["train"]["epochs"] == 2 and run["train"]["seed"] == 1
    assert run["train"]["restroke"] == PRESETS["default"]["restroke"]
    assert result.test_accuracy == run["test"]["accuracy"] > 0.95
    assert 0 < run["timing"]["total"] < 600 and run["timing"]["startup"] < 0.5
    # The preset calibrates "I can't read this" on the best epoch of this very run.
    head = RejectionStats.load(tmp_path / "my_run")
    assert head.epoch_folder == f"epoch-{result.best_epoch:04d}" and head.run_id == run["id"]
    assert result.calibration["threshold"] == head.threshold and result.calibration["non_digits_flagged"] > 0.6
