"""Evidence: the face crops the monitor scored and, now and then, whole frames, kept as JPEGs.

A person can look at what raised an alert, and a lab can label its own images (`mgs-label`)
to train its own models. Layout of the evidence folder (`evidence.folder`; default `evidence/`
beside the score CSVs, shared by every run writing there, so the budget holds across
restarts; `<instance>` tells the runs apart):

    crops/<YYYY-MM-DD>/<mouse>/<instance>-<seq>.jpg   each scored face, RGB at the scorer's
                                                       input size
    frames/<YYYY-MM-DD>/<camera>/<instance>-<seq>.jpg  whole frames: the first of each camera,
                                                       then hourly, and when no_face is raised
    frames.csv    one row per frame: times, camera, reason, image (relative to the evidence
                  folder), size, and per cubicle its mouse, region and the localizer's box in
                  frame pixels (FRAME_COLUMNS)
    pinned.txt    paths (relative to the evidence folder), one per line, never removed by the
                  budget: the monitor adds those alerts name, mgs-label its queue

The pipeline thread only names a file and hands the pixels over; encoding and writing happen
on the writer's own thread, so evidence never slows scoring. When the queue is full, or the
disk refuses a file, that evidence is dropped and counted; scoring and the CSV go on. The
budget removes the oldest files first, never a pinned one.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from monitor.config import Camera, Evidence
from monitor.faces import cubicle_pixels
from monitor.schema import ScoreRecord

FRAME_COLUMNS = ("wall_time", "source_time", "camera", "frame_index", "reason", "image",
                 "width", "height", "cubicles")
PINNED = "pinned.txt"
QUEUE_SIZE = 256  # files waiting to be written; a 1080p frame is ~6 MB while it waits
RETRY_S = 5.0  # how often a refusing disk is tried again


@dataclass
class _File:
    path: Path  # absolute
    pixels: np.ndarray
    rgb: bool  # crops are RGB (as the scorer saw them), frames BGR (as decoded)
    index_row: list[str] | None = None  # frames.csv row, for frames


@dataclass
class EvidenceCounts:
    """What the writer has done so far, for the status report."""

    files: int = 0
    bytes: int = 0
    dropped: int = 0
    error: str = ""


@dataclass
class _Budget:
    """The kept files, oldest first, and their total size."""

    limit: int
    files: deque[tuple[Path, int]] = field(default_factory=deque)
    total: int = 0


class EvidenceWriter:
    """Names evidence files on the pipeline thread and writes them on its own thread."""

    def __init__(self, folder: Path, csv_folder: Path, settings: Evidence) -> None:
        self.folder = folder
        self.csv_folder = csv_folder
        self.settings = settings
        self._prefix = Path(os.path.relpath(folder, csv_folder))
        self._queue: queue.Queue[_File | None] = queue.Queue(QUEUE_SIZE)
        self._lock = threading.Lock()  # guards _counts
        self._counts = EvidenceCounts()
        self._retry_at = 0.0
        self._next_frame: dict[str, float] = {}
        self._pinned: set[str] = set()
        self._pinned_stamp: tuple[float, int] | None = None
        self._unpinned: list[str] = []  # pins a failing write could not record yet
        self._closing = False
        folder.mkdir(parents=True, exist_ok=True)
        self._budget = _Budget(int(settings.budget_gb * 1e9))
        self._scan()
        self._thread = threading.Thread(target=self._work, name="evidence", daemon=True)
        self._thread.start()

    # pipeline thread ----------------------------------------------------------------------
    def keep_crop(self, record: ScoreRecord, crop: np.ndarray | None) -> ScoreRecord:
        """The record with the path its crop will have (relative to the CSV's folder), or as
        it is when there is no crop or it cannot be kept now."""
        if crop is None:
            return record
        day = time.strftime("%Y-%m-%d", time.localtime(record.wall_time))
        relative = Path("crops", day, _safe(record.mouse),
                        f"{record.instance}-{record.seq:06d}.jpg")
        if not self._offer(_File(self.folder / relative, crop, rgb=True)):
            return record
        return record.model_copy(update={"crop": str(self._prefix / relative)})

    def frame_due(self, camera: str, t: float) -> str:
        """Why a camera's frame at session time `t` (video time in replay, as alerts use) is
        due: `first`, `hourly` (every `frame_every_s`), or ""."""
        if camera not in self._next_frame:
            return "first"
        return "hourly" if t >= self._next_frame[camera] else ""

    def keep_frame(self, camera: Camera, image: np.ndarray, records: list[ScoreRecord],
                   reason: str) -> str:
        """Keep a whole frame with its cubicles; its path relative to the CSV's folder, or ""
        when it could not be kept now."""
        first = records[0]
        day = time.strftime("%Y-%m-%d", time.localtime(first.wall_time))
        relative = Path("frames", day, _safe(camera.name),
                        f"{first.instance}-{first.seq:06d}.jpg")
        height, width = image.shape[:2]
        row = [f"{first.wall_time:.3f}", f"{first.source_time:.3f}", camera.name,
               str(first.frame_index), reason, relative.as_posix(), str(width), str(height),
               json.dumps(_cubicles(camera, image.shape, records))]
        if not self._offer(_File(self.folder / relative, image, rgb=False, index_row=row)):
            return ""  # not due later: the next frame is tried
        self._next_frame[camera.name] = first.source_time + self.settings.frame_every_s
        return str(self._prefix / relative)

    def pin(self, paths: list[str]) -> None:
        """Keep these files (relative to the CSV's folder) whatever the budget."""
        self._unpinned += [Path(os.path.relpath(self.csv_folder / p, self.folder)).as_posix()
                           for p in paths if p]
        if not self._unpinned:
            return
        try:
            append_pinned(self.folder, self._unpinned)
            self._unpinned = []
        except OSError as exc:  # tried again with the next alert's; evidence goes on meanwhile
            self._say(f"cannot pin what alerts name: {self.folder / PINNED}: "
                      f"{exc.strerror or exc}")

    def counts(self) -> EvidenceCounts:
        with self._lock:
            counts = EvidenceCounts(**vars(self._counts))
        if not self._thread.is_alive() and not self._closing:
            counts.error = "evidence stopped: its writer thread ended"
        return counts

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to `timeout`), then stop the thread; again: nothing."""
        self._closing = True
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join(max(0.0, deadline - time.monotonic()))

    def _offer(self, item: _File) -> bool:
        if self._counts.error and time.monotonic() < self._retry_at:
            return self._drop()
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            return self._drop()

    def _drop(self) -> bool:
        with self._lock:
            self._counts.dropped += 1
        return False

    # writer thread ------------------------------------------------------------------------
    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._write(item)
            except OSError as exc:  # the disk refuses: pause, then try again
                self._drop()
                self._fail(f"{item.path}: {exc.strerror or exc}")
            except Exception as exc:  # this file alone (a codec): said, and the next goes on
                self._drop()
                self._say(f"evidence file not kept: {item.path}: {exc}")

    def _write(self, item: _File) -> None:
        pixels = cv2.cvtColor(item.pixels, cv2.COLOR_RGB2BGR) if item.rgb else item.pixels
        ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY,
                                                 self.settings.jpeg_quality])
        if not ok:
            raise OSError(f"cannot encode a {pixels.shape} image as JPEG")
        item.path.parent.mkdir(parents=True, exist_ok=True)
        partial = item.path.with_suffix(".jpg.tmp")  # a crash never leaves half a JPEG
        try:
            partial.write_bytes(data.tobytes())
            partial.replace(item.path)
        except OSError:
            partial.unlink(missing_ok=True)  # a full disk leaves no stray part behind
            raise
        self._kept(item.path, len(data))  # on disk: counted, even if the index fails below
        if item.index_row is not None:
            self._index(item.index_row)

    def _index(self, row: list[str]) -> None:
        path = self.folder / "frames.csv"
        new = not path.exists() or path.stat().st_size == 0
        torn = not new and not _ends_with_newline(path)  # a crash cut the last row
        with path.open("a", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(FRAME_COLUMNS)
            if torn:
                handle.write("\r\n")
            writer.writerow(row)

    def _kept(self, path: Path, size: int) -> None:
        budget = self._budget
        budget.files.append((path, size))
        budget.total += size
        removed = self._trim()
        with self._lock:
            self._counts.files += 1 - removed
            self._counts.bytes = budget.total
            self._counts.error = ""
        if not path.exists():  # removed at once: everything older is pinned, or none fits
            self._drop()
            held = ("full of files alerts or labels refer to" if self._read_pinned()
                    else "smaller than one file")
            self._fail(f"the budget of {self.settings.budget_gb:g} GB is {held}; raise "
                       "evidence.budget_gb")

    def _trim(self) -> int:
        """Remove the oldest unpinned files until the budget holds; how many were removed."""
        budget = self._budget
        if budget.total <= budget.limit:
            return 0
        pinned = self._read_pinned()
        kept: list[tuple[Path, int]] = []
        removed = 0
        while budget.total > budget.limit and budget.files:
            path, size = budget.files.popleft()
            if path.relative_to(self.folder).as_posix() in pinned:
                kept.append((path, size))
                continue
            try:
                path.unlink(missing_ok=True)
            except OSError:  # kept, and counted, until a later trim removes it
                kept.append((path, size))
                continue
            budget.total -= size
            removed += 1
        budget.files.extendleft(reversed(kept))
        return removed

    def _read_pinned(self) -> set[str]:
        path = self.folder / PINNED
        try:
            stat = path.stat()
        except FileNotFoundError:
            return self._pinned
        if (stat.st_mtime, stat.st_size) != self._pinned_stamp:
            self._pinned_stamp = (stat.st_mtime, stat.st_size)
            self._pinned = read_pinned(self.folder)
        return self._pinned

    def _scan(self) -> None:
        """The files an earlier run kept count against the budget, oldest first."""
        found = []
        for part in ("crops", "frames"):
            for path in (self.folder / part).rglob("*.jpg"):
                try:
                    stat = path.stat()
                except FileNotFoundError:  # removed meanwhile (an old run's budget)
                    continue
                found.append((stat.st_mtime, path, stat.st_size))
        for _, path, size in sorted(found):
            self._budget.files.append((path, size))
            self._budget.total += size
        self._counts = EvidenceCounts(files=len(found), bytes=self._budget.total)

    def _fail(self, error: str) -> None:
        self._retry_at = time.monotonic() + RETRY_S
        self._say(f"evidence paused, scoring goes on: {error}")

    def _say(self, error: str) -> None:
        with self._lock:
            self._counts.error = error


def read_pinned(folder: Path) -> set[str]:
    """The paths an evidence folder's pinned.txt lists (relative to the folder), a line each:
    the monitor and mgs-label both read and write it through these two functions."""
    path = folder / PINNED
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    return {line.strip() for line in text.splitlines() if line.strip()}


def append_pinned(folder: Path, names: list[str]) -> None:
    """Add paths (relative to the folder, POSIX form) to pinned.txt, durably."""
    with (folder / PINNED).open("a", encoding="utf-8") as handle:
        handle.writelines(f"{name}\n" for name in names)
        handle.flush()
        os.fsync(handle.fileno())


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _safe(name: str) -> str:
    """A mouse or camera id as one folder name: no separators, no `..`, no spaces."""
    cleaned = re.sub(r"[^\w.-]+", "_", name).strip(".")
    return cleaned or "_"


def _cubicles(camera: Camera, shape: tuple[int, ...],
              records: list[ScoreRecord]) -> list[dict[str, object]]:
    """Each cubicle's mouse, region and the localizer's face box, in frame pixels."""
    found = []
    for cubicle, record in zip(camera.cubicle_list(), records, strict=True):
        x0, y0, x1, y1 = cubicle_pixels(shape, cubicle)
        box = None
        if record.face_box is not None and record.status != "no_face":
            cx, cy, w, h = record.face_box
            box = [round(x0 + (cx - w / 2) * (x1 - x0), 1), round(y0 + (cy - h / 2) * (y1 - y0), 1),
                   round(w * (x1 - x0), 1), round(h * (y1 - y0), 1)]
        found.append({"cubicle": record.cubicle, "mouse": record.mouse,
                      "region": [x0, y0, x1, y1], "box": box,
                      "score": None if record.face_score is None
                      else round(record.face_score, 3)})
    return found
