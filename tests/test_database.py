"""Records in a real PostgreSQL (started by the tests): tables made from the CSV's column specs,
rows read back equal to the CSV's, no row doubled by a restart, nothing lost while the database
is down, and one-line errors naming the URL."""

from __future__ import annotations

import csv
import socket
from pathlib import Path

import psycopg
import pytest

from monitor.outputs import database as records_db
from monitor.outputs.bus import Publisher
from monitor.outputs.csvlog import CsvLogger, SideLog
from monitor.outputs.database import DatabaseError, DatabaseLog, export_csvs
from monitor.outputs.sinks import Sinks
from monitor.schema import (
    ALERT_COLUMNS,
    CSV_COLUMNS,
    GAP_COLUMNS,
    MARKER_COLUMNS,
    AlertEvent,
    CameraTag,
    Marker,
    ScoreRecord,
    StatusReport,
    csv_header,
    side_file,
)
from tests.postgres_util import PostgresServer
from tests.records_util import score_record


def alert_event(wall_time: float, event: str = "raised") -> AlertEvent:
    return AlertEvent(wall_time=wall_time, time=12.0, mouse="cam0-c1", camera="cam0",
                      rule="pain", event=event, value=4.25 if event == "raised" else None,
                      threshold=4.0, since=10.0, peak=4.25, detail="window 4.25 >= 4",
                      evidence=("evidence/a.jpg", "evidence/b.jpg"))


def records(seqs: range | list[int], instance: str = "run1") -> list[ScoreRecord]:
    made = []
    for seq in seqs:
        status = ("scored", "no_face", "camera_down")[seq % 3]
        record = score_record(seq, mouse=f"cam0-c{seq % 2 + 1}", status=status)
        made.append(record.model_copy(update={"instance": instance,
                                              "sharpness": 120.123456 + seq}))
    return made


