"""A labelling project: one folder holding the queued images under opaque ids and what they are.

    DIR/project.json   seed, repeat fraction, sources, when it was made
    DIR/items.csv      one row per image: id, task, selection, and the facts the raters must
                       not see (mouse, camera, cubicle, times, source file); read by the server
                       and by export, never sent to a page
    DIR/images/ID.*    face crops to score (copies: the project travels without the evidence);
                       a face shown twice has a second copy under an id of its own
    DIR/cubicles/ID.jpg  one cubicle cut out of a kept full frame, for a face box
    DIR/answers.jsonl  every answer, skip and undo (answers.py)

Items are written once, when the queue is made; a project is never re-queued, so a rater's
order (selection.rater_order) stays the same for the project's whole life.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import cv2

from .errors import UserError
from .selection import rater_order

FACE, BOX = "face", "box"
RANDOM, UNCERTAIN = "random", "uncertain"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Item:
    """One image to label. Fields after `repeat_image` are never shown to a rater."""

    id: str
    task: str  # FACE: score the five units; BOX: draw the face box
    image: str  # relative to the project folder
    selection: str  # RANDOM or UNCERTAIN
    width: int
    height: int
    suggestion: str  # BOX: the localizer's "x y w h" in this image's pixels, blank if none
    repeat_id: str  # FACE: the id its second showing is served under, blank if not repeated
    repeat_image: str  # FACE: the second showing's own copy (blank in projects made before)
    mouse: str
    camera: str
    cubicle: str
    wall_time: str
    source_time: str
    entropy: str
    source: str  # the original file

    def suggested_box(self) -> list[float] | None:
        return [float(v) for v in self.suggestion.split()] if self.suggestion else None


ITEM_COLUMNS = tuple(f.name for f in fields(Item))


@dataclass
class Project:
    folder: Path
    seed: int
    items: list[Item]

    @property
    def answers_path(self) -> Path:
        return self.folder / "answers.jsonl"

    def by_id(self) -> dict[str, Item]:
        """Items under every id they are served by, the repeat ids included."""
        found = {item.id: item for item in self.items}
        found.update({item.repeat_id: item for item in self.items if item.repeat_id})
        return found

    def files(self) -> dict[str, Path]:
        """The file each id is served from: a repeat from its own copy."""
        found = {item.id: self.folder / item.image for item in self.items}
        found.update({item.repeat_id: self.folder / (item.repeat_image or item.image)
                      for item in self.items if item.repeat_id})
        return found

    def order(self, rater: str, task: str) -> list[tuple[Item, bool]]:
        """The rater's sequence for one task: (item, is the repeat showing) per position."""
        items = {item.id: item for item in self.items if item.task == task}
        repeated = {item.id for item in items.values() if item.repeat_id}
        return [(items[i], again)
                for i, again in rater_order(list(items), repeated, self.seed, rater, task)]


def new_id() -> str:
    return secrets.token_hex(6)


def start(folder: Path) -> None:
    """Makes the project folder, refusing one that already holds a queue."""
    if (folder / "items.csv").exists():
        raise UserError(f"{folder}: already holds a queue (items.csv); a queue is made once, "
                        "so each rater's order stays fixed: use a new --project folder")
    for sub in ("images", "cubicles"):
        (folder / sub).mkdir(parents=True, exist_ok=True)


def save(folder: Path, seed: int, repeat: float, sources: Iterable[str],
         items: list[Item]) -> Project:
    meta = {"version": 1, "seed": seed, "repeat": repeat, "sources": list(sources),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_atomic(folder / "project.json", json.dumps(meta, indent=2) + "\n")
    rows = [ITEM_COLUMNS, *([getattr(item, c) for c in ITEM_COLUMNS] for item in items)]
    write_csv_atomic(folder / "items.csv", rows)
    return Project(folder, seed, items)


def load(folder: Path) -> Project:
    meta_path, items_path = folder / "project.json", folder / "items.csv"
    if not items_path.is_file() or not meta_path.is_file():
        raise UserError(f"{folder}: not a mgs-label project (no items.csv / project.json); "
                        "make one with `mgs-label queue`")
    try:
        meta = json.loads(meta_path.read_text())
        with items_path.open(newline="") as fh:
            items = [_item(row) for row in csv.DictReader(fh)]
    except (json.JSONDecodeError, TypeError, KeyError, ValueError, OSError, csv.Error) as exc:
        raise UserError(f"{folder}: damaged project files: {exc}") from None
    return Project(folder, int(meta["seed"]), items)


def _item(row: dict[str, str]) -> Item:
    row.setdefault("repeat_image", "")  # a project made before repeats had copies of their own
    values: dict[str, Any] = {name: row[name] for name in ITEM_COLUMNS}
    values["width"], values["height"] = int(row["width"]), int(row["height"])
    return Item(**values)


def copy_image(source: Path, folder: Path, reencode: bool) -> tuple[str, str, int, int]:
    """Puts an image into the project under a fresh id; returns (id, name, width, height).

    Files from an arbitrary folder are re-encoded as PNG (lossless) so no metadata (EXIF time,
    camera) reaches the page; the monitor's own JPEG crops carry none and are copied as they
    are (blind.disguise pads them later).
    """
    image = cv2.imread(str(source), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{source}: cannot be decoded as an image")
    height, width = image.shape[:2]
    item_id = new_id()
    if reencode or source.suffix.lower() not in (".jpg", ".jpeg"):
        name = f"images/{item_id}.png"
        if not cv2.imwrite(str(folder / name), image):
            raise UserError(f"{folder / name}: cannot write")
    else:
        name = f"images/{item_id}.jpg"
        shutil.copyfile(source, folder / name)
    return item_id, name, width, height


def write_csv_atomic(path: Path, rows: Iterable[Iterable[object]]) -> None:
    tmp = _partial(path)
    with tmp.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _sync_folder(path.parent)


def write_atomic(path: Path, text: str) -> None:
    tmp = _partial(path)
    with tmp.open("w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _sync_folder(path.parent)


def _partial(path: Path) -> Path:
    """A temporary name of this process and thread alone: a CLI export while the page exports
    writes its own file, and each rename installs a whole one."""
    return path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")


def _sync_folder(folder: Path) -> None:
    """Makes a rename durable: the new name is in the folder's own data."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

