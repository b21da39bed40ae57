""""I can't read this": the head's graph form, the threshold, the stored file, and a calibrated model's answers."""

import io
import json
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from images import letter_image
from PIL import Image

from lenet_tf.core.errors import CheckpointError
from lenet_tf.rejection.calibration import calibrate
from lenet_tf.core.options import MAX_FLAGGED
from lenet_tf.data.pendigits import FILE as PENDIGITS_FILE, pendigits_dir
from lenet_tf.inference import Predictions
from lenet_tf.rejection import FEATURES, STATS_FILE, RejectionStats, choose_threshold, fit_head, novelty_tensor
from lenet_tf import rejection
from lenet_tf.runs import lock
from lenet_tf.trained import TrainedModel
from lenet_tf.serving.predict import rejection_reason
from graph_run import run


REAL_PENDIGITS = pendigits_dir() / PENDIGITS_FILE


def clusters(count=300, seed=0, centre=0.0):
    return np.random.default_rng(seed).normal(centre, 1.0, (count, 6))


def test_the_head_scores_non_digits_high_and_the_graph_agrees_with_numpy():
    head = fit_head(clusters(), clusters(seed=1, centre=3.0), "epoch-0001")
    assert head.scores(clusters(seed=2)).max() < head.scores(clusters(seed=3, centre=3.0)).min()
    features = clusters(20, seed=4).astype(np.float32)
    np.testing.assert_allclose(run(lambda f: novelty_tensor(f, head), features), head.scores(features),
                               rtol=1e-4, atol=1e-4)


def test_the_head_is_the_mean_of_its_seeded_perceptrons(monkeypatch):
    digits, non_digits, features = clusters(), clusters(seed=1, centre=1.0), clusters(50, seed=5, centre=0.5)
    head = fit_head(digits, non_digits, "epoch-0001", seed=4)
    assert head.hidden_weights.shape == (6, rejection.BAGGED * rejection.HIDDEN)
    np.testing.assert_array_equal(fit_head(digits, non_digits, "epoch-0001", seed=4).hidden_weights,
                                  head.hidden_weights)  # seeded
    monkeypatch.setattr(rejection, "BAGGED", 1)
    alone = [fit_head(digits, non_digits, "epoch-0001", seed=4 + k).scores(features) for k in range(3)]
    assert np.ptp(alone, axis=0).max() > 0.1  # the perceptrons differ, so the mean is not any one of them
    np.testing.assert_allclose(head.scores(features), np.mean(alone, axis=0), rtol=1e-4, atol=1e-4)


def test_the_threshold_flags_at_most_the_share_of_every_real_set():
    real = {"a": np.arange(1000.0), "b": np.arange(200.0) * 10}
    threshold = choose_threshold(real, 0.01)
    assert all((scores > threshold).mean() <= 0.01 for scores in real.values())
    assert threshold == pytest.approx(1980.0)  # the stricter set decides


def test_the_head_round_trips_and_a_damaged_file_is_refused(tmp_path):
    head = fit_head(clusters(), clusters(seed=1, centre=3.0), "epoch-0003")
    head.__class__(**{**head.__dict__, "threshold": 2.5}).save(tmp_path)
    loaded = RejectionStats.load(tmp_path)
    np.testing.assert_array_equal(loaded.weights, head.weights)
    assert (loaded.threshold, loaded.epoch_folder) == (2.5, "epoch-0003")
    assert RejectionStats.load(tmp_path / "nothing") is None
    (tmp_path / STATS_FILE).write_bytes(b"not an npz")
    with pytest.raises(CheckpointError, match="unreadable rejection statistics"):
        RejectionStats.load(tmp_path)


def test_predictions_mark_what_is_over_the_threshold():
    probabilities = np.full((3, 10), 0.1, np.float32)
    assert not Predictions(probabilities).rejected.any()
    marked = Predictions(probabilities, novelty=np.array([1.0, 50.0, 9.0], np.float32), threshold=10.0)
    assert marked.rejected.tolist() == [False, True, False]
    assert rejection_reason(50.0, 10.0) == "not a digit (novelty 50.00 > 10.00)"
    assert rejection_reason(9.0, 10.0) is None and rejection_reason(None, None) is None


def test_calibrate_flags_non_digits_and_at_most_its_share_of_each_real_set(calibration):
    folder, report = calibration
    pendigits = {"pendigits canvas"} if REAL_PENDIGITS.is_file() else set()
    assert set(report.real_flagged) == {"mnist valid", "load_digits"} | pendigits
    assert all(share <= MAX_FLAGGED for share in report.real_flagged.values())
    assert report.non_digits_flagged > 0.6  # most of the held-out seed's letters, scribbles and textures
    assert set(report.non_digits_by_kind) == {"blank", "letter", "scribble", "texture"}
    stored = RejectionStats.load(folder)
    assert stored.threshold == report.threshold and report.checkpoint.split("/")[-2] == stored.epoch_folder


