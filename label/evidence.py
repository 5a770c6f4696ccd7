"""Reads what the monitor keeps as evidence of a run, and pins what a queue takes from it.

A score CSV (score schema 3 or later) names each kept face crop in its `crop` column, relative
to the CSV's folder; the crop lies in the monitor's evidence folder (monitor/evidence.py), whose
`frames.csv` indexes the full frames kept, with each cubicle's region and the localizer's box
in the frame's pixels. Files listed in its `pinned.txt` are never deleted by the disk budget.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from monitor.evidence import FRAME_COLUMNS, append_pinned, read_pinned
from monitor.units import LEVELS, UNITS

from .errors import UserError

PROB_COLUMNS = tuple(f"p_{unit}_{level}" for unit in UNITS for level in LEVELS)
SCORE_NEEDS = ("wall_time", "source_time", "camera", "cubicle", "mouse", "status",
               *PROB_COLUMNS)


@dataclass(frozen=True)
class Crop:
    """One kept face crop of a scored sample, with the model's 5x3 probabilities if given."""

    path: Path
    evidence: Path  # the run's evidence folder, where pinned.txt lives
    mouse: str
    camera: str
    cubicle: int
    wall_time: float
    source_time: float
    probs: tuple[float, ...] | None  # 15 values, UNITS x LEVELS
    where: str  # "RUN.csv line N", for messages

    @property
    def entropy(self) -> float:
        """Summed entropy (nats) of the five unit distributions: high = the model is unsure."""
        if self.probs is None:
            return math.nan
        p = np.clip(np.asarray(self.probs, float).reshape(len(UNITS), len(LEVELS)), 1e-12, 1)
        return float(-(p * np.log(p)).sum())


@dataclass(frozen=True)
class FrameCubicle:
    """One cubicle of one kept full frame, with the localizer's box in the frame's pixels."""

    frame: Path
    evidence: Path
    camera: str
    cubicle: int
    mouse: str
    region: tuple[int, int, int, int]  # x0, y0, x1, y1
    box: tuple[float, float, float, float] | None  # x, y, w, h; None: the localizer saw none
    wall_time: float
    source_time: float
    where: str


def evidence_of(crop: Path) -> Path:
    """The evidence folder a kept crop is in (`crops/<date>/<mouse>/<file>` inside it),
    wherever the monitor's `evidence.folder` put it."""
    return crop.parents[3]


def read_scores(path: Path) -> tuple[list[Crop], list[str]]:
    """The scored rows with a kept crop, and one warning per kind of row left out."""
    header, rows = _read_table(path, "score CSV")
    if "crop" not in header:
        raise UserError(f"{path}: no 'crop' column: written by a monitor older than score "
                        "schema 3, which keeps no face crops to label")
    _need(path, header, SCORE_NEEDS)
    crops, missing = [], 0
    for line, row in rows:
        if row["status"] != "scored" or not row["crop"].strip():
            continue
        image = path.parent / row["crop"].strip()
        if not image.is_file():  # the disk budget may have deleted an unpinned crop
            missing += 1
            continue
        at = f"{path} line {line}"
        crops.append(Crop(image, evidence_of(image), row["mouse"], row["camera"],
                          int(_number(at, row, "cubicle")), _number(at, row, "wall_time"),
                          _number(at, row, "source_time"), _probs(at, row), at))
    warnings = [f"{path}: {missing} crops named in the CSV no longer exist"] if missing else []
    return crops, warnings


def read_frames(evidence: Path) -> list[FrameCubicle]:
    """Every cubicle of every frame in `evidence/frames.csv` (none when there is no index)."""
    path = evidence / "frames.csv"
    if not path.is_file():
        return []
    header, rows = _read_table(path, "frames index")
    _need(path, header, FRAME_COLUMNS)
    found = []
    for line, row in rows:
        at = f"{path} line {line}"
        image = evidence / row["image"].strip()
        if not image.is_file():
            continue
        for cubicle in _cubicles(at, row["cubicles"]):
            found.append(FrameCubicle(
                image, evidence, row["camera"], int(cubicle["cubicle"]), str(cubicle["mouse"]),
                _region(at, cubicle.get("region")), _box(at, cubicle.get("box")),
                _number(at, row, "wall_time"), _number(at, row, "source_time"), at))
    return found


def pin(evidence: Path, files: list[Path]) -> int:
    """Appends the files inside `evidence` to its pinned.txt (once each); returns how many."""
    known = read_pinned(evidence)
    names = []
    for file in files:
        name = Path(os.path.relpath(file, evidence)).as_posix()
        if not name.startswith("../") and name not in known:
            known.add(name)
            names.append(name)
    if names:
        append_pinned(evidence, names)
    return len(names)


def _read_table(path: Path, what: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, [])
            rows = [(reader.line_num, dict(zip(header, row, strict=False)))
                    for row in reader if row]
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read the {what}: {exc}") from None
    if not header:
        raise UserError(f"{path}: empty {what}, expected a header")
    return header, rows


def _need(path: Path, header: list[str], names: tuple[str, ...]) -> None:
    missing = [name for name in names if name not in header]
    if missing:
        raise UserError(f"{path} line 1: missing column {missing[0]!r}")


def _number(at: str, row: dict[str, str], name: str) -> float:
    text = (row.get(name) or "").strip()
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{at}: {name}={text!r} is not a number") from None


def _probs(at: str, row: dict[str, str]) -> tuple[float, ...] | None:
    texts = [(row.get(name) or "").strip() for name in PROB_COLUMNS]
    if not all(texts):
        return None
    return tuple(_number(at, row, name) for name in PROB_COLUMNS)


def _cubicles(at: str, text: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{at}: cubicles is not JSON: {exc.msg}") from None
    if not isinstance(value, list) or not all(
            isinstance(c, dict) and {"cubicle", "mouse", "region"} <= c.keys() for c in value):
        raise UserError(f"{at}: cubicles must be a list of {{cubicle, mouse, region, box}}")
    return value


def _region(at: str, value: Any) -> tuple[int, int, int, int]:
    try:
        x0, y0, x1, y1 = (round(float(v)) for v in value)
    except (TypeError, ValueError):
        raise UserError(f"{at}: cubicle region={value!r} is not [x0, y0, x1, y1]") from None
    if x1 <= x0 or y1 <= y0:
        raise UserError(f"{at}: cubicle region={value!r} is empty")
    return x0, y0, x1, y1


def _box(at: str, value: Any) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    try:
        x, y, w, h = (float(v) for v in value)
    except (TypeError, ValueError):
        raise UserError(f"{at}: cubicle box={value!r} is not [x, y, w, h] or null") from None
    return x, y, w, h
