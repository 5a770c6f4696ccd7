"""`mgs-label export`: the answers log as label CSVs that mgs-train reads as they are.

    labels.csv         one row per (face image, rater): the five levels (blank = not
                       scoreable), mouse, condition, rater; for `mgs-train --labels`
    labels-random.csv  the same, only the images drawn at random: an unbiased sample for
                       evaluation (`mgs-eval --labels`), since uncertain ones are hard by choice
    boxes.csv          one row per cubicle image with a face box (x, y, w, h in that image's
                       pixels) and blank units; for `mgs-train-localizer --labels`
    provenance.csv     every queued image: selection, mouse, condition, camera, times, source

Only a rater's first answer to an image becomes a row: the repeat showings measure
consistency (agreement page) and stay in the answers log. When several raters boxed one
cubicle, its row holds the mean of their boxes (train.labels wants one box per image), unless
more of them said no face was visible. The mouse -> condition table is joined here and only
here: nothing the raters saw knew it. Every file is written to .tmp and renamed.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monitor.units import UNITS
from train.labels import BOX_COLUMNS

from .answers import ANSWER, AnswerLog, in_force, read_log
from .errors import UserError
from .project import BOX, FACE, RANDOM, Item, Project, write_csv_atomic

LABEL_COLUMNS = ("image", *UNITS, "mouse", "condition", "rater", "selection")
# No condition: the localizer does not use it, and train.labels would stratify by it.
BOX_ROW_COLUMNS = ("image", *UNITS, "mouse", "rater", *BOX_COLUMNS)
PROVENANCE_COLUMNS = ("image", "task", "selection", "mouse", "condition", "camera", "cubicle",
                      "wall_time", "source_time", "entropy", "source", "answered_by")


@dataclass
class ExportReport:
    labels: int = 0  # rows of labels.csv
    random: int = 0  # rows of labels-random.csv
    boxes: int = 0
    no_face: int = 0  # cubicle images the raters found no face in
    repeats: int = 0  # repeat answers kept out of the label rows
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unconditioned: set[str] = field(default_factory=set)  # mice not in the conditions file

    def __str__(self) -> str:
        lines = [f"warning: {w}" for w in self.warnings]
        if self.unconditioned:
            lines.append(f"warning: {_not_in_table(self)}: "
                         f"{', '.join(sorted(self.unconditioned))}")
        lines.append(f"{self.labels} label rows ({self.random} of randomly drawn images), "
                     f"{self.boxes} face boxes, {self.no_face} cubicles without a visible "
                     f"face; {self.repeats} repeat answers kept for consistency only")
        lines += [f"wrote {path}" for path in self.files]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """For the page: counts and file names, no mouse id (raters may be looking)."""
        warnings = self.warnings + ([_not_in_table(self)] if self.unconditioned else [])
        return {"labels": self.labels, "random": self.random, "boxes": self.boxes,
                "no_face": self.no_face, "repeats": self.repeats,
                "files": [p.name for p in self.files], "warnings": warnings}


def _not_in_table(report: ExportReport) -> str:
    return (f"{len(report.unconditioned)} mice are not in the conditions file (their condition "
            "is left blank)")


def read_conditions(path: Path) -> dict[str, str]:
    """The lab's mouse -> condition table: a CSV with columns `mouse,condition`."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [name.strip() for name in reader.fieldnames or []]
            rows = [(reader.line_num, row) for row in reader]
    except FileNotFoundError:
        raise UserError(f"{path}: conditions file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read the conditions file: {exc}") from None
    for name in ("mouse", "condition"):
        if name not in header:
            raise UserError(f"{path} line 1: missing column {name!r} (expected columns "
                            "mouse,condition)")
    table: dict[str, str] = {}
    for line, row in rows:
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        mouse, condition = row["mouse"], row["condition"]
        if not mouse:
            raise UserError(f"{path} line {line}: mouse is blank")
        if table.get(mouse, condition) != condition:
            raise UserError(f"{path} line {line}: mouse {mouse!r} has condition "
                            f"{condition!r} here and {table[mouse]!r} above")
        table[mouse] = condition
    return table


