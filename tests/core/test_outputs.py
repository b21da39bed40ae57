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
    with pytest.raises(OutputError, match=r"missing/x\.json: cannot write \(No such file or directory\)$"):
        write_atomic(tmp_path / "missing" / "x.json", lambda tmp: tmp.write_text("{}"))
    write_atomic(target, lambda tmp: tmp.write_bytes(b"after"))
    assert target.read_bytes() == b"after" and sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]


def test_a_full_disk_mentions_the_previous_file_only_when_there_was_one(tmpfs):
    disk = tmpfs("64k")
    (disk / "old.tflite").write_bytes(b"before")
    too_big = b"x" * 200_000
    with pytest.raises(OutputError, match=r"old\.tflite: cannot write \(No space left on device\); the previous file "
                                          r"is untouched$"):
        write_atomic(disk / "old.tflite", lambda tmp: tmp.write_bytes(too_big))
    with pytest.raises(OutputError, match=r"new\.tflite: cannot write \(No space left on device\)$"):
        write_atomic(disk / "new.tflite", lambda tmp: tmp.write_bytes(too_big))
    assert sorted(p.name for p in disk.iterdir()) == ["old.tflite"] and (disk / "old.tflite").read_bytes() == b"before"


def folder_with(path, text):
    path.mkdir()
    (path / "saved_model.pb").write_text(text)
    return path


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
@pytest.mark.parametrize("fail_at", [1, 2])
def test_replacing_a_folder_leaves_the_old_or_the_new_one_whatever_rename_fails(tmp_path, monkeypatch, exchange,
                                                                                 fail_at):
    import errno
    import os

    from lenet_tf.core import outputs

    target, staged = folder_with(tmp_path / "export", "old"), folder_with(tmp_path / ".staged", "new")
    if not exchange:
        monkeypatch.setattr(outputs, "_renameat2", lambda *args: False)
    real, calls = os.rename, []

    def rename(*args):
        calls.append(args)
        if len(calls) == fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args)

    monkeypatch.setattr(os, "rename", rename)
    try:
        outputs.publish(staged, target, replace=True)
    except OSError:
        pass
    assert (target / "saved_model.pb").read_text() in ("old", "new")


def test_a_signal_between_the_two_renames_takes_effect_after_the_new_folder_is_in_place(tmp_path, monkeypatch):
    import os
    import signal

    from lenet_tf.core import outputs

    target, staged = folder_with(tmp_path / "export", "old"), folder_with(tmp_path / ".staged", "new")
    monkeypatch.setattr(outputs, "_renameat2", lambda *args: False)
    real = os.rename

    def rename(*args):
        real(*args)
        os.kill(os.getpid(), signal.SIGTERM)  # arrives right after the old folder was moved aside

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    monkeypatch.setattr(os, "rename", rename)
    try:
        with pytest.raises(KeyboardInterrupt):
            outputs.publish(staged, target, replace=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert (target / "saved_model.pb").read_text() == "new"
