"""Benchmark: did a change slow the monitor? The same replays from two copies of the source.

Runs `mgs-monitor replay` (its own process, as bench/capacity.py does) from the commit given
by --before and from this working tree, alternately and in turn-about order, over the demo
scene's 1080p videos, and compares records/s and peak RSS. The cases are the ones where the
monitor's own code weighs most: the tiny demo scorer (decoding and the pipeline are the cost)
periodic and continuous, and the paper-size int8 scorer as `auto` runs it. The model files are
this tree's; the older copy must read them (the model contract has not changed between the
two). Prints a table and writes bench/results/before_after.json.

    .venv/bin/python bench/before_after.py --before 6a8b41f [--seconds 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from capacity import int8_scorer, models_folder, replay
from figures import publish
from monitor_speed import cpu_name, paper_scorer

from demo.build import build_demo
from monitor.scoring.runtimes import installed_runtimes

ROOT = Path(__file__).resolve().parent.parent


def source_at(commit: str, folder: Path) -> Path:
    """The tracked files of `commit`, unpacked into `folder` (no worktree to clean up)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def commit_name(commit: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", commit], check=True,
                          capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the commit to compare against")
    parser.add_argument("--seconds", type=float, default=30.0, help="longest run of each case")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each case and copy")
    args = parser.parse_args()
    demo = build_demo()
    work = Path(tempfile.gettempdir()) / "mgs-bench"
    work.mkdir(exist_ok=True)
    int8_runtime = "openvino" if "openvino" in installed_runtimes() else "onnxruntime"
    scorers = {"tiny x5@64 (demo), onnxruntime": (demo.models / "scorer.onnx", "onnxruntime"),
               f"resnet18x5@224 int8, {int8_runtime}": (int8_scorer(paper_scorer(work)),
                                                       int8_runtime)}
    periodic = ["--every", "2.5", "--burst", "5"]
    cases = [(scorer, "periodic 4 cameras (16 mice)", periodic) for scorer in scorers]
    cases.append((next(iter(scorers)), "continuous 4 cameras", ["--continuous"]))
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory() as unpacked:
        trees = {"before": source_at(args.before, Path(unpacked)), "after": ROOT}
        for round_ in range(args.rounds):
            order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
            for scorer, case, sampling in cases:
                path, runtime = scorers[scorer]
                models = models_folder(path, demo.models / "localizer.onnx", work / "models")
                for name in order:
                    run = replay(demo.videos[:4], models, sampling, args.seconds,
                                 work / "before_after.csv", runtime, tree=trees[name])
                    runs.setdefault(f"{scorer} | {case}", {}).setdefault(name, []).append(run)
                    print(f"round {round_ + 1} {name:6} {scorer:34} {case:28} "
                          f"{run['records_per_s']:7.1f} records/s "
                          f"{run['peak_rss_mb']:7.1f} MB", flush=True)
    results: dict = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
                     "before": commit_name(args.before), "after": commit_name("HEAD"),
                     "after_has_uncommitted_changes": bool(subprocess.run(
                         ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                         capture_output=True, text=True).stdout.strip()),
                     "rounds": args.rounds, "cases": {}}
    for key, by_tree in runs.items():
        medians = {name: {figure: statistics.median(r[figure] for r in tree_runs)
                          for figure in ("records_per_s", "peak_rss_mb")}
                   for name, tree_runs in by_tree.items()}
        spread = {name: [r["records_per_s"] for r in tree_runs]
                  for name, tree_runs in by_tree.items()}
        ratio = medians["after"]["records_per_s"] / medians["before"]["records_per_s"]
        results["cases"][key] = {"median": medians, "records_per_s_each_run": spread,
                                 "after_over_before": round(ratio, 3)}
        print(f"{key:70} after/before {ratio:.3f}  "
              f"RSS {medians['before']['peak_rss_mb']:.0f} -> "
              f"{medians['after']['peak_rss_mb']:.0f} MB")
    publish("before_after", results, table=False)


if __name__ == "__main__":
    main()
