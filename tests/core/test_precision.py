"""--precision: the choice per machine, what the bf16 rewrite converts, and fp32/bf16 checkpoints interchanging."""

import collections
import json
import subprocess
import sys

import numpy as np
import pytest

from lenet_tf.core import precision
from lenet_tf.core.tf import session_config, tf, tf1
from lenet_tf.core.errors import ConfigError
from lenet_tf.core.precision import choose, cpu_features, cpu_flags
from lenet_tf.training.trainer import TrainConfig, TrainGraph, train
from lenet_tf.trained import TrainedModel

AVX2 = frozenset({"avx2", "fma"})
AVX512 = AVX2 | {"avx512f"}
AVX512_BF16 = AVX512 | {"avx512_bf16"}
AMX = AVX512_BF16 | {"amx_bf16", "amx_tile"}
needs_avx512 = pytest.mark.skipif(not cpu_features()["avx512f"], reason="oneDNN bf16 needs an AVX-512 CPU")


@pytest.mark.parametrize("flags, gpu, onednn, used", [
    (AMX, False, True, "bf16"),
    (AVX512_BF16, False, True, "bf16"),
    (AVX512, False, True, "fp32"),   # bf16 emulated with AVX-512 alone
    (AVX2, False, True, "fp32"),     # emulated: ~6x slower than fp32 there
    (AMX, True, True, "fp32"),       # graphs on a GPU: TensorFlow's bf16 rewrite is CPU-only
    (AMX, False, False, "fp32"),     # oneDNN off: no bf16 kernels
])
def test_auto_picks_bf16_only_with_native_support(flags, gpu, onednn, used):
    chosen = choose("auto", gpu=gpu, flags=flags, onednn=onednn)
    assert chosen.used == used and chosen.requested == "auto"
    assert chosen.features == {"avx2": True, "avx512f": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags,
                                "amx_bf16": "amx_bf16" in flags}


