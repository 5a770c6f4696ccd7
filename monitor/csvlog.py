"""The CSV logger: one stable header, append-only, every record flushed as it is written.

Reopening a file after a crash trims a torn last line (the only line a crash can break) and
continues; a file with another header is refused rather than mixed. Sequence numbers are checked
per publisher: missing ranges go to `<name>.gaps.csv` beside the records.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from monitor.records import CSV_COLUMNS, ScoreRecord, SequenceGap, SequenceTracker

GAP_COLUMNS = ("publisher", "first_missing", "last_missing", "wall_time")
TAIL_BYTES = 1 << 20  # read back on reopen: far more than the last row of every publisher


class CsvLogError(ValueError):
    """A CSV file that cannot be appended to; the message is one line for the user."""


class SideLog:
    """An append-only CSV beside the score CSV (gaps, alerts): header once, rows flushed."""

    def __init__(self, path: Path, columns: tuple[str, ...]) -> None:
        self.path = path
        self.columns = columns

    def write(self, row: list[str]) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(self.columns)
            writer.writerow(row)


class CsvLogger:
    def __init__(self, path: Path, fsync: bool = True) -> None:
        self.path = path
        self.gaps_path = path.with_suffix(".gaps.csv")
        self._gap_log = SideLog(self.gaps_path, GAP_COLUMNS)
        self.fsync = fsync
        self.rows = 0
        self.gaps: list[SequenceGap] = []
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.sequence = SequenceTracker(_recover(path))
            self._file = path.open("a", newline="", encoding="utf-8")
        except OSError as exc:
            raise CsvLogError(f"{path}: cannot write records here: "
                              f"{exc.strerror or exc}") from exc
        self._writer = csv.writer(self._file)
        if self._file.tell() == 0:
            self._writer.writerow(CSV_COLUMNS)
            self._file.flush()

    def write(self, record: ScoreRecord) -> None:
        gap = self.sequence.check(record.publisher, record.seq)
        if gap is not None:
            self._write_gap(gap)
        self._writer.writerow(record.csv_row())
        self._file.flush()
        self.rows += 1

    def sync(self) -> None:
        """Make what was written durable; called once per batch rather than per row."""
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()

    def _write_gap(self, gap: SequenceGap) -> None:
        self.gaps.append(gap)
        self._gap_log.write([gap.publisher, str(gap.first_missing), str(gap.last_missing),
                             f"{gap.wall_time:.3f}"])


def _recover(path: Path) -> dict[str, int]:
    """Check the header, trim a torn last line, and return the last seq per publisher.

    Only the end of the file is read, so reopening a file of weeks of records stays instant.
    """
    if not path.exists() or path.stat().st_size == 0:
        return {}
    with path.open("rb+") as handle:
        header = handle.readline()
        if not header.endswith(b"\n"):  # a crash while the header was written
            handle.truncate(0)
            return {}
        if next(csv.reader([header.decode("utf-8", errors="replace")])) != list(CSV_COLUMNS):
            raise CsvLogError(
                f"{path}: existing file has another header (older mgs-monitor or not a score "
                "CSV); write to a new file"
            )
        start = max(len(header), path.stat().st_size - TAIL_BYTES)
        handle.seek(start)
        tail = handle.read()
        end = tail.rfind(b"\n") + 1
        if end < len(tail):  # a crash mid-row: drop the partial row, keep every full one
            handle.truncate(start + end)
    lines = tail[:end].decode("utf-8", errors="replace").splitlines()
    if start > len(header) and lines:
        lines = lines[1:]  # the read began inside a row
    last: dict[str, int] = {}
    pub, seq = CSV_COLUMNS.index("publisher"), CSV_COLUMNS.index("seq")
    for row in csv.reader(lines):
        if len(row) == len(CSV_COLUMNS) and row[seq].isdigit():
            last[row[pub]] = int(row[seq])
    return last
