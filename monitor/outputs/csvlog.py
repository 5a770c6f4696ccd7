"""The CSV logger: one stable header, append-only, every record flushed as it is written.

Reopening a file after a crash trims a torn last line (the only line a crash can break) and
continues; a file with another header is refused rather than mixed. Sequence numbers are checked
per run of each publisher: missing ranges go to `<name>.gaps.csv` beside the records.

Files rotate daily or hourly (or never): a record goes to the file of the period of its own
`wall_time` (UTC), `<stem>-YYYYMMDD.csv` or `<stem>-YYYYMMDD-HH.csv`. The record's stamp, not the
clock at writing, so that each row has exactly one file: a record held in the backlog over a
boundary, or written again after a restart, lands where its first copy did and is recognized
there. Its `source_time` is no clock for this (seconds into a video for a replay).
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol, get_args

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
    SideKind,
    StatusReport,
    csv_header,
    csv_row,
    is_side_file,
    side_file,
)

Rotate = Literal["daily", "hourly", "never"]
ROTATIONS: tuple[str, ...] = get_args(Rotate)
_STAMP = {"daily": ("%Y%m%d", r"\d{8}", "YYYYMMDD"),  # strftime, file-name pattern, words
          "hourly": ("%Y%m%d-%H", r"\d{8}-\d{2}", "YYYYMMDD-HH")}
_SPAN_S = {"daily": 86_400, "hourly": 3_600}  # Unix time has no leap seconds: UTC periods
OPEN_FILES = 2  # files kept open: this period's and the last, for records late over a boundary

MAX_BACKLOG = 200_000  # records held in memory while the disk refuses them (~100 MB)
RETRY_S = 5.0  # how often a failing disk is tried again
TAIL_BYTES = 1 << 20  # read back on reopen: far more than the last row of every publisher
PUBLISHER, SEQ, INSTANCE = (CSV_COLUMNS.index(name) for name in ("publisher", "seq", "instance"))


class CsvLogError(ValueError):
    """A CSV file that cannot be appended to; the message is one line for the user."""


def period_file(base: Path, rotate: Rotate, wall_time: float) -> Path:
    """The file a record of `wall_time` goes to: `base` itself when never rotating."""
    if rotate == "never":
        return base
    stamp = datetime.fromtimestamp(wall_time, UTC).strftime(_STAMP[rotate][0])
    return base.with_name(f"{base.stem}-{stamp}{base.suffix}")


def period_names(base: Path, rotate: Rotate) -> str:
    """How the files of `base` are named, for messages: `scores-YYYYMMDD.csv`."""
    if rotate == "never":
        return str(base)
    return str(base.with_name(f"{base.stem}-{_STAMP[rotate][2]}{base.suffix}"))


def period_files(base: Path, rotate: Rotate) -> list[Path]:
    """The score CSVs of `base` already written, oldest period first."""
    if rotate == "never":
        return [base] if base.is_file() else []
    named = re.compile(rf"{re.escape(base.stem)}-{_STAMP[rotate][1]}{re.escape(base.suffix)}")
    return sorted(p for p in base.parent.glob(f"{base.stem}-*{base.suffix}")
                  if named.fullmatch(p.name) and not is_side_file(p))


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


class _Stamped(Protocol):
    @property
    def wall_time(self) -> float: ...


class PeriodSideLog:
    """A side file per period: each item (it has a `wall_time`) beside the score CSV of its
    own period, as its records are."""

    def __init__(self, files: Callable[[float], Path], kind: SideKind,
                 columns: tuple[Column, ...]) -> None:
        self.files = files
        self.kind = kind
        self.columns = columns

    def path_for(self, wall_time: float) -> Path:
        return side_file(self.files(wall_time), self.kind)

    def write(self, item: _Stamped, at: float | None = None) -> None:
        """Beside the records of time `at` (default: the item's own `wall_time`)."""
        when = item.wall_time if at is None else at
        SideLog(self.path_for(when), self.columns).write(item)


class _Open:
    """One open score CSV: its handle, writer, and the last seq per run found on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.on_disk = _recover(path)
        self.file = path.open("a", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file)
        if self.file.tell() == 0:
            self.writer.writerow(CSV_COLUMNS)
            self.file.flush()

    def written(self, row: list[str]) -> bool:
        """A row of a run at or before the last this file held when opened: already there."""
        return int(row[SEQ]) <= self.on_disk.get((row[PUBLISHER], row[INSTANCE]), -1)


class CsvLogger:
    """Appends score records to CSVs (one, or one per period), flushing each; never loses one
    to a full disk.

    A write that fails (disk full, storage gone) keeps the record in a bounded backlog and
    marks the logger as failing; later writes retry, reopening the file (which trims a torn
    row) and writing the backlog first, skipping rows that did reach the disk. A rotating
    logger reads the tail of the newest period's file when it starts, so a restart across a
    boundary still trims a torn row there and finds the gap after it.
    """

    def __init__(self, path: Path, fsync: bool = True, rotate: Rotate = "never") -> None:
        self.base = path
        self.rotate: Rotate = rotate
        self._period: tuple[int, Path] = (-1, path)  # the last period named, and its file
        self.path = self.file_for(time.time())  # the file written last, or being written
        self.gaps_path = side_file(self.path, "gaps")
        self._gap_log = PeriodSideLog(self.file_for, "gaps", GAP_COLUMNS)
        self.fsync = fsync
        self.rows = 0
        self.gaps: list[SequenceGap] = []
        self.error = ""  # the last write failure, "" while writing works
        self.dropped = 0  # records lost because the backlog overflowed
        self._backlog: deque[tuple[Path, list[str]]] = deque()
        self._retry_at = 0.0
        self._open_files: OrderedDict[Path, _Open] = OrderedDict()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.sequence = SequenceTracker(self._newest() if rotate != "never"
                                            else self._open(path).on_disk)
        except OSError as exc:
            raise CsvLogError(f"{self.path}: cannot write records here: "
                              f"{exc.strerror or exc}") from exc

    def file_for(self, wall_time: float) -> Path:
        """The file of a record's period, named once per period rather than per record."""
        if self.rotate == "never":
            return self.base
        period = int(wall_time // _SPAN_S[self.rotate])
        if period != self._period[0]:
            self._period = (period, period_file(self.base, self.rotate, wall_time))
        return self._period[1]

    def side_log(self, kind: SideKind, columns: tuple[Column, ...]) -> PeriodSideLog:
        """A side file (alerts, ...) that rotates with the records."""
        return PeriodSideLog(self.file_for, kind, columns)

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    def write(self, record: ScoreRecord) -> None:
        gap = self.sequence.check(record)
        if gap is not None:  # beside the records of the record that revealed it
            self._write_gap(gap, record.wall_time)
        if len(self._backlog) >= MAX_BACKLOG:
            self._backlog.popleft()
            self.dropped += 1
        self._backlog.append((self.file_for(record.wall_time), csv_row(SCORE_COLUMNS, record)))
        self._drain()

    def reported(self, report: StatusReport) -> None:
        """Records the monitor's status report says it published and that never came: the
        last ones of a run, which no later record reveals, are found this way."""
        gap = self.sequence.check_report(report)
        if gap is not None:
            self._write_gap(gap, report.wall_time)

    def sync(self) -> None:
        """Make what was written durable; called once per batch rather than per row."""
        self._drain()
        try:
            for opened in self._open_files.values():
                opened.file.flush()
                if self.fsync:
                    os.fsync(opened.file.fileno())
        except OSError as exc:
            self._failed(exc)

    def close(self) -> None:
        self._retry_at = 0.0
        try:
            self.sync()
        finally:  # a period's file refused (another header) leaves none open
            self._close_files()
        if self._backlog:
            raise CsvLogError(f"{self.path}: {len(self._backlog)} records could not be "
                              f"written ({self.error})")

    def _open(self, path: Path) -> _Open:
        """`path` open for appending (a torn row trimmed when it is opened), closing the least
        recently used file beyond OPEN_FILES."""
        opened = self._open_files.get(path)
        if opened is None:
            opened = self._open_files[path] = _Open(path)
            while len(self._open_files) > OPEN_FILES:
                self._open_files.popitem(last=False)[1].file.close()
        self._open_files.move_to_end(path)
        return opened

    def _newest(self) -> dict[Run, int]:
        """The last seq per run of the newest period's file, its torn row trimmed; a period's
        file is made when its first record comes."""
        written = period_files(self.base, self.rotate)
        return _recover(written[-1]) if written else {}

    def _drain(self) -> None:
        if not self._open_files and time.monotonic() < self._retry_at:
            return
        try:
            while self._backlog:
                path, row = self._backlog[0]
                self.path = path  # the file a failure names
                opened = self._open(path)
                if not opened.written(row):  # rows whose flush failed may be there already
                    opened.writer.writerow(row)
                    opened.file.flush()
                self._backlog.popleft()
                self.rows += 1
            self.error = ""
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        self.error = f"cannot write {self.path}: {exc.strerror or exc}"
        self._close_files()
        self._retry_at = time.monotonic() + RETRY_S

    def _close_files(self) -> None:
        """Close every file; a retry reopens them, reading back what reached the disk."""
        for opened in self._open_files.values():
            with contextlib.suppress(OSError):
                opened.file.close()
        self._open_files.clear()

    def _write_gap(self, gap: SequenceGap, at: float) -> None:
        self.gaps.append(gap)
        self.gaps_path = self._gap_log.path_for(at)
        try:
            self._gap_log.write(gap, at)
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
