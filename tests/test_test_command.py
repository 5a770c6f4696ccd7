"""The test command says where its time goes, and its fast part can be run alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_a_run_lists_its_slowest_tests_and_can_leave_the_slow_ones_out() -> None:
    """pyproject's options: the 25 slowest tests close every run, and `slow` is a registered
    marker (--strict-markers refuses unknown ones) that `-m "not slow"` deselects."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_wheel.py", "-m", "not slow",
         "--strict-markers", "--noconftest", "-p", "no:cacheprovider", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "slowest 25 durations" in done.stdout
    assert "1 deselected" in done.stdout


@pytest.mark.slow  # each worker imports the test modules: about 10 s of CPU
def test_the_fast_part_runs_on_several_workers() -> None:
    """`scripts/test --fast` hands tests to pytest-xdist workers: the plugin is installed with the
    test extras and the project's fixtures work in a worker."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_markers.py", "tests/test_config.py", "-n", "2",
         "-m", "not slow", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "2 workers [" in done.stdout and " passed" in done.stdout