def rows_of(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def db_rows(url: str, table: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT * FROM {table}").fetchall()


def test_tables_have_the_csv_columns_and_their_keys(database: str, tmp_path: Path) -> None:
    DatabaseLog(database, tmp_path / "spool").close()
    with psycopg.connect(database) as conn:
        columns = {table: tuple(row[0] for row in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "ORDER BY ordinal_position", (table,))) for table in records_db.TABLES}
        indexes = {row[0] for row in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'mgs_scores'")}
    assert columns["mgs_scores"] == CSV_COLUMNS
    assert columns["mgs_alerts"] == csv_header(ALERT_COLUMNS)
    assert columns["mgs_gaps"] == csv_header(GAP_COLUMNS)
    assert columns["mgs_markers"] == csv_header(MARKER_COLUMNS)
    assert any("UNIQUE" in i and "(publisher, instance, seq)" in i for i in indexes)
    assert any("USING brin (wall_time)" in i for i in indexes)
    assert any("(mouse, wall_time)" in i for i in indexes)


def test_rows_read_back_equal_the_csv(database: str, tmp_path: Path) -> None:
    """The same records, events and markers through the CSV logger and the database: the
    database exported as CSVs gives every file row for row (gaps included)."""
    items = records([*range(0, 20), *range(25, 40)])  # 20-24 never arrive: a gap
    events = [alert_event(1000.0), alert_event(1060.0, "cleared")]
    marker = Marker(990.5, "*", "NTG injected", "injection")
    logger = CsvLogger(tmp_path / "csv" / "scores.csv")
    alert_log = SideLog(side_file(logger.path, "alerts"), ALERT_COLUMNS)
    db = DatabaseLog(database, tmp_path / "spool")
    for record in items:
        logger.write(record)
        db.write(record)
    for event in events:
        alert_log.write(event)
        db.alert(event)
    db.sync()
    db.close()
    logger.close()
    SideLog(side_file(logger.path, "markers"), MARKER_COLUMNS).write(marker)
    records_db.add_marker(database, marker)
    exported = export_csvs(database, tmp_path / "db")
    assert len(rows_of(exported)) == len(items) + 1
    assert sorted(rows_of(exported)) == sorted(rows_of(logger.path))
    for kind in ("alerts", "markers"):
        assert rows_of(side_file(exported, kind)) == rows_of(side_file(logger.path, kind))
    gap_columns = slice(0, 3)  # publisher, first and last missing: wall_time is when seen
    assert [r[gap_columns] for r in rows_of(side_file(exported, "gaps"))] == [
        r[gap_columns] for r in rows_of(side_file(logger.path, "gaps"))] != []


def test_the_last_records_of_a_run_lost_are_a_gap_in_the_csv_and_the_database(
        database: str, tmp_path: Path) -> None:
    """Records 10-14 never arrive and no record follows them: the monitor's status report,
    which counts what it published, makes them a gap in both logs."""
    report = StatusReport(publisher="test", seq=7, wall_time=2000.0, title="t",
                          model_kind="demo", alert_threshold=4.0, records=15, instance="run1",
                          last_seq=14)
    logger = CsvLogger(tmp_path / "csv" / "scores.csv")
    db = DatabaseLog(database, tmp_path / "spool")
    for record in records(range(10)):
        logger.write(record)
        db.write(record)
    logger.reported(report)
    db.reported(report)
    db.close()
    logger.close()
    gaps = rows_of(side_file(logger.path, "gaps"))
    assert [row[:3] + row[4:] for row in gaps] == [["publisher", "first_missing",
                                                     "last_missing", "instance"],
                                                    ["test", "10", "14", "run1"]]
    assert [(r[0], r[1], r[2], r[4]) for r in db_rows(database, "mgs_gaps")] == \
        [("test", 10, 14, "run1")]


def test_a_restarted_log_never_doubles_a_row_nor_sees_a_gap(database: str,
                                                             tmp_path: Path) -> None:
    first = DatabaseLog(database, tmp_path / "spool")
    for record in records(range(10)):
        first.write(record)
    first.close()
    again = DatabaseLog(database, tmp_path / "spool")
    for record in records(range(5, 15)):  # 5-9 again (e.g. a spool written twice)
        again.write(record)
    again.alert(alert_event(1000.0))
    again.alert(alert_event(1000.0))
    again.close()
    seqs = [row[2] for row in db_rows(database, "mgs_scores")]
    assert sorted(seqs) == list(range(15))
    assert len(db_rows(database, "mgs_alerts")) == 1
    assert again.gaps == [] and db_rows(database, "mgs_gaps") == []


def test_the_cameras_study_and_room_are_kept_and_updated(database: str, tmp_path: Path) -> None:
    DatabaseLog(database, tmp_path / "spool", [CameraTag("rackA", "cam0", "NTG-2026", "3"),
                                               CameraTag("rackA", "cam1", "", "3")]).close()
    DatabaseLog(database, tmp_path / "spool", [CameraTag("rackA", "cam0", "NTG-2027", "4")]
                ).close()
    assert sorted(db_rows(database, "mgs_cameras")) == [("rackA", "cam0", "NTG-2027", "4"),
                                                        ("rackA", "cam1", "", "3")]


def test_a_database_down_is_spooled_and_backfilled(postgres: PostgresServer, database: str,
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records_db, "RETRY_S", 0.0)
    spool = tmp_path / "spool.jsonl"
    db = DatabaseLog(database, spool)
    for record in records(range(10)):
        db.write(record)
    db.sync()
    postgres.crash()
    for record in records(range(10, 30)):
        db.write(record)
        db.sync()
    db.alert(alert_event(1000.0))
    db.sync()
    assert db.error.startswith(database) and db.spooled == 21 and spool.is_file()
    postgres.start()
    for record in records(range(30, 35)):
        db.write(record)
    db.sync()
    db.close()
    assert db.error == "" and db.backfilled == 21 and not spool.exists()
    assert sorted(row[2] for row in db_rows(database, "mgs_scores")) == list(range(35))
    assert len(db_rows(database, "mgs_alerts")) == 1


def test_a_spool_left_by_a_killed_log_is_written_on_start(postgres: PostgresServer,
                                                          database: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """A logger killed while the database was down leaves its spool (its last line torn);
    the next one writes it first, and continues the runs' sequences without a false gap."""
    spool = tmp_path / "spool.jsonl"
    db = DatabaseLog(database, spool)
    postgres.crash()
    for record in records(range(10)):
        db.write(record)
    db.sync()  # spooled; the logger then dies without closing
    with spool.open("a", encoding="utf-8") as handle:
        handle.write('["mgs_scores", ["torn')
    postgres.start()
    again = DatabaseLog(database, spool)
    for record in records(range(10, 12)):
        again.write(record)
    again.close()
    assert sorted(row[2] for row in db_rows(database, "mgs_scores")) == list(range(12))
    assert again.gaps == [] and not spool.exists()


@pytest.mark.parametrize("url, said", [
    ("postgresql://mgs:s3cret@127.0.0.1:{closed}/x", "cannot connect"),
    ("mysql://mgs:s3cret@127.0.0.1/x", "not a PostgreSQL URL"),
    ("postgresql://mgs:s3cret@127.0.0.1:notaport/x", "cannot connect"),
])
def test_an_unusable_url_is_one_line_without_the_password(url: str, said: str,
                                                          tmp_path: Path) -> None:
    url = url.replace("{closed}", str(closed_port()))
    with pytest.raises(DatabaseError) as caught:
        DatabaseLog(url, tmp_path / "spool")
    message = str(caught.value)
    assert said in message and "\n" not in message and "s3cret" not in message
    assert message.startswith(url.replace("s3cret", "***"))


def test_tables_of_another_layout_are_refused(database: str, tmp_path: Path) -> None:
    DatabaseLog(database, tmp_path / "spool").close()
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("UPDATE mgs_layout SET layout = 99")
    with pytest.raises(DatabaseError, match=r"layout 99, this mgs-monitor writes layout 1"):
        DatabaseLog(database, tmp_path / "spool")
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("UPDATE mgs_layout SET layout = 1")
        conn.execute("ALTER TABLE mgs_scores DROP COLUMN crop")
    with pytest.raises(DatabaseError, match=r"^postgresql://.*table mgs_scores has other "):
        DatabaseLog(database, tmp_path / "spool")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_run_says_the_outage_and_the_backfill_on_its_status_line(
        postgres: PostgresServer, database: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records_db, "RETRY_S", 0.0)
    notices: list[str] = []
    db = DatabaseLog(database, tmp_path / "spool")
    publisher = Publisher("inproc://database-sinks")
    sinks = Sinks(None, None, publisher, None, notices.append, db)
    sinks.scores(records(range(5)))
    postgres.crash()
    sinks.scores(records(range(5, 10)))
    sinks.alerts([alert_event(1000.0)])
    postgres.start()
    sinks.scores(records(range(10, 12)))
    db.close()
    publisher.close()
    assert len(notices) == 2 and notices[0].startswith(f"{database}: ")
    assert notices[0].endswith(f"; records spooled to {tmp_path / 'spool'}, scoring goes on")
    assert notices[1] == f"{database}: writing again, 6 spooled rows written, nothing lost"
    assert sorted(row[2] for row in db_rows(database, "mgs_scores")) == list(range(12))
