"""Where the pipeline thread sends what it makes: the CSV, evidence, the publisher, the hook,
and PostgreSQL when the config names a database; and where requests come back to it, the
command socket (monitor/outputs/commands.py).

All are opened, used and closed by the pipeline thread alone, in one place (`open_sinks`):
the CSV first (records are durable before anything else sees them), the database (which spools
to a local file while it is away), then the evidence writer
(face crops and frames, on its own thread), then the publisher (ZeroMQ for other processes,
and the in-process endpoint the monitor's own dashboard subscribes to), the command socket
beside it, then the hook runner.
If one cannot be opened, those already open are closed and the opening
error is the one reported; on the way out every sink is closed in the same order even if one
fails, and the first failure is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.config import MonitorConfig
from monitor.outputs.bus import Publisher, Serving
from monitor.outputs.commands import CommandServer
from monitor.outputs.csvlog import CsvLogError, CsvLogger, Rotate
from monitor.outputs.db_url import require_driver
from monitor.outputs.evidence import EvidenceError, EvidenceWriter
from monitor.outputs.markers import add_marker
from monitor.schema import ALERT_COLUMNS, AlertEvent, HookCounts, Marker, Message, ScoreRecord
from monitor.scoring.alerts import HookRunner

if TYPE_CHECKING:  # the database driver is loaded only when the config names a database
    from monitor.outputs.database import DatabaseLog

Notice = Callable[[str], None]


class Sinks:
    """The open sinks of one run; `notice` is called (on this same thread) when something a
    person should read happens to them, e.g. the disk filling up."""

    def __init__(self, csv: CsvLogger | None, evidence: EvidenceWriter | None,
                 publisher: Publisher, hooks: HookRunner | None, notice: Notice,
                 database: DatabaseLog | None = None,
                 commands: CommandServer | None = None) -> None:
        self.csv = csv
        self.commands = commands
        self.database = database
        self._database_down = False
        self.evidence = evidence
        self.alert_log = csv.side_log("alerts", ALERT_COLUMNS) if csv else None
        self.publisher = publisher
        self.hooks = hooks
        self.notice = notice
        self._csv_error = ""
        self._evidence_error = ""
        self._scanning_said = False

    def scores(self, records: list[ScoreRecord]) -> None:
        """Each record to the CSV, then published; one fsync for the batch."""
        for record in records:
            if self.csv:
                self.csv.write(record)
            if self.database:
                self.database.write(record)
            self.publisher.publish(record)
        if self.csv and records:
            self.csv.sync()
            self._csv_state()
        if self.database and records:
            self._database_sync()

    def alerts(self, events: list[AlertEvent]) -> None:
        """Each event to `<csv>.alerts.csv`, published, and to the hook when raised or cleared.
        The evidence a raised alert names is pinned: the disk budget never removes it."""
        for event in events:
            if self.evidence and event.event == "raised":
                self.evidence.pin(list(event.evidence))
            if self.alert_log:
                try:
                    self.alert_log.write(event)
                except OSError as exc:  # published and shown all the same
                    self.notice(f"cannot write {self.alert_log.path_for(event.wall_time)}: "
                                f"{exc.strerror or exc}")
            if self.database:
                self.database.alert(event)
            self.publisher.publish(event)
            if self.hooks:
                self.hooks.submit(self._for_hook(event))
        if self.database and events:
            self._database_sync()

    def _for_hook(self, event: AlertEvent) -> AlertEvent:
        """The hook runs anywhere: it gets the evidence as absolute paths."""
        if not (event.evidence and self.csv):
            return event
        folder = self.csv.path.parent.resolve()
        return event.model_copy(update={"evidence": tuple(str(folder / p)
                                                          for p in event.evidence)})

    def publish(self, message: Message) -> None:
        self.publisher.publish(message)

    def mark(self, marker: Marker) -> None:
        """A marker the monitor records itself (an acknowledgement) beside the records of its
        time, and in the database. MarkerError (one line) when the markers file refuses it."""
        if self.csv:
            add_marker(self.csv.file_for(marker.wall_time), marker.mouse, marker.text,
                       marker.wall_time, marker.kind)
        if self.database:
            self.database.marker(marker)
            self._database_sync()

    def hook_counts(self) -> HookCounts:
        return self.hooks.stats if self.hooks else HookCounts()

    def evidence_state(self) -> None:
        """Say when evidence stops being kept (disk full, budget full) and when it resumes."""
        if self.evidence is None:
            return
        counts = self.evidence.counts()
        self._scanning_state(counts.scanning, counts.files, counts.bytes)
        if counts.error == self._evidence_error:
            return
        self._evidence_error = counts.error
        self.notice(counts.error or f"{self.evidence.folder}: evidence kept again "
                    f"({counts.dropped} files not kept so far)")

    def _scanning_state(self, scanning: bool, files: int, size: int) -> None:
        """Say while the files kept before are being counted (a large folder takes a while;
        the budget removes nothing meanwhile), and when they are."""
        assert self.evidence is not None
        if scanning and not self._scanning_said:
            self._scanning_said = True
            self.notice(f"{self.evidence.folder}: scanning the evidence kept before; the disk "
                        "budget removes nothing until it is counted")
        elif not scanning and self._scanning_said:
            self._scanning_said = False
            self.notice(f"{self.evidence.folder}: evidence kept before counted ({files} files, "
                        f"{size / 1e9:.2f} GB); the disk budget holds")

    def _csv_state(self) -> None:
        """Say when the CSV stops taking records (disk full) and when it resumes."""
        assert self.csv is not None
        error = self.csv.error
        if error == self._csv_error:
            return
        self._csv_error = error
        lost = (f"{self.csv.dropped} records lost when the backlog overflowed"
                if self.csv.dropped else "nothing lost")
        self.notice(f"{error}; {self.csv.backlog} records held in memory, scoring goes on"
                    if error else f"{self.csv.path}: writing resumed, {lost}")


    def _database_sync(self) -> None:
        """Write the batch; say when the database goes away (the records are spooled) and
        when it is back with the spool written."""
        assert self.database is not None
        self.database.sync()
        error = self.database.error
        if bool(error) == self._database_down:  # said once per outage, whatever its reasons
            return
        self._database_down = bool(error)
        self.notice(f"{error}; records spooled to {self.database.spool}, scoring goes on"
                    if error else f"{self.database.shown}: writing again, "
                    f"{self.database.backfilled} spooled rows written, nothing lost")


@contextmanager
def open_sinks(config: MonitorConfig, csv_path: Path | None, view_endpoint: str,
               notice: Notice, rotate: Rotate = "never") -> Iterator[Sinks]:
    """The sinks of a run, opened in order and closed in the same order when the block ends;
    `rotate` splits the CSV by period (`csv_path` is then the base of the names)."""
    closers: list[Callable[[], None]] = []
    error: BaseException | None = None
    try:
        csv = CsvLogger(csv_path, rotate=rotate) if csv_path is not None else None
        if csv is not None:
            closers.append(csv.close)
        database = _database(config)
        if database is not None:
            closers.append(database.close)
        evidence = _evidence(config, csv_path)
        if evidence is not None:
            closers.append(evidence.close)
        publisher = _publisher(config, view_endpoint)
        closers.append(publisher.close)
        commands = _commands(config)
        if commands is not None:
            closers.append(commands.close)
        hooks = _hooks(config)
        if hooks is not None:
            closers.append(lambda: hooks.close(timeout=hooks.timeout_s + 1.0))
        yield Sinks(csv, evidence, publisher, hooks, notice, database, commands)
    except BaseException as exc:
        error = exc
        raise
    finally:
        failure = _close_all(closers)
        if failure is not None and error is None:
            raise failure


def _database(config: MonitorConfig) -> DatabaseLog | None:
    url = config.database.url
    if url is None:
        return None
    require_driver(url)
    from monitor.outputs.database import DatabaseLog, camera_tags

    return DatabaseLog(url, config.database.spool, camera_tags(config))


def evidence_folder(config: MonitorConfig, csv_path: Path) -> Path:
    """One folder for every run writing CSVs to one folder (a file per day, or per start), so
    the disk budget holds across restarts."""
    return config.evidence.folder or csv_path.parent / "evidence"


def _evidence(config: MonitorConfig, csv_path: Path | None) -> EvidenceWriter | None:
    """Evidence is kept beside a CSV, whose rows name each crop relative to its folder."""
    if not config.evidence.enabled or csv_path is None:
        return None
    folder = evidence_folder(config, csv_path)
    try:
        return EvidenceWriter(folder, csv_path.parent, config.evidence, config.publisher)
    except EvidenceError as exc:  # another monitor writes there
        raise CsvLogError(str(exc)) from None
    except OSError as exc:
        raise CsvLogError(f"{folder}: cannot keep evidence here: {exc.strerror or exc}; "
                          "set evidence.folder, or evidence.enabled: false") from exc


def _publisher(config: MonitorConfig, view_endpoint: str) -> Publisher:
    """One PUB socket: the configured bus endpoint when publishing is on, and the in-process
    endpoint of the monitor's own view either way."""
    bus = config.bus
    if not bus.enabled:
        return Publisher(view_endpoint)
    return Publisher(bus.endpoint, secret_key=bus.secret_key, insecure=bus.insecure,
                     allowed_clients=bus.allowed_clients, also=(view_endpoint,))


def _commands(config: MonitorConfig) -> CommandServer | None:
    """The command socket beside the publisher, served under the same keys and rules; none
    when publishing is off or `bus.commands` is "none"."""
    bus = config.bus
    if not (bus.enabled and bus.command_endpoint):
        return None
    return CommandServer(bus.command_endpoint,
                         Serving(bus.secret_key, bus.allowed_clients, bus.insecure))


def _hooks(config: MonitorConfig) -> HookRunner | None:
    alerts = config.alerts
    return HookRunner(alerts.on_alert, alerts.hook_timeout_s) if alerts.on_alert else None


def _close_all(closers: list[Callable[[], None]]) -> Exception | None:
    """Run every closer in order whatever fails; the first failure, if any."""
    first: Exception | None = None
    for close in closers:
        try:
            close()
        except Exception as exc:
            first = first or exc
    return first
