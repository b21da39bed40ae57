"""The robustness benchmark: deterministic shifts that change digits the intended way, suites, the CLI."""

import json

import numpy as np
import pytest
from PIL import Image

from lenet_tf.evaluation.evaluate import evaluate, evaluate_robustness
from lenet_tf.evaluation.robustness import (TEST_SUITE, VALID_SUITE, Shift, Suite, apply_shift, capture, encode,
                                 read_file_bytes, render, run_suite)
from lenet_tf.trained import TrainedModel
from conftest import REAL_MNIST
from synthetic import make_digits


@pytest.fixture(scope="module")
def mnist_digits(real_mnist):
    return real_mnist.test_images[:12]


def ink(paper: Image.Image) -> float:
    return float((255 - np.asarray(paper, np.float32)).sum())


@pytest.mark.parametrize("shift", [s for s in TEST_SUITE.shifts + VALID_SUITE.shifts])
def test_every_shift_is_deterministic_for_a_seed(shift, mnist_digits):
    first, accepted = capture(mnist_digits, shift, scale=3, seed=11)
    again, _ = capture(mnist_digits, shift, scale=3, seed=11)
    np.testing.assert_array_equal(first, again)
    assert accepted.all() and first.dtype == np.uint8 and first.shape == (12, 28, 28)


def test_random_shifts_change_with_the_seed(mnist_digits):
    for shift in (Shift("r", "rotate", 10), Shift("p", "paper", 25)):
        assert not np.array_equal(capture(mnist_digits, shift, 3, 1)[0], capture(mnist_digits, shift, 3, 2)[0])


def test_shifts_change_the_image_in_the_intended_direction(mnist_digits):
    rng = np.random.default_rng(0)
    for digit in mnist_digits[:4]:
        paper = render(digit, 4)
        thin = [ink(apply_shift(paper, Shift("t", "thin", s), 4, rng)) for s in (0.5, 1.0)]
        thick = [ink(apply_shift(paper, Shift("t", "thick", s), 4, rng)) for s in (0.5, 1.0)]
        assert thin[1] < thin[0] < ink(paper) < thick[0] < thick[1]
        sharp = np.abs(np.diff(np.asarray(paper, np.float32), axis=1)).max()
        for kind, strength in (("blur", 1.0), ("low_res", 2.8)):
            soft = np.asarray(apply_shift(paper, Shift("s", kind, strength), 4, rng), np.float32)
            assert np.abs(np.diff(soft, axis=1)).max() < 0.6 * sharp  # edges are softer
        noisy = np.asarray(apply_shift(paper, Shift("p", "paper", 25), 4, rng), np.float32)
        assert noisy[:8].mean() < 225 and noisy[:8].std() > 10  # grey, noisy paper around the digit
        stretched = np.asarray(apply_shift(paper, Shift("s", "stretch", 16), 4, rng))
        assert stretched.shape == (16, 16) and set(np.unique(stretched)) <= {0, 255}
        assert (stretched[:, 0] == 0).any() and (stretched[:, -1] == 0).any()  # the ink fills the box's width
        rotated = apply_shift(paper, Shift("r", "rotate", 10), 4, rng)
        assert ink(rotated) == pytest.approx(ink(paper), rel=0.05) and rotated.tobytes() != paper.tobytes()
    assert encode(paper, Shift("j", "jpeg", 15))[:2] == b"\xff\xd8"
    assert encode(paper, Shift("c", "clean"))[:4] == b"\x89PNG"


def test_a_clean_capture_reads_back_like_the_mnist_digit(mnist_digits):
    for digit in mnist_digits:
        back = read_file_bytes(encode(render(digit, 4), Shift("c", "clean"))).astype(np.float32)
        original = digit.astype(np.float32)
        assert np.corrcoef(back.ravel(), original.ravel())[0, 1] > 0.8


@pytest.fixture(scope="module")
def synthetic_model(synthetic_model_dir):
    return synthetic_model_dir


