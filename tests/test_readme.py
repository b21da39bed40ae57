"""What the README tells a user to run works as written: its Python example, and the installed console script."""

import re
import shutil
import subprocess
from pathlib import Path

from conftest import console_script

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
