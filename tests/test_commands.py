"""The commands end to end, as a user runs them: `run` on a camera device (the one fake),
SIGHUP reloads, `dashboard` through `proxy` from two monitors, `keys` with an encrypted stream."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

import synth
from demo.build import DemoBuild
from monitor.capture.workers import open_capture
from monitor.cli import main
from monitor.config import build_config
from monitor.outputs.bus import Publisher, Subscriber
from monitor.pipeline import Monitor
from monitor.schema import ScoreRecord, StatusReport
from monitor.scoring.analyzer import Models
from tests.conftest import free_port_endpoint
from tests.fakes import FakeCamera, HeldCamera
from tests.records_util import score_record
from tests.socket_util import wait_connected


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def lab_config(path: Path, demo: DemoBuild, endpoint: str, threshold: float) -> None:
    models = demo.config()["models"]
    path.write_text(f"""\
cameras: [{{name: rack1, source: 0}}]
models: {{scorer: {models['scorer']}, localizer: {models['localizer']}}}
sampling: {{every_s: 0.2, burst: 1}}
bus: {{endpoint: "{endpoint}"}}
alerts: {{defaults: {{threshold: {threshold}, window: 1, min_valid: 1}}}}
""")


def keep_mtime(path: Path, write: Callable[[], None]) -> None:
    """Change the file without changing its mtime: only SIGHUP can make the monitor see it."""
    before = path.stat()
    write()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_run_on_a_camera_device_reloads_its_rules_on_sighup(
        demo_small: DemoBuild, tmp_path: Path, free_endpoint: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    rgb, _ = synth.draw_array_frame([(2, 2, 2, 2, 2)] * 4, np.random.default_rng(3), 640, 360)
    camera = FakeCamera([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)] * 5000)
    monkeypatch.setattr("monitor.capture.workers.open_capture", lambda _source: camera)
    config = tmp_path / "lab.yaml"
    lab_config(config, demo_small, free_endpoint, threshold=3)
    seen: list[StatusReport] = []
    problems: list[BaseException] = []

    def operator() -> None:
        """What a person at the lab does while it runs: edits, SIGHUP, Ctrl-C."""
        try:
            with Subscriber(free_endpoint) as subscriber:
                def wait_for(check: Callable[[StatusReport], bool]) -> None:
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline:
                        for message in subscriber.receive(100):
                            if isinstance(message, StatusReport):
                                seen.append(message)
                                if check(message):
                                    return
                    raise AssertionError("status not seen")

                wait_for(lambda s: s.records >= 8)
                keep_mtime(config, lambda: config.write_text("cameras: [\n"))
                os.kill(os.getpid(), signal.SIGHUP)
                wait_for(lambda s: "reload refused" in s.notice)
                keep_mtime(config, lambda: lab_config(config, demo_small, free_endpoint, 10))
                os.kill(os.getpid(), signal.SIGHUP)
                wait_for(lambda s: "alert rules reloaded" in s.notice)
        except BaseException as exc:
            problems.append(exc)
        finally:
            os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=operator)
    thread.start()
    out = tmp_path / "scores.csv"
    assert main(["run", "--config", str(config), "--out", str(out), "--no-dashboard"]) == 0
    thread.join(10)
    assert not problems, problems
    assert seen[0].alert_threshold == 3 and seen[-1].alert_threshold == 10
    refused = next(s for s in seen if "reload refused" in s.notice)
    assert refused.alert_threshold == 3 and f"{config}: not valid YAML" in refused.notice
    rows = read_rows(out)
    assert rows and {r["mouse"] for r in rows} == {f"rack1-c{k}" for k in range(1, 5)}
    assert f"{len(rows)} records written to {out}" in " ".join(capsys.readouterr().err.split())
    assert camera.released


def monitor_on(demo: DemoBuild, video: int, camera: str, endpoint: str, started: threading.Event,
               csv_path: Path, own_publisher: bool = True, **bus: object) -> Monitor:
    """An in-process monitor replaying one demo video, publishing on `endpoint`, whose camera
    starts only when `started` is set; its publisher id is the default one unless it has its
    `own_publisher`."""
    settings = {**demo.config(), "publisher": f"host-{camera}",
                "evidence": {"folder": str(csv_path.with_suffix(".evidence"))}}  # a host each
    if not own_publisher:
        del settings["publisher"]
    config = build_config({**settings,
                           "cameras": [{"name": camera, "source": str(demo.videos[video])}],
                           "bus": {"endpoint": endpoint, **bus}})
    return Monitor(config, Models.load(config), csv_path, realtime=False, replay=True,
                   opener=lambda source: HeldCamera(open_capture(source), started))


def command(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "COLUMNS": "220", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "monitor", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def behind_a_proxy(monitors: list[Monitor], endpoints: tuple[str, str],
                   backend: str) -> subprocess.Popen[str]:
    """Start the monitors and an `mgs-monitor proxy` process joining them onto `backend`."""
    for monitor in monitors:
        monitor.start()
    return command("proxy", "--from", endpoints[0], "--from", endpoints[1], "--backend",
                   backend, "--seconds", "20")


def replay_all(monitors: list[Monitor], started: threading.Event, proxy: subprocess.Popen[str],
               endpoints: tuple[str, str], backend: str,
               subscribers: list[subprocess.Popen[str]]) -> None:
    """Let the subscriptions reach both monitors through the proxy, then replay to the end."""
    subscribed(proxy, list(endpoints), backend, subscribers)
    started.set()
    for monitor in monitors:
        assert monitor.wait(30) and monitor.error is None


def subscribed(proxy: subprocess.Popen[str] | None, upstream: list[str], endpoint: str,
               subscribers: list[subprocess.Popen[str]]) -> None:
    """Until the proxy (if any) is connected to the `upstream` publishers and every subscriber
    to `endpoint`; then a moment for their subscriptions to travel up."""
    if proxy is not None:
        wait_connected(proxy.pid, upstream)
    for subscriber in subscribers:
        wait_connected(subscriber.pid, [endpoint])
    time.sleep(0.5)


def test_one_dashboard_follows_two_monitors_through_a_proxy(demo_small: DemoBuild,
                                                            tmp_path: Path) -> None:
    first, second, backend = (free_port_endpoint() for _ in range(3))
    started = threading.Event()
    monitors = [monitor_on(demo_small, 0, "rackA", first, started, tmp_path / "a.csv"),
                monitor_on(demo_small, 1, "rackB", second, started, tmp_path / "b.csv")]
    proxy = behind_a_proxy(monitors, (first, second), backend)
    dashboard = command("dashboard", "--endpoint", backend, "--seconds", "12")
    replay_all(monitors, started, proxy, (first, second), backend, [dashboard])
    screen, err = dashboard.communicate(timeout=30)
    proxy.send_signal(signal.SIGINT)
    _, proxy_err = proxy.communicate(timeout=30)
    assert dashboard.returncode == 0, err
    assert proxy.returncode == 0 and f"-> {backend}" in proxy_err
    records = len(read_rows(tmp_path / "a.csv")) + len(read_rows(tmp_path / "b.csv"))
    assert "mgs-monitor — 2 monitors" in screen and f"records {records} " in screen
    for mouse in ("rackA-c1", "rackA-c4", "rackB-c1", "rackB-c4"):
        assert mouse in screen
    assert "DEMO MODELS" in screen


def test_two_monitors_with_default_settings_stay_apart_through_a_proxy(
        demo_small: DemoBuild, tmp_path: Path) -> None:
    """One host, two monitors left at their defaults: one publisher id, one camera name, so the
    same mouse ids. Through a real proxy, the logger keeps each run's sequence apart (no false
    gaps), and it and the dashboard say once that two monitors send the same mice."""
    first, second, backend = (free_port_endpoint() for _ in range(3))
    started = threading.Event()
    monitors = [monitor_on(demo_small, k, "cam0", endpoint, started, tmp_path / f"{k}.csv",
                           own_publisher=False) for k, endpoint in enumerate((first, second))]
    proxy = behind_a_proxy(monitors, (first, second), backend)
    logger = command("log", "--endpoint", backend, "--out", str(tmp_path / "all.csv"),
                     "--seconds", "12")
    dashboard = command("dashboard", "--endpoint", backend, "--seconds", "12")
    replay_all(monitors, started, proxy, (first, second), backend, [logger, dashboard])
    _, logged = logger.communicate(timeout=30)
    screen, err = dashboard.communicate(timeout=30)
    proxy.send_signal(signal.SIGINT)
    proxy.communicate(timeout=30)
    assert logger.returncode == 0 and dashboard.returncode == 0, logged + err
    runs = [read_rows(tmp_path / f"{k}.csv") for k in range(2)]
    instances = [{row["instance"] for row in rows} for rows in runs]
    assert all(len(i) == 1 for i in instances) and instances[0] != instances[1]
    rows = read_rows(tmp_path / "all.csv")
    assert len(rows) == sum(map(len, runs))
    assert {row["publisher"] for row in rows} == {f"mgs-monitor@{socket.gethostname()}"}
    assert {row["instance"] for row in rows} == instances[0] | instances[1]
    assert not (tmp_path / "all.gaps.csv").exists()
    said = " ".join(logged.split())
    assert said.count("comes from two monitors") == 1 and "mouse cam0-c" in said
    assert "comes from two monitors" in " ".join(screen.split())


def test_keys_make_a_stream_only_their_holders_can_read(demo_small: DemoBuild, tmp_path: Path,
                                                        free_endpoint: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys"
    assert main(["keys", str(keys)]) == 0
    printed = capsys.readouterr().out
    assert str(keys / "server.key_secret") in printed and str(keys / "server.key") in printed
    started = threading.Event()
    monitor = monitor_on(demo_small, 0, "cam0", free_endpoint, started, tmp_path / "local.csv",
                         secret_key=str(keys / "server.key_secret"))
    monitor.start()
    holder = command("log", "--endpoint", free_endpoint, "--server-key", str(keys / "server.key"),
                     "--out", str(tmp_path / "holder.csv"), "--seconds", "8")
    stranger = command("log", "--endpoint", free_endpoint, "--out",
                       str(tmp_path / "stranger.csv"), "--seconds", "8")
    subscribed(None, [], free_endpoint, [holder])  # the stranger's handshake is refused
    started.set()
    assert monitor.wait(30) and monitor.error is None
    for logger in (holder, stranger):
        _, err = logger.communicate(timeout=30)
        assert logger.returncode == 0, err
    assert read_rows(tmp_path / "holder.csv") == read_rows(tmp_path / "local.csv") != []
    assert read_rows(tmp_path / "stranger.csv") == []


def test_records_are_typed_on_the_wire(demo_small: DemoBuild, tmp_path: Path,
                                       free_endpoint: str) -> None:
    """What a third-party subscriber gets parses back into the same record the CSV holds."""
    started = threading.Event()
    monitor = monitor_on(demo_small, 0, "cam0", free_endpoint, started, tmp_path / "s.csv")
    monitor.start()
    received: list[ScoreRecord] = []
    with Subscriber(free_endpoint) as subscriber:
        time.sleep(0.5)
        started.set()
        while not monitor.wait(0):
            received += [m for m in subscriber.receive(100) if isinstance(m, ScoreRecord)]
        received += [m for m in subscriber.receive(300) if isinstance(m, ScoreRecord)]
    rows = read_rows(tmp_path / "s.csv")
    assert [r.seq for r in received] == [int(r["seq"]) for r in rows]
    assert [r.total for r in received] == [int(r["total"]) if r["total"] else None for r in rows]


def test_dashboard_stops_on_time_while_records_keep_coming(free_endpoint: str) -> None:
    publisher = Publisher(free_endpoint)
    dashboard = command("dashboard", "--endpoint", free_endpoint, "--seconds", "1.5")
    started = time.monotonic()
    seq = 0
    try:
        while dashboard.poll() is None and time.monotonic() - started < 15:
            seq += 1
            publisher.publish(score_record(seq, mouse="cam0-c1"))
            time.sleep(0.01)
    finally:
        publisher.close()
    screen, err = dashboard.communicate(timeout=10)
    assert dashboard.returncode == 0, err
    assert time.monotonic() - started < 8  # --seconds 1.5, not held by the stream
    assert "cam0-c1" in screen


def test_an_encrypted_monitor_reaches_an_admitted_logger_through_an_encrypted_proxy(
        demo_small: DemoBuild, tmp_path: Path, free_endpoint: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The many-hosts set-up with CURVE on both hops and allowed-client folders at both
    publishers: the admitted logger writes every record; one whose key is not admitted gets
    none and says why."""
    keys, monitor_clients, proxy_clients = (tmp_path / n for n in ("keys", "mc", "pc"))
    assert main(["keys", str(keys / "monitor")]) == 0
    assert main(["keys", str(keys / "proxy")]) == 0
    assert main(["keys", str(monitor_clients), "--name", "proxy"]) == 0
    assert main(["keys", str(proxy_clients), "--name", "logger1"]) == 0
    assert main(["keys", str(keys / "stranger"), "--name", "logger2"]) == 0
    assert "copy into the monitor's bus.allowed_clients folder" in capsys.readouterr().out
    backend = free_port_endpoint()
    started = threading.Event()
    monitor = monitor_on(demo_small, 0, "cam0", free_endpoint, started, tmp_path / "local.csv",
                         secret_key=str(keys / "monitor" / "server.key_secret"),
                         allowed_clients=str(monitor_clients))
    monitor.start()
    proxy = command("proxy", "--from", f"{free_endpoint}={keys / 'monitor' / 'server.key'}",
                    "--client-key", str(monitor_clients / "proxy.key_secret"),
                    "--backend", backend, "--secret-key", str(keys / "proxy" / "server.key_secret"),
                    "--allowed-clients", str(proxy_clients), "--seconds", "20")
    loggers = [command("log", "--endpoint", backend, "--server-key",
                       str(keys / "proxy" / "server.key"), "--client-key", str(secret),
                       "--out", str(tmp_path / f"{name}.csv"), "--seconds", "10")
               for name, secret in (("admitted", proxy_clients / "logger1.key_secret"),
                                    ("refused", keys / "stranger" / "logger2.key_secret"))]
    subscribed(proxy, [free_endpoint], backend, loggers[:1])  # logger -> proxy -> monitor
    started.set()
    assert monitor.wait(30) and monitor.error is None
    said = []
    for logger in loggers:
        _, err = logger.communicate(timeout=30)
        assert logger.returncode == 0, err
        said.append(" ".join(err.split()))
    proxy.send_signal(signal.SIGINT)
    _, proxy_err = proxy.communicate(timeout=30)
    assert proxy.returncode == 0 and "refuses" not in proxy_err, proxy_err
    local = read_rows(tmp_path / "local.csv")
    assert len(local) > 20 and read_rows(tmp_path / "admitted.csv") == local
    assert read_rows(tmp_path / "refused.csv") == []
    assert "refuses this subscriber's key" not in said[0]
    assert f"{backend} refuses this subscriber's key" in said[1]
