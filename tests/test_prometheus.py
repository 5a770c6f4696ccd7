"""The shipped Prometheus files (deploy/prometheus/) checked by promtool, and a real Prometheus
scraping a running monitor and answering queries through its HTTP API.

Prometheus is installed by scripts/test; without it these tests fail, unless
MGS_NO_PROMETHEUS=1 skips them on purpose (as MGS_NO_BROWSER does for the browser tests).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from demo.build import DemoBuild
from monitor.schema import ScoreRecord
from tests.conftest import free_port
from tests.metrics_util import stalling_monitor
from tests.monitor_util import View

DEPLOY = Path(__file__).parent.parent / "deploy" / "prometheus"

if os.environ.get("MGS_NO_PROMETHEUS") == "1":
    pytest.skip("MGS_NO_PROMETHEUS=1: Prometheus tests skipped on purpose",
                allow_module_level=True)


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (scripts/test installs it from apt); set "
                    "MGS_NO_PROMETHEUS=1 to skip the Prometheus tests on purpose")
    return found


@pytest.mark.parametrize("check", [["check", "config", "prometheus.yml"],
                                   ["check", "rules", "mgs-monitor.rules.yml"],
                                   ["test", "rules", "mgs-monitor.rules.test.yml"]],
                         ids=["check-config", "check-rules", "test-rules"])
def test_the_shipped_prometheus_files_pass_promtool(check: list[str]) -> None:
    done = subprocess.run([tool("promtool"), *check], cwd=DEPLOY, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_the_rule_tests_cover_every_shipped_alert() -> None:
    rules = yaml.safe_load((DEPLOY / "mgs-monitor.rules.yml").read_text())
    alerts = {r["alert"] for group in rules["groups"] for r in group["rules"]}
    tests = yaml.safe_load((DEPLOY / "mgs-monitor.rules.test.yml").read_text())
    fired = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"]
             if case["exp_alerts"]}
    assert fired == alerts >= {"MgsCameraDown", "MgsNoRecords", "MgsAlertHookFailing",
                               "MgsEvidencePaused", "MgsMouseInPain"}


class Prometheus:
    """A real Prometheus in `folder`, on a free loopback port, scraping `target` every second
    with the shipped config and rules."""

    def __init__(self, folder: Path, target: str) -> None:
        config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(DEPLOY / name) for name in config["rule_files"]]
        config["scrape_configs"][0]["static_configs"] = [{"targets": [target]}]
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = folder / "prometheus.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [tool("prometheus"), f"--config.file={folder / 'prometheus.yml'}",
                 f"--storage.tsdb.path={folder / 'data'}",
                 f"--web.listen-address={self.url.removeprefix('http://')}"],
                stdout=log, stderr=subprocess.STDOUT)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The vector /api/v1/query answers now ([] while Prometheus is starting)."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                answer = json.load(response)
        except OSError:
            return []
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def query_until(self, promql: str, seconds: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + seconds
        while not (result := self.query(promql)) and time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            time.sleep(0.5)
        assert result, f"{promql}: no answer within {seconds} s\n{self.log.read_text()[-2000:]}"
        return result

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def prometheus_factory() -> Iterator[list[Prometheus]]:
    started: list[Prometheus] = []
    yield started
    for server in started:
        server.stop()


def test_prometheus_scrapes_a_running_monitor(demo_small: DemoBuild, tmp_path: Path,
                                              prometheus_factory: list[Prometheus]) -> None:
    """Three samples of four mice, then the camera stalls; a real Prometheus scraping every
    second answers a mouse's last total and the camera's state as the records said."""
    port, go_on = free_port(), threading.Event()
    monitor = stalling_monitor(demo_small, tmp_path / "s.csv", port, 3, go_on)
    view = View(monitor)
    monitor.start()
    try:
        view.wait_for(lambda v: len(v.of(ScoreRecord)) == 12)
        records = view.of(ScoreRecord)
        mouse, total = next((r.mouse, r.total) for r in reversed(records) if r.total is not None)
        server = Prometheus(tmp_path, f"127.0.0.1:{port}")
        prometheus_factory.append(server)
        (answer,) = server.query_until(f'mgs_mouse_total{{mouse="{mouse}"}}')
        (state,) = server.query_until('mgs_camera_state{camera="cam0"} == 1')
        (up,) = server.query_until('up{job="mgs-monitor"}')
        rules = json.load(urllib.request.urlopen(f"{server.url}/api/v1/rules", timeout=5))
    finally:
        go_on.set()
        monitor.request_stop()
        assert monitor.wait(20)
        view.close()
    assert monitor.error is None
    assert answer["metric"]["camera"] == "cam0" and answer["metric"]["job"] == "mgs-monitor"
    assert float(answer["value"][1]) == total
    assert state["metric"]["state"] == "ok"
    assert up["value"][1] == "1"
    health = {r["name"]: r["health"] for group in rules["data"]["groups"] for r in group["rules"]}
    assert "MgsMouseInPain" in health and set(health.values()) <= {"ok", "unknown"}