def test_a_letter_is_not_a_digit_in_predict_json(tmp_path, calibrated_model_dir, real_mnist):
    letter = letter_image("A")
    letter.save(tmp_path / "a.png")
    Image.fromarray(255 - real_mnist.test_images[0]).resize((112, 112)).save(tmp_path / "digit.png")
    done = subprocess.run([sys.executable, "-m", "lenet_tf", "predict", "--json", "--checkpoint",
                           str(calibrated_model_dir), str(tmp_path / "a.png"), str(tmp_path / "digit.png")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answers = {a["file"].rsplit("/", 1)[-1]: a for a in json.loads(done.stdout)}
    assert answers["a.png"]["digit"] is None and answers["a.png"]["reason"].startswith("not a digit")
    assert len(answers["a.png"]["probabilities"]) == 10  # still given
    assert answers["digit.png"]["digit"] == int(real_mnist.test_labels[0]) and answers["digit.png"]["reason"] is None


def test_a_head_is_used_only_by_the_run_and_epoch_it_was_fitted_on(tmp_path, calibrated_model_dir):
    """A run that reuses the epoch folder's name (``train --overwrite``) does not inherit the old run's head."""
    with TrainedModel(calibrated_model_dir) as model:
        assert model.rejection is not None and model.rejection.run_id == model.run["id"]
    other = shutil.copytree(calibrated_model_dir, tmp_path / "model")
    replace(RejectionStats.load(other), run_id="another run").save(other)
    with TrainedModel(other) as model:
        assert model.rejection is None


def test_a_head_fitted_on_other_features_is_not_used_and_says_how_to_fit_it_again(tmp_path, calibrated_model_dir,
                                                                                   capsys):
    """A head of an older lenet_tf (604 features, none recorded) would not fit the graph: it is left out, with a
    warning naming the command that fits it again, and the model still answers."""
    other = shutil.copytree(calibrated_model_dir, tmp_path / "model")
    head = RejectionStats.load(other)
    assert head.current and head.features == FEATURES and head.mean.shape == (898,)
    np.savez(other / STATS_FILE, mean=head.mean[:604], scale=head.scale[:604], hidden_weights=head.hidden_weights[:604],
             hidden_bias=head.hidden_bias, weights=head.weights, bias=np.float64(head.bias),
             threshold=np.float64(head.threshold), epoch_folder=np.str_(head.epoch_folder))  # as lenet_tf wrote it
    old = RejectionStats.load(other)
    assert old.features == "" and not old.current
    with TrainedModel(other) as model:
        assert model.rejection is None
        assert model.predict(np.zeros((2, 28, 28), np.uint8)).novelty is None
    assert "lenet-tf calibrate --checkpoint" in capsys.readouterr().err


def test_calibrate_refuses_a_folder_being_trained_and_writes_nothing(tmp_path, calibrated_model_dir):
    folder = shutil.copytree(calibrated_model_dir, tmp_path / "model")
    before = (folder / STATS_FILE).read_bytes()
    with lock.writing(folder, what="training folder", create=False):  # as a training holds it
        with pytest.raises(CheckpointError, match="training folder"):
            calibrate(folder)
    assert (folder / STATS_FILE).read_bytes() == before
    first = tmp_path / "first"  # a training whose first epoch is not recorded yet
    with lock.writing(first, what="training folder"):
        with pytest.raises(CheckpointError, match="being trained by .*no epoch is finished yet"):
            calibrate(first)
    assert not first.exists()


def test_a_complete_run_is_calibrated_on_resume_and_an_overwrite_drops_the_old_head(tmp_path, synthetic_splits):
    """``--resume --calibrate`` of a complete run that has no head fits one (calibrating comes after training, so
    it may change on resume); ``--overwrite`` deletes the replaced run's head once the new run records its epoch."""
    from conftest import deterministic
    from lenet_tf.training.trainer import TrainConfig, train

    config = TrainConfig(epochs=1, batch_size=32, valid_size=100, **deterministic())
    out = tmp_path / "run"
    first = train(config, out, splits=synthetic_splits, progress=False)
    assert first.calibration is None and not (out / STATS_FILE).exists()
    resumed = train(config.with_overrides(calibrate=True), out, splits=synthetic_splits, resume=True, progress=False)
    head, run = RejectionStats.load(out), json.loads((out / "run.json").read_text())
    assert resumed.calibration["threshold"] == head.threshold and head.run_id == run["id"]
    replace(head, features="").save(out)  # a head of an older lenet_tf: resuming fits it again
    train(config.with_overrides(calibrate=True), out, splits=synthetic_splits, resume=True, progress=False)
    assert RejectionStats.load(out).current
    train(config.with_overrides(seed=1), out, splits=synthetic_splits, overwrite=True, progress=False)
    assert not (out / STATS_FILE).exists()


def with_fields(good: bytes, **fields) -> bytes:
    """The bytes of a rejection.npz: ``good``'s arrays with ``fields`` in their place."""
    with np.load(io.BytesIO(good), allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    buffer = io.BytesIO()
    np.savez(buffer, **{**arrays, **fields})
    return buffer.getvalue()


DAMAGES = {  # name -> (damage of the calibrated run's file, what the error line says)
    "truncated": (lambda good: good[:len(good) // 2], "not an .npz file"),
    "garbage": (lambda good: b"\x80\x04garbage that numpy would try to unpickle", "not an .npz file"),
    "flipped bytes": (lambda good: good[:len(good) // 2] + bytes([good[len(good) // 2] ^ 0xFF])
                      + good[len(good) // 2 + 1:], "Bad CRC-32"),
    "bias of shape (3,)": (lambda good: with_fields(good, bias=np.zeros(3)), "bias is float64 of shape (3,)"),
    "NaN threshold": (lambda good: with_fields(good, threshold=np.float64("nan")), "threshold is not finite"),
    "infinite scale": (lambda good: with_fields(good, scale=np.full(898, np.inf, np.float32)),
                       "scale is not finite"),
    "text weights": (lambda good: with_fields(good, weights=np.array(["1"] * 64)), "weights is <U1"),
    "no epoch folder": (lambda good: with_fields(good, epoch_folder=np.float64(3)), "epoch_folder is float64"),
    "short hidden bias": (lambda good: with_fields(good, hidden_bias=np.zeros(3, np.float32)), "inconsistent shapes"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_head_is_one_line_that_says_how_to_fit_it_again(tmp_path, calibrated_model_dir, damage):
    damaged, reason = DAMAGES[damage]
    (tmp_path / STATS_FILE).write_bytes(damaged((calibrated_model_dir / STATS_FILE).read_bytes()))
    with pytest.raises(CheckpointError) as refused:
        RejectionStats.load(tmp_path)
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / STATS_FILE}: unreadable rejection statistics (") and reason in message
    assert message.endswith(f"move it aside, then run `lenet-tf calibrate --checkpoint {tmp_path}` to fit it again")
    assert "\n" not in message


def test_predict_on_a_run_with_a_damaged_head_is_one_line_and_keeps_the_file(tmp_path, calibrated_model_dir,
                                                                               real_mnist):
    run = shutil.copytree(calibrated_model_dir, tmp_path / "model")
    damaged = (run / STATS_FILE).read_bytes()[:1000]
    (run / STATS_FILE).write_bytes(damaged)
    Image.fromarray(255 - real_mnist.test_images[0]).save(tmp_path / "digit.png")
    done = subprocess.run([sys.executable, "-m", "lenet_tf", "predict", "--checkpoint", str(run),
                           str(tmp_path / "digit.png")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"lenet-tf: error: {run / STATS_FILE}: unreadable rejection statistics (not an .npz file); move it "
        f"aside, then run `lenet-tf calibrate --checkpoint {run}` to fit it again")
    assert (run / STATS_FILE).read_bytes() == damaged  # never replaced: calibrate cannot tell it is its own

@pytest.mark.parametrize("kind", ["file", "link"])
def test_saving_a_head_never_replaces_what_is_not_one(tmp_path, kind):
    """A file of the user's named rejection.npz, or a link in its place, stays as it is: one line, no debris."""
    head = fit_head(clusters(), clusters(seed=1, centre=3.0), "epoch-0001")
    elsewhere = tmp_path / "mine.npz"
    elsewhere.write_bytes(b"the user's own data")
    if kind == "file":
        (tmp_path / STATS_FILE).write_bytes(elsewhere.read_bytes())
    else:
        (tmp_path / STATS_FILE).symlink_to(elsewhere)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(CheckpointError, match="not a head written by lenet-tf"):
        head.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / STATS_FILE).read_bytes() == b"the user's own data"
    assert (tmp_path / STATS_FILE).is_symlink() == (kind == "link")
    (tmp_path / STATS_FILE).unlink()
    head.save(tmp_path)  # absent: written; a head: replaced
    head.save(tmp_path)
    assert RejectionStats.load(tmp_path).epoch_folder == "epoch-0001"
