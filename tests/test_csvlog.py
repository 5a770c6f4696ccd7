import csv
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.cli import csv_path, main
from monitor.config import Logging, build_config
from monitor.outputs import csvlog
from monitor.outputs.bus import Publisher
from monitor.outputs.csvlog import CsvLogError, CsvLogger
from monitor.outputs.sinks import open_sinks
from monitor.schema import (
    ALERT_COLUMNS,
    CSV_COLUMNS,
    AlertEvent,
    ScoreRecord,
    is_side_file,
    side_file,
)
from monitor.units import UNITS
from monitor.views.series_report import read_series
from tests.records_util import score_record


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_header_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    logger = CsvLogger(path)
    logger.write(score_record(1))
    logger.write(score_record(2, status="no_face"))
    logger.close()
    assert path.read_text().splitlines()[0] == ",".join(CSV_COLUMNS)
    first, second = rows(path)
    assert first["status"] == "scored" and first["total"] == "3"
    assert [first[u] for u in UNITS] == ["1", "1", "1", "0", "0"]
    assert first["p_orbital_tightening_1"] == "0.7000" and first["model_kind"] == "demo"
    assert second["status"] == "no_face" and second["total"] == "" and second[UNITS[0]] == ""


def test_every_record_is_on_disk_before_close(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    logger = CsvLogger(path)
    logger.write(score_record(1))
    assert len(rows(path)) == 1  # flushed, not waiting for close
    logger.close()


def test_reopen_trims_a_torn_line_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    logger = CsvLogger(path)
    logger.write(score_record(1))
    logger.close()
    with path.open("a") as handle:
        handle.write("1,test,2,17000")  # a crash in the middle of a row
    logger = CsvLogger(path)
    logger.write(score_record(2))
    logger.close()
    assert [r["seq"] for r in rows(path)] == ["1", "2"]
    assert all(len(line.split(",")) == len(CSV_COLUMNS) for line in path.read_text().splitlines())


def test_gaps_are_written_down_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    logger = CsvLogger(path)
    for seq in (1, 2, 5):
        logger.write(score_record(seq))
    logger.close()
    logger = CsvLogger(path)  # a restarted logger knows where it stopped
    logger.write(score_record(9))
    logger.write(score_record(1))  # publisher restarted: not a gap
    logger.close()
    gaps = rows(path.with_suffix(".gaps.csv"))
    assert [(g["first_missing"], g["last_missing"]) for g in gaps] == [("3", "4"), ("6", "8")]


def test_two_runs_of_one_publisher_are_two_sequences(tmp_path: Path) -> None:
    """Two monitors sharing a publisher id (or one restarted) interleave their numbers: only a
    number missing inside one run is a gap."""
    path = tmp_path / "scores.csv"
    logger = CsvLogger(path)
    for seq in range(1, 6):
        logger.write(score_record(seq).model_copy(update={"instance": "aaaa"}))
        logger.write(score_record(seq).model_copy(update={"instance": "bbbb"}))
    logger.write(score_record(8).model_copy(update={"instance": "bbbb"}))
    logger.close()
    logger = CsvLogger(path)  # restarted: each run is picked up where it stopped
    logger.write(score_record(7).model_copy(update={"instance": "aaaa"}))
    logger.write(score_record(1).model_copy(update={"instance": "cccc"}))  # a new run
    logger.close()
    gaps = rows(path.with_suffix(".gaps.csv"))
    assert [(g["instance"], g["first_missing"], g["last_missing"]) for g in gaps] == [
        ("bbbb", "6", "7"), ("aaaa", "6", "6")]
    assert {r["instance"] for r in rows(path)} == {"aaaa", "bbbb", "cccc"}


@pytest.mark.parametrize("schema", [1, 2])
def test_refuses_a_file_of_an_older_score_schema(tmp_path: Path, schema: int) -> None:
    path = tmp_path / "scores.csv"
    path.write_text(",".join(CSV_COLUMNS[:schema - 3]) + "\n")
    with pytest.raises(CsvLogError) as err:
        CsvLogger(path)
    assert str(err.value) == (f"{path}: existing file has the header of score schema {schema} "
                              "(an older mgs-monitor); write to a new file")


def test_refuses_a_file_with_another_header(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(CsvLogError, match=r"scores\.csv: existing file has another header"):
        CsvLogger(path)
    assert path.read_text() == "a,b,c\n1,2,3\n"


def test_unwritable_place_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CsvLogError, match="cannot write records here") as err:
        CsvLogger(tmp_path)  # a folder, not a file
    assert "\n" not in str(err.value)


def test_a_torn_header_starts_the_file_again(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    path.write_text("schema,publisher,se")
    CsvLogger(path).close()
    assert path.read_text().splitlines() == [",".join(CSV_COLUMNS)]


def test_reopen_reads_only_the_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "scores.csv"
    logger = CsvLogger(path)
    for seq in range(1, 41):
        logger.write(score_record(seq))
    logger.close()
    monkeypatch.setattr("monitor.outputs.csvlog.TAIL_BYTES", 1000)  # the read starts inside a row
    logger = CsvLogger(path)
    logger.write(score_record(43))
    logger.close()
    gaps = rows(path.with_suffix(".gaps.csv"))
    assert [(g["first_missing"], g["last_missing"]) for g in gaps] == [("41", "42")]


FULL_DISK = """
import os, resource, signal, sys
from pathlib import Path
import monitor.outputs.csvlog as csvlog
from tests.records_util import score_record

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
csvlog.RETRY_S = 0.0
path = Path(sys.argv[1])
logger = csvlog.CsvLogger(path)
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 1200, hard))  # the disk fills
for seq in range(1, 21):
    logger.write(score_record(seq))
    logger.sync()
print(logger.backlog, logger.error)
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space again
logger.write(score_record(21))
logger.close()
print(logger.backlog, logger.error or "ok")
"""


def test_a_full_disk_holds_records_and_writes_them_when_there_is_space(tmp_path: Path) -> None:
    """A real write limit (RLIMIT_FSIZE) in a child process stands in for a full disk."""
    path = tmp_path / "scores.csv"
    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(path)], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    full, after = done.stdout.splitlines()
    held, error = full.split(" ", 1)
    assert int(held) > 0 and "cannot write" in error
    assert after == "0 ok"
    assert [int(r["seq"]) for r in rows(path)] == list(range(1, 22))  # each once, in order
    assert all(len(line.split(",")) == len(CSV_COLUMNS) for line in path.read_text().splitlines())


def test_a_schema_3_file_takes_schema_4_rows_with_unknown_numbers_blank(tmp_path: Path) -> None:
    """Schema 4 changed only the wire (null for NaN): the row layout is schema 3's, so a file
    an older monitor began is appended to, and `report` reads both kinds of rows."""
    path = tmp_path / "scores.csv"
    logger = CsvLogger(path)
    logger.write(score_record(1))
    logger.close()
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "3" + lines[1][1:]]) + "\n")  # as schema 3 wrote it
    unknown = score_record(2, status="camera_down").model_copy(update={
        "face_box": None, "face_score": None, "sharpness": None, "latency_ms": None})
    logger = CsvLogger(path)
    logger.write(unknown)
    logger.close()
    first, second = rows(path)
    assert (first["schema"], second["schema"]) == ("3", "4")
    assert [second[k] for k in ("face_score", "sharpness", "latency_ms", "face_cx")] == [""] * 4
    assert read_series([path])["cam0-c1"].status == ["scored", "camera_down"]


