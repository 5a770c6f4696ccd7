"""Benchmark: what serving metrics for Prometheus costs the monitor's scoring, on and off.

The real Monitor (in this process) replays the small demo scene's videos as fast as it scores,
every frame scored (continuous sampling: the most records per second, so the exporter's
per-record work weighs most), once with `metrics:` configured and once without, alternating so
a drift of the machine's speed touches both alike. While metrics are on, a scraper reads
/metrics every second, as Prometheus would at a 1 s interval. Figures: records per second of
each run (median, and every run's, to show the spread), and the scoring latency of the
records (median, p95). Decoding a record costs the exporter's thread ~14 us and applying it
~6 us, against ~3.5 ms of scoring per record here.

    .venv/bin/python bench/metrics_cost.py [--seconds 120] [--repeats 3]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

from figures import publish
from monitor_speed import cpu_name

from demo.build import DemoSpec, build_demo
from monitor.config import build_config
from monitor.outputs.bus import Subscriber
from monitor.pipeline import Monitor
from monitor.schema import ScoreRecord
from monitor.scoring.analyzer import Models


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape_every_second(port: int, stop: threading.Event) -> None:
    """Until the run ends (or its server closes, as the monitor finishes)."""
    while not stop.wait(1.0):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
                page.read()
        except OSError:
            return


def run(raw: dict, metrics: bool, folder: Path) -> dict[str, float]:
    """One replay to the end: records per second and the records' latency."""
    settings = {**raw, "metrics": {"listen": f"127.0.0.1:{free_port()}"}} if metrics else raw
    config = build_config(settings)
    monitor = Monitor(config, Models.load(config), folder / f"scores-{time.time_ns()}.csv",
                      realtime=False, replay=True)
    stop = threading.Event()
    latencies: list[float] = []
    with Subscriber(monitor.view_endpoint, topics=(ScoreRecord.TOPIC,)) as records:
        started = time.perf_counter()
        monitor.start()
        if metrics and monitor.metrics is not None:
            threading.Thread(target=scrape_every_second, args=(monitor.metrics.port, stop),
                             daemon=True).start()
        while not monitor.wait(0):
            latencies += [m.latency_ms for m in records.receive(100)
                          if isinstance(m, ScoreRecord) and m.latency_ms is not None]
        elapsed = time.perf_counter() - started
        latencies += [m.latency_ms for m in records.receive(200)
                      if isinstance(m, ScoreRecord) and m.latency_ms is not None]
    stop.set()
    if monitor.error is not None:
        raise monitor.error
    return {"records_per_s": monitor.records / elapsed,
            "latency_p50_ms": statistics.median(latencies),
            "latency_p95_ms": statistics.quantiles(latencies, n=20)[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the scene")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    spec = replace(DemoSpec.small(), seconds=args.seconds)
    demo = build_demo(Path(tempfile.gettempdir()) / "mgs-metrics-cost-demo", spec, quiet=True)
    raw = {**demo.config(), "sampling": {"continuous": True, "burst": 1},
           "bus": {"enabled": False}, "evidence": {"enabled": False}}
    found: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as work:
        for _ in range(args.repeats):
            for state in ("off", "on"):
                found[state].append(run(raw, state == "on", Path(work)))
    results: dict[str, object] = {"cpu": cpu_name(), "cameras": spec.cameras,
                                  "mice": 4 * spec.cameras, "repeats": args.repeats}
    for state, runs in found.items():
        for key in runs[0]:
            results[f"metrics_{state}_{key}"] = round(statistics.median(r[key] for r in runs), 1)
        results[f"metrics_{state}_records_per_s_runs"] = [round(r["records_per_s"], 1)
                                                          for r in runs]
    off, on = results["metrics_off_records_per_s"], results["metrics_on_records_per_s"]
    assert isinstance(off, float) and isinstance(on, float)
    results["records_per_s_change_pct"] = round(100 * (on - off) / off, 1)
    publish("metrics_cost", results)


if __name__ == "__main__":
    main()
