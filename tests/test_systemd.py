"""The systemd units verify, stay hardened, and the monitor speaks sd_notify to them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import synth
from demo.build import DemoBuild
from monitor.config import build_config
from monitor.outputs.systemd import Watchdog
from monitor.runner import run_monitor
from tests.fakes import FakeCamera

UNITS = Path(__file__).parent.parent / "systemd"
STALE_S = 3.0  # status reports come every 2 s
VENV = Path(sys.executable).parent.parent
analyze = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(analyze is None, reason="systemd-analyze is not installed")


def local_copy(tmp_path: Path, name: str) -> Path:
    """The unit with its ExecStart pointing at this checkout's virtualenv."""
    text = (UNITS / name).read_text().replace("/opt/mgs-monitor/.venv", str(VENV))
    path = tmp_path / name
    path.write_text(text)
    return path


@needs_analyze
@pytest.mark.parametrize("name", ["mgs-monitor.service", "mgs-logger.service"])
def test_units_verify_and_stay_hardened(tmp_path: Path, name: str) -> None:
    unit = local_copy(tmp_path, name)
    verify = subprocess.run([str(analyze), "verify", str(unit)], capture_output=True, text=True,
                            timeout=120)
    assert verify.returncode == 0, verify.stderr
    assert name not in verify.stderr  # no warning about the unit itself
    security = subprocess.run([str(analyze), "security", "--offline=true", str(unit)],
                              capture_output=True, text=True, timeout=120)
    exposure = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert exposure is not None, security.stdout[-500:]
    assert float(exposure.group(1)) <= 2.5


def test_monitor_tells_systemd_ready_watchdog_and_stopping(demo_small: DemoBuild,
                                                           tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(30)
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"}
    args = ["replay", *map(str, demo_small.videos), "--models", str(demo_small.folder),
            "--realtime", "--every", "2", "--burst", "1", "--out", str(tmp_path / "s.csv"),
            "--no-publish", "--no-dashboard"]
    proc = subprocess.Popen([sys.executable, "-m", "monitor", *args], env=env,
                            stderr=subprocess.PIPE, text=True)
    messages: list[str] = []
    try:
        while "WATCHDOG=1" not in messages:
            messages.append(listener.recv(256).decode())
        proc.terminate()
        while "STOPPING=1" not in messages:
            messages.append(listener.recv(256).decode())
        assert proc.wait(60) == 0
    finally:
        listener.close()
        if proc.poll() is None:
            proc.kill()
    assert messages[0] == "READY=1"


class WedgedFrame(np.ndarray):
    """Pixels from a wedged driver's buffer: reading them on the pipeline thread blocks until
    `released` is set (the capture thread's quick look for sharpness still gets through)."""

    entered = threading.Event()
    released = threading.Event()

    def __getitem__(self, key: Any) -> Any:
        if threading.current_thread().name == "pipeline" and not self.released.is_set():
            self.entered.set()
            self.released.wait()
        return super().__getitem__(key)


def test_watchdog_pings_stop_while_the_pipeline_hangs(demo_small: DemoBuild, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s while healthy
    rgb, _ = synth.draw_array_frame([(1, 1, 1, 1, 1)] * 4, np.random.default_rng(1), 640, 360)
    good = np.ascontiguousarray(rgb[..., ::-1])
    camera = FakeCamera([good] * 8 + [good.copy().view(WedgedFrame)] + [good] * 5000)
    config = build_config({**demo_small.config(), "bus": {"enabled": False},
                           "cameras": [{"name": "cam0", "source": 0}],
                           "sampling": {"every_s": 0.1, "burst": 1}})
    pings: list[float] = []
    hung: list[float] = []

    def systemd() -> None:
        listener.settimeout(0.05)
        end = None
        while end is None or time.monotonic() < end:
            if WedgedFrame.entered.is_set() and not hung:
                hung.append(time.monotonic())
            if (hung and time.monotonic() > hung[0] + STALE_S + 3
                    and not WedgedFrame.released.is_set()):
                WedgedFrame.released.set()  # the driver recovers
                end = time.monotonic() + STALE_S + 1
            try:
                if listener.recv(256) == b"WATCHDOG=1":
                    pings.append(time.monotonic())
            except TimeoutError:
                pass
        os.kill(os.getpid(), signal.SIGTERM)

    watcher = threading.Thread(target=systemd)
    watcher.start()
    try:
        assert run_monitor(config, tmp_path / "s.csv", replay=False, realtime=True,
                           dashboard=False, opener=lambda _source: camera,
                           watchdog=Watchdog(stale_s=STALE_S)) == 0
    finally:
        WedgedFrame.released.set()
        watcher.join(30)
        listener.close()
    start = hung[0]
    before = [t for t in pings if t < start]
    silent = [t for t in pings if start + STALE_S + 0.3 < t < start + STALE_S + 3]
    after = [t for t in pings if t > start + STALE_S + 3.2]
    assert len(before) >= 3  # healthy: pinged
    assert silent == []  # hung: no ping once the last status is older than STALE_S
    assert after  # recovered: pinging again
