"""`mgs-monitor log --db` as a user runs it, against a real PostgreSQL started by the tests:
killed and restarted mid-run, its database crashed and started again, with no row lost or
doubled; `report --db` and `mgs-eval --alerts --db` read it back as from the CSV; `run` writes
to it from its config."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from demo.build import DemoBuild
from monitor.cli import main
from monitor.outputs import database as records_db
from monitor.outputs.bus import Publisher
from monitor.outputs.csvlog import CsvLogger, SideLog
from monitor.schema import (
    ALERT_COLUMNS,
    MARKER_COLUMNS,
    AlertEvent,
    CameraTag,
    Marker,
    ScoreRecord,
    side_file,
)
from tests.conftest import free_port_endpoint
from tests.postgres_util import PostgresServer
from tests.records_util import score_record
from tests.test_alert_eval import START, steady, write_mice
from tests.test_database import closed_port
from tests.test_pipeline import replay_args
from train.mgs_eval import cli as mgs_eval


def count(url: str, query: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute(query).fetchone()
            return int(row[0]) if row and row[0] is not None else -1
    except psycopg.Error:  # down, or the logger has not made the tables yet
        return -1


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.1)


def start_logger(endpoint: str, url: str, spool: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "monitor", "log", "--endpoint", endpoint,
                             "--db", url, "--spool", str(spool), *extra],
                            stderr=subprocess.PIPE, text=True)


class Feed:
    """A monitor's stream stood in for by its records: seq 0, 1, 2, ... every few ms."""

    def __init__(self, endpoint: str) -> None:
        self.publisher = Publisher(endpoint)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send, daemon=True)
        self._thread.start()

    def _send(self) -> None:
        while not self._stop.is_set():
            record = score_record(self.sent, mouse=f"cam0-c{self.sent % 4 + 1}")
            self.publisher.publish(record.model_copy(update={"instance": "run1"}))
            self.sent += 1
            time.sleep(0.004)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.publisher.close()
        return self.sent


@pytest.mark.slow
def test_log_killed_and_database_crashed_mid_run_lose_and_double_nothing(
        postgres: PostgresServer, database: str, tmp_path: Path) -> None:
    """Every record sent once the logger listened is in the database once, or inside a gap
    it wrote: the records sent while no logger ran. The database's outage is spooled and
    backfilled, and said on the console."""
    endpoint = free_port_endpoint()
    spool = tmp_path / "spool.jsonl"
    rows = "SELECT count(*) FROM mgs_scores"
    feed = Feed(endpoint)
    logger = start_logger(endpoint, database, spool)
    wait_until(lambda: count(database, rows) > 100, "records written")
    postgres.crash()
    wait_until(lambda: spool.is_file() and spool.stat().st_size > 10_000, "records spooled")
    postgres.start()
    wait_until(lambda: not spool.exists(), "the spool backfilled")
    logger.send_signal(signal.SIGKILL)
    _, first_said = logger.communicate(timeout=30)
    before = count(database, rows)
    logger = start_logger(endpoint, database, spool)
    wait_until(lambda: count(database, rows) > before + 100, "records after the restart")
    sent = feed.stop()
    wait_until(lambda: count(database, "SELECT max(seq) FROM mgs_scores") == sent - 1,
               "the last record written")
    logger.send_signal(signal.SIGINT)
    _, said = logger.communicate(timeout=30)
    assert logger.returncode == 0, said
    with psycopg.connect(database) as conn:
        seqs = [row[0] for row in conn.execute("SELECT seq FROM mgs_scores")]
        gaps = conn.execute("SELECT first_missing, last_missing FROM mgs_gaps").fetchall()
    assert len(seqs) == len(set(seqs))
    missing = {seq for first, last in gaps for seq in range(first, last + 1)}
    # from the first record the logger saw (those before its subscription went nowhere)
    assert not missing & set(seqs) and missing | set(seqs) == set(range(min(seqs), sent))
    assert len(gaps) == 1  # the logger's own absence; the database's outage lost nothing
    said_before = " ".join(first_said.split())
    assert "records spooled to" in said_before and "nothing lost" in said_before
    assert f"{len(seqs) - before} records written to {database}, 1 gaps" in " ".join(
        said.split())


def alert(wall_time: float, event: str) -> AlertEvent:
    return AlertEvent(wall_time=wall_time, time=wall_time - START, mouse="p1", camera="cam0",
                      rule="pain", event=event, value=6.0, threshold=4.0,
                      since=wall_time - START, peak=6.0, detail="window 6 >= 4")


