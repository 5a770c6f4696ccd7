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
                  budget: the monitor adds those alerts name, mgs-label its queue (pinned.py)
    writer.lock   held (flock) by the one monitor writing here: pid, host and publisher
    budget.sqlite the budget's index of the kept files (evidence_budget.py)

The pipeline thread only names a file and hands the pixels over; encoding and writing happen
on the writer's own thread, so evidence never slows scoring. The crops a raised alert names
are read back the same way (`send_back`): the request follows the files in the writer's queue,
so they are on disk when it is read, and their bytes come back to the pipeline through a queue
(`returned`), to be published for subscribers on other hosts (AlertCrop): the pipeline neither
reads the disk nor encodes again. When the queue is full, or the
disk refuses a file, that evidence is dropped and counted; scoring and the CSV go on. The
budget removes the oldest files first, never a pinned one; it counts the files kept before
on the writer's thread, between files, so a large folder never holds up the start.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import queue
import re
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from monitor.config import Camera, Evidence
from monitor.outputs.evidence_budget import INDEX, Budget
from monitor.outputs.pinned import PINNED, append_pinned, cut_torn_line, read_pinned
from monitor.schema import MAX_CROP_JPEG, AlertEvent, ScoreRecord
from monitor.scoring.faces import cubicle_pixels

__all__ = ["FRAME_COLUMNS", "PINNED", "EvidenceCounts", "EvidenceError", "EvidenceWriter",
           "append_pinned", "read_pinned"]

FRAME_COLUMNS = ("wall_time", "source_time", "camera", "frame_index", "reason", "image",
                 "width", "height", "cubicles")
WRITER_LOCK = "writer.lock"
QUEUE_SIZE = 256  # files waiting to be written; a 1080p frame is ~6 MB while it waits
RETRY_S = 5.0  # how often a refusing disk is tried again
MAX_SENT_BACK = MAX_CROP_JPEG * 3 // 4  # bytes: a file larger than a crop message holds stays


@dataclass
class _File:
    path: Path  # absolute
    pixels: np.ndarray
    rgb: bool  # crops are RGB (as the scorer saw them), frames BGR (as decoded)
    index_row: list[str] | None = None  # frames.csv row, for frames


@dataclass
class _SendBack:
    """Files an alert names (relative to the CSV's folder), to be read back once written."""

    alert: AlertEvent
    names: list[str]


@dataclass
class EvidenceCounts:
    """What the writer has done so far, for the status report."""

    files: int = 0
    bytes: int = 0
    dropped: int = 0
    error: str = ""
    scanning: bool = False  # a folder of many files kept before is being counted: none goes


class EvidenceError(Exception):
    """The evidence folder cannot be used: one line naming it (and who holds it)."""


