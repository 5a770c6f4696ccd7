"""Recorded score series run through the alert rules again, as the monitor would have run them.

`read_tracks` turns score CSVs of any schema into one track per mouse, in source time (video
time for a replay, wall time live: the clock alerts run on). `engine_spans` feeds each track
record by record through the monitor's own `AlertEngine`, the reference. `fast_pain_spans`
gives the same pain alerts from arrays, so that a sweep over many rules on a month of records
takes seconds, not hours; tests hold it to the engine's raised and cleared events exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from monitor.config import Alerts
from monitor.schema import CSV_COLUMNS, ScoreRecord
from monitor.scoring.alerts import RULES, AlertEngine, ResolvedRule
from monitor.units import UNITS
from monitor.views.series_report import ReportError, describe_files, score_csvs, score_rows

UNSEEN_STATUSES = ("no_face", "low_quality")  # the camera ran but the face was not scoreable
Span = tuple[float, float | None]  # raised, cleared (None: still active at the mouse's end)
_COLUMN = {name: CSV_COLUMNS.index(name) for name in
           ("wall_time", "source_time", "camera", "mouse", "status", "model_kind", *UNITS)}


@dataclass
class Track:
    """One mouse's records in source-time order (ties in the order they were written)."""

    mouse: str
    camera: str  # of the latest record
    time: np.ndarray  # source_time, seconds
    wall: np.ndarray  # wall_time, unix seconds
    status: np.ndarray  # each record's status
    levels: np.ndarray  # int64 [n, 5]; -1 where the record was not scored
    demo: bool  # a record came from DEMO models

    @cached_property
    def scored(self) -> np.ndarray:
        """Records the engine judges as scored: status `scored` with all five levels."""
        return np.asarray((self.status == "scored") & (self.levels >= 0).all(axis=1))

    def held(self) -> np.ndarray:
        """Seconds each record stands for: until the next record (the last, none)."""
        return np.diff(self.time, append=self.time[-1]) if len(self.time) else self.time

    def seconds(self, statuses: Iterable[str]) -> float:
        """Time the mouse spent in these statuses, each record held until the next."""
        return float(self.held()[np.isin(self.status, list(statuses))].sum())

    @cached_property
    def unseen_s(self) -> float:
        return self.seconds(UNSEEN_STATUSES)

    @cached_property
    def down_s(self) -> float:
        return self.seconds(("camera_down",))

    @property
    def observed(self) -> float:
        return float(self.time[-1] - self.time[0]) if len(self.time) else 0.0


def read_tracks(paths: list[Path]) -> dict[str, Track]:
    """Every mouse of the score CSVs, several files joined (side files are not score CSVs; a
    folder or glob pattern names a rotating logger's files, read as one series)."""
    paths = score_csvs(paths)
    rows: dict[str, list[list[str]]] = {}
    for path in paths:
        for row in score_rows(path):
            rows.setdefault(row[_COLUMN["mouse"]], []).append(row)
    if not rows:
        raise ReportError(f"{describe_files([str(p) for p in paths])}: no records")
    try:
        return {mouse: _track(mouse, found) for mouse, found in sorted(rows.items())}
    except ValueError as exc:
        raise ReportError(f"{describe_files([str(p) for p in paths])}: bad number ({exc})"
                          ) from exc


def _track(mouse: str, rows: list[list[str]]) -> Track:
    c = _COLUMN
    rows = sorted(rows, key=lambda row: float(row[c["source_time"]]))  # stable: file order
    status = np.array([row[c["status"]] for row in rows])
    levels = np.array([[int(row[c[u]]) if row[c[u]] else -1 for u in UNITS] for row in rows],
                      np.int64).reshape(len(rows), len(UNITS))
    levels[(status != "scored") | (levels < 0).any(axis=1)] = -1  # unscored: no levels at all
    return Track(mouse, rows[-1][c["camera"]],
                 np.array([float(row[c["source_time"]]) for row in rows]),
                 np.array([float(row[c["wall_time"]]) for row in rows]), status, levels,
                 any(row[c["model_kind"]] == "demo" for row in rows))


def engine_spans(tracks: dict[str, Track], alerts: Alerts, model_cutoff: float | None,
                 tick: Callable[[], object] = lambda: None) -> dict[str, dict[str, list[Span]]]:
    """Each mouse's alert spans per rule (pain, no_face, camera_down), from the monitor's own
    AlertEngine fed one record at a time in source time, as live; `tick` after each mouse."""
    found: dict[str, dict[str, list[Span]]] = {}
    for track in tracks.values():
        engine = AlertEngine(alerts, model_cutoff)
        spans: dict[str, list[Span]] = {rule: [] for rule in RULES}
        for i, record in enumerate(_records(track)):
            for event in engine.update(record)[1]:
                if event.event == "raised":
                    spans[event.rule].append((float(track.time[i]), None))
                elif event.event == "cleared":
                    spans[event.rule][-1] = (spans[event.rule][-1][0], float(track.time[i]))
        found[track.mouse] = spans
        tick()
    return found


def _records(track: Track) -> Iterable[ScoreRecord]:
    scored = track.scored
    for i, status in enumerate(track.status.tolist()):
        levels = tuple(track.levels[i].tolist()) if scored[i] else None
        yield ScoreRecord(publisher="mgs-eval", seq=i, wall_time=float(track.wall[i]),
                          mono_time=0.0, source_time=float(track.time[i]), frame_index=i,
                          camera=track.camera, cubicle=0, mouse=track.mouse, status=status,
                          levels=levels, total=sum(levels) if levels else None)


def pain_values(track: Track, rule: ResolvedRule) -> np.ndarray:
    """The pain rule's value after each scored record (NaN where it cannot judge yet),
    computed with the engine's own arithmetic: a window sum of whole numbers divided by its
    length, less the baseline mean, so that every comparison with a threshold comes out the
    same."""
    levels = track.levels[track.scored]
    units = [UNITS.index(u) for u in rule.units] if rule.units else list(range(len(UNITS)))
    value = levels[:, units].sum(axis=1)
    ends = np.arange(1, len(value) + 1)
    starts = np.maximum(ends - rule.window, 0)
    sums = np.concatenate([[0], np.cumsum(value)])
    mean = (sums[ends] - sums[starts]) / (ends - starts)
    if len(value) < rule.baseline_samples:
        return np.full(len(value), np.nan)
    base = sums[rule.baseline_samples] / rule.baseline_samples if rule.baseline_samples else 0.0
    judged = mean - base
    judged[(ends - starts < rule.min_valid) | (ends < rule.baseline_samples)] = np.nan
    return np.asarray(judged, dtype=float)


def fast_pain_spans(track: Track, rule: ResolvedRule,
                    values: np.ndarray | None = None) -> list[Span]:
    """The engine's pain alerts of one mouse under one rule: raised at the first scored record
    whose value reaches the threshold, cleared at the next one below `clear_below`."""
    values = pain_values(track, rule) if values is None else values
    times = track.time[track.scored]
    fire = np.flatnonzero(values >= rule.threshold)
    clear = np.flatnonzero(values < rule.clear_below)
    spans: list[Span] = []
    start = 0
    while (i := int(np.searchsorted(fire, start))) < len(fire):
        raised = int(fire[i])
        j = int(np.searchsorted(clear, raised + 1))
        if j == len(clear):
            spans.append((float(times[raised]), None))
            break
        spans.append((float(times[raised]), float(times[clear[j]])))
        start = int(clear[j]) + 1
    return spans