def export_folder(folder: Path, conditions: Path | None, log: AnswerLog | None = None,
                  project: Project | None = None) -> ExportReport:
    """Writes the four CSVs into the project folder from its answers log (the server passes
    its own open log, so the snapshot is taken under its lock)."""
    from . import project as projects

    proj = project or projects.load(folder)
    table = read_conditions(conditions) if conditions is not None else None
    if log is not None:
        records, warnings = log.in_force(), list(log.warnings)
    else:
        raw, warnings = read_log(proj.answers_path)
        records = in_force(raw)
    report = ExportReport(warnings=warnings)
    items = {item.id: item for item in proj.items}
    answers = [r for r in records if r["kind"] == ANSWER and r["item"] in items]
    report.repeats = sum(bool(r.get("repeat")) for r in answers)
    firsts = [r for r in answers if not r.get("repeat")]
    condition = _conditioner(table, report)
    faces = sorted((r for r in firsts if items[r["item"]].task == FACE),
                   key=lambda r: (items[r["item"]].image, r["rater"]))
    rows = [_label_row(items[r["item"]], r, condition) for r in faces]
    random_rows = [row for r, row in zip(faces, rows, strict=True)
                   if items[r["item"]].selection == RANDOM]
    box_rows = _box_rows(items, [r for r in firsts if items[r["item"]].task == BOX], report)
    raters: dict[str, set[str]] = defaultdict(set)
    for r in firsts:
        raters[r["item"]].add(r["rater"])
    provenance = [_provenance(item, condition, raters[item.id]) for item in proj.items]
    for name, header, body in (("labels.csv", LABEL_COLUMNS, rows),
                               ("labels-random.csv", LABEL_COLUMNS, random_rows),
                               ("boxes.csv", BOX_ROW_COLUMNS, box_rows),
                               ("provenance.csv", PROVENANCE_COLUMNS, provenance)):
        path = proj.folder / name
        write_csv_atomic(path, [header, *([row.get(c, "") for c in header] for row in body)])
        report.files.append(path)
    report.labels, report.random, report.boxes = len(rows), len(random_rows), len(box_rows)
    return report


def _conditioner(table: dict[str, str] | None, report: ExportReport) -> Callable[[str], str]:
    def condition(mouse: str) -> str:
        if table is None or not mouse:
            return ""
        if mouse not in table:
            report.unconditioned.add(mouse)
        return table.get(mouse, "")
    return condition


def _label_row(item: Item, record: dict[str, Any],
               condition: Callable[[str], str]) -> dict[str, str]:
    levels = record["levels"]
    return {"image": item.image, **{unit: "" if v is None else str(v)
                                    for unit, v in zip(UNITS, levels, strict=True)},
            "mouse": item.mouse, "condition": condition(item.mouse), "rater": record["rater"],
            "selection": item.selection}


def _box_rows(items: dict[str, Item], records: list[dict[str, Any]],
              report: ExportReport) -> list[dict[str, str]]:
    by_item: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_item[r["item"]].append(r)
    rows = []
    for item_id, answers in sorted(by_item.items(), key=lambda kv: items[kv[0]].image):
        drawn = [r for r in answers if r.get("box")]
        if len(drawn) <= len(answers) - len(drawn):
            report.no_face += 1
            continue
        box = np.mean([r["box"] for r in drawn], axis=0)
        item = items[item_id]
        rows.append({"image": item.image, "mouse": item.mouse,
                     "rater": "+".join(sorted({r["rater"] for r in drawn})),
                     **{name: f"{v:.1f}" for name, v in zip(BOX_COLUMNS, box, strict=True)}})
    return rows


def _provenance(item: Item, condition: Callable[[str], str],
                raters: set[str]) -> dict[str, str]:
    return {"image": item.image, "task": item.task, "selection": item.selection,
            "mouse": item.mouse, "condition": condition(item.mouse), "camera": item.camera,
            "cubicle": item.cubicle, "wall_time": item.wall_time,
            "source_time": item.source_time, "entropy": item.entropy, "source": item.source,
            "answered_by": " ".join(sorted(raters))}
