"""What happened to each mouse: its condition and when its pain began, on the alerts' clock.

The lab says it in a table of mice (`mouse,condition[,onset]`) and/or with markers of an onset
kind (`mgs-monitor mark M3 "NTG" --kind injection`). An onset in the table is a number of
seconds of source time (what the records' `source_time` counts: seconds into the video for a
replay, unix time live) or a clock time (ISO 8601, e.g. 2026-03-02T09:30); markers carry the
clock time they were made. A clock time is placed on a live run's records as it is, and on a
replay's only when the recording's start is given (`--recorded-at`), since the video's own
clock starts at 0.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from monitor.schema import ONSET_KINDS, Marker, side_file
from monitor.views.alert_replay import Track
from monitor.views.series_report import read_markers

ALL_MICE = "*"
LIVE_SKEW_S = 86400.0  # live records' source time is their wall time; a replay's is video time


class TruthError(ValueError):
    """A mice table, onset or recording time that cannot be used; one line naming it."""


@dataclass(frozen=True)
class MouseTruth:
    mouse: str
    condition: str
    pain: bool
    onset: float | None  # source time pain began; None for controls and pain mice without one
    onset_from: str  # where the onset came from, for the page ("" when none)


@dataclass(frozen=True)
class _Listed:
    condition: str
    onset: str
    where: str  # file:line, for messages


def read_mice(path: Path) -> dict[str, _Listed]:
    """The table's mice, each once; `onset` may be missing or blank."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"mouse", "condition"} - set(reader.fieldnames or ())
            if missing:
                raise TruthError(f"{path}: missing column(s) {', '.join(sorted(missing))} "
                                 "(expected mouse,condition and optionally onset)")
            rows = [(n, row) for n, row in enumerate(reader, start=2)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TruthError(f"{path}: cannot read the mice table ({exc})") from exc
    mice: dict[str, _Listed] = {}
    for n, row in rows:
        mouse = (row["mouse"] or "").strip()
        if not mouse:
            raise TruthError(f"{path}: line {n}: no mouse id")
        if mouse in mice:
            raise TruthError(f"{path}: line {n}: mouse {mouse} is listed twice "
                             f"(first on {mice[mouse].where.rpartition(': ')[2]})")
        mice[mouse] = _Listed((row["condition"] or "").strip(),
                              (row.get("onset") or "").strip(), f"{path}: line {n}")
    if not mice:
        raise TruthError(f"{path}: no mice listed")
    return mice


def parse_clock(text: str, what: str) -> float:
    """Unix seconds of an ISO 8601 time (local time when it names no zone)."""
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise TruthError(f"{what}: {text!r} is neither seconds nor a clock time like "
                         "2026-03-02T09:30") from None


def recording_starts(values: Iterable[str]) -> dict[str, float]:
    """`--recorded-at` values, `TIME` (every camera) or `CAMERA=TIME`; key `*` for all."""
    starts: dict[str, float] = {}
    for value in values:
        camera, _, when = value.rpartition("=") if "=" in value else ("", "", value)
        starts[camera or ALL_MICE] = parse_clock(when, f"--recorded-at {value}")
    return starts


def to_source_time(clock: float, track: Track, starts: dict[str, float], what: str) -> float:
    """A clock time on the track's source clock: as it is live; less the recording's start for
    a replay."""
    start = starts.get(track.camera, starts.get(ALL_MICE))
    if start is not None:
        return clock - start
    if len(track.time) and abs(track.time[0] - track.wall[0]) < LIVE_SKEW_S:
        return clock
    raise TruthError(f"{what}: a clock time, but {track.mouse}'s records ({track.camera}) are a "
                     "replay, timed in seconds into the video: give --recorded-at "
                     f"{track.camera}=TIME, when the recording began")


def onset_markers(score_csvs: Iterable[Path], kinds: Iterable[str] = ONSET_KINDS
                  ) -> list[tuple[Marker, Path]]:
    """Markers of an onset kind beside the score CSVs, with the file each is in."""
    wanted = set(kinds)
    return sorted(((marker, path) for csv_path in score_csvs
                   for path in [side_file(csv_path, "markers")]
                   for marker in read_markers(path) if marker.kind in wanted),
                  key=lambda found: found[0].wall_time)


def resolve(mice: dict[str, _Listed], tracks: dict[str, Track], pain_conditions: set[str],
            control_conditions: set[str], markers: list[tuple[Marker, Path]],
            starts: dict[str, float]) -> dict[str, MouseTruth]:
    """Each listed mouse that has records, judged pain or control, with its onset on the
    source clock: the table's, else its (or `*`'s) first onset marker."""
    truths = {}
    for mouse, listed in mice.items():
        pain = listed.condition in pain_conditions
        if not pain and control_conditions and listed.condition not in control_conditions:
            continue  # neither: left out, and the page counts it
        if mouse not in tracks:
            continue
        onset, source = _onset(mouse, listed, tracks[mouse], markers, starts)
        truths[mouse] = MouseTruth(mouse, listed.condition, pain, onset if pain else None,
                                   source if pain else "")
    return truths


def _onset(mouse: str, listed: _Listed, track: Track, markers: list[tuple[Marker, Path]],
           starts: dict[str, float]) -> tuple[float | None, str]:
    if listed.onset:
        what = f"{listed.where}: onset"
        try:
            seconds = float(listed.onset)
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds):
            return seconds, "mice table"
        return to_source_time(parse_clock(listed.onset, what), track, starts, what), "mice table"
    for marker, path in markers:
        if marker.mouse in (mouse, ALL_MICE):
            what = f"{path}: {marker.kind} marker {marker.text!r}"
            return (to_source_time(marker.wall_time, track, starts, what),
                    f"{marker.kind} marker '{marker.text}'")
    return None, ""
