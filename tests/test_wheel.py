"""One wheel: the project built as a wheel, installed (not editable) into a fresh virtual
environment with the monitor's dependencies only, runs its commands and the demo.

Every file the pages and the demo need at run time ships as package data; a file left out of
the wheel is named here, as the command that would miss it could fail far from the cause.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("monitor", "synth", "train", "export", "demo", "label")
# in any package, at any depth (the web view's are web_static/ and web_templates/)
DATA_FOLDERS = ("static", "templates", "web_static", "web_templates")
NOT_SOURCE = (".git", ".venv", "build", "*.egg-info", "__pycache__", "node_modules", ".*_cache")


def package_data(root: Path) -> set[str]:
    """The files the wheel must carry besides the modules: every file under a package's
    static/ or templates/ folder, and the demo's models."""
    files = {p for package in PACKAGES for folder in DATA_FOLDERS
             for p in (root / package).rglob(f"{folder}/**/*")
             if p.is_file() and "__pycache__" not in p.parts}
    files |= set((root / "demo" / "models").glob("*.onnx"))
    return {str(p.relative_to(root)) for p in files}


def run(command: list[str], cache: Path, timeout: float = 900
        ) -> subprocess.CompletedProcess[str]:
    """Run outside this checkout and without its PYTHONPATH, so that only the installed
    package can be imported (and pip finds no other mgs-monitor), the demo cached in `cache`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["XDG_CACHE_HOME"] = str(cache)
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=ROOT.parent)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done


def test_package_data_lists_the_pages_and_the_models() -> None:
    found = package_data(ROOT)
    assert {"label/templates/index.html", "label/static/label.js", "demo/models/scorer.onnx",
            "demo/models/localizer.onnx", "monitor/views/web_templates/index.html",
            "monitor/views/web_static/overview.js"} <= found


@pytest.mark.slow
def test_the_wheel_installs_and_runs_the_demo_on_the_monitors_dependencies(
        tmp_path: Path) -> None:
    # built from a copy: a build/ folder left in the checkout cannot stand in for a lost file
    source, cache = tmp_path / "source", tmp_path / "cache"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path),
         str(source)], cache)
    wheel = next(tmp_path.glob("mgs_monitor-*.whl"))
    venv = tmp_path / "venv"
    python = str(venv / "bin" / "python")
    run([sys.executable, "-m", "venv", str(venv)], cache)
    run([python, "-m", "pip", "install", "--quiet", str(wheel)], cache)
    site = Path(run([python, "-c", "import monitor, pathlib; "
                     "print(pathlib.Path(monitor.__file__).parents[1])"], cache).stdout.strip())
    assert site.is_relative_to(venv)
    missing = sorted(f for f in package_data(ROOT) if not (site / f).is_file())
    assert not missing, f"package data missing from {wheel.name}: {', '.join(missing)}"
    assert not (site / "torch").exists()
    bin_ = venv / "bin"
    assert "demo" in run([str(bin_ / "mgs-monitor"), "--help"], cache).stdout
    assert "--token-file" in run([str(bin_ / "mgs-monitor"), "web", "--help"], cache).stdout
    assert "usage: mgs-label" in run([str(bin_ / "mgs-label"), "--help"], cache).stdout
    done = run([str(bin_ / "mgs-monitor"), "demo", "--fast", "--no-dashboard", "--no-publish"],
               cache)
    assert "records written" in done.stdout + done.stderr
