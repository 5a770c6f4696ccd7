"""A lab's own MGS labels: read, check and resolve them, cut face crops, split the data.

The format is a contract with the user, so every mistake in it is one `LabelError` line naming
the file, the line (header = line 1) and the column or value, and every image that is not used
is counted in the `LabelSummary` with its reason instead of being dropped silently.

CSV columns: `image` (relative to the CSV's folder or `images_root`), the five units named as
`UNITS` (0, 1, 2, blank = not scoreable), optional `mouse`, `condition`, `rater`, `selection`
(how mgs-label chose the image: `random`, `uncertain`) and optional face box `face_x, face_y,
face_w, face_h` in pixels (top-left corner, width, height). Boxes may instead come from a
JSON file `{"<image as in the CSV>": [x, y, w, h] pixels}` or a folder of YOLO
`<image stem>.txt` files (`class cx cy w h` normalised; first line used). An image without a
box is a face crop already and is used whole.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from monitor.config import Faces
from monitor.scoring.faces import face_crop
from monitor.units import LEVELS, UNITS

Levels = tuple[int | None, ...]
Box = tuple[float, float, float, float]
Split = tuple[np.ndarray, np.ndarray, np.ndarray]
T = TypeVar("T")

MAJORITY = "majority"
BOX_COLUMNS = ("face_x", "face_y", "face_w", "face_h")
COLUMNS = ("image", *UNITS, "mouse", "condition", "rater", *BOX_COLUMNS, "selection")
NO_UNIT = "no scoreable unit"
_BOX_SLACK = 1.0  # pixels a box may overhang the image: annotation tools round outward


class LabelError(ValueError):
    """A label file a user wrote that cannot be used; the message is one line for the user."""


@dataclass
class LabelledImage:
    """One image with its ground truth (UNITS order) and every rater's own levels."""

    image: Path
    levels: Levels
    mouse: str
    condition: str
    box: Box | None  # normalised cx, cy, w, h; None = the whole image is the face crop
    raters: dict[str, Levels]  # key "" when the CSV has no rater column
    selection: str = ""  # how the image was chosen for labelling: random, uncertain (mgs-label)


@dataclass
class LabelSummary:
    """What a label file gave: used images, usable labels per unit and level, skipped images."""

    source: str
    rows: int
    images: int
    raters: list[str]
    levels: dict[str, list[int]]  # unit -> counts of levels 0, 1, 2 among used images
    blank: dict[str, int]  # unit -> used images not scoreable for that unit
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> images

    def __str__(self) -> str:
        width = max(len(unit) for unit in UNITS)
        head = f"{'unit':<{width}}" + "".join(f"{h:>7}" for h in (*map(str, LEVELS), "blank"))
        lines = [f"{self.source}: {self.images} images used from {self.rows} rows", head]
        lines += [
            f"{unit:<{width}}" + "".join(f"{n:>7}" for n in (*self.levels[unit], self.blank[unit]))
            for unit in UNITS
        ]
        lines += [f"skipped ({reason}): {n}" for reason, n in sorted(self.skipped.items())]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Row:
    """One CSV row after checking its own values."""

    line: int
    name: str  # the image as written in the CSV
    image: Path
    levels: Levels
    rater: str
    mouse: str
    condition: str
    box: Box | None  # pixels x, y, w, h from the CSV's box columns
    selection: str = ""


