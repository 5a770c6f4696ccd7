"""The answers log: every answer, skip and undo, one JSON line each, on disk as it is given.

A record is written whole with one `write` on a file opened for appending, then fsynced, under
the log's lock: two raters answering at once cannot interleave lines, and a crash loses at most
the image on screen. Nothing is ever rewritten: an undo is a record of its own naming the
record it takes back. A torn last line (a crash in the middle of a write) is ignored with a
warning when the log is read, and the next append starts on a fresh line.

    {"id": "...", "time": 1718000000.1, "rater": "ann", "task": "face", "slot": 7,
     "item": "<item id>", "kind": "answer", "repeat": false, "levels": [0, 1, null, 2, 1]}
    {"id": "...", ..., "task": "box", "kind": "answer", "box": [x, y, w, h], "how": "drawn"}
    {"id": "...", ..., "kind": "skip"}
    {"id": "...", ..., "kind": "undo", "undoes": "<id of the record taken back>"}

`repeat` is true when the rater had already answered that image: the unannounced second showing
used to measure their consistency. Repeats never become label rows (export.py).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

Record = dict[str, Any]
ANSWER, SKIP, UNDO = "answer", "skip", "undo"


class AnswerLog:
    """The log of one project, held by one process (the server); its lock orders all writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        records, self.warnings = read_log(path)
        self._seq = 0  # log order of the records in force
        self._stacks: dict[tuple[str, str], list[Record]] = {}
        for record in records:
            self._apply(record)

    def stack(self, rater: str, task: str) -> list[Record]:
        """The rater's answers and skips still in force for a task, oldest first."""
        with self.lock:
            return list(self._stacks.get((rater, task), []))

    def in_force(self) -> list[Record]:
        """Every answer and skip still in force, in log order."""
        with self.lock:
            return sorted((r for s in self._stacks.values() for r in s),
                          key=lambda r: r["seq"])

    def answer(self, rater: str, task: str, slot: int, item: str, **values: Any) -> Record:
        """Appends an answer; ValueError when the slot is already answered."""
        with self.lock:
            stack = self._stacks.get((rater, task), [])
            if any(r["slot"] == slot and r["kind"] == ANSWER for r in stack):
                raise ValueError(f"slot {slot} is already answered")
            repeat = any(r["item"] == item and r["kind"] == ANSWER for r in stack)
            return self._write({"rater": rater, "task": task, "slot": slot, "item": item,
                                "kind": ANSWER, "repeat": repeat, **values})

    def skip(self, rater: str, task: str, slot: int, item: str) -> Record:
        with self.lock:
            return self._write({"rater": rater, "task": task, "slot": slot, "item": item,
                                "kind": SKIP})

    def undo(self, rater: str, task: str) -> Record | None:
        """Takes back the rater's latest answer or skip in force; None when there is none."""
        with self.lock:
            stack = self._stacks.get((rater, task), [])
            if not stack:
                return None
            last = stack[-1]
            self._write({"rater": rater, "task": task, "slot": last["slot"],
                         "item": last["item"], "kind": UNDO, "undoes": last["id"]})
            return last

    def _write(self, record: Record) -> Record:
        record = {"id": secrets.token_hex(6), "time": round(time.time(), 3), **record}
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        new = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if _ends_torn(fd):
                line = b"\n" + line
            written = 0
            while written < len(line):  # a short write (a signal, a full pipe) is continued
                written += os.write(fd, line[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:  # the file's name must survive a crash too
            folder = os.open(self.path.parent, os.O_RDONLY)
            os.fsync(folder)
            os.close(folder)
        self._apply(record)
        return record

    def _apply(self, record: Record) -> None:
        key = (record["rater"], record["task"])
        stack = self._stacks.setdefault(key, [])
        if record["kind"] == UNDO:
            self._stacks[key] = [r for r in stack if r["id"] != record["undoes"]]
        else:
            self._seq += 1
            stack.append({**record, "seq": self._seq})


def _ends_torn(fd: int) -> bool:
    """Whether the file's last byte is not a newline (a line cut short by a crash)."""
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def read_log(path: Path) -> tuple[list[Record], list[str]]:
    """The records of a log and a warning per line that could not be read (never an error:
    every whole line still counts)."""
    if not path.is_file():
        return [], []
    data = path.read_bytes()
    lines = data.split(b"\n")
    records, warnings = [], []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        last = number == len(lines)  # no newline after it: the write was cut short
        try:
            record = json.loads(raw)
            if not isinstance(record, dict) or not {"id", "rater", "task", "kind"} <= record.keys():
                raise ValueError("not an answer record")
        except ValueError:
            why = "incomplete last line (cut short by a crash) ignored" if last else \
                "not a valid record (cut short by a crash?), ignored"
            warnings.append(f"{path} line {number}: {why}")
            continue
        records.append(record)
    return records, warnings


def in_force(records: Iterable[Record]) -> list[Record]:
    """Answers and skips not undone, in log order."""
    records = list(records)
    undone = {r["undoes"] for r in records if r["kind"] == UNDO}
    return [r for r in records if r["kind"] != UNDO and r["id"] not in undone]


def progress(stack: list[Record]) -> tuple[set[int], Counter[int]]:
    """Answered slots, and how often each slot still open was skipped."""
    answered = {r["slot"] for r in stack if r["kind"] == ANSWER}
    skips = Counter(r["slot"] for r in stack if r["kind"] == SKIP and r["slot"] not in answered)
    return answered, skips
