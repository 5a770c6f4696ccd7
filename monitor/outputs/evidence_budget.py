"""The disk budget of an evidence folder: which kept files go, oldest first, never a pinned one,
in memory that does not grow with the files kept.

The kept files are listed in an SQLite index inside the folder (`budget.sqlite`: path, size,
time, pinned). RAM holds SQLite's page cache (2 MB at most) and two totals, so a million files
cost no more memory than ten; the index costs about 150 bytes of disk per file. A monitor that
closed its index marks it clean and the next start goes on from it; after a crash (or with no
index) a scan makes it afresh. The scan goes a step at a time on the evidence writer's thread,
between files (never on the start path); nothing is removed until it is done, and it removes
the `.tmp` files a crash left in crops/ and frames/.

Pins come from pinned.txt (monitor/outputs/pinned.py), read again whenever it changes. Its stamp is
recorded only after a whole read, and while it cannot be read nothing at all is removed.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from monitor.outputs.pinned import PINNED, parse_pinned

INDEX = "budget.sqlite"
PARTS = ("crops", "frames")  # where the writer keeps files (and leaves .tmp when it crashes)
SCAN_STEP = 2000  # entries per step: a few ms, so the files waiting to be written wait little
TRIM_ROWS = 64  # oldest rows fetched at a time

_SCHEMA = """
CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER, time REAL, pinned INTEGER)
    WITHOUT ROWID;
CREATE INDEX oldest ON files (pinned, time, path);
CREATE TABLE clean (closed REAL);
"""


class Budget:
    """The files kept in one evidence folder, on disk; used by the writer thread alone."""

    def __init__(self, folder: Path, limit: int) -> None:
        self.folder = folder
        self.limit = limit
        self.files = 0
        self.total = 0  # bytes
        self.scanned = False
        self.pins_error = ""  # why pinned.txt cannot be read now
        self._missed = False  # a file kept that the index could not take: count again next time
        self._pinned: set[str] = set()  # the rows' `pinned` flags say the same
        self._stamp: tuple[int, int, int] | None = None  # of the last whole read
        self._db, clean = _open(folder / INDEX)
        self._walk = _files([folder / part for part in PARTS])
        if clean:
            self._go_on()
        self._db.execute("DELETE FROM clean")  # until closed: a crash means a new count
        self.sync_pins()

    @property
    def has_pins(self) -> bool:
        return bool(self._pinned)

    def scan_step(self) -> bool:
        """Count up to SCAN_STEP more entries of the folder; True once every one is counted."""
        if self.scanned:
            return True
        self._db.execute("BEGIN")
        try:
            for _ in range(SCAN_STEP):
                entry = next(self._walk, None)
                if entry is None:
                    self.scanned = True
                    break
                self._found(entry)
        finally:
            self._db.execute("COMMIT")
        return self.scanned

    def kept(self, path: Path, size: int) -> None:
        self._add(path.relative_to(self.folder).as_posix(), size, time.time())

    def trim(self) -> int:
        """Remove the oldest unpinned files until the budget holds; how many were removed.
        None before the scan is done, nor while pinned.txt cannot be read."""
        if self.total <= self.limit or not self.scanned or not self.sync_pins():
            return 0
        removed = 0
        self._db.execute("BEGIN")
        try:
            while self.total > self.limit:
                rows = self._db.execute("SELECT path, size FROM files WHERE pinned = 0 "
                                        "ORDER BY time, path LIMIT ?", (TRIM_ROWS,)).fetchall()
                if not rows:
                    break  # everything left is pinned
                for name, size in rows:
                    if self.total <= self.limit:
                        break
                    try:
                        (self.folder / name).unlink(missing_ok=True)
                    except OSError:  # counted until a later trim removes it
                        return removed
                    self._db.execute("DELETE FROM files WHERE path = ?", (name,))
                    self.files, self.total, removed = self.files - 1, self.total - size, removed + 1
        finally:
            self._db.execute("COMMIT")
        return removed

    def sync_pins(self) -> bool:
        """Read pinned.txt again if it changed; False (said in `pins_error`) when it cannot be
        read, and then the pins read last are not trusted for removing anything."""
        path = self.folder / PINNED
        try:
            with path.open("rb") as handle:
                stat = os.fstat(handle.fileno())
                stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
                pins = None if stamp == self._stamp else \
                    parse_pinned(handle.read().decode("utf-8", "replace"))
        except FileNotFoundError:
            stamp, pins = (0, 0, 0), set()
        except OSError as exc:
            self.pins_error = (f"cannot read {path}: {exc.strerror or exc}; no evidence is "
                               "removed until it can be read")
            return False
        self.pins_error = ""
        if pins is not None:
            self._stamp = stamp  # only now: a failed read is read again next time
            self._repin(pins)
        return True

    def close(self) -> None:
        """The index stays, marked clean when it holds every file: the next start goes on."""
        if self.scanned and not self._missed:
            self._db.execute("INSERT INTO clean VALUES (?)", (time.time(),))
        self._db.close()

    def _go_on(self) -> None:
        """Take up the index a monitor closed: its totals, and the pins it flagged."""
        self.files, self.total = self._db.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM files").fetchone()
        self._pinned = {name for (name,) in
                        self._db.execute("SELECT path FROM files WHERE pinned = 1")}
        self.scanned = True

    def _repin(self, pins: set[str]) -> None:
        self._db.execute("BEGIN")
        self._db.executemany("UPDATE files SET pinned = 1 WHERE path = ?",
                             ((name,) for name in pins - self._pinned))
        self._db.executemany("UPDATE files SET pinned = 0 WHERE path = ?",
                             ((name,) for name in self._pinned - pins))
        self._db.execute("COMMIT")
        self._pinned = pins

    def _found(self, entry: os.DirEntry[str]) -> None:
        try:
            if entry.name.endswith(".tmp"):  # a crash cut its write: never a whole file
                os.unlink(entry.path)
            elif entry.name.endswith(".jpg"):  # plain strings: millions of Paths cost time
                stat = entry.stat(follow_symlinks=False)
                name = os.path.relpath(entry.path, self.folder).replace(os.sep, "/")
                self._add(name, stat.st_size, stat.st_mtime)
        except FileNotFoundError:  # removed meanwhile
            pass

    def _add(self, name: str, size: int, mtime: float) -> None:
        try:
            cursor = self._db.execute("INSERT OR IGNORE INTO files VALUES (?, ?, ?, ?)",
                                      (name, size, mtime, int(name in self._pinned)))
        except sqlite3.Error:
            self._missed = True
            raise
        if cursor.rowcount == 1:  # a file written during the scan is met twice
            self.files += 1
            self.total += size


def _open(path: Path) -> tuple[sqlite3.Connection, bool]:
    """The folder's index, and whether a monitor closed it; any other is made afresh (a crash
    may have left it half-written)."""
    db = _connect(path)
    try:
        if db.execute("SELECT count(*) FROM clean").fetchone()[0]:
            return db, True
    except sqlite3.DatabaseError:  # none yet, or broken
        pass
    db.close()
    path.unlink(missing_ok=True)
    db = _connect(path)
    db.executescript(_SCHEMA)
    return db, False


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    db.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")  # a cache
    return db


def _files(folders: list[Path] | list[str]) -> Iterator[os.DirEntry[str]]:
    """Every file below the folders, a directory listing open at a time per level."""
    for folder in folders:
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        yield from _files([entry.path])
                    elif entry.is_file(follow_symlinks=False):
                        yield entry
        except OSError:  # gone meanwhile, or not a folder: nothing of ours to count there
            continue
