"""The session report read back from real score CSVs written the way the logger writes them."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from monitor.cli import main
from monitor.report import (
    ReportError,
    read_series,
    rolling_scoreable,
    summarize,
    total_sd,
    write_report,
)
from monitor.schema import CSV_COLUMNS, SCORE_COLUMNS, ScoreRecord, csv_row

T0 = 1_700_000_000.0
SURE = [[0.0, 1.0, 0.0]] * 5  # every unit certain: SD 0
SPLIT = [[0.5, 0.0, 0.5]] * 5  # every unit 0 or 2: Var 1 each, SD sqrt(5)
HIDDEN = "cam0-c1"  # scored on even samples only
RISING = "cam0-c2"  # total 0..9


def record(mouse: str, i: int, status: str = "scored", levels: list[int] | None = None,
           probs: list[list[float]] | None = None, alert: str = "") -> ScoreRecord:
    scored = status == "scored"
    levels = levels or [1] * 5
    return ScoreRecord(
        publisher="test", seq=i + 1, wall_time=T0 + i, mono_time=float(i), source_time=float(i),
        frame_index=i, camera="cam0", cubicle=int(mouse[-1]), mouse=mouse, status=status,
        levels=levels if scored else None, total=sum(levels) if scored else None,
        expected_total=float(sum(levels)) if scored else None,
        probs=(probs or SURE) if scored else None, alert=alert, model_kind="demo",
    )


def rising_levels(total: int) -> list[int]:
    return [min(2, max(0, total - 2 * unit)) for unit in range(5)]


def write_csv(path: Path, header: list[str] | tuple[str, ...], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_scores(path: Path, records: list[ScoreRecord]) -> Path:
    return write_csv(path, CSV_COLUMNS, [csv_row(SCORE_COLUMNS, r) for r in records])


def hidden_status(i: int) -> str:
    return "low_quality" if i == 9 else "no_face" if i % 2 else "scored"


def session_records(samples: range) -> list[ScoreRecord]:
    hidden = [record(HIDDEN, i, hidden_status(i)) for i in samples]
    rising = [record(RISING, i, levels=rising_levels(i), probs=SPLIT) for i in samples]
    return hidden + rising


@pytest.fixture
def session(tmp_path: Path) -> list[Path]:
    """Two daily files given late first; markers beside one, alerts split over both."""
    late = write_scores(tmp_path / "late.csv", session_records(range(5, 10)))
    early = write_scores(tmp_path / "early.csv", session_records(range(5)))
    write_csv(tmp_path / "late.markers.csv", ["wall_time", "mouse", "text"],
              [[str(T0 + 2), "*", "NTG injected"], [str(T0 + 6), RISING, "buprenorphine"],
               [str(T0 + 3), "cam9-c9", "another mouse"]])
    alert_header = ["wall_time", "mouse", "rule", "event", "value", "threshold", "detail"]
    write_csv(tmp_path / "early.alerts.csv", alert_header,
              [[str(T0 + 4), RISING, "pain", "raised", "4", "4", ""]])
    write_csv(tmp_path / "late.alerts.csv", alert_header,
              [[str(T0 + 5), RISING, "pain", "active", "5", "4", ""],
               [str(T0 + 6), RISING, "pain", "cleared", "6", "4", ""],
               [str(T0 + 8), RISING, "pain", "raised", "8", "4", "still open"]])
    return [late, early]


def test_read_series_joins_files_in_time_order_with_nan_for_unscored(
        session: list[Path]) -> None:
    series = read_series(session)
    assert list(series) == [HIDDEN, RISING]
    hidden, rising = series[HIDDEN], series[RISING]
    np.testing.assert_array_equal(hidden.time, T0 + np.arange(10))
    np.testing.assert_array_equal(rising.total, np.arange(10))
    assert hidden.status == ["scored", "no_face"] * 4 + ["scored", "low_quality"]
    assert hidden.camera == "cam0"
    unscored = np.array(hidden.status) != "scored"
    for values in (hidden.total, hidden.expected_total, hidden.band_low, hidden.band_high):
        assert np.isnan(values[unscored]).all() and not np.isnan(values[~unscored]).any()
    assert hidden.levels.shape == (10, 5)
    assert np.isnan(hidden.levels[unscored]).all()
    np.testing.assert_array_equal(hidden.levels[0], [1, 1, 1, 1, 1])


def test_band_is_expected_total_plus_minus_one_sd_clipped(session: list[Path]) -> None:
    series = read_series(session)
    sure = series[HIDDEN]
    np.testing.assert_array_equal(sure.band_low[0], 5.0)
    np.testing.assert_array_equal(sure.band_high[0], 5.0)
    rising = series[RISING]
    sd = math.sqrt(5)
    np.testing.assert_allclose(rising.band_low, np.clip(np.arange(10) - sd, 0, 10))
    np.testing.assert_allclose(rising.band_high, np.clip(np.arange(10) + sd, 0, 10))
    assert total_sd(np.array([[0.2, 0.7, 0.1]] * 5)) == pytest.approx(math.sqrt(5 * 0.29))


def test_markers_and_alert_spans_go_to_their_mouse(session: list[Path]) -> None:
    series = read_series(session)
    assert series[HIDDEN].markers == [(T0 + 2, "NTG injected")]
    assert series[RISING].markers == [(T0 + 2, "NTG injected"), (T0 + 6, "buprenorphine")]
    assert series[HIDDEN].alerts == []
    assert series[RISING].alerts == [(T0 + 4, T0 + 6, "pain"), (T0 + 8, T0 + 9, "pain")]


def test_without_an_alerts_file_spans_come_from_the_alert_column(tmp_path: Path) -> None:
    alert = ["", "pain", "pain", "", "", "pain"]
    path = write_scores(tmp_path / "s.csv", [record(RISING, i, alert=a)
                                             for i, a in enumerate(alert)])
    spans = read_series([path])[RISING].alerts
    assert spans == [(T0 + 1, T0 + 3, "pain"), (T0 + 5, T0 + 5, "pain")]


def test_summarize_counts_statuses_totals_and_alert_time(session: list[Path]) -> None:
    series = read_series(session)
    hidden = summarize(series[HIDDEN])
    assert (hidden["samples"], hidden["scored"]) == (10, 5)
    assert hidden["not_scored"] == {"no_face": 4, "low_quality": 1, "camera_down": 0}
    assert hidden["scoreable_fraction"] == 0.5
    assert (hidden["mean_total"], hidden["max_total"]) == (5.0, 5.0)
    assert (hidden["first_time"], hidden["last_time"]) == (T0, T0 + 9)
    assert (hidden["alerts"], hidden["alert_seconds"]) == (0, 0.0)
    rising = summarize(series[RISING])
    assert rising["scoreable_fraction"] == 1.0
    assert (rising["mean_total"], rising["max_total"]) == (4.5, 9.0)
    assert (rising["alerts"], rising["alert_seconds"]) == (2, 3.0)


def test_rolling_scoreable_is_the_scored_share_of_the_last_samples() -> None:
    status = ["scored", "no_face", "no_face", "scored", "scored"]
    np.testing.assert_allclose(rolling_scoreable(status, window=2), [1, 0.5, 0, 0.5, 1])


def test_write_report_writes_page_pngs_and_summary(session: list[Path], tmp_path: Path) -> None:
    odd = write_scores(tmp_path / "odd.csv", [record("<b>&1", i) for i in range(3)])
    out = tmp_path / "report"
    page = write_report([*session, odd], out)
    assert page == out / "index.html"
    text = page.read_text(encoding="utf-8")
    assert HIDDEN in text and RISING in text
    assert "&lt;b&gt;&amp;1" in text and "<b>&1" not in text
    for name in (f"{HIDDEN}.png", f"{RISING}.png", "_b__1.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
        assert f'src="{name}"' in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary[HIDDEN] == summarize(read_series(session)[HIDDEN])


def test_the_page_says_demo_when_any_series_came_from_demo_models(tmp_path: Path) -> None:
    trained = [r.model_copy(update={"model_kind": "trained"}) for r in session_records(range(3))]
    clean = write_report([write_scores(tmp_path / "trained.csv", trained)], tmp_path / "t")
    assert "DEMO" not in clean.read_text(encoding="utf-8")
    mixed = [*trained, *(record("cam0-c3", i) for i in range(3))]  # record() is a demo one
    page = write_report([write_scores(tmp_path / "mixed.csv", mixed)], tmp_path / "m")
    text = " ".join(page.read_text(encoding="utf-8").split())
    assert ("DEMO MODELS — not a real pain model: the scores of 1 of 3 mice come from models "
            "trained on synthetic cartoon faces.") in text
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert [summary[m]["demo"] for m in (HIDDEN, RISING, "cam0-c3")] == [False, False, True]


def test_a_file_of_score_schema_1_is_read_as_it_is(tmp_path: Path) -> None:
    """Files written before records carried their run's instance are still reported."""
    records = session_records(range(10))
    old = write_csv(tmp_path / "old.csv", CSV_COLUMNS[:-1],
                    [csv_row(SCORE_COLUMNS, r)[:-1] for r in records])
    assert old.read_text().splitlines()[0].split(",")[-1] == "latency_ms"
    new = write_scores(tmp_path / "new.csv", records)
    for mouse, series in read_series([old]).items():
        np.testing.assert_array_equal(series.total, read_series([new])[mouse].total)


