"""Event markers ("NTG injected", "buprenorphine") kept beside a score CSV.

`mgs-monitor mark` appends to `<scores>.markers.csv`; `mgs-monitor report` draws them on each
mouse's series. Mouse `*` marks every mouse.
"""

from __future__ import annotations

import time
from pathlib import Path

from monitor.csvlog import SideLog
from monitor.schema import MARKER_COLUMNS, Marker, is_side_file, side_file


class MarkerError(ValueError):
    """A marker that cannot be recorded; one line for the user."""


def latest_scores(folder: Path) -> Path:
    """The score CSV a running monitor writes: the newest scores-*.csv in its folder."""
    candidates = sorted((p for p in folder.glob("scores*.csv") if not is_side_file(p)),
                        key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise MarkerError(f"{folder}: no scores*.csv here; name the file with --csv")
    return candidates[-1]


def add_marker(scores_csv: Path, mouse: str, text: str, when: float | None = None) -> Path:
    if not mouse.strip() or not text.strip():
        raise MarkerError("a marker needs a mouse id (or '*') and a text")
    path = side_file(scores_csv, "markers")
    try:
        SideLog(path, MARKER_COLUMNS).write(Marker(time.time() if when is None else when,
                                                   mouse, text))
    except OSError as exc:
        raise MarkerError(f"{path}: cannot write the marker: {exc.strerror or exc}") from exc
    return path
