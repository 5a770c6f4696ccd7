"""The past week of the score CSVs, for `mgs-monitor web --history`: a view started now shows
each mouse's totals and levels, alert spans and markers from before it started.

Read once, before the subscriber starts, with the report's reader (series_report.py): the same
files, folders and glob patterns, the same one-line errors naming a file. Only records older
than the view's start are taken, so none that arrives on the bus afterwards is counted twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from monitor.views.series_report import MouseSeries, read_series, score_csvs, score_rows

WEEK = 7 * 86400.0  # the longest span a mouse's page shows


@dataclass(frozen=True)
class PastSpan:
    rule: str
    start: float
    end: float


@dataclass(frozen=True)
class PastMarker:
    wall_time: float
    text: str
    kind: str


@dataclass
class PastMouse:
    """One mouse's week before the view started, oldest first."""

    mouse: str
    camera: str
    records: int  # rows of any status in the week
    points: list[tuple[float, float, tuple[float, ...]]]  # scored: time, total, levels
    latest: tuple[float, str, float | None, tuple[float, ...] | None]  # time, status, total..
    spans: list[PastSpan]
    markers: list[PastMarker]


def read_history(paths: list[Path], before: float) -> list[PastMouse]:
    """Every mouse with records in the week before `before`; a path that cannot be read is a
    ReportError naming it. A folder or file with no records yet (a new study's) gives none."""
    since = before - WEEK
    files = week_files(paths, since)
    if not any(score_rows(path) for path in files):
        return []
    found = [_past(series, since, before) for series in read_series(files).values()]
    return [mouse for mouse in found if mouse is not None]


def week_files(paths: list[Path], since: float) -> list[Path]:
    """The score CSVs `paths` name (as `mgs-monitor report` takes them) written to since
    `since`: a rotating logger's folder holds every day of a study, and a file last written
    before the week began holds nothing of it. An empty folder names none."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir() and not any(path.glob("*.csv")):
            continue  # the records of a study that has not begun
        files += [p for p in score_csvs([path]) if not p.is_file()
                  or p.stat().st_mtime >= since]  # a missing file is named when it is read
    return files


def _past(series: MouseSeries, since: float, before: float) -> PastMouse | None:
    kept = [k for k, t in enumerate(series.time) if since <= t < before]
    if not kept:
        return None
    points = [(float(series.time[k]), float(series.total[k]),
               tuple(float(v) for v in series.levels[k])) for k in kept
              if series.status[k] == "scored" and not math.isnan(series.total[k])
              and not any(math.isnan(v) for v in series.levels[k])]
    last = kept[-1]
    scored = points[-1] if points and points[-1][0] == float(series.time[last]) else None
    latest = (float(series.time[last]), series.status[last],
              scored[1] if scored else None, scored[2] if scored else None)
    spans = [PastSpan(s.rule, s.start, min(s.end, before)) for s in series.alerts
             if s.end >= since and s.start < before]
    markers = [PastMarker(t, text, "acknowledged" if (t, text) in series.acknowledged
                          else "note") for t, text in series.markers if since <= t < before]
    return PastMouse(series.mouse, series.camera, len(kept), points, latest, spans, markers)
