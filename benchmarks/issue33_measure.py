"""The measurements of docs/history/accuracy-2026-12-05.md: one trained run's validation side, rejection and test.

    python benchmarks/issue33_measure.py RUN [--clean-inputs] [--out FILE.json]

Writes (and prints) the validation-side suite (rows, shift and condition means), the calibration of "I can't read
this" (``lenet-tf calibrate``: rejection.npz is written beside the run) and MNIST test accuracy, reported only.
``--clean-inputs`` evaluates the run's checkpoint with :func:`lenet_tf.data.cleanup.clean_inputs` switched on at
prediction (a copy of the run folder whose run.json says so).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


def with_clean_inputs(folder: Path) -> Path:
    """A copy of ``folder`` beside it whose run.json turns ``clean_inputs`` on."""
    copy = folder.with_name(folder.name + "-clean")
    if copy.exists():
        shutil.rmtree(copy)
    copy.mkdir()
    for item in folder.iterdir():
        if item.name == "run.json":
            run = json.loads(item.read_text())
            run["model"]["clean_inputs"] = True
            (copy / "run.json").write_text(json.dumps(run))
        elif item.is_dir():
            shutil.copytree(item, copy / item.name)
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--clean-inputs", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    from lenet_tf.rejection.calibration import calibrate
    from lenet_tf.evaluation.evaluate import evaluate, evaluate_robustness

    folder = Path(args.run)
    if args.clean_inputs:
        folder = with_clean_inputs(folder)
    started = time.time()
    valid = evaluate_robustness(folder, suite="valid")
    calibration = calibrate(folder)
    test = evaluate(folder)
    record = {"run": str(folder), "train_seconds": json.loads((Path(args.run) / "run.json").read_text()).get(
        "train_seconds"), "valid": valid.to_dict(), "calibration": calibration.to_dict(),
        "mnist_test": test.accuracy, "seconds": time.time() - started}
    print(valid.format())
    print(calibration.format())
    print(f"MNIST test (reported only): {test.accuracy:.2%}")
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
