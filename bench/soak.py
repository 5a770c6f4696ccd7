"""Soak benchmark: the monitor replaying the demo scene over and over, memory and files watched.

Runs the real pipeline (4 cameras, 16 mice, localizer, scorer, alerts, CSV) on the demo videos
in a loop for `--minutes`, as fast as it goes, one Monitor per pass with the models loaded
once, and samples resident memory and open file descriptors every `--every` seconds. Both must
stay flat: the report gives the first, last and highest values, the means of the first and
last 90 s, and the growth over the second half of the run. Evidence is kept as by default
(every scored face, one evidence folder for every pass), so memory must not grow with the
files kept either; `--no-evidence` runs without it.

    .venv/bin/python bench/soak.py --minutes 10      # hours: --minutes 240
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from figures import publish

from demo.build import build_demo
from monitor.config import MonitorConfig, build_config
from monitor.frame_memory import keep_frames_out_of_the_heap
from monitor.pipeline import Monitor
from monitor.scoring.analyzer import Models


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


Sample = tuple[float, float, int]  # seconds since the start, RSS in MB, open files


def soak(folder: Path, config: MonitorConfig, models: Models, minutes: float,
         every: float) -> tuple[list[Sample], int, int, float, list[int]]:
    """Replay until `minutes` are up, one Monitor a pass writing into `folder`: the samples,
    the passes, the records, the seconds it took and the sizes of the crops kept."""
    samples: list[Sample] = []
    started = time.monotonic()
    deadline = started + minutes * 60
    passes = records = 0
    next_sample = started
    while time.monotonic() < deadline:
        monitor = Monitor(config, models, folder / f"pass{passes % 2}.csv", realtime=False,
                          replay=True)
        monitor.start()
        while not monitor.wait(1.0):
            if time.monotonic() >= next_sample:
                samples.append((time.monotonic() - started, rss_mb(), open_files()))
                next_sample += every
        records += monitor.records
        passes += 1
        (folder / f"pass{passes % 2}.csv").unlink(missing_ok=True)
    kept = [p.stat().st_size for p in (folder / "evidence").rglob("*.jpg")]
    return samples, passes, records, time.monotonic() - started, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--no-evidence", action="store_true", help="keep no evidence")
    args = parser.parse_args()
    keep_frames_out_of_the_heap()  # as mgs-monitor's main() does
    demo = build_demo()
    config = build_config({**demo.config(), "bus": {"enabled": False},
                           "sampling": {"every_s": 1.0, "burst": 1},
                           "evidence": {"enabled": not args.no_evidence}})
    models = Models.load(config)
    with tempfile.TemporaryDirectory(prefix="mgs-soak-") as scratch:  # the evidence: GBs
        samples, passes, records, seconds, kept = soak(Path(scratch), config, models,
                                                       args.minutes, args.every)
    half = [s for s in samples if s[0] >= samples[-1][0] / 2]
    first = [s[1] for s in samples if s[0] <= samples[0][0] + 90]
    last = [s[1] for s in samples if s[0] >= samples[-1][0] - 90]
    results = {
        "minutes": args.minutes, "passes": passes, "records": records,
        "records_per_s": round(records / seconds, 1),
        "rss_mb": {"first": round(samples[0][1], 1), "last": round(samples[-1][1], 1),
                   "max": round(max(s[1] for s in samples), 1),
                   "second_half_growth": round(half[-1][1] - half[0][1], 1),
                   "first_90s_mean": round(sum(first) / len(first), 1),
                   "last_90s_mean": round(sum(last) / len(last), 1)},
        "evidence": {"files": len(kept), "mb": round(sum(kept) / 1e6, 1)},
        "open_files": {"first": samples[0][2], "last": samples[-1][2],
                       "max": max(s[2] for s in samples)},
        "samples": [[round(t), round(m, 1), f] for t, m, f in samples],
    }
    publish("soak", results, hidden=("samples",))


if __name__ == "__main__":
    main()
