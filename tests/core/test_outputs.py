"""Atomic writes of a command's output files."""

import pytest

from lenet_tf.core.errors import OutputError
from lenet_tf.core.outputs import write_atomic


def test_a_failing_writer_leaves_the_file_and_no_temporary_behind(tmp_path):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"before")

    def refuse(tmp):
        tmp.write_bytes(b"half")
        raise ValueError("a last-moment check said no")

    with pytest.raises(ValueError, match="last-moment"):
        write_atomic(target, refuse)
    assert target.read_bytes() == b"before" and sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]
    with pytest.raises(OutputError, match=r"missing/x\.json: cannot write \(No such file or directory\); the previous"):
        write_atomic(tmp_path / "missing" / "x.json", lambda tmp: tmp.write_text("{}"))
    write_atomic(target, lambda tmp: tmp.write_bytes(b"after"))
    assert target.read_bytes() == b"after" and sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]
