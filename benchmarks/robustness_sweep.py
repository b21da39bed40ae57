"""The sweep behind the tables of docs/robustness.md: train recipes one at a time, then run both robustness suites.

    python benchmarks/robustness_sweep.py --out /work/results-robust RECIPE:SEED ...   # train + evaluate
    python benchmarks/robustness_sweep.py --out /work/results-robust --table            # markdown summary

Each recipe's flags apply to --preset plain unless they name a preset. Each run trains in its own process into OUT/RECIPE-sSEED (skipped when already complete), then writes
OUT/RECIPE-sSEED/robustness-valid.json (the run's validation digits: the numbers options are chosen on) and
robustness-test.json (MNIST test, load_digits, test-side shifts: reported, never chosen on).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

CAPTURE = ["--pen-width", "1", "--blur", "1", "--low-res", "0.5", "--gamma", "0.5", "--paper", "0.2"]
CAPTURE_MILD = ["--pen-width", "0.5", "--blur", "0.7", "--low-res", "0.25", "--gamma", "0.3", "--paper", "0.1"]
STYLES = ["--aspect", "0.3", "--fill-box", "0.15", "--restroke", "0.3", "--synthetic", "0.1"]
# The previous --preset best (30 epochs, augmentation, last 10 clean, batch norm, dropout 0.3, lr 3e-3).
BEST_OLD = ["--augment", "--clean-epochs", "10", "--batch-norm", "--dropout", "0.3", "--lr", "0.003", "--epochs", "30"]
RECIPES = {
    # 10-epoch screening (seed 0)
    "plain": [],
    "default": ["--preset", "default"],  # what `lenet-tf train` trains
    "default7": ["--preset", "default", "--epochs", "7"],  # the default one epoch shorter
    "robust": ["--preset", "robust"],
    "aug10": ["--augment"],
    "aug10-cap": ["--augment", *CAPTURE],
    "aug10-cap-bn": ["--augment", *CAPTURE, "--batch-norm", "--dropout", "0.3", "--lr", "0.003"],
    "aug10-bn": ["--augment", "--batch-norm", "--dropout", "0.3", "--lr", "0.003"],
    "aug10-cap-drop": ["--augment", *CAPTURE, "--dropout", "0.3", "--lr", "0.003"],
    "aug10-pen": ["--augment", "--pen-width", "1"],
    "aug10-blur-lowres": ["--augment", "--blur", "1", "--low-res", "0.5"],
    "aug10-gamma": ["--augment", "--gamma", "0.5"],
    "aug10-paper": ["--augment", "--paper", "0.2"],
    "bn": ["--batch-norm"],
    # style options (issue 21), 10 epochs, each on top of --augment, then all together
    "aug10-aspect": ["--augment", "--aspect", "0.3"],
    "aug10-fillbox": ["--augment", "--fill-box", "0.15"],
    "aug10-restroke": ["--augment", "--restroke", "0.3"],
    "aug10-synth": ["--augment", "--synthetic", "0.1"],
    "aug10-styles": ["--augment", *STYLES],
    "aug10-styles-nofill": ["--augment", *STYLES, "--fill-box", "0"],  # = --preset default
    # the preset re-chosen for <= 120 s: the capture recipe and the styles in 12 epochs, 3 clean (= --preset robust)
    "robust12-styles": ["--augment", "--clean-epochs", "3", "--batch-norm", "--dropout", "0.3", "--lr", "0.003",
                        "--epochs", "12", *CAPTURE_MILD, "--pen-width", "1", *STYLES],
    "robust-nofill": ["--preset", "robust", "--fill-box", "0"],
    "robust15-styles": ["--augment", "--clean-epochs", "4", "--batch-norm", "--dropout", "0.3", "--lr", "0.003",
                        "--epochs", "15", *CAPTURE_MILD, "--pen-width", "1", *STYLES],
    "aug10-styles-cap": ["--augment", *CAPTURE_MILD, "--aspect", "0.3", "--fill-box", "0.15", "--restroke", "0.5",
                         "--synthetic", "0.2"],
    # 30 epochs
    # (the previous preset best, before the capture distortions; the runs kept these explicit flags)
    "best-old": BEST_OLD,
    "best-cap": [*BEST_OLD, *CAPTURE],
    "best-cap-dirty": [*BEST_OLD, *CAPTURE, "--clean-epochs", "0"],
    "best-cap-mild": [*BEST_OLD, *CAPTURE_MILD],
    "best-cap-pen": [*BEST_OLD, *CAPTURE_MILD, "--pen-width", "1"],  # = the new --preset best
    "best-cap-pen-e40": [*BEST_OLD, *CAPTURE_MILD, "--pen-width", "1", "--epochs", "40"],  # = --preset robust
    "best-cap-pen75": [*BEST_OLD, *CAPTURE_MILD, "--pen-width", "0.75"],
    "best-cap-nobn": [*BEST_OLD, *CAPTURE, "--no-batch-norm"],
}


def run(recipe: str, seed: int, out: Path) -> Path:
    folder = out / f"{recipe}-s{seed}"
    record = folder / "run.json"
    if not (record.exists() and json.loads(record.read_text()).get("complete")):
        flags = RECIPES[recipe] if "--preset" in RECIPES[recipe] else ["--preset", "plain", *RECIPES[recipe]]
        args = [sys.executable, "-P", "-m", "lenet_tf", "train", "--no-progress", "--json", "--seed", str(seed),
                "--out", str(folder), *flags]
        with open(out / f"{recipe}-s{seed}.log", "w") as log:
            subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, check=True)
    from lenet_tf.evaluation.evaluate import evaluate_robustness

    for suite in ("valid", "test"):
        path = folder / f"robustness-{suite}.json"
        if not path.exists():
            path.write_text(json.dumps(evaluate_robustness(folder, suite=suite).to_dict(), indent=1))
    return folder


def _load(folder: Path) -> dict:
    record = json.loads((folder / "run.json").read_text())
    valid = json.loads((folder / "robustness-valid.json").read_text())
    test = json.loads((folder / "robustness-test.json").read_text())
    return {"seconds": record["seconds"], "epochs": record["train"]["epochs"],
            "valid": record["best"]["valid_accuracy"], "valid shifts": valid["mean_shift_accuracy"],
            "valid rows": {r["name"]: r["accuracy"] for r in valid["rows"]},
            "test rows": {r["name"]: r["accuracy"] for r in test["rows"]},
            "test shifts": test["mean_shift_accuracy"]}


def table(out: Path) -> str:
    """Two markdown tables, one line per recipe (seeds joined by '/', medians of the per-shift rows): the
    validation side (what options are chosen on) and the test side (reported only)."""
    runs: dict[str, list[dict]] = {}
    for folder in sorted(p for p in out.iterdir() if (p / "robustness-test.json").exists()):
        runs.setdefault(folder.name.rsplit("-s", 1)[0], []).append(_load(folder))

    def seeds(values) -> str:
        return " / ".join(f"{100 * v:.2f}" for v in values)

    def median(values) -> str:
        return f"{100 * float(np.median(values)):.1f}"

    first = next(iter(runs.values()))[0]
    valid_names = [n for n in first["valid rows"] if n not in ("mnist valid", "clean capture")]
    test_names = [n for n in first["test rows"] if n not in ("mnist test", "load_digits", "clean capture")]
    lines = ["| recipe | epochs | train s | valid | valid shifts (mean) | " + " | ".join(valid_names) + " |",
             "| --- " * (5 + len(valid_names)) + "|"]
    for name, group in runs.items():
        times = " / ".join(f"{g['seconds']:.0f}" for g in group)
        lines.append(f"| {name} | {group[0]['epochs']} | {times} "
                     f"| {seeds(g['valid'] for g in group)} | {seeds(g['valid shifts'] for g in group)} | "
                     + " | ".join(median([g["valid rows"][n] for g in group]) for n in valid_names) + " |")
    lines += ["", "| recipe | MNIST test | load_digits | test shifts (mean) | " + " | ".join(test_names) + " |",
              "| --- " * (4 + len(test_names)) + "|"]
    for name, group in runs.items():
        lines.append(f"| {name} | {seeds(g['test rows']['mnist test'] for g in group)} "
                     f"| {seeds(g['test rows']['load_digits'] for g in group)} "
                     f"| {seeds(g['test shifts'] for g in group)} | "
                     + " | ".join(median([g["test rows"][n] for g in group]) for n in test_names) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", metavar="RECIPE:SEED", help="runs to train and evaluate, in order")
    parser.add_argument("--out", type=Path, required=True, help="results folder (outside the repository)")
    parser.add_argument("--table", action="store_true", help="print the markdown summary of OUT")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for item in args.runs:
        recipe, seed = item.split(":")
        print(run(recipe, int(seed), args.out), flush=True)
    if args.table:
        print(table(args.out))


if __name__ == "__main__":
    main()
