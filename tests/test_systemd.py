"""The systemd units verify, stay hardened, and the monitor speaks sd_notify to them."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from demo.build import DemoBuild

UNITS = Path(__file__).parent.parent / "systemd"
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
