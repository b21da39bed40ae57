"""`lenet-tf export`'s SavedModel folder: `--overwrite` replaces an export of ours and nothing else."""

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

