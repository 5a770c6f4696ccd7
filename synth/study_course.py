"""Synthetic studies over time: the score records a monitor would write for mice whose pain
begins at a known onset, to judge alert rules against (tests and bench/alert_sweep.py).

The leakage study's mice, given a time axis: half are in pain from an onset on (the intensity
rises over a few hours to the mouse's own level), the others are controls with a low level of
their own. As in that study, each mouse leans a level up or down on some units beyond what its
face shows, so some controls grimace more than some pain mice: noisy mice. Faces go unseen
now and then (`no_face`), and cameras go down for a while (`camera_down`). Records are live:
source time is the wall clock, so onsets can be given as clock times too.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.schema import SCORE_COLUMNS, ScoreRecord, csv_header, csv_row
from monitor.units import UNITS

START = 1_772_409_600.0  # 2026-03-02 00:00 UTC: the study's first sample
MICE_PER_CAMERA = 4


@dataclass(frozen=True)
class Course:
    """The shape of a study: how many mice, how long, how often sampled, how noisy."""

    mice: int = 16
    days: float = 30.0
    every_s: float = 120.0
    rise_h: float = 3.0  # onset to full pain
    hidden: float = 0.08  # share of samples without a scoreable face
    down_per_day: float = 0.2  # camera outages per camera-day, each about an hour
    lean: float = 0.3  # chance that a unit of a mouse leans a level up or down


def onset_of(mouse: int, course: Course, rng: np.random.Generator) -> float | None:
    """Pain mice (even numbers) begin between a fifth and two fifths of the study."""
    if mouse % 2:
        return None
    return START + float(rng.uniform(0.2, 0.4)) * course.days * 86400.0


def mouse_records(mouse: int, course: Course, rng: np.random.Generator
                  ) -> tuple[list[ScoreRecord], dict[str, str]]:
    """One mouse's records and its row of the mice table."""
    n = int(course.days * 86400.0 / course.every_s)
    times = START + np.arange(n) * course.every_s
    onset = onset_of(mouse, course, rng)
    level = float(rng.uniform(0.45, 1.0) if onset is not None else rng.uniform(0.0, 0.35))
    if onset is None:
        intensity = np.full(n, level)
    else:
        intensity = np.clip((times - onset) / (course.rise_h * 3600.0), 0.0, 1.0) * level
    q = np.clip(intensity + rng.normal(0.0, 0.12, n), 0.0, 1.0)
    lean = rng.integers(-1, 2, len(UNITS)) * (rng.random(len(UNITS)) < course.lean)
    levels = np.clip(rng.binomial(2, q[:, None], (n, len(UNITS))) + lean, 0, 2)
    status = np.where(rng.random(n) < course.hidden, "no_face", "scored").astype("<U11")
    status[_down(n, course, np.random.default_rng([mouse // MICE_PER_CAMERA, 99]))] = \
        "camera_down"
    name, camera = f"m{mouse:03d}", f"cam{mouse // MICE_PER_CAMERA}"
    records = [_record(name, camera, mouse, k, float(t), str(s), levels[k])
               for k, (t, s) in enumerate(zip(times, status, strict=True))]
    return records, {"mouse": name, "condition": "control" if onset is None else "pain",
                     "onset": "" if onset is None else f"{onset:.0f}"}


def _down(n: int, course: Course, rng: np.random.Generator) -> np.ndarray:
    """Samples lost to camera outages: the same for every mouse of a camera."""
    down = np.zeros(n, bool)
    length = max(1, int(3600.0 / course.every_s))
    for _ in range(rng.poisson(course.down_per_day * course.days)):
        start = int(rng.integers(0, n))
        down[start:start + length] = True
    return down


def _record(mouse: str, camera: str, number: int, k: int, t: float, status: str,
            levels: np.ndarray) -> ScoreRecord:
    scored = status == "scored"
    found = tuple(int(v) for v in levels) if scored else None
    return ScoreRecord(publisher="study", seq=k, wall_time=t, mono_time=t - START,
                       source_time=t, frame_index=k, camera=camera,
                       cubicle=number % MICE_PER_CAMERA + 1, mouse=mouse, status=status,
                       levels=found, total=sum(found) if found else None,
                       expected_total=float(sum(found)) if found else None,
                       model_kind="demo", instance="study")


def write_study_course(folder: Path, course: Course, seed: int = 0) -> tuple[Path, Path]:
    """`scores.csv` (every mouse, in time order as a monitor writes them) and `mice.csv`."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[float, int, list[str]]] = []
    mice: list[dict[str, str]] = []
    for mouse in range(course.mice):
        records, row = mouse_records(mouse, course, rng)
        rows.extend((r.source_time, r.cubicle, csv_row(SCORE_COLUMNS, r)) for r in records)
        mice.append(row)
    scores, table = folder / "scores.csv", folder / "mice.csv"
    with scores.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_header(SCORE_COLUMNS))
        writer.writerows(row for *_, row in sorted(rows, key=lambda r: r[:2]))
    with table.open("w", newline="") as handle:
        table_writer = csv.DictWriter(handle, fieldnames=["mouse", "condition", "onset"])
        table_writer.writeheader()
        table_writer.writerows(mice)
    return scores, table