def test_explicit_choices_and_errors(monkeypatch):
    assert choose("fp32", gpu=False, flags=AMX).used == "fp32"
    emulated = choose("bf16", gpu=False, flags=AVX2, onednn=True)
    assert emulated.used == "bf16" and "emulated" in emulated.reason
    with pytest.raises(ConfigError, match="graphs run on a GPU"):
        choose("bf16", gpu=True, flags=AMX)
    with pytest.raises(ConfigError, match="precision must be one of auto, fp32, bf16, got 'fp16'"):
        choose("fp16", gpu=False)
    monkeypatch.setenv(precision.PRECISION_ENV, "fp32")
    assert choose(gpu=False, flags=AMX).used == "fp32"  # the environment stands in for the flag
    line = choose(gpu=False, flags=AVX512_BF16).describe()
    assert line == "precision fp32 (asked fp32: as asked); CPU features: avx2 avx512f avx512_bf16 -amx_bf16"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512f amx_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(str(cpuinfo)) == {"fpu", "avx2", "avx512f", "amx_bf16"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


def _dtypes_by_op(session, fetches, feed) -> tuple[collections.Counter, collections.Counter]:
    """Ops of the graph as the session ran it, split into bfloat16 and other ones."""
    metadata = tf1.RunMetadata()
    session.run(fetches, feed, options=tf1.RunOptions(output_partition_graphs=True), run_metadata=metadata)
    bf16, other = collections.Counter(), collections.Counter()
    for graph in metadata.partition_graphs:
        for node in graph.node:
            if "T" in node.attr:
                (bf16 if node.attr["T"].type == tf.bfloat16.as_datatype_enum else other)[node.op] += 1
    return bf16, other


@needs_avx512
@pytest.mark.parametrize("model", [{}, {"batch_norm": True}], ids=["plain", "batch-norm"])
def test_bf16_converts_the_heavy_ops_and_keeps_loss_statistics_and_adam_in_fp32(synthetic_splits, model):
    graph = TrainGraph(TrainConfig(precision="bf16", towers=1, model=model), synthetic_splits)
    with graph.start() as session:
        feed = {graph.indices: np.arange(64, dtype=np.int32)[None], graph.learning_rate: 1e-3}  # one step
        bf16, other = _dtypes_by_op(session, graph._step_fetches, feed)
        inference_bf16, inference_other = _dtypes_by_op(
            session, graph.inference.probabilities, {graph.inference.images: synthetic_splits.test_images})
    assert all(any(kind in op for op in bf16) for kind in ("Conv2D", "Conv2DBackpropFilter", "MatMul"))
    assert not any("Adam" in op or "SoftmaxCrossEntropy" in op for op in bf16)
    assert other["ResourceApplyAdam"] > 0 and other["SparseSoftmaxCrossEntropyWithLogits"] > 0
    assert not any("Softmax" in op for op in inference_bf16) and any("Softmax" in op for op in inference_other)
    assert any("Conv2D" in op for op in inference_bf16)
    if model:  # batch-norm means and variances in fp32
        assert "Mean" not in bf16 and "SquaredDifference" not in bf16 and other["Mean"] > 0


def test_fp32_session_has_no_bf16_rewrite():
    config = session_config(2)
    assert not config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16
    assert session_config(2, "bf16").graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16
    with pytest.raises(ValueError, match="fp32 or bf16"):
        session_config(1, "auto")


@pytest.mark.parametrize("trained_in, evaluated_in", [("bf16", "fp32"), ("fp32", "bf16")])
def test_checkpoints_interchange_between_precisions(tmp_path, synthetic_splits, trained_in, evaluated_in):
    config = TrainConfig(epochs=1, batch_size=32, learning_rate=3e-3, valid_size=100, precision=trained_in)
    result = train(config, tmp_path / "m", splits=synthetic_splits, progress=False)
    run = json.loads((tmp_path / "m" / "run.json").read_text())
    assert run["precision"]["used"] == trained_in and set(run["precision"]["cpu_features"]) == set(
        precision.FEATURES)
    reader = tf1.train.load_checkpoint(str(tmp_path / "m" / run["best"]["dir"] / "ckpt"))
    assert set(reader.get_variable_to_dtype_map().values()) <= {tf.float32, tf.int64}  # Adam state included
    with TrainedModel(tmp_path / "m", precision=evaluated_in) as model:
        assert model.precision.used == evaluated_in
        predictions = model.predict(synthetic_splits.test_images, synthetic_splits.test_labels)
    assert predictions.accuracy(synthetic_splits.test_labels) == pytest.approx(result.test_accuracy, abs=0.01)
    assert predictions.loss == pytest.approx(result.test_loss, rel=0.05, abs=0.01)


def test_real_mnist_accuracy_is_the_same_in_fp32_and_bf16(real_model_dir, real_mnist):
    out, _ = real_model_dir
    results = {}
    for name in ("fp32", "bf16"):
        with TrainedModel(out, precision=name) as model:
            results[name] = model.predict(real_mnist.test_images, real_mnist.test_labels.astype(np.int32))
    labels = real_mnist.test_labels
    assert abs(results["fp32"].accuracy(labels) - results["bf16"].accuracy(labels)) <= 0.0005  # 0.05 points
    assert results["bf16"].loss == pytest.approx(results["fp32"].loss, rel=0.02)
    assert np.mean(results["fp32"].classes != results["bf16"].classes) <= 0.001


def test_cli_prints_the_precision_once_and_records_it_with_the_timing(tmp_path, synthetic_dir):
    out = tmp_path / "m"
    done = subprocess.run(
        [sys.executable, "-m", "lenet_tf", "train", "--data-dir", str(synthetic_dir), "--skip-checksum",
         "--valid-size", "100", "--batch-size", "32", "--epochs", "1", "--no-progress", "--out", str(out),
         "--precision", "fp32", "--verbose", "--preset", "plain"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("lenet-tf: precision")]
    assert len(lines) == 1 and lines[0].startswith("lenet-tf: precision fp32 (asked fp32")
    run = json.loads((out / "run.json").read_text())
    assert run["precision"]["used"] == "fp32"
    phases = {"tf_import", "data", "graph", "session", "first_step", "epochs", "validation", "checkpoints", "test"}
    assert phases <= set(run["timing"]) and all(run["timing"][name] >= 0 for name in phases)
    assert sum(v for k, v in run["timing"].items() if k != "total") == pytest.approx(run["timing"]["total"], abs=0.05)
    assert "timing: startup" in done.stderr and f"(total {run['timing']['total']:.1f} s)" in done.stderr
