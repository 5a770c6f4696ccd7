"""Benchmark: scorer throughput (faces/s) and capture->CSV latency of one 4-mouse 1080p frame.

Compares, in one run on one machine: five eager PyTorch ResNet18 (the way the paper's code
runs), five separate onnxruntime sessions, the fused five-unit graph the monitor runs (paper
size, 224x224), its int8 version, and the tiny demo scorer in fp32 and int8, each under
onnxruntime and (when installed) OpenVINO; against the fp32 and int8 bounds from this CPU's
measured multiply-add rates. Latency is timed for one camera's frame and for four cameras due
at once (one batch of 16 faces).
Prints a table and writes bench/results/monitor_speed.json.

    .venv/bin/python bench/monitor_speed.py [--repeats 20]
    .venv/bin/python bench/monitor_speed.py --gpu      # with onnxruntime-gpu and a GPU
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import torch
from figures import publish
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from torch import nn

import synth
from demo.build import DemoBuild, build_demo
from export.half import halve_scorer
from export.onnx_export import export_scorer
from export.quantize import level_agreement, quantize_scorer
from monitor.capture.workers import Frame
from monitor.config import build_config
from monitor.outputs.sinks import open_sinks
from monitor.pipeline import keep_crops
from monitor.scoring.analyzer import Analyzer, Models
from monitor.scoring.models import SCORER, OnnxModel
from monitor.scoring.runtimes import RuntimeName, installed_runtimes, open_session
from train.models import Preprocess, UnitScorer, unit_classifier

RESNET18_GFLOP = 3.64  # one forward pass at 224x224 (1.82 G multiply-adds)


Scorers = dict[str, tuple[Path, RuntimeName]]  # label -> (file, runtime that runs it)


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


def frame_latency_ms(config_raw: dict, frame_bgr: np.ndarray, cameras: int, repeats: int,
                     csv: Path) -> list[float]:
    """Capture timestamp -> every record flushed to the CSV and published, for one frame from
    each of `cameras` cameras due at the same moment, through the real Analyzer (one batch)."""
    config = build_config({**config_raw, "cameras": config_raw["cameras"][:cameras],
                           "bus": {"enabled": False}})
    analyzer = Analyzer(config, Models.load(config))
    csv.unlink(missing_ok=True)  # a file of an earlier run, maybe of an older record schema
    shutil.rmtree(csv.with_suffix(".evidence"), ignore_errors=True)
    latencies = []
    with open_sinks(config, csv, "inproc://bench-latency", print) as sinks:
        for i in range(repeats + 1):
            due = time.monotonic()
            frames = [Frame(c.name, frame_bgr, time.time(), due, float(i), i)
                      for c in config.cameras]
            sinks.scores(keep_crops(analyzer.analyze(frames), sinks.evidence))
            latencies.append((time.monotonic() - due) * 1000.0)
    return latencies[1:]  # the first call pays one-off allocations


def dense_gflops(repeats: int = 10) -> dict[str, float]:
    """fp32 multiply-add rate of this CPU through onnxruntime's own kernels (MLAS): a square
    sgemm and the 3x3 convolution ResNet18 is made of (MLAS's NCHWc convolution kernels run
    nearer the hardware peak than its sgemm does, so the better of the two is the bound)."""
    size, channels, side, batch = 2048, 256, 14, 16
    sgemm = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "sgemm",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])])
    weights = np.random.default_rng(0).random((channels, channels, 3, 3), np.float32)
    conv = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "conv3x3",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, channels, side, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, channels, side, side])],
        [numpy_helper.from_array(weights, "w")])
    square = np.random.default_rng(1).random((size, size), np.float32)
    image = np.random.default_rng(2).random((batch, channels, side, side), np.float32)
    cases = {"sgemm 2048": (sgemm, {"a": square, "b": square}, 2 * size**3),
             "conv3x3 256ch": (conv, {"x": image}, 2 * channels**2 * 9 * side**2 * batch)}
    rates = {}
    for name, (graph, feeds, flop) in cases.items():
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        session = ort.InferenceSession(model.SerializeToString(), _cpu_options(),
                                       providers=["CPUExecutionProvider"])
        seconds = seconds_for(partial(session.run, None, feeds), repeats)
        rates[name] = round(flop * repeats / seconds / 1e9, 1)
    return rates


def int8_conv_gops(folder: Path, repeats: int = 10) -> dict[str, float]:
    """int8 multiply-add rate of one ResNet18 layer: the same 3x3 convolution, quantised as the
    scorer is (QDQ, per-channel int8 weights, uint8 activations), under each installed runtime
    (each has int8 kernels of its own)."""
    channels, side, batch = 256, 14, 16
    weights = np.random.default_rng(0).standard_normal((channels, channels, 3, 3), np.float32)
    conv = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["y"], pads=[1, 1, 1, 1])], "conv3x3",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                       ["N", channels, side, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, side, side])],
        [numpy_helper.from_array(weights * 0.05, "w")])
    fp32, int8 = folder / "conv3x3-fp32.onnx", folder / "conv3x3-int8.onnx"
    fp32.write_bytes(helper.make_model(
        conv, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())
    image = np.random.default_rng(2).random((batch, channels, side, side), np.float32)
    quantize_static(str(fp32), str(int8), _Calibration(image), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    ops = 2 * channels**2 * 9 * side**2 * batch
    rates = {}
    for runtime in installed_runtimes():
        session = open_session(int8, runtime, ["CPUExecutionProvider"], 0)
        seconds = seconds_for(partial(session.run, image), repeats)
        rates[f"conv3x3 256ch int8, {runtime}"] = round(ops * repeats / seconds / 1e9, 1)
    return rates


class _Calibration:
    def __init__(self, image: np.ndarray) -> None:
        self._feeds = iter([{"image": image[:2]}])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _cpu_options(spinning: bool = True) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def seconds_for(call: Callable[[], object], repeats: int) -> float:
    """Wall time of `repeats` calls after one warm-up call."""
    call()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return time.perf_counter() - start


def timed(run: Callable[[np.ndarray], object], batch: int, repeats: int,
          size: int = 224) -> float:
    """Faces per second of `run` on random uint8 batches, after one warm-up call."""
    images = np.random.default_rng(0).integers(0, 255, (batch, size, size, 3), dtype=np.uint8)
    return round(batch * repeats / seconds_for(lambda: run(images), repeats), 1)


def baselines(repeats: int, providers: list[str]) -> dict[str, dict[str, float]]:
    """The paper's way (five eager PyTorch models, on the GPU when one is used) and five
    separate onnxruntime sessions, each in its best configuration: the five sessions run one
    after another, so their thread pools must not spin while waiting (with spinning on, each
    idle pool keeps both cores busy and the five reach a third of their rate)."""
    torch.manual_seed(0)
    device = "cuda" if providers[0] != "CPUExecutionProvider" else "cpu"
    units = [nn.Sequential(Preprocess(), unit_classifier("resnet18")).eval().to(device)
             for _ in range(5)]

    @torch.no_grad()
    def eager(images: np.ndarray) -> object:
        batch = torch.from_numpy(images).to(device)
        return [torch.softmax(unit(batch), -1).cpu() for unit in units]  # .cpu() waits for it

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(units[0].cpu(),
                                    (torch.zeros((2, 224, 224, 3), dtype=torch.uint8),),
                                    dynamic_shapes={"input": {0: torch.export.Dim("N")}},
                                    dynamo=True, verbose=False)
    units[0].to(device)
    assert program is not None
    graph = program.model_proto.SerializeToString()
    sessions = [ort.InferenceSession(graph, _cpu_options(spinning=False), providers=providers)
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
    trained demo scorer (the paper-size one here has random weights: speed only), and is
    measured under each installed runtime, and between them."""
    made = {}
    for name, path in list(fp32.items()):
        size = OnnxModel(path, SCORER, ["CPUExecutionProvider"]).info.input_size
        out = cache / f"int8-{path.parent.name}-{path.stem}.onnx"
        quantize_scorer(path, out, synthetic_faces(64, size, 1), synthetic_faces(500, size, 2),
                        min_agreement=0.0)
        made[f"{name.split(' (')[0]} int8"] = out
        if "demo" in name:
            faces = synthetic_faces(500, size, 3)
            results["int8_demo_level_agreement"] = {
                runtime: round(level_agreement(path, out, faces, [runtime])[1], 4)
                for runtime in installed_runtimes()}
            if len(installed_runtimes()) > 1:
                levels = [open_session(out, r, ["CPUExecutionProvider"], 0).run(faces)["probs"]
                          .argmax(-1) for r in installed_runtimes()]
                results["int8_demo_levels_same_across_runtimes"] = round(
                    float((levels[0] == levels[1]).mean()), 4)
    return made


