"""The first minute: a fresh clone, an empty pip cache, `scripts/demo`, until the dashboard.

Clones the project (this checkout, or `--source`, at `--ref`) into a temporary folder and runs
its `scripts/demo` as a new user would: no `.venv`, a pip cache and a demo cache of its own,
both empty, and none of this shell's Python settings. The demo runs on a pseudo-terminal, so
it draws its dashboard; the time to the dashboard is taken when the dashboard's header first
appears, then the demo is stopped with Ctrl-C. Reported: that time, how much of it went to the
install (the install stamp's time), the size of `.venv`, whether PyTorch was installed and the
largest packages. Network downloads are part of the figure; run it on the machine you quote.

    python bench/first_run.py --label after
    python bench/first_run.py --label before --source /path/to/other/clone --ref main

Each label's figures are kept side by side in results/first_run.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import time
from fcntl import ioctl
from pathlib import Path
from typing import Any

from figures import FOLDER, publish

ROOT = Path(__file__).resolve().parents[1]
# The dashboard's header: "<title>  [DEMO]   records N   gaps N   alert ≥ ..."
DASHBOARD = re.compile(rb"records \d+ +gaps \d+")
# Settings of this shell that a new user's shell does not have.
UNSET = ("PYTHONPATH", "VIRTUAL_ENV", "PIP_INDEX_URL", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
         "PIP_NO_CACHE_DIR", "PIP_FIND_LINKS", "CI")


def clone(source: str, ref: str, into: Path) -> str:
    """A fresh clone at `ref`; its commit."""
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", source, str(into)], check=True)
    subprocess.run(["git", "-C", str(into), "checkout", "--quiet", ref], check=True)
    return subprocess.run(["git", "-C", str(into), "rev-parse", "--short", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


def new_user_env(scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env["PIP_CACHE_DIR"] = str(scratch / "pip-cache")  # empty: every wheel is downloaded
    env["XDG_CACHE_HOME"] = str(scratch / "cache")  # empty: the demo builds its scene
    env["TERM"] = env.get("TERM", "xterm-256color") or "xterm-256color"
    return env


def run_to_dashboard(checkout: Path, env: dict[str, str], timeout: float
                     ) -> tuple[float | None, bytes]:
    """Seconds from `scripts/demo` to the dashboard's first frame (None if it never came) and
    the terminal's output."""
    leader, follower = pty.openpty()
    ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 140, 0, 0))
    started = time.monotonic()
    process = subprocess.Popen([str(checkout / "scripts" / "demo")], cwd=checkout, env=env,
                               stdin=follower, stdout=follower, stderr=follower,
                               start_new_session=True)
    os.close(follower)
    output = b""
    seen: float | None = None
    try:
        while seen is None and time.monotonic() - started < timeout:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the demo ended and closed the terminal
                    break
                output += chunk
                if DASHBOARD.search(output[-70000:]):
                    seen = time.monotonic() - started
            elif process.poll() is not None:
                break
    finally:
        stop(process)
        os.close(leader)
    return seen, output


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C to the demo (its own process group), then kill it if it does not end."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def folder_mb(folder: Path) -> float:
    out = subprocess.run(["du", "-sb", str(folder)], capture_output=True, text=True, check=True)
    return round(int(out.stdout.split()[0]) / 1e6, 1)


def largest_packages(venv: Path, count: int = 6) -> dict[str, float]:
    site = next(venv.glob("lib/python*/site-packages"), None)
    if site is None:
        return {}
    sizes = {p.name: folder_mb(p) for p in site.iterdir() if p.is_dir()
             and not p.name.endswith((".dist-info", "__pycache__"))}
    return dict(sorted(sizes.items(), key=lambda item: -item[1])[:count])


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


def measure(source: str, ref: str, timeout: float) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="mgs-first-run-"))
    try:
        checkout = scratch / "mgs-monitor"
        commit = clone(source, ref, checkout)
        began = time.time()
        seconds, output = run_to_dashboard(checkout, new_user_env(scratch), timeout)
        venv = checkout / ".venv"
        stamps = list(venv.glob(".installed-*"))
        installed = round(stamps[0].stat().st_mtime - began, 1) if stamps else None
        if seconds is None:
            print(output[-3000:].decode(errors="replace"))
        return {
            "commit": commit,
            "seconds_to_dashboard": None if seconds is None else round(seconds, 1),
            **({"gave_up_after_s": timeout} if seconds is None else {}),
            "seconds_installing": installed,
            "venv_mb": folder_mb(venv) if venv.exists() else None,
            "torch_installed": any(venv.glob("lib/python*/site-packages/torch")),
            "largest_packages_mb": largest_packages(venv),
            "machine": machine(),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="after", help="the key the figures are kept under")
    parser.add_argument("--source", default=str(ROOT), help="the repository to clone")
    parser.add_argument("--ref", default="HEAD", help="the commit to check out")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to give up after")
    args = parser.parse_args()
    path = FOLDER / "first_run.json"
    kept = json.loads(path.read_text()) if path.exists() else {}
    figures = measure(args.source, args.ref, args.timeout)
    for key, value in figures.items():
        print(f"{key:24}{value}")
    publish("first_run", {**kept, args.label: figures}, table=False)


if __name__ == "__main__":
    main()
