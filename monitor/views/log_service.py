"""`mgs-monitor log`: a running monitor's records, alert events and acknowledgements (as markers),
written to CSV from ZeroMQ, or to PostgreSQL (`--db`), or both.

A logger of its own process survives the monitor's restarts (and the monitor its): each missing
range of sequence numbers of a monitor's run (records lost while the logger was down, or that a
proxy or logger too far behind dropped; the last ones of a run are found from the monitor's
status reports, which count what it published) is written to `<csv>.gaps.csv` (the database's
gaps table) and said as it is found, and a restarted logger appends to the same file after trimming
a torn last row (a database keeps each row once by its key). With `--rotate` the records go to
a file per day or hour, each with its own side files, as `run` writes them. While the database
is away the records are spooled to a local file and written when it returns; the console says
both. A mouse id that two monitors both send is said once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from monitor.outputs.bus import Subscriber
from monitor.outputs.csvlog import CsvLogger, Rotate, period_names
from monitor.outputs.db_url import require_driver
from monitor.outputs.markers import MarkerError, acknowledgement_marker, add_marker
from monitor.outputs.systemd import Watchdog, notify
from monitor.schema import (
    ALERT_COLUMNS,
    TOPIC_ACK,
    TOPIC_ALERT,
    TOPIC_SCORE,
    TOPIC_STATUS,
    Acknowledgement,
    AlertEvent,
    CameraTag,
    MouseOrigins,
    ScoreRecord,
    SequenceGap,
    StatusReport,
)
from monitor.signals import stop_on_signals

if TYPE_CHECKING:  # the database driver is loaded only for --db
    from monitor.outputs.database import DatabaseLog

BATCH = 2000  # records taken per turn: under a steady stream the file is synced, the watchdog
# pinged and a stop seen between batches

DEFAULT_SPOOL = Path("mgs-records/database.spool")


def run_logger(endpoint: str, server_key: Path | None, out: Path | None, seconds: float | None,
               client_key: Path | None = None, db: str | None = None,
               spool: Path = DEFAULT_SPOOL, cameras: tuple[CameraTag, ...] = (),
               rotate: Rotate = "never") -> int:
    """Log until stopped (or `seconds`): to the CSV `out` (a file per period with `rotate`), to
    the database `db`, or both; the database's spool is `spool`, and `cameras` are the study and
    room tags it keeps."""
    deadline = time.monotonic() + seconds if seconds else None
    console = Console(stderr=True)
    # Status reports last: subscriptions take effect in order, so none arrives before the
    # records it counts could.
    with Subscriber(endpoint, topics=(TOPIC_SCORE, TOPIC_ALERT, TOPIC_ACK, TOPIC_STATUS),
                    server_key=server_key, client_key=client_key) as subscriber:
        database = open_database(db, spool, cameras) if db else None
        logger = CsvLogger(out, rotate=rotate) if out else None
        alert_log = logger.side_log("alerts", ALERT_COLUMNS) if logger else None
        origins = MouseOrigins()
        down = database_state(console, database, False)
        if database and database.backfilled:
            console.print(f"{database.shown}: {database.backfilled} rows spooled by an earlier "
                          "run written")
        where = " and ".join(str(w) for w in (out and period_names(out, rotate),
                                              database and database.shown) if w)
        console.print(f"logging {endpoint} to {where} (Ctrl-C to stop)")
        notify("READY=1")
        watchdog = Watchdog()
        said_gaps = 0
        try:
            with stop_on_signals() as stopping:
                while not stopping() and (deadline is None or time.monotonic() < deadline):
                    watchdog.ping(time.monotonic())
                    wrote = False
                    for message in subscriber.receive(250, most=BATCH):
                        if isinstance(message, ScoreRecord):
                            if logger:
                                logger.write(message)
                            if database:
                                database.write(message)
                            wrote = True
                            mixed = origins.check(message)
                            if mixed:  # the rows stay apart by publisher and instance
                                console.print(f"[bold red]{mixed}[/]")
                        elif isinstance(message, AlertEvent):
                            if alert_log:
                                alert_log.write(message)
                            if database:
                                database.alert(message)
                            wrote = True
                        elif isinstance(message, Acknowledgement):
                            mark(console, logger, database, message)
                        elif isinstance(message, StatusReport):  # records lost at a run's end
                            if logger:
                                logger.reported(message)
                            if database:
                                database.reported(message)
                    if wrote and logger:
                        logger.sync()
                    if database:  # also while idle: a spool is written once the database is back
                        database.sync()
                        down = database_state(console, database, down)
                    said_gaps = say_gaps(console, logger or database, said_gaps)
                    for problem in subscriber.problems():  # e.g. a key the monitor refuses
                        console.print(f"[bold red]{problem}[/]")
        finally:
            try:
                if logger:
                    logger.close()
            finally:  # a CSV that cannot be closed leaves the database's rows to be written
                if database:
                    database.close()
    if logger and out:
        gaps = f", {len(logger.gaps)} gaps written to {logger.gaps_path}" if logger.gaps else ""
        console.print(f"{logger.rows} records written to {period_names(out, rotate)}{gaps}")
    if database:
        database_state(console, database, down)
        gaps = f", {len(database.gaps)} gaps" if database.gaps else ""
        console.print(f"{database.rows} records written to {database.shown}{gaps}")
        if database.spooled:
            console.print(f"{database.spooled} rows wait in {database.spool}: the next logger "
                          "with this spool writes them")
    return 0


def mark(console: Console, logger: CsvLogger | None, database: DatabaseLog | None,
         ack: Acknowledgement) -> None:
    """An acknowledgement as a marker beside the records of its time, and in the database (a
    row the monitor wrote there too is kept once, by its key)."""
    marker = acknowledgement_marker(ack)
    if database:
        database.marker(marker)
    if logger:
        try:
            add_marker(logger.file_for(marker.wall_time), marker.mouse, marker.text,
                       marker.wall_time, marker.kind)
        except MarkerError as exc:  # the records go on; the person is told
            console.print(f"[bold red]{exc}[/]")


def open_database(url: str, spool: Path, cameras: tuple[CameraTag, ...]) -> DatabaseLog:
    require_driver(url)
    from monitor.outputs.database import DatabaseLog

    return DatabaseLog(url, spool, cameras)


def database_state(console: Console, database: DatabaseLog | None, was_down: bool) -> bool:
    """Say when the database goes away (and where the records go meanwhile) and when it is
    back, once per outage; returns whether it is down."""
    if database is None:
        return was_down
    down = bool(database.error)
    if down and not was_down:
        console.print(f"[bold red]{database.error}; records spooled to {database.spool} "
                      f"({database.spooled} rows so far)[/]")
    elif was_down and not down:
        console.print(f"{database.shown}: writing again, {database.backfilled} spooled rows "
                      "written, nothing lost")
    return down


def say_gaps(console: Console, sink: CsvLogger | DatabaseLog | None, said: int) -> int:
    """Say the records found missing since the last `said` gaps, where they are written; returns
    how many gaps are said now."""
    if sink is None or len(sink.gaps) <= said:
        return said
    where = sink.gaps_path if isinstance(sink, CsvLogger) else f"{sink.shown}, mgs_gaps"
    console.print(f"[bold red]{missing(sink.gaps[said:])} (written to {where})[/]")
    return len(sink.gaps)


def missing(gaps: list[SequenceGap]) -> str:
    """One line for the records found missing in one batch."""
    lost = sum(gap.last_missing - gap.first_missing + 1 for gap in gaps)
    publishers = sorted({gap.publisher for gap in gaps})
    return f"{lost} records missing from {', '.join(publishers)}"