def fp16_scorers(fp32: dict[str, Path], cache: Path) -> dict[str, Path]:
    """Half-precision versions, for GPU runs (speed only: agreement is checked by export)."""
    made = {}
    for name, path in fp32.items():
        size = OnnxModel(path, SCORER, ["CPUExecutionProvider"]).info.input_size
        out = cache / f"fp16-{path.parent.name}-{path.stem}.onnx"
        halve_scorer(path, out, synthetic_faces(8, size, 2), min_agreement=0.0)
        made[f"{name.split(' (')[0]} fp16"] = out
    return made


def gpu_providers() -> list[str]:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise SystemExit("--gpu: this onnxruntime has no CUDAExecutionProvider (on a machine "
                         "with an NVIDIA GPU: pip uninstall -y onnxruntime && "
                         "pip install onnxruntime-gpu)")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def machine(gpu: bool) -> dict[str, object]:
    found: dict[str, object] = {"cpu": cpu_name(), "cores": os.cpu_count(),
                                "python": platform.python_version()}
    if gpu:
        found["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "?"
    return found


def scorer_latency(scorers: Scorers, demo: DemoBuild, providers: list[str],
                   repeats: int, cache: Path) -> dict[str, dict]:
    """p50/p95 capture->CSV latency per scorer, for one camera and for four due together (the
    localizer runs on the scorer's runtime)."""
    rgb, _ = synth.draw_array_frame([(1, 1, 1, 1, 1)] * 4, np.random.default_rng(1))
    frame = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    latency: dict[str, dict] = {}
    for name, (path, runtime) in scorers.items():
        raw = {**demo.config(), "models": {"scorer": str(path),
                                           "localizer": str(demo.models / "localizer.onnx"),
                                           "providers": providers, "runtime": runtime}}
        latency[name] = {}
        for cameras in (1, 4):
            lat = frame_latency_ms(raw, frame, cameras, max(5, repeats // cameras),
                                   cache / "latency.csv")
            latency[name][f"{cameras}cam"] = {"p50": round(statistics.median(lat), 1),
                                              "p95": round(float(np.percentile(lat, 95)), 1)}
    return latency


def print_table(results: dict) -> None:
    bound = results.get("fp32_bound_faces_per_s")
    int8_bound = results.get("int8_bound_faces_per_s")
    print(f"machine: {results['machine']}")
    if bound:
        print(f"fp32 multiply-add rate {results['dense_gflops']} GFLOP/s -> fp32 bound "
              f"{bound:.1f} faces/s; int8 bound 4x that, {int8_bound:.1f} faces/s (one int8 "
              f"layer alone: {results['int8_gops']} GOP/s); int8 demo scorer's unit levels "
              f"agree with fp32 on {results['int8_demo_level_agreement']}, with each other on "
              f"{results.get('int8_demo_levels_same_across_runtimes')}")
    print(f"{'scorer':44} {'faces/s b1':>11} {'b16':>7} {'b16/bound':>10} "
          f"{'1 cam p50/p95 ms':>17} {'4 cams p50/p95 ms':>18}")
    for name, t in results["throughput_faces_per_s"].items():
        paper = "224" in name or name.startswith("five")  # ResNet18 at 224, one way or another
        held_to = int8_bound if "int8" in name else bound
        ratio = f"{t['batch16'] / held_to:.2f}" if held_to and paper else ""
        lat = results["latency_ms"].get(name, {})
        cells = [f"{lat[k]['p50']:.0f}/{lat[k]['p95']:.0f}" if k in lat else ""
                 for k in ("1cam", "4cam")]
        print(f"{name:44} {t['batch1']:>11} {t['batch16']:>7} {ratio:>10} {cells[0]:>17} "
              f"{cells[1]:>18}")


def with_runtimes(scorers: dict[str, Path], gpu: bool) -> Scorers:
    """Every scorer under onnxruntime, and on the CPU under OpenVINO too when installed."""
    runtimes: list[RuntimeName] = ["onnxruntime"] if gpu else installed_runtimes()
    return {f"{name} ({runtime})" if len(runtimes) > 1 else name: (path, runtime)
            for name, path in scorers.items() for runtime in runtimes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--gpu", action="store_true",
                        help="CUDA provider, eager PyTorch on the GPU, fp16 instead of int8 "
                        "(writes monitor_speed_gpu.json)")
    args = parser.parse_args()
    providers = gpu_providers() if args.gpu else ["CPUExecutionProvider"]
    demo = build_demo()
    cache = Path(tempfile.gettempdir()) / "mgs-bench"
    cache.mkdir(exist_ok=True)
    scorers = {"resnet18x5@224 (paper)": paper_scorer(cache),
               "tiny x5@64 (demo)": demo.models / "scorer.onnx"}
    results: dict = {"machine": machine(args.gpu), "providers": providers,
                     "runtimes": installed_runtimes()}
    if not args.gpu:  # the bounds are the CPU's; a GPU's would need its own measurement
        results["dense_gflops"] = dense_gflops()
        peak = max(results["dense_gflops"].values())
        results["fp32_bound_faces_per_s"] = round(peak / (5 * RESNET18_GFLOP), 1)
        # VNNI does four 8-bit multiply-adds in each 32-bit lane where fp32 does one. A single
        # int8 layer measured alone stays under that (it is printed beside it), and the whole
        # scorer can run faster than such a layer does, so that layer is no bound.
        results["int8_gops"] = int8_conv_gops(cache)
        results["int8_bound_faces_per_s"] = round(4 * peak / (5 * RESNET18_GFLOP), 1)
    results["throughput_faces_per_s"] = baselines(args.repeats, providers)
    scorers.update(fp16_scorers(scorers, cache) if args.gpu
                   else int8_scorers(scorers, cache, results))
    runs = with_runtimes(scorers, gpu=args.gpu)
    for name, (path, runtime) in runs.items():
        model = OnnxModel(path, SCORER, providers, runtime=runtime)
        results["throughput_faces_per_s"][name] = {
            f"batch{b}": faces_per_second(model, b, max(2, args.repeats // b * 4))
            for b in (1, 16)}
    results["latency_ms"] = scorer_latency(runs, demo, providers, args.repeats, cache)
    print_table(results)
    publish("monitor_speed_gpu" if args.gpu else "monitor_speed", results, table=False)


if __name__ == "__main__":
    main()