class EvidenceWriter:
    """Names evidence files on the pipeline thread and writes them on its own thread."""

    def __init__(self, folder: Path, csv_folder: Path, settings: Evidence,
                 holder: str = "") -> None:
        self.folder = folder
        self.csv_folder = csv_folder
        self.settings = settings
        self._prefix = Path(os.path.relpath(folder, csv_folder))
        self._queue: queue.Queue[_File | _SendBack | None] = queue.Queue(QUEUE_SIZE)
        self._returned: queue.Queue[tuple[AlertEvent, str, bytes]] = queue.Queue()
        self._unsent: list[_SendBack] = []  # pipeline thread: asked while the queue was full
        self._lock = threading.Lock()  # guards _counts
        self._counts = EvidenceCounts()
        self._retry_at = 0.0
        self._next_frame: dict[str, float] = {}
        self._unpinned: list[str] = []  # pins a failing write could not record yet
        self._closing = False
        self._give_up = threading.Event()  # close() ran out of time: stop scanning
        self._counted = threading.Event()  # the files kept before are counted
        self._newest: Path | None = None  # writer thread: the last file written
        folder.mkdir(parents=True, exist_ok=True)
        self._held: int | None = hold_folder(folder, holder)
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

    def send_back(self, alert: AlertEvent) -> None:
        """Have the files `alert` names read back once they are written (see `returned`)."""
        if alert.evidence:
            self._unsent.append(_SendBack(alert, list(alert.evidence)))
            self._offer_unsent()

    def returned(self) -> list[tuple[AlertEvent, str, bytes]]:
        """The files read back so far, each with the alert that named it and its name; files
        gone or too large for a message are left out."""
        self._offer_unsent()
        found = []
        while True:
            try:
                found.append(self._returned.get_nowait())
            except queue.Empty:
                return found

    def _offer_unsent(self) -> None:
        while self._unsent:
            try:
                self._queue.put_nowait(self._unsent[0])
            except queue.Full:  # the writer is behind: asked again on the next turn
                return
            self._unsent.pop(0)

    def counts(self) -> EvidenceCounts:
        with self._lock:
            counts = EvidenceCounts(**vars(self._counts))
        if not self._thread.is_alive() and not self._closing:
            counts.error = "evidence stopped: its writer thread ended"
        return counts

    def wait_counted(self, timeout: float | None = None) -> bool:
        """Wait until the files kept before are counted (the budget trims from then on)."""
        return self._counted.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued and finish counting the files kept before (up to `timeout`),
        then stop the thread and let the folder go; again: nothing."""
        self._closing = True
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._give_up.set()
        self._thread.join(1.0)
        if self._held is not None and not self._thread.is_alive():
            os.close(self._held)  # a writer still running keeps the folder to itself
            self._held = None

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
        try:
            budget = Budget(self.folder, int(self.settings.budget_gb * 1e9))
        except (OSError, sqlite3.Error) as exc:  # no budget: keeping files would fill the disk
            self._say(f"evidence stopped: cannot index {self.folder / INDEX}: {exc}")
            while self._queue.get() is not None:
                self._drop()
            return
        try:
            self._scan(budget)  # an index a monitor closed: counted already
            self._loop(budget)
        finally:
            budget.close()

    def _loop(self, budget: Budget) -> None:
        while (item := self._next(budget)) is not None:
            if isinstance(item, _SendBack):
                self._read_back(item)
                continue
            try:
                self._write(item, budget)
            except (OSError, sqlite3.Error) as exc:  # the disk refuses: pause, then try again
                self._drop()
                self._fail(f"{item.path}: {getattr(exc, 'strerror', None) or exc}")
            except Exception as exc:  # this file alone (a codec): said, and the next goes on
                self._drop()
                self._say(f"evidence file not kept: {item.path}: {exc}")
        while not budget.scanned and not self._give_up.is_set():  # closing: finish counting
            self._scan(budget)

    def _read_back(self, item: _SendBack) -> None:
        for name in item.names:
            try:
                data = (self.csv_folder / name).read_bytes()
            except OSError:  # never written (dropped) or removed: nothing to send
                continue
            if len(data) <= MAX_SENT_BACK:
                self._returned.put((item.alert, name, data))

    def _next(self, budget: Budget) -> _File | _SendBack | None:
        """The next file to write (None: closing); meanwhile the scan goes on a step at a time."""
        while not budget.scanned:
            try:
                return self._queue.get_nowait()
            except queue.Empty:
                self._scan(budget)
        return self._queue.get()

    def _scan(self, budget: Budget) -> None:
        if budget.scan_step():  # all counted: what is over the budget can go now
            self._settle(budget)
            self._counted.set()
        else:
            self._update(budget, scanning=True)

    def _write(self, item: _File, budget: Budget) -> None:
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
        budget.kept(item.path, len(data))  # on disk: counted, even if the index fails below
        self._newest = item.path
        self._say("")  # the disk takes files again
        self._settle(budget)
        if item.index_row is not None:
            self._index(item.index_row)

    def _index(self, row: list[str]) -> None:
        path = self.folder / "frames.csv"
        with path.open("a+b") as handle:
            cut_torn_line(handle)  # a crash cut the last row: it goes, whole rows stay
            new = handle.seek(0, os.SEEK_END) == 0
        with path.open("a", newline="", encoding="utf-8") as text:
            writer = csv.writer(text)
            if new:
                writer.writerow(FRAME_COLUMNS)
            writer.writerow(row)

    def _settle(self, budget: Budget) -> None:
        """Trim to the budget, and say so when the newest file could not stay."""
        budget.trim()
        self._update(budget, scanning=False if budget.scanned else None)
        if budget.pins_error and budget.total > budget.limit:  # nothing goes, so none comes
            self._fail(budget.pins_error)
            return
        if not budget.scanned or self._newest is None or self._newest.exists():
            return
        self._newest = None  # removed at once: everything older is pinned, or none fits
        self._drop()
        held = "full of files alerts or labels refer to" if budget.has_pins \
            else "smaller than one file"
        self._fail(f"the budget of {self.settings.budget_gb:g} GB is {held}; raise "
                   "evidence.budget_gb")

    def _update(self, budget: Budget, scanning: bool | None) -> None:
        with self._lock:
            self._counts.files = budget.files
            self._counts.bytes = budget.total
            if scanning is not None:
                self._counts.scanning = scanning

    def _fail(self, error: str) -> None:
        self._retry_at = time.monotonic() + RETRY_S
        self._say(f"evidence paused, scoring goes on: {error}")

    def _say(self, error: str) -> None:
        with self._lock:
            self._counts.error = error


def hold_folder(folder: Path, holder: str) -> int:
    """Take the folder for this monitor alone (an flock held until close); EvidenceError names
    the monitor holding it already. The lock goes with the process, however it ends."""
    path = folder / WRITER_LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "not yet named"
        os.close(fd)
        raise EvidenceError(f"{folder}: evidence folder in use by another monitor ({other}); "
                            "give each monitor its own evidence.folder") from None
    except OSError:
        os.close(fd)
        raise
    name = f"pid {os.getpid()} on {socket.gethostname()}" + (f", publisher {holder}"
                                                              if holder else "")
    os.ftruncate(fd, 0)
    os.pwrite(fd, name.encode("utf-8"), 0)
    return fd


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