HOUR_9 = datetime(2026, 3, 2, 9, tzinfo=UTC).timestamp()  # a past day: the records' own clock


def at(seq: int, wall_time: float) -> ScoreRecord:
    return score_record(seq).model_copy(update={"wall_time": wall_time})


def seqs(path: Path) -> list[int]:
    return [int(r["seq"]) for r in rows(path)]


def test_rotation_splits_rows_by_the_hour_of_their_own_time_none_lost_or_doubled(
        tmp_path: Path) -> None:
    """A logger killed mid-row in one hour and restarted trims the torn row, finds the gap,
    and appends to that hour's file: every row in the file of its own hour, exactly once."""
    base = tmp_path / "scores.csv"
    records = [at(seq, HOUR_9 + (seq - 1) * 600) for seq in range(1, 19)]  # 09:00 .. 11:50
    logger = CsvLogger(base, rotate="hourly")
    for record in records[:8]:
        logger.write(record)
    logger.close()
    hour_10 = tmp_path / "scores-20260302-10.csv"
    with hour_10.open("a") as handle:
        handle.write("9,test,2,17000")  # killed while writing seq 9
    logger = CsvLogger(base, rotate="hourly")  # restarted; 9 and 10 went by meanwhile
    for record in records[10:]:
        logger.write(record)
    logger.close()
    files = sorted(p.name for p in tmp_path.glob("scores-*.csv") if not is_side_file(p))
    assert files == ["scores-20260302-09.csv", "scores-20260302-10.csv",
                     "scores-20260302-11.csv"]
    assert [seqs(tmp_path / name) for name in files] == [
        [1, 2, 3, 4, 5, 6], [7, 8, 11, 12], [13, 14, 15, 16, 17, 18]]
    for name in files:
        hour = int(name[-6:-4])
        assert {datetime.fromtimestamp(float(r["wall_time"]), UTC).hour
                for r in rows(tmp_path / name)} == {hour}
        assert all(len(line.split(",")) == len(CSV_COLUMNS)
                   for line in (tmp_path / name).read_text().splitlines())
    gaps = rows(side_file(hour_10, "gaps"))
    assert [(g["first_missing"], g["last_missing"]) for g in gaps] == [("9", "10")]