def test_another_header_is_refused_naming_the_file(tmp_path: Path) -> None:
    bad = write_csv(tmp_path / "bad.csv", ["image", "total"], [["a.png", "3"]])
    with pytest.raises(ReportError, match=r"bad\.csv: not an mgs-monitor score CSV"):
        read_series([bad])


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"gone\.csv: no such file"):
        read_series([tmp_path / "gone.csv"])


def test_a_bad_markers_file_is_refused_naming_it(session: list[Path]) -> None:
    write_csv(session[0].with_suffix(".markers.csv"), ["time", "text"], [])
    with pytest.raises(ReportError, match=r"late\.markers\.csv: missing columns wall_time"):
        read_series(session)


def test_write_report_without_matplotlib_says_how_to_get_it(
        session: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ReportError, match="pip install matplotlib"):
        write_report(session, tmp_path / "report")


def test_a_glob_that_also_matches_side_files_reports_the_scores(session: list[Path],
                                                                tmp_path: Path) -> None:
    """`mgs-monitor report mgs-records/*.csv` as the README writes it: the alerts and markers
    files match too, and are read beside their score CSV instead of refused."""
    matched = sorted(session[0].parent.glob("*.csv"))
    assert any(p.name.endswith(".alerts.csv") for p in matched)
    assert main(["report", *map(str, matched), "--out", str(tmp_path / "r")]) == 0
    assert read_series(matched).keys() == read_series(session).keys()
    assert read_series(matched)[RISING].alerts == read_series(session)[RISING].alerts
    with pytest.raises(ReportError, match="no score CSVs given"):
        read_series([p for p in matched if p.name.endswith(".alerts.csv")])
