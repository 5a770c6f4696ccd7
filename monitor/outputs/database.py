"""Records in PostgreSQL: score records, alert events, gaps, markers, and each camera's study
and room.

The tables are made from the CSV's column specs (monitor/schema.py): one column each, of the
type the spec names, so a row read back is written as the CSV row of the same item. Every table
has a key of its own (scores: publisher, instance, seq; alert events: mouse, rule, event,
wall_time; gaps: publisher, instance, first missing; markers: mouse, wall_time, kind, text) and
rows go in with ON CONFLICT DO NOTHING: a restarted logger, or a spool written twice, never
doubles a row. Study and room are kept by camera in `mgs_cameras` rather than on every record:
they change rarely, the wire and CSV stay as they are, and a query joins on (publisher, camera).
Scores are indexed by (mouse, wall_time) for one mouse's series, and by a BRIN on wall_time for
time ranges over every mouse: rows arrive nearly in time order, so its block ranges stay tight
at a tiny fraction of a btree's size. TimescaleDB is not needed.

`DatabaseLog` writes in batches (executemany, one transaction a batch). While the database is
away, batches go to a local spool file (one JSON row a line, fsynced) that is written first when
it returns: nothing is lost, and `error` says the database is down meanwhile. `export_csvs`
writes the tables back as a score CSV with its side files, so `report` and `mgs-eval --alerts`
read a database with the same readers as files.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from monitor.config import MonitorConfig
from monitor.outputs.db_url import DatabaseError, check_url, shown_url, without_password
from monitor.schema import (
    ALERT_COLUMNS,
    CAMERA_COLUMNS,
    GAP_COLUMNS,
    MARKER_COLUMNS,
    SCORE_COLUMNS,
    AlertEvent,
    CameraTag,
    Column,
    Marker,
    Run,
    ScoreRecord,
    SequenceGap,
    SequenceTracker,
    SideKind,
    StatusReport,
    column_values,
    csv_cells,
    csv_header,
    side_file,
)

LAYOUT = 1  # the tables' layout, raised with any change of their columns: a database of
# another layout is refused, never mixed
RETRY_S = 5.0  # how often a database that went away is tried again
BATCH = 5000  # spooled rows written per transaction when the database returns
RECENT_S = 7 * 86400.0  # runs whose last sequence number a starting logger looks up
CONNECT_TIMEOUT_S = 5

Row = tuple[Any, ...]
EVERY_ROW = sql.SQL("true")


@dataclass(frozen=True)
class Table:
    """One table: its columns (the CSV's), the key that keeps a row from being written twice,
    and its indexes as (method, columns)."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    indexes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    replace: bool = False  # a row of a known key replaces the old one (a camera's tags)


SCORES = Table("mgs_scores", SCORE_COLUMNS, ("publisher", "instance", "seq"),
               (("btree", ("mouse", "wall_time")), ("brin", ("wall_time",))))
ALERTS = Table("mgs_alerts", ALERT_COLUMNS, ("mouse", "rule", "event", "wall_time"),
               (("btree", ("mouse", "wall_time")),))
GAPS = Table("mgs_gaps", GAP_COLUMNS, ("publisher", "instance", "first_missing"))
MARKERS = Table("mgs_markers", MARKER_COLUMNS, ("mouse", "wall_time", "kind", "text"))
CAMERAS = Table("mgs_cameras", CAMERA_COLUMNS, ("publisher", "camera"), replace=True)
TABLES = {table.name: table for table in (SCORES, ALERTS, GAPS, MARKERS, CAMERAS)}


def connect(url: str) -> psycopg.Connection[Any]:
    """An autocommit connection (each batch opens its own transaction); DatabaseError says
    why there is none."""
    check_url(url)
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        raise DatabaseError(f"{shown_url(url)}: cannot connect: {reason(exc, url)}") from None


def reason(exc: BaseException, url: str) -> str:
    """A database error on one line, without the password should it quote the URL."""
    return without_password(str(exc), url) or type(exc).__name__


@dataclass(frozen=True)
class Selection:
    """Which score records to read: the cameras of a study and/or room, from a time on. Alert
    events and markers are read whole: the readers keep those of the mice they have."""

    study: str | None = None
    room: str | None = None
    since: float | None = None  # unix seconds

    def where(self) -> tuple[sql.Composable, tuple[object, ...]]:
        """The condition on mgs_scores, and its parameters."""
        tags = [(name, value) for name, value in (("study", self.study), ("room", self.room))
                if value is not None]
        parts: list[sql.Composable] = []
        params: list[object] = []
        if tags:
            parts.append(sql.SQL("(publisher, camera) IN (SELECT publisher, camera FROM {} "
                                 "WHERE {})").format(sql.Identifier(CAMERAS.name), sql.SQL(
                                     " AND ").join(sql.SQL("{} = %s").format(sql.Identifier(n))
                                                   for n, _ in tags)))
            params += [value for _, value in tags]
        if self.since is not None:
            parts.append(sql.SQL("wall_time >= %s"))
            params.append(self.since)
        return sql.SQL(" AND ").join(parts or [EVERY_ROW]), tuple(params)


class RecordStore:
    """An open database with the record tables in the layout this version writes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.shown = shown_url(url)
        self.conn = connect(url)
        try:
            self._prepare()
        except psycopg.Error as exc:
            self.conn.close()
            raise DatabaseError(f"{self.shown}: cannot set up the tables: "
                                f"{reason(exc, url)}") from None
        except DatabaseError:
            self.conn.close()
            raise

    def insert(self, rows: Iterable[tuple[Table, Row]]) -> int:
        """Every row in one transaction, by table; rows already there are skipped."""
        by_table: dict[str, list[Row]] = {}
        for table, row in rows:
            by_table.setdefault(table.name, []).append(row)
        with self.conn.transaction(), self.conn.cursor() as cursor:
            for name, values in by_table.items():
                cursor.executemany(_insert_sql(TABLES[name]), values)
        return sum(map(len, by_table.values()))

    def last_seqs(self) -> dict[Run, int]:
        """The last sequence number of each recent run, so a restarted logger tells a true gap
        from its own absence."""
        query = sql.SQL("SELECT publisher, instance, max(seq) FROM {} WHERE wall_time > %s "
                        "GROUP BY publisher, instance").format(sql.Identifier(SCORES.name))
        rows = self.conn.execute(query, (time.time() - RECENT_S,)).fetchall()
        return {(publisher, instance): int(seq) for publisher, instance, seq in rows}

    def rows(self, table: Table, where: sql.Composable = EVERY_ROW,
             params: tuple[object, ...] = ()) -> Iterator[Row]:
        """The rows of a table in time order (cameras: by key), read in chunks."""
        order = "wall_time" if "wall_time" in csv_header(table.columns) else table.key[0]
        query = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {}").format(
            _names(csv_header(table.columns)), sql.Identifier(table.name), where,
            sql.Identifier(order))
        with self.conn.transaction(), self.conn.cursor(name=f"read_{table.name}") as cursor:
            cursor.execute(query, params)
            yield from cursor

    def close(self) -> None:
        self.conn.close()

    def _prepare(self) -> None:
        """Create what is missing, then check the layout: one transaction, serialised by a
        lock, so loggers starting together do not race to create the same tables."""
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x6D6773,))
            self.conn.execute("CREATE TABLE IF NOT EXISTS mgs_layout (layout integer NOT NULL)")
            found = self.conn.execute("SELECT layout FROM mgs_layout").fetchall()
            if not found:
                self.conn.execute("INSERT INTO mgs_layout VALUES (%s)", (LAYOUT,))
            elif found != [(LAYOUT,)]:
                raise DatabaseError(f"{self.shown}: its tables have layout "
                                    f"{', '.join(str(f[0]) for f in found)}, this mgs-monitor "
                                    f"writes layout {LAYOUT}; use another database")
            for table in TABLES.values():
                for statement in _create_sql(table):
                    self.conn.execute(statement)
                self._check_columns(table)

    def _check_columns(self, table: Table) -> None:
        found = [(name, kind) for name, kind in self.conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s "
            "ORDER BY ordinal_position", (table.name,))]
        wanted = [(column.name, column.sql) for column in table.columns]
        if found != wanted:
            raise DatabaseError(f"{self.shown}: table {table.name} has other columns than "
                                f"layout {LAYOUT} ({len(found)} found, {len(wanted)} "
                                "expected); use another database")


def _names(names: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, names))


def _create_sql(table: Table) -> list[sql.Composed]:
    columns = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.sql))
                                 for c in table.columns)
    statements = [sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, UNIQUE ({}))").format(
        sql.Identifier(table.name), columns, _names(table.key))]
    for method, names in table.indexes:
        statements.append(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING {} ({})").format(
            sql.Identifier(f"{table.name}_{'_'.join(names)}_{method}"),
            sql.Identifier(table.name), sql.SQL(method), _names(names)))
    return statements


def _insert_sql(table: Table) -> sql.Composed:
    names = csv_header(table.columns)
    on_conflict: sql.Composable = sql.SQL("DO NOTHING")
    if table.replace:
        on_conflict = sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name))
            for name in names if name not in table.key))
    return sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) {}").format(
        sql.Identifier(table.name), _names(names),
        sql.SQL(", ").join(sql.Placeholder() * len(names)), _names(table.key), on_conflict)


class DatabaseLog:
    """Writes records, alert events, gaps and markers to PostgreSQL in batches, one
    transaction each (`sync`); spools to a local file while the database is away.

    Opening needs the database (a wrong URL or layout is said at once). A spool left by an
    earlier run is written first, and the last sequence number of each recent run is read
    back, so a restarted logger neither doubles rows nor reports its own absence as a gap.
    """

    def __init__(self, url: str, spool: Path, cameras: Sequence[CameraTag] = ()) -> None:
        self.url = url
        self.shown = shown_url(url)
        self.spool = spool
        self.rows = 0  # score records handed to the database (or spooled for it)
        self.gaps: list[SequenceGap] = []
        self.error = ""  # why the database is not written now; "" while it is
        self.backfilled = 0  # spooled rows written when the database came back
        self._pending: list[tuple[Table, Row]] = [(CAMERAS, column_values(CAMERA_COLUMNS, tag))
                                                  for tag in cameras]
        self._retry_at = 0.0
        self._store: RecordStore | None = RecordStore(url)
        try:
            spool.parent.mkdir(parents=True, exist_ok=True)
            self.spooled = sum(1 for _ in _spooled(spool))
        except OSError as exc:
            self._store.close()
            raise DatabaseError(f"{spool}: cannot spool records here: "
                                f"{exc.strerror or exc}") from exc
        self.sequence = SequenceTracker(self._store.last_seqs() | _spooled_seqs(spool))
        self.sync()

    def write(self, record: ScoreRecord) -> None:
        self._gap(self.sequence.check(record))
        self._pending.append((SCORES, column_values(SCORE_COLUMNS, record)))
        self.rows += 1

    def reported(self, report: StatusReport) -> None:
        """Records a status report says were published and never came (see CsvLogger)."""
        self._gap(self.sequence.check_report(report))

    def _gap(self, gap: SequenceGap | None) -> None:
        if gap is not None:
            self.gaps.append(gap)
            self._pending.append((GAPS, column_values(GAP_COLUMNS, gap)))

    def alert(self, event: AlertEvent) -> None:
        self._pending.append((ALERTS, column_values(ALERT_COLUMNS, event)))

    def marker(self, marker: Marker) -> None:
        """A marker the monitor itself records (an acknowledgement), written with the batch."""
        self._pending.append((MARKERS, column_values(MARKER_COLUMNS, marker)))

    def sync(self) -> None:
        """Write what is pending (after any spool) in one transaction; spool it if the
        database is away."""
        if self._store is not None and not (self._pending or self.spooled):
            return
        if self._store is None and time.monotonic() < self._retry_at:
            self._spool()
            return
        try:
            if self._store is None:
                self._store = RecordStore(self.url)
            self._backfill(self._store)
            self._store.insert(self._pending)
            self._pending.clear()
            self.error = ""
        except (psycopg.Error, DatabaseError) as exc:
            self._down(exc)
            self._spool()

    def close(self) -> None:
        self._retry_at = 0.0
        self.sync()
        if self._store is not None:
            self._store.close()
            self._store = None

    def _down(self, exc: BaseException) -> None:
        self.error = (str(exc) if isinstance(exc, DatabaseError)
                      else f"{self.shown}: {reason(exc, self.url)}")
        if self._store is not None:
            self._store.close()
            self._store = None
        self._retry_at = time.monotonic() + RETRY_S

    def _spool(self) -> None:
        """Pending rows to the spool file, durable before they leave memory."""
        if not self._pending:
            return
        with self.spool.open("a", encoding="utf-8") as handle:
            if handle.tell() and not _ends_a_line(self.spool):
                handle.write("\n")  # after a torn line, which is skipped when read
            for table, row in self._pending:
                handle.write(json.dumps([table.name, row], allow_nan=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.spooled += len(self._pending)
        self._pending.clear()

    def _backfill(self, store: RecordStore) -> None:
        """The spool into the database, a batch a transaction; the file is emptied only once
        every row is in (rows written before a failure are skipped by their keys next time)."""
        if not self.spooled:
            return
        batch: list[tuple[Table, Row]] = []
        for item in _spooled(self.spool):
            batch.append(item)
            if len(batch) >= BATCH:
                store.insert(batch)
                batch.clear()
        store.insert(batch)
        self.spool.unlink(missing_ok=True)
        self.backfilled += self.spooled
        self.spooled = 0


def _spooled(spool: Path) -> Iterator[tuple[Table, Row]]:
    """The rows of a spool file; a torn last line (a crash while spooling) is skipped."""
    if not spool.is_file():
        return
    with spool.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                name, row = json.loads(line)
            except ValueError:
                continue
            if name in TABLES:
                yield TABLES[name], tuple(row)


def _ends_a_line(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _spooled_seqs(spool: Path) -> dict[Run, int]:
    last: dict[Run, int] = {}
    names = csv_header(SCORE_COLUMNS)
    publisher, seq, instance = (names.index(n) for n in ("publisher", "seq", "instance"))
    for table, row in _spooled(spool):
        if table is SCORES:
            run = (row[publisher], row[instance])
            last[run] = max(last.get(run, -1), row[seq])
    return last


def camera_tags(config: MonitorConfig) -> tuple[CameraTag, ...]:
    """The study and room of each camera of a monitor, as the database keeps them."""
    return tuple(CameraTag(config.publisher, camera.name, camera.study, camera.room)
                 for camera in config.cameras)


def add_marker(url: str, marker: Marker) -> None:
    """One marker into the database (`mgs-monitor mark --db`)."""
    store = RecordStore(url)
    try:
        store.insert([(MARKERS, column_values(MARKER_COLUMNS, marker))])
    except psycopg.Error as exc:
        raise DatabaseError(f"{store.shown}: cannot write the marker: "
                            f"{reason(exc, url)}") from None
    finally:
        store.close()


def export_csvs(url: str, folder: Path, selection: Selection | None = None) -> Path:
    """The database's records (those of `selection`) as `scores.csv` in `folder` with its
    alerts, gaps and markers beside it, each row as the CSV logger writes it; returns the
    score CSV."""
    store = RecordStore(url)
    scores = folder / "scores.csv"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _export(store, SCORES, scores, *(selection or Selection()).where())
        sides: tuple[tuple[SideKind, Table], ...] = (("alerts", ALERTS), ("gaps", GAPS),
                                                     ("markers", MARKERS))
        for kind, table in sides:
            _export(store, table, side_file(scores, kind))
    except psycopg.Error as exc:
        raise DatabaseError(f"{store.shown}: cannot read the records: "
                            f"{reason(exc, url)}") from None
    finally:
        store.close()
    return scores


def _export(store: RecordStore, table: Table, path: Path,
            where: sql.Composable = EVERY_ROW, params: tuple[object, ...] = ()) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_header(table.columns))
        for row in store.rows(table, where, params):
            writer.writerow(csv_cells(table.columns, row))