def load_labels(
    csv_path: Path,
    *,
    images_root: Path | None = None,
    rater: str = MAJORITY,
    boxes: Path | None = None,
    need_levels: bool = True,
) -> tuple[list[LabelledImage], LabelSummary]:
    """Reads, checks and resolves a label CSV; `rater` is "majority" or one rater's name.

    Majority: per unit the most common non-blank level among the image's raters; a tie goes to
    the lower-rounded median of the tied levels (0 vs 2 -> 0, 1 vs 2 -> 1, 0 vs 1 vs 2 -> 1):
    deterministic, and a split panel never yields a level above its median. Every image in the
    CSV is opened once, to check it decodes and to turn pixel boxes into normalised ones.
    `need_levels=False` keeps images no unit was scored on (face boxes for the localizer).
    """
    where = str(csv_path)
    header, records = _read_csv(csv_path)
    _check_columns(where, header, boxes)
    if not records:
        raise LabelError(f"{where}: no labelled rows after the header")
    root = images_root if images_root is not None else csv_path.parent
    rows = [_parse_row(where, line, dict(zip(header, values, strict=True)), root)
            for line, values in records]
    groups = _group(where, rows)
    _check_rater(where, rater, "rater" in header, rows)
    sizes = _image_sizes(where, groups)
    items, skipped = _resolve(where, groups, _boxes(where, groups, boxes, sizes), rater,
                              need_levels)
    return items, _summary(where, rows, items, skipped)


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the non-empty rows with the line each ends on."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [name.strip() for name in next(reader, [])]
            rows = [(reader.line_num, row) for row in reader if any(v.strip() for v in row)]
    except FileNotFoundError as exc:
        raise LabelError(f"{path}: label file not found") from exc
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelError(f"{path}: cannot read as a CSV file: {exc}") from exc
    if not header:
        raise LabelError(f"{path} line 1: empty file, expected a header")
    for line, row in rows:
        if len(row) != len(header):
            raise LabelError(f"{path} line {line}: {len(row)} values, header has {len(header)}")
    return header, rows


def _check_columns(where: str, header: list[str], boxes: Path | None) -> None:
    """Exact column names, because a misspelt unit would otherwise read as all blank."""
    for name, count in Counter(header).items():
        if count > 1:
            raise LabelError(f"{where} line 1: column {name!r} appears {count} times")
        if name not in COLUMNS:
            raise LabelError(f"{where} line 1: unknown column {name!r} "
                             f"(allowed: {', '.join(COLUMNS)})")
    for name in ("image", *UNITS):
        if name not in header:
            raise LabelError(f"{where} line 1: missing column {name!r}")
    present = [name for name in BOX_COLUMNS if name in header]
    if present and len(present) < len(BOX_COLUMNS):
        missing = next(name for name in BOX_COLUMNS if name not in header)
        raise LabelError(f"{where} line 1: missing column {missing!r} (box columns go together)")
    if present and boxes is not None:
        raise LabelError(f"{where} line 1: face box columns and boxes={boxes} both given; use one")


def _parse_row(where: str, line: int, values: dict[str, str], root: Path) -> _Row:
    at = f"{where} line {line}"
    name = values["image"].strip()
    if not name:
        raise LabelError(f"{at}: image is blank")
    image = (root / name).resolve()
    if not image.is_file():
        raise LabelError(f"{at}: image={name!r} does not exist (looked for {image})")
    return _Row(
        line=line,
        name=name,
        image=image,
        levels=tuple(_level(at, unit, values[unit]) for unit in UNITS),
        rater=values.get("rater", "").strip(),
        mouse=values.get("mouse", "").strip(),
        condition=values.get("condition", "").strip(),
        box=_csv_box(at, values),
        selection=values.get("selection", "").strip(),
    )


def _level(at: str, unit: str, text: str) -> int | None:
    """0, 1, 2 or blank; "1.0" is accepted since spreadsheets and pandas write blanks that way."""
    value = text.strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if number not in LEVELS:
        raise LabelError(f"{at}: {unit}={text!r} is not 0, 1, 2 or blank")
    return int(number)


def _csv_box(at: str, values: dict[str, str]) -> Box | None:
    texts = [values.get(name, "").strip() for name in BOX_COLUMNS]
    if not any(texts):
        return None
    return _four_numbers(f"{at}: {', '.join(BOX_COLUMNS)}", texts)


def _four_numbers(at: str, values: Iterable[Any]) -> Box:
    listed = list(values)
    try:
        x, y, w, h = (float(v) for v in listed)
    except (TypeError, ValueError):
        raise LabelError(f"{at}={listed} is not 4 numbers") from None
    return x, y, w, h


