"""`mgs-monitor log`: a running monitor's records and alert events, written to CSV from ZeroMQ.

A logger of its own process survives the monitor's restarts (and the monitor its): each missing
range of sequence numbers of a monitor's run (records lost while the logger was down, or that a
proxy or logger too far behind dropped) is written to `<csv>.gaps.csv` and said as it is found,
and a restarted logger appends to the same file after trimming a torn last row. A mouse id
that two monitors both send is said once.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from monitor.bus import Subscriber
from monitor.csvlog import CsvLogger, SideLog
from monitor.schema import (
    ALERT_COLUMNS,
    TOPIC_ALERT,
    TOPIC_SCORE,
    AlertEvent,
    MouseOrigins,
    ScoreRecord,
    SequenceGap,
    side_file,
)
from monitor.stopping import stop_on_signals
from monitor.systemd import Watchdog, notify

BATCH = 2000  # records taken per turn: under a steady stream the file is synced, the watchdog
# pinged and a stop seen between batches


def run_logger(endpoint: str, server_key: Path | None, out: Path, seconds: float | None,
               client_key: Path | None = None) -> int:
    deadline = time.monotonic() + seconds if seconds else None
    console = Console(stderr=True)
    with Subscriber(endpoint, topics=(TOPIC_SCORE, TOPIC_ALERT),
                    server_key=server_key, client_key=client_key) as subscriber:
        logger = CsvLogger(out)
        alert_log = SideLog(side_file(out, "alerts"), ALERT_COLUMNS)
        origins = MouseOrigins()
        console.print(f"logging {endpoint} to {out} (Ctrl-C to stop)")
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
                            logger.write(message)
                            wrote = True
                            mixed = origins.check(message)
                            if mixed:  # the rows stay apart by publisher and instance
                                console.print(f"[bold red]{mixed}[/]")
                        elif isinstance(message, AlertEvent):
                            alert_log.write(message)
                    if wrote:
                        logger.sync()
                    if len(logger.gaps) > said_gaps:
                        console.print(f"[bold red]{missing(logger.gaps[said_gaps:])} "
                                      f"(written to {logger.gaps_path})[/]")
                        said_gaps = len(logger.gaps)
                    for problem in subscriber.problems():  # e.g. a key the monitor refuses
                        console.print(f"[bold red]{problem}[/]")
        finally:
            logger.close()
    gaps = f", {len(logger.gaps)} gaps written to {logger.gaps_path}" if logger.gaps else ""
    console.print(f"{logger.rows} records written to {out}{gaps}")
    return 0


def missing(gaps: list[SequenceGap]) -> str:
    """One line for the records found missing in one batch."""
    lost = sum(gap.last_missing - gap.first_missing + 1 for gap in gaps)
    publishers = sorted({gap.publisher for gap in gaps})
    return f"{lost} records missing from {', '.join(publishers)}"
