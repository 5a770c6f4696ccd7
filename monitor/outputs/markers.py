"""Event markers ("NTG injected", "buprenorphine") kept beside a score CSV.

`mgs-monitor mark` appends to `<scores>.markers.csv`, as do the monitor and `mgs-monitor log` for
each acknowledged alert (kind `acknowledged`); `mgs-monitor report` draws them on each
mouse's series, and `mgs-eval --alerts` takes markers of an onset kind (`onset`, `injection`,
`surgery`) as the time a mouse's pain began. Mouse `*` marks every mouse.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from monitor.outputs.csvlog import SideLog
from monitor.schema import (
    MARKER_COLUMNS,
    MARKER_HEADERS,
    MARKER_KINDS,
    Acknowledgement,
    Column,
    Marker,
    csv_header,
    is_side_file,
    side_file,
)


class MarkerError(ValueError):
    """A marker that cannot be recorded; one line for the user."""


def latest_scores(folder: Path) -> Path:
    """The score CSV a running monitor writes: the newest scores-*.csv in its folder."""
    candidates = sorted((p for p in folder.glob("scores*.csv") if not is_side_file(p)),
                        key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise MarkerError(f"{folder}: no scores*.csv here; name the file with --csv")
    return candidates[-1]


def new_marker(mouse: str, text: str, when: float | None = None, kind: str = "note") -> Marker:
    """A marker checked: a mouse (or '*'), a text and a known kind; now unless `when`."""
    if not mouse.strip() or not text.strip():
        raise MarkerError("a marker needs a mouse id (or '*') and a text")
    if kind not in MARKER_KINDS:
        raise MarkerError(f"marker kind {kind!r} is not one of {', '.join(MARKER_KINDS)}")
    return Marker(time.time() if when is None else when, mouse, text, kind)


def acknowledgement_marker(ack: Acknowledgement) -> Marker:
    """The marker an acknowledgement leaves in the records (kind `acknowledged`): the monitor
    that raised the alert writes it, and so does a logger that hears it."""
    note = f": {ack.note}" if ack.note else ""
    return Marker(ack.wall_time, ack.mouse, f"{ack.rule} alert acknowledged by {ack.who}{note}",
                  "acknowledged")


def add_marker(scores_csv: Path, mouse: str, text: str, when: float | None = None,
               kind: str = "note") -> Path:
    marker = new_marker(mouse, text, when, kind)
    path = side_file(scores_csv, "markers")
    try:
        columns = _columns_of(path)
        if len(columns) < len(MARKER_COLUMNS) and kind != "note":
            raise MarkerError(f"{path}: written by an older mgs-monitor, without a kind column; "
                              f"a {kind} marker goes into a new score CSV's markers (or give "
                              "the onset in the mice table of mgs-eval --alerts)")
        SideLog(path, columns).write(marker)
    except OSError as exc:
        raise MarkerError(f"{path}: cannot write the marker: {exc.strerror or exc}") from exc
    return path


def _columns_of(path: Path) -> tuple[Column, ...]:
    """The columns to append with: the file's own (older files have no kind), else the newest."""
    if not path.is_file() or path.stat().st_size == 0:
        return MARKER_COLUMNS
    with path.open(newline="", encoding="utf-8") as handle:
        header = tuple(next(csv.reader(handle), ()))
    if header not in MARKER_HEADERS:
        raise MarkerError(f"{path}: not a markers file (header {','.join(header)!r}); "
                          f"expected {','.join(csv_header(MARKER_COLUMNS))}")
    return MARKER_COLUMNS[:len(header)]
