"""A subscriber in another language reads every message: Node's `zeromq` package and the
standard JSON.parse receive a real monitor's replay over loopback (scripts/test installs the
package into tests/node; MGS_NO_NODE=1 skips these tests on purpose, else they fail loudly)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from demo.build import DemoBuild
from monitor.capture.workers import open_capture
from monitor.config import build_config
from monitor.pipeline import Monitor
from monitor.scoring.analyzer import Models
from tests.fakes import HeldCamera
from tests.test_commands import read_rows

NODE_DIR = Path(__file__).parent / "node"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(os.environ.get("MGS_NO_NODE") == "1",
                                reason="MGS_NO_NODE=1: no Node.js subscriber test")


def node_subscriber(endpoint: str) -> subprocess.Popen[str]:
    assert NODE, "node not found: scripts/test installs nodejs and npm (or MGS_NO_NODE=1)"
    assert (NODE_DIR / "node_modules" / "zeromq").is_dir(), (
        "tests/node/node_modules/zeromq missing: scripts/test installs it with npm")
    process = subprocess.Popen([NODE, str(NODE_DIR / "subscriber.mjs"), endpoint],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def test_a_node_subscriber_parses_every_message_of_a_replay(demo_small: DemoBuild,
                                                             tmp_path: Path,
                                                             free_endpoint: str) -> None:
    config = build_config({**demo_small.config(), "bus": {"endpoint": free_endpoint},
                           "cameras": [{"name": f"cam{i}", "source": str(video)}
                                       for i, video in enumerate(demo_small.videos)]})
    started = threading.Event()
    monitor = Monitor(config, Models.load(config), tmp_path / "s.csv", realtime=False,
                      replay=True, opener=lambda source: HeldCamera(open_capture(source), started))
    subscriber = node_subscriber(free_endpoint)
    try:
        monitor.start()  # publishing, its cameras held until the subscriber is connected
        threading.Event().wait(2.0)
        started.set()
        assert monitor.wait(60) and monitor.error is None
        threading.Event().wait(1.0)  # what is on its way arrives
    finally:
        out, _ = subscriber.communicate(timeout=30)  # closing stdin ends the subscriber
    assert subscriber.returncode == 0
    seen = json.loads(out.splitlines()[-1])
    rows = read_rows(tmp_path / "s.csv")
    assert seen["failures"] == []
    assert seen["counts"]["score"] == len(rows) > 0
    assert seen["counts"]["camera"] >= len(demo_small.videos) and seen["counts"]["status"] >= 1
    # unknown numbers went as null, which JSON.parse reads (NaN it refuses)
    assert seen["nulls"]["camera.latency_ms"] >= 1
    no_face = sum(r["status"] != "scored" for r in rows)
    assert seen["nulls"].get("score.sharpness", 0) == sum(r["sharpness"] == "" for r in rows)
    print(f"node: {seen['counts']}, {no_face} unscored score records, nulls {seen['nulls']}")
