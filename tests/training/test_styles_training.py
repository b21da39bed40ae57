"""Training with the style options: they run in the graph, off in the clean epochs, and flags reach them."""

import pytest

from lenet_tf.core.errors import ConfigError
from lenet_tf.training import batches
from lenet_tf.training.trainer import TrainConfig, train

STYLES = dict(augment=True, aspect=0.3, fill_box=0.3, restroke=0.5, synthetic=0.2)


def run(tmp_path, splits, name, **overrides):
    config = TrainConfig(**{"epochs": 2, "batch_size": 32, "learning_rate": 3e-3, "valid_size": 100, **overrides})
    return train(config, tmp_path / name, splits=splits, progress=False)


def test_style_options_train_and_are_off_in_clean_epochs(tmp_path, synthetic_splits, monkeypatch):
    monkeypatch.setattr(batches, "SYNTHETIC_POOL", 100)  # a small pool: the test needs the ops, not the variety
    losses = lambda r: [h["loss"] for h in r.history]  # noqa: E731
    plain = run(tmp_path, synthetic_splits, "plain")
    styled = run(tmp_path, synthetic_splits, "styled", **{**STYLES, "augment": False})
    assert losses(styled)[0] != losses(plain)[0] and styled.valid_accuracy >= 0.8
    clean = run(tmp_path, synthetic_splits, "clean", **STYLES, clean_epochs=2)
    assert losses(clean) == losses(plain)  # strength 0: every option leaves the batch as it is


def test_style_epochs_and_ranges():
    assert [TrainConfig(epochs=3, synthetic=0.1, clean_epochs=1).augments_epoch(e) for e in range(3)] == [
        True, True, False]
    for name in ("aspect", "fill_box", "restroke", "synthetic"):
        with pytest.raises(ConfigError, match=name.replace("_", " ")):
            TrainConfig(**{name: 1.5}).validate()


def test_flags_set_the_style_fields():
    from lenet_tf.cli.commands import build_parser
    from lenet_tf.cli.train import config_from_args

    args = build_parser().parse_args(["train", "--aspect", "0.2", "--fill-box", "0.1", "--restroke", "0.3",
                                      "--synthetic", "0.15"])
    config = config_from_args(args)
    assert (config.aspect, config.fill_box, config.restroke, config.synthetic) == (0.2, 0.1, 0.3, 0.15)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--synthetic", "2"])


def test_the_command_line_default_has_the_style_options_and_a_cluster_refuses_only_what_it_lacks(tmp_path):
    from lenet_tf.training.cluster import parse_role, train_worker
    from lenet_tf.training.presets import with_preset

    default = TrainConfig(**with_preset(None))
    assert default.augment and default.styles and TrainConfig(**with_preset("plain")) == TrainConfig()
    assert default.cluster_refusals() == []  # a cluster trains the default preset, style options included
    averaged = TrainConfig(weight_averaging=0.99)
    assert averaged.cluster_refusals() == [
        "--weight-averaging is not available in cluster mode: the synchronous optimizer applies updates in the "
        "chief's queue runner, where no averaging step can follow them"]
    role = parse_role('{"ps": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}', "worker", 0)
    with pytest.raises(ConfigError, match="--weight-averaging is not available in cluster mode"):
        train_worker(averaged, role, tmp_path / "never")
    assert not (tmp_path / "never").exists()
