import json
import math

import numpy as np
import pytest

from lenet_tf.training.loop import RunRecorder
from lenet_tf.core.errors import CheckpointError, ConfigError, TrainingError
from lenet_tf.training.trainer import TrainConfig, TrainGraph, train
from lenet_tf.trained import TrainedModel

FAST = dict(batch_size=32, learning_rate=3e-3, valid_size=100)


def run(tmp_path, splits, name="out", overwrite=False, **overrides):
    config = TrainConfig(**{"epochs": 3, **FAST, **overrides})
    return train(config, tmp_path / name, splits=splits, progress=False, overwrite=overwrite)


def test_tiny_run_learns_and_checkpoints_restore(tmp_path, synthetic_splits):
    result = run(tmp_path, synthetic_splits)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0] * 0.5
    assert result.valid_accuracy >= 0.9 and result.test_accuracy >= 0.9
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["complete"] and record["best"]["epoch"] == result.best_epoch
    assert sorted(p.name for p in (tmp_path / "out").glob("epoch-*")) == sorted(
        {f"epoch-{record['best']['epoch']:04d}", f"epoch-{record['last']['epoch']:04d}"})
    with TrainedModel(tmp_path / "out") as model:
        predictions = model.predict(synthetic_splits.test_images, synthetic_splits.test_labels)
    assert predictions.accuracy(synthetic_splits.test_labels) == pytest.approx(result.test_accuracy)
    assert predictions.loss == pytest.approx(result.test_loss, rel=1e-5)


def test_best_epoch_is_chosen_by_validation_accuracy(tmp_path, synthetic_splits):
    result = run(tmp_path, synthetic_splits, epochs=4)
    accuracies = [h["valid_accuracy"] for h in result.history]
    assert result.best_epoch == 1 + int(np.argmax(accuracies))
    assert result.valid_accuracy == max(accuracies)


def test_same_seed_gives_the_same_run(tmp_path, synthetic_splits):
    a = run(tmp_path, synthetic_splits, "a", epochs=2)
    b = run(tmp_path, synthetic_splits, "b", epochs=2)
    c = run(tmp_path, synthetic_splits, "c", epochs=2, seed=1)
    key = lambda r: [(h["loss"], h["valid_accuracy"]) for h in r.history]  # noqa: E731
    assert key(a) == key(b)
    assert key(a) != key(c)


