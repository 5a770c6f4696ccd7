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