def test_rotation_never_keeps_the_one_file(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    logger = CsvLogger(path, rotate="never")
    for seq in (1, 2):
        logger.write(at(seq, HOUR_9 + seq * 86_400))
    logger.close()
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"] and seqs(path) == [1, 2]


def test_side_files_follow_their_period(tmp_path: Path) -> None:
    """Alerts and gaps sit beside the day's file of their own time."""
    base = tmp_path / "scores.csv"
    logger = CsvLogger(base, rotate="daily")
    alerts = logger.side_log("alerts", ALERT_COLUMNS)
    for day in range(2):
        when = HOUR_9 + day * 86_400
        logger.write(at(1 + 3 * day, when))
        logger.write(at(3 + 3 * day, when + 60))  # 2 (and 5) never came
        alerts.write(AlertEvent(wall_time=when, time=0.0, mouse="cam0-c1", camera="cam0",
                                rule="pain", event="raised", value=5.0, threshold=4.0,
                                since=0.0, peak=5.0, detail=f"day {day}"))
    logger.close()
    for day, name in enumerate(("scores-20260302", "scores-20260303")):
        assert [r["detail"] for r in rows(tmp_path / f"{name}.alerts.csv")] == [f"day {day}"]
        gaps = rows(tmp_path / f"{name}.gaps.csv")
        assert [g["first_missing"] for g in gaps] == [str(2 + 3 * day)]
        assert seqs(tmp_path / f"{name}.csv") == [1 + 3 * day, 3 + 3 * day]


def test_a_row_that_reached_the_disk_before_a_failure_is_not_written_again_in_the_next_hour(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails after its row reached the disk leaves the row in the backlog; the
    retry, made when the next hour's record comes, finds it in its own hour's file."""
    monkeypatch.setattr(csvlog, "RETRY_S", 0.0)
    base = tmp_path / "scores.csv"
    logger = CsvLogger(base, rotate="hourly")
    logger.write(at(1, HOUR_9))
    opened = logger._open_files[tmp_path / "scores-20260302-09.csv"]
    writer = opened.writer

    class Failing:
        def writerow(self, row: list[str]) -> None:
            writer.writerow(row)  # buffered: closing the file puts it on the disk
            raise OSError(28, "No space left on device")

    opened.writer = Failing()  # type: ignore[assignment]
    logger.write(at(2, HOUR_9 + 60))
    assert logger.backlog == 1 and "No space left" in logger.error
    logger.write(at(3, HOUR_9 + 3600))
    logger.close()
    assert seqs(tmp_path / "scores-20260302-09.csv") == [1, 2]
    assert seqs(tmp_path / "scores-20260302-10.csv") == [3]
    assert logger.rows == 3 and logger.error == ""


def logger_process(endpoint: str, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "monitor", "log", "--endpoint", endpoint,
                             "--out", str(out), "--rotate", "hourly"], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=Path(__file__).parent.parent)


def publish_until(publisher: Publisher, seq: int, wall_time: float,
                  written: Callable[[], bool]) -> int:
    """Publish the next records of one run, a second of their own time apart, until the
    logger has written one (records sent before it subscribed never reach it); the next seq."""
    give_up = time.monotonic() + 60
    while not written():
        assert time.monotonic() < give_up, "the logger wrote nothing"
        publisher.publish(at(seq, wall_time + seq))
        seq += 1
        time.sleep(0.05)
    return seq


def test_the_logger_rotates_and_a_restart_across_the_hour_loses_and_doubles_nothing(
        tmp_path: Path, free_endpoint: str) -> None:
    """`mgs-monitor log --rotate hourly`, stopped in one hour and started again in the next:
    each row once, in its own hour's file; what went by while it was down is a gap beside the
    next hour's file; an alert sits beside its own hour's file."""
    base = tmp_path / "scores.csv"
    hour = {h: tmp_path / f"scores-20260302-{h:02d}.csv" for h in (9, 10, 11)}
    publisher = Publisher(free_endpoint)
    try:
        logger = logger_process(free_endpoint, base)
        seq = publish_until(publisher, 1, HOUR_9, lambda: hour[9].is_file() and rows(hour[9]))
        first_seen = int(rows(hour[9])[0]["seq"])
        tenth = seq + 9
        for n in range(seq, tenth + 1):  # each reaches the logger now that it listens
            publisher.publish(at(n, HOUR_9 + 3600 + 60 * (n - seq)))
        publisher.publish(AlertEvent(wall_time=HOUR_9 + 3660, time=0.0, mouse="cam0-c1",
                                     camera="cam0", rule="pain", event="raised", value=5.0,
                                     threshold=4.0, since=0.0, peak=5.0, detail="hour 10"))
        alerts = side_file(hour[10], "alerts")
        give_up = time.monotonic() + 60
        while not (alerts.is_file() and hour[10].is_file() and len(rows(hour[10])) == 10):
            assert time.monotonic() < give_up, "the hour-10 records never came"
            time.sleep(0.05)
        logger.send_signal(signal.SIGINT)
        _, said = logger.communicate(timeout=30)
        assert logger.returncode == 0, said
        logger = logger_process(free_endpoint, base)  # records sent meanwhile are lost: a gap
        end = publish_until(publisher, tenth + 1, HOUR_9 + 7200 - tenth,
                            lambda: hour[11].is_file() and rows(hour[11]))
        while seqs(hour[11])[-1] != end - 1:  # the last ones published are on their way
            assert time.monotonic() < give_up + 60, "the hour-11 records never came"
            time.sleep(0.05)
        logger.send_signal(signal.SIGINT)
        _, said = logger.communicate(timeout=30)
        assert logger.returncode == 0, said
    finally:
        publisher.close(linger=0)
    written = [seqs(hour[h]) for h in (9, 10, 11)]
    resumed = written[2][0]
    assert written[0] == list(range(first_seen, seq))
    assert written[1] == list(range(seq, tenth + 1))
    assert written[2] == list(range(resumed, end))
    gaps = side_file(hour[11], "gaps")
    if resumed > tenth + 1:  # else the restarted logger heard the very first record
        assert [(int(g["first_missing"]), int(g["last_missing"])) for g in rows(gaps)] == [
            (tenth + 1, resumed - 1)]
    assert [r["detail"] for r in rows(alerts)] == ["hour 10"]
    assert {p.name for p in tmp_path.iterdir()} <= {
        *(p.name for p in hour.values()), alerts.name, side_file(hour[11], "gaps").name}


def test_a_runs_sinks_put_records_and_alerts_in_the_file_of_their_day(tmp_path: Path) -> None:
    """What `run` opens with `csv.rotate: daily` (its default in `csv.folder`)."""
    config = build_config({"cameras": [{"name": "cam0", "source": 0}],
                           "models": {"scorer": "s.onnx", "localizer": "l.onnx"},
                           "bus": {"enabled": False}, "evidence": {"enabled": False}})
    base, rotate = csv_path(config.model_copy(update={"csv": Logging(folder=tmp_path)}), None)
    assert rotate == "daily"
    with open_sinks(config, base, "inproc://rotating-sinks", print, rotate) as sinks:
        for day in range(2):
            when = HOUR_9 + day * 86_400
            sinks.scores([at(1 + 2 * day, when), at(2 + 2 * day, when + 60)])
            sinks.alerts([AlertEvent(wall_time=when + 60, time=0.0, mouse="cam0-c1",
                                     camera="cam0", rule="pain", event="raised", value=5.0,
                                     threshold=4.0, since=0.0, peak=5.0, detail=f"day {day}")])
            assert sinks.csv is not None and sinks.csv.path.name == f"scores-2026030{2 + day}.csv"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "scores-20260302.alerts.csv", "scores-20260302.csv",
        "scores-20260303.alerts.csv", "scores-20260303.csv"]
    assert seqs(tmp_path / "scores-20260303.csv") == [3, 4]
    assert [r["detail"] for r in rows(tmp_path / "scores-20260303.alerts.csv")] == ["day 1"]


def test_records_sent_again_after_a_restart_are_recognized_in_their_own_file(
        tmp_path: Path) -> None:
    """A restarted logger that is sent records it already holds (a sender backfilling what it
    could not confirm) writes each once, in the file of its own hour."""
    base = tmp_path / "scores.csv"
    logger = CsvLogger(base, rotate="hourly")
    for seq in (1, 2, 3):
        logger.write(at(seq, HOUR_9 + 1500 * seq))  # 09:25, 09:50, 10:15
    logger.close()
    logger = CsvLogger(base, rotate="hourly")
    for seq in (2, 3, 4):
        logger.write(at(seq, HOUR_9 + 1500 * seq))
    logger.close()
    assert seqs(tmp_path / "scores-20260302-09.csv") == [1, 2]
    assert seqs(tmp_path / "scores-20260302-10.csv") == [3, 4]
    assert logger.rows == 3 and not logger.gaps


def test_a_period_file_with_another_header_is_refused_naming_it(tmp_path: Path) -> None:
    """Met at a rotation mid-run as at a start: never mixed, one line naming the file."""
    logger = CsvLogger(tmp_path / "scores.csv", rotate="hourly")
    logger.write(at(1, HOUR_9))
    (tmp_path / "scores-20260302-10.csv").write_text("image,total\na.png,3\n")
    for step in (lambda: logger.write(at(2, HOUR_9 + 3600)), logger.close):  # record 2 is held
        with pytest.raises(CsvLogError, match=r"-10\.csv: existing file has another header"):
            step()
    assert seqs(tmp_path / "scores-20260302-09.csv") == [1]
    with pytest.raises(CsvLogError, match=r"scores-20260302-10\.csv: existing file has another"):
        CsvLogger(tmp_path / "scores.csv", rotate="hourly")  # the newest file, at a start


def test_an_unknown_rotation_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["log", "--rotate", "weekly"])
    assert done.value.code == 2
    assert "--rotate: invalid choice: 'weekly'" in capsys.readouterr().err
