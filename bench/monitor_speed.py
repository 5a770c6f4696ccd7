"""Benchmark: scorer throughput (faces/s) and capture->CSV latency of one 4-mouse 1080p frame.

Compares, in one run on one machine: five eager PyTorch ResNet18 (the way the paper's code
runs), five separate onnxruntime sessions, the fused five-unit graph the monitor runs (paper
size, 224x224), its int8 version, and the tiny demo scorer in fp32 and int8; against the fp32
bound from a measured sgemm rate.
Prints a table and writes bench/results/monitor_speed.json.

    .venv/bin/python bench/monitor_speed.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import torch
from figures import publish
from torch import nn

from export.onnx_export import export_scorer
from export.quantize import quantize_scorer
from monitor.capture import Frame
from monitor.config import build_config
from monitor.csvlog import CsvLogger
from monitor.models import SCORER, OnnxModel
from monitor.pipeline import Analyzer, Models, Outputs
from train import synth
from train.demo import build_demo
from train.models import Preprocess, UnitScorer, unit_classifier

RESNET18_GFLOP = 3.64  # one forward pass at 224x224 (1.82 G multiply-adds)


def faces_per_second(model: OnnxModel, batch: int, repeats: int) -> float:
    return timed(model.run, batch, repeats, model.info.input_size)


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


def fp32_bound_faces_per_s(size: int = 2048, repeats: int = 10) -> tuple[float, float]:
    """Measured sgemm GFLOP/s and the faces/s it allows for five ResNet18 at 224x224."""
    a, b = torch.rand(size, size), torch.rand(size, size)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    gflops = 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9
    return gflops, gflops / (5 * RESNET18_GFLOP)


def timed(run: Callable[[np.ndarray], object], batch: int, repeats: int,
          size: int = 224) -> float:
    """Faces per second of `run` on random uint8 batches, after one warm-up call."""
    images = np.random.default_rng(0).integers(0, 255, (batch, size, size, 3), dtype=np.uint8)
    run(images)
    start = time.perf_counter()
    for _ in range(repeats):
        run(images)
    return round(batch * repeats / (time.perf_counter() - start), 1)


def baselines(repeats: int) -> dict[str, dict[str, float]]:
    """The paper's way (five eager PyTorch models) and five separate onnxruntime sessions."""
    torch.manual_seed(0)
    units = [nn.Sequential(Preprocess(), unit_classifier("resnet18")).eval() for _ in range(5)]

    @torch.no_grad()
    def eager(images: np.ndarray) -> object:
        batch = torch.from_numpy(images)
        return [torch.softmax(unit(batch), -1) for unit in units]

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(units[0], (torch.zeros((2, 224, 224, 3), dtype=torch.uint8),),
                                    dynamic_shapes={"input": {0: torch.export.Dim("N")}},
                                    dynamo=True, verbose=False)
    assert program is not None
    graph = program.model_proto.SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    sessions = [ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
                for _ in range(5)]
    name = sessions[0].get_inputs()[0].name

    def separate(images: np.ndarray) -> object:
        return [s.run(None, {name: images}) for s in sessions]

    return {label: {f"batch{b}": timed(run, b, max(2, repeats // b * 2)) for b in (1, 16)}
            for label, run in (("five eager PyTorch ResNet18", eager),
                               ("five onnxruntime sessions", separate))}


def synthetic_faces(count: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([synth.draw_face(synth.random_levels(rng), rng, size) for _ in range(count)])


def int8_scorers(fp32: dict[str, Path], cache: Path, results: dict) -> dict[str, Path]:
    """int8 versions calibrated on synthetic faces; agreement is only meaningful for the
    trained demo scorer (the paper-size one here has random weights: speed only)."""
    made = {}
    for name, path in list(fp32.items()):
        size = OnnxModel(path, SCORER, ["CPUExecutionProvider"]).info.input_size
        out = cache / f"int8-{path.parent.name}-{path.stem}.onnx"
        agreement = quantize_scorer(path, out, synthetic_faces(64, size, 1),
                                    synthetic_faces(500, size, 2), min_agreement=0.0)
        label = f"{name.split(' (')[0]} int8"
        made[label] = out
        if "demo" in name:
            results["int8_demo_level_agreement"] = round(agreement, 4)
    return made


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
    gflops, bound = fp32_bound_faces_per_s()
    results["sgemm_gflops"] = round(gflops, 1)
    results["fp32_bound_faces_per_s"] = round(bound, 1)
    results["throughput_faces_per_s"] = baselines(args.repeats)
    scorers.update(int8_scorers(scorers, cache, results))
    for name, path in scorers.items():
        model = OnnxModel(path, SCORER, providers)
        results["throughput_faces_per_s"][name] = {
            f"batch{b}": faces_per_second(model, b, max(2, args.repeats // b * 4))
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
    print(f"machine: {results['machine']}; sgemm {gflops:.1f} GFLOP/s -> fp32 bound "
          f"{bound:.1f} faces/s (five ResNet18 at 224); int8 demo scorer agrees with fp32 on "
          f"{results['int8_demo_level_agreement']:.1%} of unit levels")
    print(f"{'scorer':30} {'faces/s b1':>11} {'faces/s b16':>12} {'1-frame p50':>12} "
          f"{'p95 ms':>8}")
    for name, t in results["throughput_faces_per_s"].items():
        lat = results["latency_ms"].get(name, {"p50": "", "p95": ""})
        print(f"{name:30} {t['batch1']:>11} {t['batch16']:>12} {lat['p50']:>12} "
              f"{lat['p95']:>8}")
    publish("monitor_speed", results, table=False)


if __name__ == "__main__":
    main()