def study_records() -> list[ScoreRecord]:
    """Two mice by the hour, one in pain from hour 7 (the shape of tests/test_alert_eval.py)."""
    made = []
    for mouse, samples in (("p1", steady(0, 6, START + 7 * 3600)), ("c1", steady(0, 0, 0))):
        for k, (t, status, total) in enumerate(samples):
            levels = tuple(min(2, max(0, total - 2 * u)) for u in range(5))
            made.append(ScoreRecord(
                publisher="t", seq=len(made), wall_time=t, mono_time=t, source_time=t,
                frame_index=k, camera="cam0", cubicle=1 if mouse == "p1" else 2, mouse=mouse,
                status=status, levels=levels, total=sum(levels), model_kind="trained",
                instance="r1"))
    return made


def test_report_and_alert_evaluation_read_the_database_as_the_csv(
        database: str, tmp_path: Path) -> None:
    logger = CsvLogger(tmp_path / "csv" / "scores.csv")
    alert_log = SideLog(side_file(logger.path, "alerts"), ALERT_COLUMNS)
    db = records_db.DatabaseLog(database, tmp_path / "spool")
    for record in study_records():
        logger.write(record)
        db.write(record)
    for event in (alert(START + 8 * 3600, "raised"), alert(START + 12 * 3600, "cleared")):
        alert_log.write(event)
        db.alert(event)
    logger.close()
    db.close()
    injected = Marker(START + 5 * 3600, "p1", "NTG injected", "injection")
    SideLog(side_file(logger.path, "markers"), MARKER_COLUMNS).write(injected)
    records_db.add_marker(database, injected)
    assert main(["report", str(logger.path), "--out", str(tmp_path / "from-csv")]) == 0
    assert main(["report", "--db", database, "--out", str(tmp_path / "from-db")]) == 0
    summaries = [json.loads((tmp_path / f"from-{kind}" / "summary.json").read_text())
                 for kind in ("csv", "db")]
    assert summaries[0] == summaries[1] and summaries[0]["p1"]["alerts"] == 1
    mice = write_mice(tmp_path / "mice.csv", [("p1", "NTG", ""), ("c1", "saline", "")])
    found = []
    for source in ([str(logger.path)], ["--db", database]):
        out = tmp_path / f"eval-{len(found)}"
        assert mgs_eval(["--alerts", *source, "--mice", str(mice), "--pain-conditions", "NTG",
                         "--out", str(out), "--bootstrap", "50"]) == 0
        found.append(json.loads((out / "report.json").read_text()))
    assert found[0]["mice"] == found[1]["mice"] and found[0]["configured"] == found[1][
        "configured"]
    p1 = next(m for m in found[1]["mice"] if m["mouse"] == "p1")
    assert p1["delay_s"] == 3 * 3600  # from the marker's onset (5 h), read from the database


def test_log_takes_each_cameras_study_and_room_from_the_monitors_config(
        database: str, tmp_path: Path) -> None:
    config = tmp_path / "rackA.yaml"
    config.write_text("publisher: rackA\nmodels: {scorer: s.onnx, localizer: l.onnx}\n"
                      "cameras: [{name: cam0, source: 0, study: NTG-2026, room: '3'},\n"
                      "          {name: cam1, source: 1}]\n")
    assert main(["log", "--endpoint", free_port_endpoint(), "--db", database, "--spool",
                 str(tmp_path / "spool"), "--config", str(config), "--seconds", "0.5"]) == 0
    with psycopg.connect(database) as conn:
        tags = sorted(conn.execute("SELECT * FROM mgs_cameras").fetchall())
    assert tags == [("rackA", "cam0", "NTG-2026", "3"), ("rackA", "cam1", "", "")]