@pytest.mark.parametrize("averaging", [{}, {"weight_averaging": 0.9}], ids=["plain", "weight-averaging"])
def test_resume_continues_to_the_same_result(tmp_path, synthetic_splits, monkeypatch, averaging):
    full = run(tmp_path, synthetic_splits, "full", epochs=3, augment=True, **averaging)
    record_epoch = RunRecorder.record_epoch

    def interrupt_after_epoch_2(recorder, saver, session, stats, step):
        record_epoch(recorder, saver, session, stats, step)
        if stats["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunRecorder, "record_epoch", interrupt_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, synthetic_splits, "part", epochs=3, augment=True, **averaging)
    monkeypatch.undo()
    resumed = train(TrainConfig(epochs=3, augment=True, **averaging, **FAST), tmp_path / "part",
                    splits=synthetic_splits, resume=True, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for key in ("loss", "valid_loss"):
        np.testing.assert_allclose([h[key] for h in resumed.history], [h[key] for h in full.history], rtol=1e-4)
    assert resumed.test_accuracy == pytest.approx(full.test_accuracy, abs=0.02)
    with TrainedModel(tmp_path / "full") as model:  # a fresh graph sees the weights that were tested
        predictions = model.predict(synthetic_splits.test_images, synthetic_splits.test_labels)
    assert predictions.loss == pytest.approx(full.test_loss, rel=1e-5)


def test_which_epochs_are_augmented():
    assert [TrainConfig(epochs=5, augment=True, clean_epochs=2).augments_epoch(e) for e in range(5)] == [
        True, True, True, False, False]
    assert not any(TrainConfig(epochs=3, augment=True, clean_epochs=9).augments_epoch(e) for e in range(3))
    assert not TrainConfig(epochs=3).augments_epoch(0)


def test_clean_epochs_train_on_undistorted_images(tmp_path, synthetic_splits):
    losses = lambda r: [h["loss"] for h in r.history]  # noqa: E731
    plain = run(tmp_path, synthetic_splits, "plain", epochs=2)
    all_clean = run(tmp_path, synthetic_splits, "clean", epochs=2, augment=True, clean_epochs=2)
    assert losses(all_clean) == losses(plain)  # strength 0 resamples every pixel exactly where it was
    augmented = run(tmp_path, synthetic_splits, "augmented", epochs=2, augment=True)
    last_clean = run(tmp_path, synthetic_splits, "last", epochs=2, augment=True, clean_epochs=1)
    assert losses(last_clean)[0] == losses(augmented)[0] != losses(plain)[0]
    assert losses(last_clean)[1] != losses(augmented)[1]


def test_weight_averaging_is_an_exponential_average_of_the_steps(synthetic_splits):
    decay = 0.9
    graph = TrainGraph(TrainConfig(weight_averaging=decay, **FAST), synthetic_splits)
    variables = graph.net.trainable_variables
    with graph.start() as session:
        average = session.run(variables)
        for step in range(1, 31):
            graph.step(session, np.arange(step, step + 32), 3e-3)
            weights = session.run(variables)
            rate = min(decay, (1 + step) / (10 + step))  # tf.train.ExponentialMovingAverage's warm-up
            average = [rate * a + (1 - rate) * w for a, w in zip(average, weights)]
        with graph.averaged_weights(session):
            swapped = session.run(variables)
        after = session.run(variables)
    for expected, got, raw, back in zip(average, swapped, weights, after):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(back, raw)
    assert max(np.abs(e - w).max() for e, w in zip(average, weights)) > 1e-3  # the average is not the weights


def test_resume_refuses_another_architecture(tmp_path, synthetic_splits):
    run(tmp_path, synthetic_splits, epochs=1)
    with pytest.raises(ConfigError, match=r"model batch_norm True \(stored False\)"):
        train(TrainConfig(epochs=2, model={"batch_norm": True}, **FAST), tmp_path / "out",
              splits=synthetic_splits, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        train(TrainConfig(**FAST), tmp_path / "missing", splits=synthetic_splits, resume=True, progress=False)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, synthetic_splits):
    good = run(tmp_path, synthetic_splits, epochs=1)
    before = (tmp_path / "out" / "run.json").read_text()
    with pytest.raises(TrainingError, match="loss became (nan|inf)"):
        run(tmp_path, synthetic_splits, epochs=1, learning_rate=1e12, overwrite=True)  # replaced only once it works
    assert (tmp_path / "out" / "run.json").read_text() == before
    assert [p.name for p in (tmp_path / "out" / "logs").iterdir()] == [json.loads(before)["logs"].split("/")[-1]]
    with TrainedModel(tmp_path / "out") as model:
        accuracy = model.predict(synthetic_splits.test_images).accuracy(synthetic_splits.test_labels)
    assert accuracy == pytest.approx(good.test_accuracy)
    with pytest.raises(TrainingError, match="loss became (nan|inf)"):  # a new folder's failed first run
        run(tmp_path, synthetic_splits, name="new", epochs=1, learning_rate=1e12)
    assert not (tmp_path / "new").exists()  # neither its TensorBoard folder nor the folder it made is left


def test_batch_norm_dropout_and_augmentation_train(tmp_path, synthetic_splits):
    result = run(tmp_path, synthetic_splits, epochs=3, augment=True, schedule="cosine",
                 model={"batch_norm": True, "dropout": 0.3, "bn_momentum": 0.9})
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.test_accuracy >= 0.8
    with TrainedModel(tmp_path / "out") as model:
        assert model.predict(synthetic_splits.test_images).accuracy(
            synthetic_splits.test_labels) == pytest.approx(result.test_accuracy)


@pytest.mark.parametrize("overrides, message", [
    ({"epochs": 0}, "epochs must be ≥ 1"),
    ({"batch_size": -1}, "batch size must be ≥ 1, got -1"),
    ({"learning_rate": 0.0}, "learning rate must be a finite number > 0"),
    ({"learning_rate": math.nan}, "learning rate must be a finite number > 0"),
    ({"schedule": "step"}, "schedule must be one of"),
    ({"clean_epochs": -1}, "clean epochs must be ≥ 0"),
    ({"weight_averaging": 1.0}, r"weight averaging must be a finite number in \[0, 1\)"),
    ({"label_smoothing": -0.1}, r"label smoothing must be a finite number in \[0, 1\)"),
    ({"model": {"dropout": 2}}, r"model: dropout must be a finite number in \[0, 1\), got 2"),
    ({"model": {"layers": 3}}, "model: unknown LeNet5 arguments layers"),
])
def test_bad_configuration_fails_before_any_work(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train(TrainConfig(**overrides), tmp_path / "never", splits=None, progress=False)
    assert not (tmp_path / "never").exists()


def test_learning_rate_schedules():
    assert TrainConfig(schedule="constant", learning_rate=1e-3).learning_rate_at(5) == 1e-3
    assert TrainConfig(schedule="exponential", learning_rate=1e-3, lr_decay=0.5).learning_rate_at(2) == 2.5e-4
    cosine = TrainConfig(schedule="cosine", learning_rate=1e-3, epochs=4)
    assert [round(cosine.learning_rate_at(e) / 1e-3, 4) for e in range(4)] == [1.0, 0.8536, 0.5, 0.1464]


def test_read_only_output_folder_is_a_clear_error(tmpfs, synthetic_splits):
    read_only = tmpfs(read_only=True)
    with pytest.raises(CheckpointError, match=r"out: output folder is not writable \(Read-only file system\)$"):
        run(read_only, synthetic_splits, name="out")
    with pytest.raises(CheckpointError, match=r"^/?\S+: output folder is not writable \(Read-only file system\)$"):
        run(read_only.parent, synthetic_splits, name=read_only.name)


def test_output_folder_under_a_file_is_a_clear_error(tmp_path, synthetic_splits):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(CheckpointError, match=r"file/out: output folder is not writable \(Not a directory\)$"):
        run(tmp_path, synthetic_splits, name="file/out")
    with pytest.raises(CheckpointError, match=r"file: is a file, expected an output folder$"):
        run(tmp_path, synthetic_splits, name="file")