def _group(where: str, rows: list[_Row]) -> dict[Path, list[_Row]]:
    """Rows per image, in file order; one image may have one row per rater, no more."""
    groups: dict[Path, list[_Row]] = {}
    for row in rows:
        group = groups.setdefault(row.image, [])
        first = next((other for other in group if other.rater == row.rater), None)
        if first is not None:
            raise LabelError(f"{where} line {row.line}: duplicate of line {first.line} "
                             f"(image={row.name!r}, rater={row.rater!r})")
        group.append(row)
    return groups


def _check_rater(where: str, rater: str, has_column: bool, rows: list[_Row]) -> None:
    if rater == MAJORITY:
        return
    if not has_column:
        raise LabelError(f"{where} line 1: no rater column, so rater={rater!r} cannot be chosen")
    names = sorted({row.rater for row in rows})
    if rater not in names:
        raise LabelError(f"{where} column rater: no rows by {rater!r} "
                         f"(raters: {', '.join(map(repr, names))})")


def _image_sizes(where: str, groups: dict[Path, list[_Row]]) -> dict[Path, tuple[int, int]]:
    """(width, height) of every image, decoding in threads since cv2 releases the GIL."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        shapes = list(pool.map(_shape, groups))
    sizes = {}
    for (path, rows), shape in zip(groups.items(), shapes, strict=True):
        if shape is None:
            raise LabelError(f"{where} line {rows[0].line}: image={rows[0].name!r} "
                             "cannot be decoded as an image")
        sizes[path] = (shape[1], shape[0])
    return sizes


def _shape(path: Path) -> tuple[int, ...] | None:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return None if image is None else image.shape


def _boxes(where: str, groups: dict[Path, list[_Row]], boxes: Path | None,
           sizes: dict[Path, tuple[int, int]]) -> dict[Path, Box | None]:
    """Normalised boxes per image from the CSV's columns, a JSON file or YOLO files."""
    if boxes is None:
        located = {path: _csv_located(where, rows) for path, rows in groups.items()}
    elif boxes.suffix.lower() == ".json":
        located = _json_boxes(boxes, groups)
    elif boxes.is_dir():
        located = {path: _yolo_box(boxes, path, sizes[path]) for path in groups}
    else:
        raise LabelError(f"boxes={boxes}: not a .json file or a folder of YOLO .txt files")
    return {path: _normalised(box, sizes[path], at) for path, (box, at) in located.items()}


def _csv_located(where: str, rows: list[_Row]) -> tuple[Box | None, str]:
    box, line = _agree(where, rows, "face box", lambda r: r.box)
    return box, f"{where} line {line}: {', '.join(BOX_COLUMNS)}"


def _agree(where: str, rows: list[_Row], what: str,
           value: Callable[[_Row], T | None]) -> tuple[T | None, int]:
    """The one value an image's rows give (blank rows aside) and the line that gave it."""
    given = [row for row in rows if value(row) not in (None, "")]
    for row in given[1:]:
        if value(row) != value(given[0]):
            raise LabelError(f"{where} line {row.line}: {what}={value(row)!r} differs from "
                             f"{value(given[0])!r} on line {given[0].line} for the same image")
    return (value(given[0]), given[0].line) if given else (None, rows[0].line)