def test_a_config_without_its_publisher_is_refused_by_the_logger(
        database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "rackA.yaml"
    config.write_text("models: {scorer: s.onnx, localizer: l.onnx}\n"
                      "cameras: [{name: cam0, source: 0, study: NTG-2026}]\n")
    assert main(["log", "--db", database, "--config", str(config), "--seconds", "0.1"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"mgs-monitor: error: {config}: publisher: not set; its records would not be matched "
        "to its cameras' study and room (the default names the host that reads the config)")


@pytest.mark.parametrize("command", [["log", "--seconds", "0.1"], ["report"],
                                     ["mark", "m1", "note"]])
def test_an_unreachable_database_is_one_line_naming_it(
        command: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    port = closed_port()
    url = f"postgresql://mgs:s3cret@127.0.0.1:{port}/mgs"
    assert main([*command, "--db", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mgs-monitor: error: postgresql://mgs:***@127.0.0.1:{port}/mgs: "
                          "cannot connect: ")
    assert err.count("\n") == 1 and "s3cret" not in err


def test_run_writes_to_the_database_of_its_config(demo_small: DemoBuild, database: str,
                                                  tmp_path: Path) -> None:
    config = tmp_path / "lab.yaml"
    config.write_text(f"database: {{url: '{database}', spool: spool.jsonl}}\n"
                      "publisher: lab\n"
                      "cameras: [{name: cam0, source: x, study: NTG-2026, room: '3'}]\n")
    out = tmp_path / "scores.csv"
    assert main(replay_args(demo_small, out, "--config", str(config))) == 0
    exported = tmp_path / "db"
    records_db.export_csvs(database, exported)
    csv_rows = sorted(out.read_text().splitlines())
    assert sorted((exported / "scores.csv").read_text().splitlines()) == csv_rows
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT study, room FROM mgs_cameras WHERE publisher = 'lab' "
                            "AND camera = 'cam0'").fetchall() == [("NTG-2026", "3")]


def test_a_config_with_another_database_url_is_refused_naming_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "lab.yaml"
    config.write_text("models: {scorer: s.onnx, localizer: l.onnx}\ncameras: [{name: c, "
                      "source: 0}]\ndatabase: {url: 'mysql://mgs:s3cret@db/mgs'}\n")
    assert main(["check-config", str(config)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"mgs-monitor: error: {config}: database.url: mysql://mgs:***@db/mgs is not a "
        "PostgreSQL URL (postgresql://user@host:port/database)")


def test_the_monitor_loads_without_the_database_driver() -> None:
    """psycopg is the `db` extra: commands load without it, and load it only for a database."""
    loaded = subprocess.run([sys.executable, "-c", "import sys, monitor.cli, monitor.runner; "
                             "print('psycopg' in sys.modules)"], capture_output=True, text=True,
                            check=True)
    assert loaded.stdout.strip() == "False"


def test_report_reads_one_study_and_room_from_a_time_on(database: str, tmp_path: Path) -> None:
    """Every mouse of study NTG in room 3 from a day on: joined by camera, by publisher too
    (both racks have a cam0)."""
    tags = [CameraTag("rackA", "cam0", "NTG", "3"), CameraTag("rackA", "cam1", "NTG", "4"),
            CameraTag("rackB", "cam0", "other", "3")]
    db = records_db.DatabaseLog(database, tmp_path / "spool", tags)
    day = datetime(2026, 3, 2).timestamp()
    for seq, (publisher, camera, when) in enumerate(itertools.product(
            ("rackA", "rackB"), ("cam0", "cam1"), (day - 3600, day + 3600))):
        db.write(score_record(seq, mouse=f"{publisher}-{camera}-{when > day}",
                              publisher=publisher).model_copy(
            update={"camera": camera, "wall_time": when}))
    db.close()
    out = tmp_path / "report"
    assert main(["report", "--db", database, "--study", "NTG", "--room", "3", "--since",
                 "2026-03-02", "--out", str(out)]) == 0
    assert list(json.loads((out / "summary.json").read_text())) == ["rackA-cam0-True"]


@pytest.mark.parametrize("args, said", [
    (["scores.csv", "--study", "NTG"], "--study selects records of a database: add --db"),
    (["scores.csv", "--db", "postgresql://mgs@127.0.0.1:1/x"],
     "give score CSVs or --db URL (one of them)"),
    (["--db", "postgresql://mgs@127.0.0.1:1/x", "--since", "Monday"],
     "--since 'Monday' is not a clock time like 2026-03-02T09:30"),
])
def test_a_selection_that_cannot_be_read_is_one_line(
        args: list[str], said: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", *args]) == 2
    assert capsys.readouterr().err == f"mgs-monitor: error: {said}\n"


def test_alert_evaluation_refuses_a_selection_without_a_database(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mice = write_mice(tmp_path / "mice.csv", [("p1", "NTG", "")])
    assert mgs_eval(["--alerts", "scores.csv", "--mice", str(mice), "--room", "3"]) == 2
    assert "--room selects records of a database: add --db" in capsys.readouterr().err
