"""Reads what the monitor keeps as evidence of a run, and pins what a queue takes from it.

A score CSV (score schema 3 or later) names each kept face crop in its `crop` column, relative
to the CSV's folder; the crop lies in the monitor's evidence folder
(monitor/outputs/evidence.py), whose `frames.csv` indexes the full frames kept, with each
cubicle's region and the localizer's box in the frame's pixels. Files listed in its
`pinned.txt` are never deleted by the disk budget.

A project's queue appends a line of its own to pinned.txt for every evidence file it took, and
notes them in the project's `pins.json`; `release` removes those lines and only those, so the
pins of alerts and of other projects stay (monitor/outputs/pinned.py).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from monitor.outputs.evidence import FRAME_COLUMNS
from monitor.outputs.pinned import append_pinned, read_pinned, release_pinned
from monitor.units import LEVELS, UNITS

from .errors import UserError
from .project import write_atomic

PROB_COLUMNS = tuple(f"p_{unit}_{level}" for unit in UNITS for level in LEVELS)
SCORE_NEEDS = ("wall_time", "source_time", "camera", "cubicle", "mouse", "status",
               *PROB_COLUMNS)
PINS = "pins.json"  # in a project folder: the pinned.txt lines its queue added, per folder


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


def read_frames(evidence: Path) -> tuple[list[FrameCubicle], list[str]]:
    """Every cubicle of every frame in `evidence/frames.csv` (none when there is no index), and
    a warning counting the rows that cannot be read (a crash can cut the last one)."""
    path = evidence / "frames.csv"
    if not path.is_file():
        return [], []
    header, lines = _read_lines(path, "frames index")
    _need(path, header, FRAME_COLUMNS)
    found: list[FrameCubicle] = []
    bad: list[str] = []
    for line, text in lines:
        try:
            found += _frame_row(evidence, header, line, text)
        except UserError as exc:
            bad.append(str(exc))
    warnings = [f"{path}: {len(bad)} unreadable rows skipped (first: {bad[0]})"] if bad else []
    return found, warnings


def _frame_row(evidence: Path, header: list[str], line: int, text: str) -> list[FrameCubicle]:
    """One row of frames.csv: its cubicles, none when its image is gone; UserError when the
    row cannot be read. Rows never hold a line end, so each line is read on its own and a
    torn row cannot take the next one with it."""
    at = f"{evidence / 'frames.csv'} line {line}"
    try:
        fields = next(csv.reader([text]))
    except csv.Error as exc:
        raise UserError(f"{at}: {exc}") from None
    if len(fields) != len(header):
        raise UserError(f"{at}: {len(fields)} fields, the header has {len(header)}")
    row = dict(zip(header, fields, strict=True))
    image = evidence / row["image"].strip()
    if not image.is_file():
        return []
    wall_time, source_time = _number(at, row, "wall_time"), _number(at, row, "source_time")
    return [FrameCubicle(image, evidence, row["camera"], _index(at, cubicle["cubicle"]),
                         str(cubicle["mouse"]), _region(at, cubicle.get("region")),
                         _box(at, cubicle.get("box")), wall_time, source_time, at)
            for cubicle in _cubicles(at, row["cubicles"])]


def pin(evidence: Path, files: list[Path]) -> tuple[list[str], int]:
    """Appends a line to `evidence`'s pinned.txt for each of the files inside it (once per
    file): the lines are the caller's own, to release when done. Returns the names appended
    and how many of them were not pinned before."""
    known = read_pinned(evidence)
    names = sorted({name for file in files
                    if not (name := Path(os.path.relpath(file, evidence)).as_posix())
                    .startswith("../")})
    if names:
        append_pinned(evidence, names)
    return names, len(set(names) - known)


def record_pins(project: Path, pins: dict[str, list[str]]) -> None:
    """Notes in the project which lines its queue added to which evidence folder."""
    write_atomic(project / PINS, json.dumps({"pins": pins, "released": {}}, indent=1) + "\n")


def release(project: Path) -> list[str]:
    """Removes the pinned.txt lines the project's queue added, and no other; one line of
    report per evidence folder. Each folder is marked released before its lines go, so a
    second release (or one after a crash) never takes another pinner's line."""
    record = _pins_record(project)
    said = []
    for folder, names in record["pins"].items():
        if folder in record["released"]:
            said.append(f"{folder}: released before ({record['released'][folder]})")
            continue
        if not Path(folder).is_dir():
            raise UserError(f"{folder}: evidence folder not found: its pins of {project} stay; "
                            "run release where the folder is")
        record["released"][folder] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_atomic(project / PINS, json.dumps(record, indent=1) + "\n")
        try:
            removed = release_pinned(Path(folder), names)
        except OSError as exc:
            raise UserError(f"cannot release the pins: {exc.filename}: {exc.strerror or exc}; "
                            f"they stay until its entry under `released` in {project / PINS} "
                            "is removed and release runs again") from exc
        said.append(f"{folder}: {removed} pins of this project released (pins of alerts and "
                    "of other projects stay); the disk budget may now remove those files")
    return said


def _pins_record(project: Path) -> dict[str, Any]:
    path = project / PINS
    if not path.is_file():
        raise UserError(f"{path}: not found: this project pinned no monitor evidence (queued "
                        "from --images, or by an mgs-label that did not note its pins)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not (isinstance(record.get("pins"), dict) and isinstance(record.get("released"), dict)):
            raise ValueError("expected keys pins and released")
    except (OSError, ValueError, AttributeError) as exc:
        raise UserError(f"{path}: damaged: {exc}") from None
    return dict(record)


def _read_lines(path: Path, what: str) -> tuple[list[str], list[tuple[int, str]]]:
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise UserError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    lines = [line.rstrip("\r") for line in text.split("\n")]  # a row is one line, always
    header = next(csv.reader(lines[:1]), [])
    if not header:
        raise UserError(f"{path}: empty {what}, expected a header")
    return header, [(n, line) for n, line in enumerate(lines[1:], 2) if line.strip()]


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


def _index(at: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"{at}: cubicle={value!r} is not a number") from None


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
