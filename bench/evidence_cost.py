"""Benchmark: what keeping evidence (face crops, frames) costs the monitor, on and off in one run.

Latency: capture -> CSV through the real Analyzer and sinks, as in monitor_speed.py, for one
4-mouse 1080p frame and for four cameras due together, with the evidence writer on and off.
Capacity: the real command (`mgs-monitor replay`, its own process) over the demo's 1080p videos,
as capacity.py runs it, with and without `--no-evidence`. Cases alternate on/off so a drift of
the machine's speed touches both alike.

    .venv/bin/python bench/evidence_cost.py [--seconds 40] [--repeats 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import cv2
import numpy as np
from capacity import int8_scorer, models_folder, replay
from figures import publish
from monitor_speed import cpu_name, frame_latency_ms, paper_scorer

import synth
from demo.build import build_demo
from monitor.scoring.runtimes import installed_runtimes

PERIODIC = ["--every", "2.5", "--burst", "5"]


def latency(raw: dict, frame: np.ndarray, repeats: int, work: Path) -> dict[str, dict]:
    """p50/p95 ms with evidence on and off, 1 and 4 cameras."""
    found: dict[str, dict] = {}
    for cameras in (1, 4):
        runs: dict[str, list[float]] = {"on": [], "off": []}
        for _ in range(3):  # alternate, so both see the same machine
            for state in ("on", "off"):
                settings = {**raw, "evidence": {"enabled": state == "on"}}
                runs[state] += frame_latency_ms(settings, frame, cameras, repeats // 3,
                                                work / "latency.csv")
        found[f"{cameras}cam"] = {state: {"p50": round(statistics.median(values), 2),
                                          "p95": round(float(np.percentile(values, 95)), 2)}
                                  for state, values in runs.items()}
    return found


def capacity(videos: list[Path], models: Path, sampling: list[str], runtime: str,
             seconds: float, work: Path) -> dict[str, object]:
    found: dict[str, dict[str, float]] = {}
    for state in ("off", "on"):
        flags = [] if state == "on" else ["--no-evidence"]
        run = replay(videos, models, [*sampling, *flags], seconds, work / "evidence.csv",
                     runtime)
        found[state] = {k: run[k] for k in ("records_per_s", "peak_rss_mb")}
    ratio = found["on"]["records_per_s"] / found["off"]["records_per_s"]
    return {**found, "on/off": round(ratio, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="longest replay per case")
    parser.add_argument("--repeats", type=int, default=30, help="frames per latency case")
    args = parser.parse_args()
    demo = build_demo()
    work = Path(tempfile.gettempdir()) / "mgs-bench"
    work.mkdir(exist_ok=True)
    paper = paper_scorer(work)
    best = "openvino" if "openvino" in installed_runtimes() else "onnxruntime"
    scorers = {"resnet18x5@224 fp32 onnxruntime": (paper, "onnxruntime"),
               f"resnet18x5@224 int8 {best}": (int8_scorer(paper), best),
               "tiny x5@64 (demo)": (demo.models / "scorer.onnx", "onnxruntime")}
    rgb, _ = synth.draw_array_frame([(1, 1, 1, 1, 1)] * 4, np.random.default_rng(1))
    frame = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    results: dict = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
                     "latency_ms": {}, "capacity_records_per_s": {}}
    for name, (scorer, runtime) in scorers.items():
        raw = {**demo.config(), "models": {"scorer": str(scorer), "runtime": runtime,
                                           "localizer": str(demo.models / "localizer.onnx")}}
        results["latency_ms"][name] = latency(raw, frame, args.repeats, work)
        print(name, "latency", results["latency_ms"][name], flush=True)
        models = models_folder(scorer, demo.models / "localizer.onnx", work / "models")
        cases = {"periodic 4 cameras (16 mice)": (demo.videos[:4], PERIODIC)}
        if name.startswith("tiny"):  # the most crops per second: the writer's hardest case
            cases["continuous 4 cameras"] = (demo.videos[:4], ["--continuous"])
        results["capacity_records_per_s"][name] = {
            case: capacity(videos, models, sampling, runtime, args.seconds, work)
            for case, (videos, sampling) in cases.items()}
        print(name, "capacity", results["capacity_records_per_s"][name], flush=True)
    publish("evidence_cost", results, table=False)


if __name__ == "__main__":
    main()
