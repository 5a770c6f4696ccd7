"""Benchmark: how much splitting by image flatters the figures of a study with repeated mice.

One synthetic study (mice with fixed looks, half in pain, many images each, experts whose
levels lean one way per mouse) trained and evaluated twice with the real chain (mgs-train ->
mgs-eval): k folds of images (`--split cv`) and k folds of whole mice (`--split mouse-cv`, the
default when labels name mice). The first puts images of every mouse in training and test;
the second tests on mice never seen. Prints the held-out figures side by side and writes
bench/results/leakage.json.

    .venv/bin/python bench/leakage.py [--mice 24] [--per-mouse 30] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from figures import publish

import synth
from monitor.units import UNITS
from train.evaluate import cli as eval_cli
from train.train import cli as train_cli


def protocol(labels: Path, split: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train and evaluate one split; the figures a lab would read off the report."""
    run = args.workdir / split
    assert train_cli(["--labels", str(labels), "--arch", "tiny", "--input-size", "64",
                      "--weights", "none", "--epochs", str(args.epochs), "--lr", "0.02",
                      "--split", split, "--folds", str(args.folds), "--no-final-fit",
                      "--output-dir", str(run)]) == 0
    assert eval_cli(["--run", str(run), "--pain-conditions", "pain", "--gradcam", "0",
                     "--bootstrap", "200"]) == 0
    report = json.loads((run / "report" / "report.json").read_text())
    model = report["discrimination"]["model"]
    by_mouse = report["by_mouse"]
    return {
        "unit_accuracy": {u: round(report["unit_metrics"][u]["accuracy"]["value"], 3)
                          for u in UNITS},
        "mean_unit_accuracy": round(float(np.mean(
            [report["unit_metrics"][u]["accuracy"]["value"] for u in UNITS])), 3),
        "pearson_r": round(report["agreement"]["model"]["r"], 3),
        "auroc": round(model["auroc"]["value"], 3),
        "auroc_ci_by_mouse": [round(by_mouse["auroc"]["ci_low"], 3),
                              round(by_mouse["auroc"]["ci_high"], 3)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mice", type=int, default=24)
    parser.add_argument("--per-mouse", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.mkdtemp()))
    args = parser.parse_args()
    started = time.perf_counter()
    labels = synth.write_study_dataset(args.workdir / "study", args.mice, args.per_mouse,
                                       np.random.default_rng(0))
    results: dict[str, Any] = {"mice": args.mice, "images_per_mouse": args.per_mouse,
                               "folds": args.folds, "epochs": args.epochs}
    for split in ("cv", "mouse-cv"):
        results[split] = protocol(labels, split, args)
    results["seconds"] = round(time.perf_counter() - started)
    print(f"{'held-out figure':28} {'by image (cv)':>14} {'by mouse (mouse-cv)':>20}")
    for key in ("mean_unit_accuracy", "pearson_r", "auroc"):
        print(f"{key:28} {results['cv'][key]:>14} {results['mouse-cv'][key]:>20}")
    publish("leakage", results, table=False)


if __name__ == "__main__":
    main()