def _json_boxes(path: Path, groups: dict[Path, list[_Row]]
                ) -> dict[Path, tuple[Box | None, str]]:
    """Pixel boxes keyed by the image as written in the CSV; other keys are ignored."""
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise LabelError(f"{path}: cannot read boxes: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise LabelError(f"{path} line {exc.lineno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(raw, dict):
        raise LabelError(f"{path} line 1: expected an object {{image: [x, y, w, h]}}")
    keyed = {Path(key): (key, value) for key, value in raw.items()}
    located: dict[Path, tuple[Box | None, str]] = {}
    for image, rows in groups.items():
        key, value = keyed.get(Path(rows[0].name), (rows[0].name, None))
        at = f"{path} entry {key!r}"
        located[image] = (None if value is None else _json_box(at, value), at)
    return located


def _json_box(at: str, value: Any) -> Box:
    if not isinstance(value, list) or len(value) != 4:
        raise LabelError(f"{at}={value!r} is not 4 numbers [x, y, w, h]")
    return _four_numbers(at, value)


def _yolo_box(folder: Path, image: Path, size: tuple[int, int]) -> tuple[Box | None, str]:
    """The first line of `<stem>.txt` in pixels; no file or an empty one means no box."""
    path = folder / f"{image.stem}.txt"
    lines = path.read_text().splitlines() if path.is_file() else []
    first = next((line for line in lines if line.strip()), "")
    at = f"{path} line {lines.index(first) + 1 if first else 1}"
    fields = first.split()
    if not fields:
        return None, at
    if len(fields) not in (5, 6):  # class cx cy w h, and a detector's confidence if saved
        raise LabelError(f"{at}: {first.strip()!r} is not 'class cx cy w h'")
    cx, cy, w, h = _four_numbers(f"{at}: cx, cy, w, h", fields[1:5])
    width, height = size
    pixels = ((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height)
    return pixels, f"{at}: box in pixels x, y, w, h"


def _normalised(box: Box | None, size: tuple[int, int], at: str) -> Box | None:
    """A pixel (x, y, w, h) box as normalised (cx, cy, w, h), checked against the image."""
    if box is None:
        return None
    x, y, w, h = box
    shown = "[" + ", ".join(f"{v:g}" for v in box) + "]"
    if not (w > 0 and h > 0 and x >= -_BOX_SLACK and y >= -_BOX_SLACK):
        raise LabelError(f"{at}={shown} is not 4 positive numbers x, y, w, h")
    width, height = size
    if x + w > width + _BOX_SLACK or y + h > height + _BOX_SLACK:
        raise LabelError(f"{at}={shown} lies outside the {width}x{height} image")
    return (x + w / 2) / width, (y + h / 2) / height, w / width, h / height


def _resolve(where: str, groups: dict[Path, list[_Row]], boxes: dict[Path, Box | None],
             rater: str, need_levels: bool) -> tuple[list[LabelledImage], Counter[str]]:
    """The used images and, per reason, how many were not used."""
    items: list[LabelledImage] = []
    skipped: Counter[str] = Counter()
    for path, rows in groups.items():
        mouse, _ = _agree(where, rows, "mouse", lambda r: r.mouse)
        condition, _ = _agree(where, rows, "condition", lambda r: r.condition)
        raters = {row.rater: row.levels for row in rows}
        if rater != MAJORITY and rater not in raters:
            skipped[f"no rating by {rater}"] += 1
            continue
        levels = vote(raters.values()) if rater == MAJORITY else raters[rater]
        if need_levels and all(level is None for level in levels):
            skipped[NO_UNIT] += 1
            continue
        selection = next((row.selection for row in rows if row.selection), "")
        items.append(LabelledImage(path, levels, mouse or "", condition or "", boxes[path],
                                   raters, selection))
    return items, skipped


def vote(ratings: Iterable[Levels]) -> Levels:
    """Per unit the majority level of the raters who scored it (ties: lower median)."""
    return tuple(_majority([level for level in unit if level is not None])
                 for unit in zip(*ratings, strict=True))


def even_vote(ratings: Iterable[Levels]) -> tuple[float | None, ...]:
    """Per unit the majority level of the raters who scored it, a tie being the mean of the
    tied levels (0 and 1 give 0.5). A reference for comparing raters: `vote`'s lower median
    would make two disagreeing raters' reference their minimum, so everyone compared with it
    would show a positive bias by construction."""
    return tuple(_even_majority([level for level in unit if level is not None])
                 for unit in zip(*ratings, strict=True))


def _even_majority(values: list[int]) -> float | None:
    if not values:
        return None
    counts = Counter(values)
    top = max(counts.values())
    return float(np.mean([value for value, count in counts.items() if count == top]))


def _majority(values: list[int]) -> int | None:
    if not values:
        return None
    counts = Counter(values)
    top = max(counts.values())
    tied = sorted(value for value, count in counts.items() if count == top)
    return tied[(len(tied) - 1) // 2]


def _summary(where: str, rows: list[_Row], items: list[LabelledImage],
             skipped: Counter[str]) -> LabelSummary:
    levels = {unit: [sum(item.levels[u] == level for item in items) for level in LEVELS]
              for u, unit in enumerate(UNITS)}
    blank = {unit: sum(item.levels[u] is None for item in items) for u, unit in enumerate(UNITS)}
    raters = sorted({row.rater for row in rows} - {""})
    return LabelSummary(where, len(rows), len(items), raters, levels, blank, dict(skipped))


def read_rgb(path: Path) -> np.ndarray:
    """A labelled image as RGB uint8 (LabelError if it cannot be decoded)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise LabelError(f"{path}: cannot be decoded as an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def face_crop_for(item: LabelledImage, size: int) -> np.ndarray:
    """The RGB uint8 [size, size, 3] crop a model sees, cut as the live monitor cuts it."""
    rgb = read_rgb(item.image)
    if item.box is None:  # already a face crop: resized whole (not padded), as DeepMGS does
        return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)
    return face_crop(rgb, np.asarray(item.box), Faces().margin, size)


def holdout_split(items: list[LabelledImage], seed: int = 0,
                  fractions: tuple[float, float, float] = (0.75, 0.05, 0.20)) -> Split:
    """(train, val, test) indices, each part keeping the condition ratio when conditions exist.

    A split that cannot keep the ratio (e.g. a condition with one image, or a part smaller than
    the number of conditions) raises ValueError rather than quietly dropping the stratification.
    """
    _, val_f, test_f = _check_fractions(fractions)
    strata = _conditions(items)
    rest, test = _carve(np.arange(len(items)), _count(test_f, len(items)), strata, seed)
    train, val = _carve(rest, _count(val_f, len(items)), strata, seed)
    _check_images("holdout split: the test", strata, test)
    _check_images("holdout split: the validation", strata, val)
    return train, val, test


def kfold_splits(items: list[LabelledImage], k: int = 5, seed: int = 0,
                 val_fraction: float = 0.05) -> list[Split]:
    """(train, val, test) per fold: k test folds stratified by condition, and a val slice of
    `val_fraction` of all images carved, stratified too, from each fold's training part."""
    from sklearn.model_selection import KFold, StratifiedKFold  # see _carve

    strata = _conditions(items)
    index = np.arange(len(items))
    if strata is None:
        folds = KFold(k, shuffle=True, random_state=seed).split(index)
    else:
        _check_strata(strata, k)
        folds = StratifiedKFold(k, shuffle=True, random_state=seed).split(index, strata)
    splits: list[Split] = []
    for rest, test in folds:
        train, val = _carve(rest, _count(val_fraction, len(items)), strata, seed)
        _check_images(f"cv: fold {len(splits)}'s validation", strata, val)
        splits.append((train, val, np.sort(test)))
    return splits


def mouse_kfold_splits(items: list[LabelledImage], k: int = 5, seed: int = 0) -> list[Split]:
    """(train, val, test) per fold with no mouse in two parts: k test folds of whole mice,
    balanced by condition (scikit-learn's StratifiedGroupKFold), each image tested once; the
    validation part is carved from each fold's training mice by condition (`_carve_mice`:
    about 1/k of each condition's mice, at least one, two where five or more are left), so it
    holds whole mice of each condition for early stopping and for choosing the pain cut-off.

    A fold whose test or validation mice lack a condition the labels have is refused: its pain
    analysis, or its cut-off, would come out empty. Too few mice for `k` folds is refused too."""
    groups = _mice(items, "mouse-cv")
    strata = _conditions(items)
    labels = np.zeros(len(items), int) if strata is None else np.unique(strata,
                                                                        return_inverse=True)[1]
    mice = len(set(groups.tolist()))
    if mice < 2 * k:
        raise LabelError(f"mouse-cv: {k} folds need at least {2 * k} mice (test and validation "
                         f"mice in each), the labels have {mice}; use fewer --folds")
    index = np.arange(len(items))
    splits = []
    from sklearn.model_selection import StratifiedGroupKFold  # see _carve

    outer = StratifiedGroupKFold(k, shuffle=True, random_state=seed)
    for fold, (rest, test) in enumerate(outer.split(index, labels, groups)):
        _check_test_conditions(fold, strata, test, groups)
        train, val = _carve_mice(rest, 1 / k, items, seed)
        _check_part(f"mouse-cv: fold {fold}'s validation", strata, val, groups,
                    "each fold's training mice need two of each condition, one to validate")
        splits.append((train, val, np.sort(test)))
    return splits


def _mice(items: list[LabelledImage], split: str) -> np.ndarray:
    unnamed = sum(not item.mouse for item in items)
    if unnamed:
        raise LabelError(f"{split} split: {unnamed} of {len(items)} images have no mouse "
                         "(the CSV needs a filled mouse column)")
    return np.array([item.mouse for item in items])


def _check_test_conditions(fold: int, strata: np.ndarray | None, test: np.ndarray,
                           groups: np.ndarray) -> None:
    if strata is None:
        return
    missing = sorted(set(strata.tolist()) - set(strata[test].tolist()))
    if missing:
        mice = ", ".join(sorted(set(groups[test].tolist())))
        raise LabelError(f"mouse-cv: fold {fold}'s test mice ({mice}) have no image of "
                         f"condition {', '.join(missing)}; label more mice of it or use fewer "
                         "--folds")


def mice_of(items: list[LabelledImage], index: np.ndarray) -> list[str]:
    """The mice in one part of a split, sorted."""
    return sorted({items[i].mouse for i in index if items[i].mouse})


def mouse_split(items: list[LabelledImage], seed: int = 0,
                fractions: tuple[float, float, float] = (0.75, 0.05, 0.20)) -> Split:
    """(train, val, test) indices with no mouse in two parts: the honest test for a new animal.

    The fractions are of each condition's mice (a mouse counted in the condition most of its
    images have), so image counts follow how many images each mouse has. Test and validation
    take at least one mouse of each condition, validation two where five or more are left, and
    training keeps one: the smallest study is three mice per condition. A part left without a
    condition the labels have is refused in one line."""
    _, val_f, test_f = _check_fractions(fractions)
    groups = _mice(items, "mouse")
    if len(set(groups)) < 3:
        raise LabelError(f"mouse split: needs at least 3 mice, the labels have {len(set(groups))}")
    strata = _conditions(items)
    rest, test = _carve_mice(np.arange(len(items)), test_f, items, seed, least=1)
    train, val = _carve_mice(rest, val_f / (1 - test_f) if val_f else 0.0, items, seed)
    for name, part in (("training", train), ("validation", val), ("test", test)):
        _check_part(f"mouse split: the {name}", strata, part, groups)
    return train, val, test


def _check_part(what: str, strata: np.ndarray | None, part: np.ndarray, groups: np.ndarray,
                need: str = "three per condition at least") -> None:
    """Refuses a part of whole mice that lacks a condition the labels have."""
    if strata is None:
        return
    missing = sorted(set(strata.tolist()) - set(strata[part].tolist()))
    if missing:
        mice = ", ".join(sorted(set(groups[part].tolist()))) or "none"
        raise LabelError(f"{what} mice ({mice}) have no image of condition "
                         f"{', '.join(missing)}; label more mice of it ({need})")


def _check_fractions(fractions: tuple[float, float, float]) -> tuple[float, float, float]:
    train, val, test = fractions
    if train <= 0 or val < 0 or test < 0 or abs(train + val + test - 1.0) > 1e-6:
        raise LabelError(f"fractions {fractions} must be train > 0, val, test >= 0, sum 1")
    return train, val, test


def _count(fraction: float, total: int) -> int:
    """How many of `total` a part gets: rounded, and at least one when the part is wanted."""
    return max(1, round(fraction * total)) if fraction > 0 else 0


def _conditions(items: list[LabelledImage]) -> np.ndarray | None:
    """Condition per image for stratifying, or None when no image names one."""
    if not any(item.condition for item in items):
        return None
    return np.array([item.condition for item in items])


def _check_strata(strata: np.ndarray, parts: int) -> None:
    counts = Counter(strata.tolist())
    if min(counts.values()) < parts:
        raise LabelError(f"cannot make {parts} parts stratified by condition: "
                         f"images per condition {dict(counts)}")


def _carve(index: np.ndarray, count: int, strata: np.ndarray | None,
           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Splits `count` images of `index` off, stratified by `strata` when given; both sorted."""
    if count == 0:
        return index, index[:0]
    # scikit-learn takes a second to import: imported where a split is made, so that
    # mgs-label's server, which reads only this module's columns, starts without it
    from sklearn.model_selection import train_test_split

    within = None if strata is None else strata[index]
    if within is not None:  # room for one image of each condition at least
        count = max(count, len(set(within.tolist())))
    try:
        keep, part = train_test_split(index, test_size=count, random_state=seed,
                                      stratify=within)
    except ValueError as exc:
        how = "" if within is None else f" by condition {dict(Counter(within.tolist()))}"
        raise LabelError(f"cannot split {len(index)} images{how}: {exc}") from exc
    return np.sort(keep), np.sort(part)


def _mouse_conditions(items: list[LabelledImage], index: np.ndarray) -> dict[str, list[str]]:
    """The mice among `index` per condition (the one most of a mouse's images have), sorted."""
    seen: dict[str, Counter[str]] = {}
    for i in index:
        seen.setdefault(items[i].mouse, Counter())[items[i].condition] += 1
    by_condition: dict[str, list[str]] = {}
    for mouse in sorted(seen):
        by_condition.setdefault(seen[mouse].most_common(1)[0][0], []).append(mouse)
    return by_condition


def _check_images(what: str, strata: np.ndarray | None, part: np.ndarray) -> None:
    """Refuses a part of images that lacks a condition the labels have: stratifying a small
    part by rounding can leave a rare condition out."""
    if strata is None or not len(part):
        return
    missing = sorted(set(strata.tolist()) - set(strata[part].tolist()))
    if missing:
        raise LabelError(f"{what} part ({len(part)} images) has no image of condition "
                         f"{', '.join(missing)} (images per condition "
                         f"{dict(Counter(strata.tolist()))}); label more images of it")


def _carve_mice(index: np.ndarray, fraction: float, items: list[LabelledImage], seed: int,
                least: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Splits whole mice of `index` off, condition by condition: `fraction` of each condition's
    mice, at least one, two where five or more are left (`least` overrides that floor), and
    never the condition's last mouse, which stays on the first side; both sorted."""
    if fraction == 0:
        return index, index[:0]
    rng = np.random.default_rng(seed)
    taken: set[str] = set()
    for mice in _mouse_conditions(items, index).values():
        floor = least or (2 if len(mice) >= 5 else 1)
        count = min(max(round(fraction * len(mice)), floor), len(mice) - 1)
        taken.update(rng.permutation(mice)[:count].tolist())
    part = np.array([items[i].mouse in taken for i in index], bool)
    return np.sort(index[~part]), np.sort(index[part])


def data_fingerprint(items: list[LabelledImage]) -> str:
    """16 hex chars of sha256 over sorted (image name, levels), names relative to the images'
    common folder, so the same data gives the same print wherever it is stored."""
    base = os.path.commonpath([item.image.parent for item in items]) if items else ""
    lines = sorted(
        f"{item.image.relative_to(base).as_posix()}\t"
        + ",".join("-" if level is None else str(level) for level in item.levels)
        for item in items
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
