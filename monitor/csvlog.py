"""The CSV logger: one stable header, append-only, every record flushed as it is written.

Reopening a file after a crash trims a torn last line (the only line a crash can break) and
continues; a file with another header is refused rather than mixed. Sequence numbers are checked
per run of each publisher: missing ranges go to `<name>.gaps.csv` beside the records.
"""

from __future__ import annotations

import contextlib
import csv
import os
import time
from collections import deque
from pathlib import Path
from typing import TextIO

from monitor.schema import (
    CSV_COLUMNS,
    GAP_COLUMNS,
    SCORE_COLUMNS,
    SCORE_HEADERS,
    Column,
    Run,
    ScoreRecord,
    SequenceGap,
    SequenceTracker,
    csv_header,
    csv_row,
    side_file,
)

MAX_BACKLOG = 200_000  # records held in memory while the disk refuses them (~100 MB)
RETRY_S = 5.0  # how often a failing disk is tried again
TAIL_BYTES = 1 << 20  # read back on reopen: far more than the last row of every publisher
PUBLISHER, SEQ, INSTANCE = (CSV_COLUMNS.index(name) for name in ("publisher", "seq", "instance"))


class CsvLogError(ValueError):
    """A CSV file that cannot be appended to; the message is one line for the user."""


class SideLog:
    """An append-only CSV beside the score CSV (gaps, alerts, markers): header once, each row
    written and closed at once."""

    def __init__(self, path: Path, columns: tuple[Column, ...]) -> None:
        self.path = path
        self.columns = columns

    def write(self, item: object) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(csv_header(self.columns))
            writer.writerow(csv_row(self.columns, item))


class CsvLogger:
    """Appends score records to one CSV, flushing each; never loses one to a full disk.

    A write that fails (disk full, storage gone) keeps the record in a bounded backlog and
    marks the logger as failing; later writes retry, reopening the file (which trims a torn
    row) and writing the backlog first, skipping rows that did reach the disk.
    """

    def __init__(self, path: Path, fsync: bool = True) -> None:
        self.path = path
        self.gaps_path = side_file(path, "gaps")
        self._gap_log = SideLog(self.gaps_path, GAP_COLUMNS)
        self.fsync = fsync
        self.rows = 0
        self.gaps: list[SequenceGap] = []
        self.error = ""  # the last write failure, "" while writing works
        self.dropped = 0  # records lost because the backlog overflowed
        self._backlog: deque[list[str]] = deque()
        self._retry_at = 0.0
        self._file: TextIO | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.sequence = SequenceTracker(self._open())
        except OSError as exc:
            raise CsvLogError(f"{path}: cannot write records here: "
                              f"{exc.strerror or exc}") from exc

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    def write(self, record: ScoreRecord) -> None:
        gap = self.sequence.check(record)
        if gap is not None:
            self._write_gap(gap)
        if len(self._backlog) >= MAX_BACKLOG:
            self._backlog.popleft()
            self.dropped += 1
        self._backlog.append(csv_row(SCORE_COLUMNS, record))
        self._drain()

    def sync(self) -> None:
        """Make what was written durable; called once per batch rather than per row."""
        self._drain()
        if self._file is None:
            return
        try:
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
        except OSError as exc:
            self._failed(exc)

    def close(self) -> None:
        self._retry_at = 0.0
        self.sync()
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._backlog:
            raise CsvLogError(f"{self.path}: {len(self._backlog)} records could not be "
                              f"written ({self.error})")

    def _open(self) -> dict[Run, int]:
        last = _recover(self.path)
        self._file = self.path.open("a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        if self._file.tell() == 0:
            self._writer.writerow(CSV_COLUMNS)
            self._file.flush()
        return last

    def _drain(self) -> None:
        if self._file is None and time.monotonic() < self._retry_at:
            return
        try:
            if self._file is None:
                self._skip_written(self._open())
            assert self._file is not None
            while self._backlog:
                self._writer.writerow(self._backlog[0])
                self._file.flush()
                self._backlog.popleft()
                self.rows += 1
            self.error = ""
        except OSError as exc:
            self._failed(exc)

    def _skip_written(self, last: dict[Run, int]) -> None:
        """Rows whose flush failed after they reached the disk are not written twice."""
        while self._backlog:
            row = self._backlog[0]
            if int(row[SEQ]) > last.get((row[PUBLISHER], row[INSTANCE]), -1):
                return
            self._backlog.popleft()
            self.rows += 1

    def _failed(self, exc: OSError) -> None:
        self.error = f"cannot write {self.path}: {exc.strerror or exc}"
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        self._retry_at = time.monotonic() + RETRY_S

    def _write_gap(self, gap: SequenceGap) -> None:
        self.gaps.append(gap)
        try:
            self._gap_log.write(gap)
        except OSError as exc:  # the records matter more; the gap stays in self.gaps
            self.error = f"cannot write {self.gaps_path}: {exc.strerror or exc}"


def _recover(path: Path) -> dict[Run, int]:
    """Check the header, trim a torn last line, and return the last seq per publisher run.

    Only the end of the file is read, so reopening a file of weeks of records stays instant.
    """
    if not path.exists() or path.stat().st_size == 0:
        return {}
    with path.open("rb+") as handle:
        header = handle.readline()
        if not header.endswith(b"\n"):  # a crash while the header was written
            handle.truncate(0)
            return {}
        names = tuple(next(csv.reader([header.decode("utf-8", errors="replace")])))
        if names != CSV_COLUMNS:
            raise CsvLogError(f"{path}: existing file has {_which_header(names)}; write to a "
                              "new file")
        start = max(len(header), path.stat().st_size - TAIL_BYTES)
        handle.seek(start)
        tail = handle.read()
        end = tail.rfind(b"\n") + 1
        if end < len(tail):  # a crash mid-row: drop the partial row, keep every full one
            handle.truncate(start + end)
    lines = tail[:end].decode("utf-8", errors="replace").splitlines()
    if start > len(header) and lines:
        lines = lines[1:]  # the read began inside a row
    last: dict[Run, int] = {}
    for row in csv.reader(lines):
        if len(row) == len(CSV_COLUMNS) and row[SEQ].isdigit():
            last[row[PUBLISHER], row[INSTANCE]] = int(row[SEQ])
    return last


def _which_header(names: tuple[str, ...]) -> str:
    older = [schema for schema, header in SCORE_HEADERS.items() if header == names]
    if older:  # appending would mix rows of two layouts in one file
        return f"the header of score schema {older[0]} (an older mgs-monitor)"
    return "another header (not an mgs-monitor score CSV)"
