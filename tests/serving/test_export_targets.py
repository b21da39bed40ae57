"""`lenet-tf export`'s SavedModel folder: `--overwrite` replaces an export of ours and nothing else; an existing
empty folder keeps its mode, owner and group."""

import os
import stat

import pytest


def export(cli, checkpoint, out, *flags):
    return cli("export", "--checkpoint", checkpoint, "--out", out, *flags)


@pytest.mark.parametrize("added", ["assets.extra/tf_serving_warmup_requests", "variables/README"])
def test_overwrite_refuses_an_export_holding_a_file_of_the_users(tmp_path, synthetic_model_dir, cli, added):
    target = tmp_path / "E"
    assert export(cli, synthetic_model_dir, target).returncode == 0
    (target / added).write_text("mine\n")
    refused = export(cli, synthetic_model_dir, target, "--overwrite")
    assert refused.returncode == 1 and refused.stderr == (
        f"lenet-tf: error: {target}: not a lenet_tf export as written ({added}: not written by the export), so it "
        "is left alone; choose another --out\n")
    assert (target / added).read_text() == "mine\n"
    (target / added).unlink()
    replaced = export(cli, synthetic_model_dir, target, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr


def test_overwrite_refuses_an_export_whose_file_was_changed(tmp_path, synthetic_model_dir, cli):
    target = tmp_path / "E"
    assert export(cli, synthetic_model_dir, target).returncode == 0
    weights = next((target / "variables").glob("variables.data-*"))
    weights.write_bytes(b"my fine-tuned weights")
    refused = export(cli, synthetic_model_dir, target, "--overwrite")
    assert refused.returncode == 1
    assert f"(variables/{weights.name}: changed since the export)" in refused.stderr
    assert weights.read_bytes() == b"my fine-tuned weights"


def test_an_existing_empty_folder_keeps_its_mode_owner_and_group(tmp_path, synthetic_model_dir, cli):
    target = tmp_path / "shared"
    target.mkdir()
    others = [gid for gid in os.getgroups() if gid != os.getegid()]
    gid = others[0] if others else (4242 if os.geteuid() == 0 else os.getegid())  # root may give any group
    uid = 4243 if os.geteuid() == 0 else os.geteuid()
    os.chown(target, uid, gid)
    os.chmod(target, 0o2775)
    done = export(cli, synthetic_model_dir, target)
    assert done.returncode == 0, done.stderr
    info = os.stat(target)
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o2775, uid, gid)
    assert os.stat(target / "saved_model.pb").st_gid == gid  # as a file made in a setgid folder
    assert os.stat(target / "variables").st_mode & stat.S_ISGID
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared"]