def test_suite_on_a_tiny_model_gives_accuracies_per_row(synthetic_model):
    images, labels = make_digits(30, seed=5)
    suite = Suite("tiny", TEST_SUITE.shifts, scale=2, seed=3, count=20, load_digits=False)
    with TrainedModel(synthetic_model) as model:
        report = run_suite(model, suite, images, labels)
        for row in report.rows:  # each row is the model's accuracy on that row's captured digits
            prepared, truth, _, accepted = report.examples[row.name]
            assert row.accuracy == np.mean((model.predict(prepared).classes == truth) & accepted), row.name
    assert [r.name for r in report.rows] == ["mnist test"] + [s.name for s in suite.shifts]
    assert report.rows[0].count == 30 and all(r.count == 20 for r in report.rows[1:])
    assert report.mean_shift_accuracy == pytest.approx(np.mean([r.accuracy for r in report.rows[2:]]))
    assert report.rows[0].accuracy > 0.9  # the synthetic digits as stored are easy


def test_cli_robustness_json_and_figures(tmp_path, synthetic_model, synthetic_dir, cli):
    result = cli("evaluate", "--robustness", "--json", "--report", tmp_path / "fig", "--checkpoint", synthetic_model,
                 "--data-dir", synthetic_dir, "--skip-checksum")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"checkpoint", "epoch", "suite", "rows", "mean_shift_accuracy", "mean_condition_accuracy"}
    assert report["mean_condition_accuracy"] is None  # the capture conditions are validation-side only
    names = [r["name"] for r in report["rows"]]
    assert names == ["mnist test", "load_digits"] + [s.name for s in TEST_SUITE.shifts]
    for row in report["rows"]:
        assert set(row) == {"name", "kind", "strength", "count", "accuracy", "rejected"}
        right = round(row["accuracy"] * row["count"])  # a share of the row's digits, rejected ones counted wrong
        assert row["accuracy"] == right / row["count"] and right + row["rejected"] <= row["count"], row
    assert report["rows"][0]["accuracy"] == evaluate(synthetic_model, synthetic_dir, verify_checksums=False).accuracy
    assert report["rows"][1]["count"] == 1797
    for name in ("robustness_examples.png", "robustness_errors.png"):
        with Image.open(tmp_path / "fig" / name) as image:
            assert image.format == "PNG" and image.width > 400


def test_real_model_has_every_row_and_the_evaluate_accuracy(real_model_dir):
    out, result = real_model_dir
    test = evaluate_robustness(out, REAL_MNIST, count=100)  # 100 digits per shift: a fast check
    assert [r.name for r in test.rows] == ["mnist test", "load_digits"] + [s.name for s in TEST_SUITE.shifts]
    assert test.row("mnist test").accuracy == pytest.approx(evaluate(out, REAL_MNIST).accuracy)
    assert test.row("load_digits").accuracy > 0.6 and test.mean_shift_accuracy > 0.8
    assert all(r.count == 100 for r in test.shift_rows)
    valid = evaluate_robustness(out, REAL_MNIST, suite="valid", count=100)
    assert [r.name for r in valid.rows] == (["mnist valid", "load_digits", "pendigits canvas", "pendigits filled box"]
                                            + [s.name for s in VALID_SUITE.shifts]
                                            + [c.name for c in VALID_SUITE.conditions])
    assert [r.count for r in valid.condition_rows] == [100] * len(VALID_SUITE.conditions)
    assert 0.1 < valid.mean_condition_accuracy < 1 and valid.condition_rows[0] not in valid.shift_rows
    assert valid.row("pendigits canvas").count == 100 and valid.row("pendigits canvas").accuracy > 0.5
    assert valid.row("mnist valid").accuracy == pytest.approx(result.valid_accuracy)


def test_presets_validate_and_the_robust_one_trains_on_capture_distortions():
    from lenet_tf.training.presets import PRESETS, preset_config

    for name in PRESETS:
        preset_config(name).validate()
    robust = preset_config("robust")
    assert robust.augment and robust.pen_width > 0 and robust.blur > 0 and robust.low_res > 0
    assert preset_config("robust", pen_width=0.5).pen_width == 0.5  # flags override the preset
