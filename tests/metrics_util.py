"""Reading a monitor's /metrics page from a test, and a monitor that serves one."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

import synth
from demo.build import DemoBuild
from monitor.config import build_config
from monitor.pipeline import Monitor
from monitor.scoring.analyzer import Models
from tests.fakes import StallingCamera

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition page: (name, labels) -> value."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return parse(response.read().decode())


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def scrape_until(port: int, condition: Callable[[Samples], bool],
                 seconds: float = 30.0) -> Samples:
    deadline = time.monotonic() + seconds
    samples = scrape(port)
    while not condition(samples) and time.monotonic() < deadline:
        time.sleep(0.1)
        samples = scrape(port)
    assert condition(samples), f"not served within {seconds} s: {sorted(samples)}"
    return samples


def painful_frame() -> np.ndarray:
    """Four mice grimacing fully (the threshold-0 rule of `stalling_monitor` raises pain on any
    scored face)."""
    frame, _ = synth.draw_array_frame([(2, 2, 2, 2, 2)] * 4, np.random.default_rng(3), 640, 360)
    return cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)


def stalling_monitor(demo: DemoBuild, csv: Path, port: int, samples: int,
                     go_on: threading.Event) -> Monitor:
    """One camera `cam0` of four mice that gives `samples` frames and then stalls until
    `go_on`, metrics served on `port`, pain raised on any scored face."""
    config = build_config({
        **demo.config(), "cameras": [{"name": "cam0", "source": 0}],
        "sampling": {"every_s": 0.05, "burst": 1}, "bus": {"enabled": False},
        "alerts": {"defaults": {"threshold": 0, "window": 1, "min_valid": 1}},
        "metrics": {"listen": f"127.0.0.1:{port}"}})
    camera = StallingCamera([painful_frame()] * samples, go_on)
    return Monitor(config, Models.load(config), csv, opener=lambda _s: camera)
