"""Benchmark: scorer throughput (faces/s) and capture->CSV latency of one 4-mouse 1080p frame.

Compares, in one run on one machine, the paper-size scorer (five ResNet18 at 224x224) with the
tiny demo scorer, both as the fused ONNX graph the monitor runs. Prints a table and writes
bench/results/monitor_speed.json.

    .venv/bin/python bench/monitor_speed.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from figures import publish

from export.onnx_export import export_scorer
from monitor.capture import Frame
from monitor.config import build_config
from monitor.csvlog import CsvLogger
from monitor.models import SCORER, OnnxModel
from monitor.pipeline import Analyzer, Models, Outputs
from train import synth
from train.demo import build_demo
from train.models import UnitScorer


def faces_per_second(model: OnnxModel, batch: int, repeats: int) -> float:
    size = model.info.input_size
    images = np.random.default_rng(0).integers(0, 255, (batch, size, size, 3), dtype=np.uint8)
    model.run(images)
    start = time.perf_counter()
    for _ in range(repeats):
        model.run(images)
    return batch * repeats / (time.perf_counter() - start)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def paper_scorer(folder: Path) -> Path:
    path = folder / "resnet18x5.onnx"
    if not path.exists():
        torch.manual_seed(0)
        images = np.zeros((2, 224, 224, 3), np.uint8)
        export_scorer(UnitScorer("resnet18", 224).eval(), path, images, kind="demo")
    return path


def frame_latency_ms(config_raw: dict, frame_bgr: np.ndarray, repeats: int,
                     csv: Path) -> list[float]:
    """Capture timestamp -> record flushed to the CSV, for one frame, through the real Analyzer."""
    config = build_config(config_raw)
    analyzer = Analyzer(config, Models.load(config))
    outputs = Outputs(csv=CsvLogger(csv))
    camera = config.cameras[0].name
    latencies = []
    for i in range(repeats + 1):
        frame = Frame(camera, frame_bgr, time.time(), time.monotonic(), float(i), i)
        outputs.scores(analyzer.process([frame]))
        latencies.append((time.monotonic() - frame.mono_time) * 1000.0)
    outputs.close()
    return latencies[1:]  # the first call pays one-off allocations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    demo = build_demo()
    cache = Path(tempfile.gettempdir()) / "mgs-bench"
    cache.mkdir(exist_ok=True)
    providers = ["CPUExecutionProvider"]
    scorers = {"resnet18x5@224 (paper)": paper_scorer(cache),
               "tiny x5@64 (demo)": demo.folder / "scorer.onnx"}
    results: dict = {"machine": {"cpu": cpu_name(),
                                 "cores": os.cpu_count(), "python": platform.python_version()},
                     "throughput_faces_per_s": {}, "latency_ms": {}}
    for name, path in scorers.items():
        model = OnnxModel(path, SCORER, providers)
        results["throughput_faces_per_s"][name] = {
            f"batch{b}": round(faces_per_second(model, b, max(2, args.repeats // b * 4)), 1)
            for b in (1, 16)}
    rgb, _ = synth.draw_array_frame([(1, 1, 1, 1, 1)] * 4, np.random.default_rng(1))
    frame = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for name, path in scorers.items():
        raw = {**demo.config(), "models": {"scorer": str(path),
                                           "localizer": str(demo.folder / "localizer.onnx"),
                                           "providers": providers}}
        raw["cameras"] = raw["cameras"][:1]
        lat = frame_latency_ms(raw, frame, args.repeats, cache / f"latency-{len(name)}.csv")
        results["latency_ms"][name] = {"p50": round(statistics.median(lat), 1),
                                       "p95": round(float(np.percentile(lat, 95)), 1)}
    print(f"machine: {results['machine']}")
    print(f"{'scorer':28} {'faces/s b1':>11} {'faces/s b16':>12} {'1-frame p50':>12} "
          f"{'p95 ms':>8}")
    for name in scorers:
        t, lat = results["throughput_faces_per_s"][name], results["latency_ms"][name]
        print(f"{name:28} {t['batch1']:>11} {t['batch16']:>12} {lat['p50']:>12} "
              f"{lat['p95']:>8}")
    publish("monitor_speed", results, table=False)


if __name__ == "__main__":
    main()
