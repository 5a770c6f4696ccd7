"""Benchmark: how many mice one machine keeps up with, and the monitor's peak memory.

Runs the real command, `mgs-monitor replay`, in its own process over generated 1080p videos
(the demo scene's four cameras, each video replayed as more than one camera), as fast as it
goes, and reads the rate back from the records it wrote:
- periodic sampling as deployed: each sample is a burst of 5 decoded frames (the sharpest
  kept), the localizer on every cubicle, the quality gate, the scorer, alerts and the CSV.
  Capacity = mouse samples per second x 120 s (one sample per mouse every 2 minutes);
- continuous sampling (every frame scored): frames per second per camera, 1 and 4 cameras.
Each run also gives the peak resident memory (RSS) of the monitor process.
Scorers: the paper-size fused ResNet18 x5 at 224 (random weights: speed only) in fp32 and
int8, with the demo localizer, each under onnxruntime and (when installed) OpenVINO; and the
tiny demo scorer, where decoding is the main cost.

    .venv/bin/python bench/capacity.py [--seconds 60] [--cameras 8]
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from figures import publish
from monitor_speed import cpu_name, paper_scorer, synthetic_faces

from demo.build import build_demo
from export.quantize import quantize_scorer
from monitor.scoring.runtimes import installed_runtimes

SAMPLE_EVERY_S = 120.0  # the DeepMGS snapshot interval


def int8_scorer(fp32: Path) -> Path:
    """The paper-size scorer quantised (cached, under the name monitor_speed.py gives it)."""
    out = fp32.with_name(f"int8-{fp32.parent.name}-{fp32.stem}.onnx")
    if not out.exists():
        quantize_scorer(fp32, out, synthetic_faces(64, 224, 1), synthetic_faces(64, 224, 2),
                        min_agreement=0.0)
    return out


def models_folder(scorer: Path, localizer: Path, folder: Path) -> Path:
    """A --models folder holding links to the two files the run uses."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, target in (("scorer.onnx", scorer), ("localizer.onnx", localizer)):
        link = folder / name
        link.unlink(missing_ok=True)
        link.symlink_to(target.resolve())
    return folder


def replay(videos: list[Path], models: Path, sampling: list[str], seconds: float,
           out: Path, runtime: str, tree: Path | None = None) -> dict[str, float]:
    """One monitor process for at most `seconds` (then SIGINT, as a user's Ctrl-C): records
    per second over the steady part, start-up time and the process's peak RSS. `tree` runs the
    monitor from another copy of the source (bench/before_after.py), this one's by default."""
    out.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree)} if tree else None
    command = [sys.executable, "-m", "monitor", "replay", *map(str, videos), "--models",
               str(models), "--runtime", runtime, *sampling, "--out", str(out), "--no-publish",
               "--no-dashboard"]
    started = time.time()
    peak_kb = 0
    with open(out.with_suffix(".log"), "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tree,
                                   env=env)
        while process.poll() is None:
            peak_kb = max(peak_kb, high_water_kb(process.pid))
            if time.time() - started > seconds:
                process.send_signal(signal.SIGINT)
                process.wait()
            time.sleep(0.25)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed; see {out.with_suffix('.log')}")
    return {**rates(out, started), "peak_rss_mb": round(peak_kb / 1024, 1)}


def high_water_kb(pid: int) -> int:
    """The process's own peak RSS so far (VmHWM; the rusage figure of a child would include
    this benchmark process's memory at the fork)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:  # it has just exited
        pass
    return 0


def rates(out: Path, started: float) -> dict[str, float]:
    """Records per second after the first batch was written (model loading and the first
    batch excluded), and how long the first record took."""
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    times = sorted(float(r["wall_time"]) for r in rows)
    later = [t for t in times if t > times[0] + 0.01]  # the first batch is written at once
    span = times[-1] - times[0]
    scored = sum(r["status"] == "scored" for r in rows)
    return {"records": len(rows), "scored_fraction": round(scored / len(rows), 3),
            "records_per_s": round(len(later) / span, 1) if span > 0 else 0.0,
            "first_record_s": round(times[0] - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="longest run of each case")
    parser.add_argument("--cameras", type=int, default=8, help="cameras in the periodic runs")
    args = parser.parse_args()
    demo = build_demo()
    work = Path(tempfile.gettempdir()) / "mgs-bench"
    work.mkdir(exist_ok=True)
    paper = paper_scorer(work)
    scorers = {f"resnet18x5@224 {precision} {runtime}": (path, runtime)
               for precision, path in (("fp32", paper), ("int8", int8_scorer(paper)))
               for runtime in installed_runtimes()}
    scorers["tiny x5@64 (demo)"] = (demo.models / "scorer.onnx", "onnxruntime")
    videos = [demo.videos[i % len(demo.videos)] for i in range(max(args.cameras, 4))]
    periodic = ["--every", "2.5", "--burst", "5"]  # 5 frames at 2 fps: every frame decoded
    results: dict = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
                     "video": "1920x1080 mp4v, 2 fps, 4 mice per frame", "runs": {}}
    for label, (scorer, runtime) in scorers.items():
        models = models_folder(scorer, demo.models / "localizer.onnx", work / "models")
        cases = {f"periodic {args.cameras} cameras": (videos[:args.cameras], periodic),
                 "periodic 4 cameras (16 mice)": (videos[:4], periodic),
                 "continuous 1 camera": (videos[:1], ["--continuous"]),
                 "continuous 4 cameras": (videos[:4], ["--continuous"])}
        runs = results["runs"][label] = {}
        for case, (chosen, sampling) in cases.items():
            run = replay(chosen, models, sampling, args.seconds, work / "capacity.csv", runtime)
            per_camera_fps = run["records_per_s"] / 4 / len(chosen)
            run["scored_frames_per_s_per_camera"] = round(per_camera_fps, 2)
            if case.startswith("periodic"):
                run["mice_at_one_sample_per_2_min"] = int(run["records_per_s"] * SAMPLE_EVERY_S)
            runs[case] = run
            print(f"{label:22} {case:30} {run}", flush=True)
    publish("capacity", results, table=False)


if __name__ == "__main__":
    main()
