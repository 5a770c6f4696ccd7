import csv
import time
from pathlib import Path

import pytest

from monitor.cli import main


def test_mark_appends_beside_the_newest_scores(tmp_path: Path) -> None:
    old, new = tmp_path / "scores-1.csv", tmp_path / "scores-2.csv"
    old.write_text("x\n")
    time.sleep(0.01)
    new.write_text("x\n")
    assert main(["mark", "M101", "NTG injected", "--folder", str(tmp_path)]) == 0
    assert main(["mark", "*", "lights off", "--folder", str(tmp_path)]) == 0
    with (tmp_path / "scores-2.markers.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["mouse"], r["text"]) for r in rows] == [("M101", "NTG injected"),
                                                        ("*", "lights off")]
    assert not (tmp_path / "scores-1.markers.csv").exists()


def test_mark_without_a_csv_is_one_line(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mark", "M101", "x", "--folder", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no scores*.csv here" in err and err.count("\n") == 1


def test_mark_records_its_kind(tmp_path: Path) -> None:
    scores = tmp_path / "scores-1.csv"
    scores.write_text("x\n")
    assert main(["mark", "M101", "NTG injected", "--kind", "injection", "--csv",
                 str(scores)]) == 0
    assert main(["mark", "M101", "weighed", "--csv", str(scores)]) == 0
    with (tmp_path / "scores-1.markers.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["text"], r["kind"]) for r in rows] == [("NTG injected", "injection"),
                                                      ("weighed", "note")]


def test_an_older_markers_file_keeps_its_shape(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A file from before marker kinds gets notes in its own three columns; an onset, which
    it cannot hold, is refused in one line and the file is left as it was."""
    scores = tmp_path / "scores-1.csv"
    scores.write_text("x\n")
    markers = tmp_path / "scores-1.markers.csv"
    markers.write_text("wall_time,mouse,text\n1.0,M1,old\n")
    assert main(["mark", "M1", "lights off", "--csv", str(scores)]) == 0
    before = markers.read_text()
    assert before.splitlines()[-1].split(",")[1:] == ["M1", "lights off"]
    assert main(["mark", "M1", "NTG", "--kind", "onset", "--csv", str(scores)]) == 2
    err = capsys.readouterr().err
    assert "without a kind column" in err and str(markers) in err and err.count("\n") == 1
    assert markers.read_text() == before
