"""The session report read back from real score CSVs written the way the logger writes them."""

from __future__ import annotations

import csv
import html
import json
import math
import os
import re
import shutil
import sys
import urllib.parse
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from demo.build import DemoBuild
from monitor.cli import main
from monitor.outputs.csvlog import CsvLogger
from monitor.schema import (
    ALERT_COLUMNS,
    CSV_COLUMNS,
    SCORE_COLUMNS,
    AlertEvent,
    ScoreRecord,
    csv_row,
)
from monitor.views.series_report import (
    ReportError,
    read_series,
    rolling_scoreable,
    summarize,
    total_sd,
    write_report,
)
from tests.monitor_util import run_until
from tests.test_evidence import camera_monitor
from tests.test_pipeline import cubicle_frame, read_rows

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
    spans = series[RISING].alerts
    assert [span[:3] for span in spans] == [(T0 + 4, T0 + 6, "pain"), (T0 + 8, T0 + 9, "pain")]
    assert [span.peak for span in spans] == [6.0, 8.0]  # no peak column: the highest value
    assert [span.evidence for span in spans] == [(), ()]  # an alerts file older than evidence


def test_without_an_alerts_file_spans_come_from_the_alert_column(tmp_path: Path) -> None:
    alert = ["", "pain", "pain", "", "", "pain"]
    path = write_scores(tmp_path / "s.csv", [record(RISING, i, alert=a)
                                             for i, a in enumerate(alert)])
    spans = read_series([path])[RISING].alerts
    assert [span[:3] for span in spans] == [(T0 + 1, T0 + 3, "pain"), (T0 + 5, T0 + 5, "pain")]


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
    old = write_csv(tmp_path / "old.csv", CSV_COLUMNS[:-2],  # without instance and crop
                    [csv_row(SCORE_COLUMNS, r)[:-2] for r in records])
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


# Evidence beside the series: the faces behind each alert


@pytest.fixture(scope="module")
def evidence_run(demo_small: DemoBuild, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real monitor run whose alerts name their evidence: pain raised on the crops of the
    first samples, then no_face on the frame kept once the faces are gone (as test_evidence)."""
    out = tmp_path_factory.mktemp("run") / "s.csv"
    faces = cubicle_frame([(2, 2, 2, 2, 2)] * 4, 3)
    empty = cubicle_frame([None] * 4, 3)
    alerts = {"defaults": {"threshold": 0, "window": 2, "min_valid": 2, "no_face_after_s": 0.1}}
    monitor = camera_monitor(demo_small, [faces] * 3 + [empty] * 6, out, alerts=alerts)
    run_until(monitor, 36, also=lambda v: len(
        [e for e in v.of(AlertEvent) if e.rule == "no_face" and e.event == "raised"]) == 4)
    return out


def copied_run(run: Path, tmp_path: Path) -> Path:
    """The run copied into this test's own folder, so a test may remove or rewrite files."""
    shutil.copytree(run.parent, tmp_path / "runs")
    return tmp_path / "runs" / run.name


def span_blocks(page: Path) -> dict[tuple[str, str], list[str]]:
    """(mouse, caption) -> the image sources and missing texts under it, as the page has them."""
    text = page.read_text(encoding="utf-8")
    blocks = {}
    for section in text.split("<h2>")[1:]:
        mouse = html.unescape(section.split(" <small>")[0])
        for block in section.split("<div class='span'>")[1:]:
            found = re.search(r"<p>(.*?)</p>", block)
            assert found, block
            caption = html.unescape(found[1])
            shown = re.findall(r'<img src="([^"]+)"|>missing: ([^<]+)<', block)
            blocks[mouse, caption] = [urllib.parse.unquote(html.unescape(src)) if src else
                                      f"missing: {html.unescape(gone)}" for src, gone in shown]
    return blocks


def caption(row: dict[str, str], what: str) -> str:
    """What the page writes above an alert span's images: rule, time raised, peak."""
    raised = datetime.fromtimestamp(float(row["wall_time"])).strftime("%Y-%m-%d %H:%M:%S")
    unit = " s" if row["rule"] == "no_face" else ""
    return f"{row['rule']} raised {raised}, peak {float(row['peak']):.2f}{unit} — {what}"


def test_each_alert_shows_the_evidence_its_raised_event_named(evidence_run: Path,
                                                              tmp_path: Path) -> None:
    run = copied_run(evidence_run, tmp_path)
    raised = [r for r in read_rows(run.with_suffix(".alerts.csv")) if r["event"] == "raised"]
    assert {r["rule"] for r in raised} == {"pain", "no_face"}
    assert all(r["evidence"] for r in raised)
    gone = run.parent / raised[0]["evidence"].split(";")[-1]  # as if the budget removed it
    gone.unlink()
    out = tmp_path / "report"  # not the CSV's folder: sources climb out of it
    assert main(["report", str(run), "--out", str(out)]) == 0
    blocks = span_blocks(out / "index.html")
    assert len(blocks) == len(raised)  # every span is raised here, none older than the file
    for row in raised:
        files = [run.parent / p for p in row["evidence"].split(";")]
        relative = [Path(os.path.relpath(f, out)).as_posix() for f in files]
        assert all(r.startswith("../runs/evidence/") for r in relative)
        pairs = list(zip(files, relative, strict=True))
        shown = blocks[row["mouse"], caption(row, "the evidence the alert named")]
        assert shown == [f"missing: {r}" if f == gone else r for f, r in pairs]
        for file, src in pairs:  # each source leads from the page's folder to the file named
            assert (out / src).resolve() == file.resolve()
            assert (out / src).is_file() == (file != gone)


def test_an_alert_that_named_no_evidence_shows_the_crops_scored_in_it(evidence_run: Path,
                                                                      tmp_path: Path) -> None:
    """An alerts file from before evidence (no evidence column): the CSV's crops inside the
    span stand in."""
    run = copied_run(evidence_run, tmp_path)
    alerts = run.with_suffix(".alerts.csv")
    rows = read_rows(alerts)
    write_csv(alerts, list(rows[0])[:-1], [list(r.values())[:-1] for r in rows])
    page = write_report([run], tmp_path / "report")
    blocks = span_blocks(page)
    scores = read_rows(run)
    for row in (r for r in rows if r["event"] == "raised" and r["rule"] == "pain"):
        crops = [r["crop"] for r in scores if r["mouse"] == row["mouse"] and r["crop"]
                 and float(r["wall_time"]) >= float(row["wall_time"])]
        assert crops  # the open span runs to the mouse's last record
        shown = blocks[row["mouse"], caption(row, "crops scored in the span")]
        assert shown == [f"../runs/{c}" for c in crops]
        assert all((page.parent / src).is_file() for src in shown)


def test_a_long_span_shows_evenly_spread_crops(tmp_path: Path) -> None:
    """No alerts file: the alert column's span, with up to 8 crops, first and last included."""
    records = [record(RISING, i, alert="pain" if 2 <= i <= 21 else "").model_copy(
        update={"crop": f"ev/{i:02d}.jpg"}) for i in range(25)]
    page = write_report([write_scores(tmp_path / "s.csv", records)], tmp_path)
    (shown,) = span_blocks(page).values()
    assert len(shown) == 8
    assert shown[0] == "missing: ev/02.jpg" and shown[-1] == "missing: ev/22.jpg"
    assert len(set(shown)) == 8


def read_csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))[1:]


def test_files_older_than_evidence_give_a_report_without_images(session: list[Path],
                                                                tmp_path: Path) -> None:
    """Schema 2 scores (no crop column) and an alerts file with no evidence column."""
    for path in session:
        records = [row[:-1] for row in read_csv_rows(path)]
        write_csv(path, CSV_COLUMNS[:-1], records)
    page = write_report(session, tmp_path / "report")
    text = page.read_text(encoding="utf-8")
    assert re.findall(r"<img [^>]*>", text) == [
        f'<img src="{m}.png" alt="{m}">' for m in (HIDDEN, RISING)]
    assert "missing:" not in text
    blocks = span_blocks(page)
    assert [mouse for mouse, _ in blocks] == [RISING, RISING]
    assert all(shown == [] and cap.endswith("— no images kept")
               for (_, cap), shown in blocks.items())


def rotated_and_whole(tmp_path: Path) -> tuple[Path, Path]:
    """Four days of records with alerts, written by a daily-rotating logger into a folder and
    by one that never rotates into one file."""
    records = [r.model_copy(update={"wall_time": T0 + r.seq * 7200})
               for r in session_records(range(40))]
    alerts = [AlertEvent(wall_time=T0 + i * 7200, time=float(i), mouse=RISING, camera="cam0",
                         rule="pain", event=event, value=5.0, threshold=4.0, since=float(i),
                         peak=5.0, detail="")
              for i, event in ((12, "raised"), (14, "active"), (15, "cleared"), (30, "raised"))]
    written = []
    for rotate, out in (("daily", tmp_path / "folder" / "scores.csv"),
                        ("never", tmp_path / "whole" / "scores.csv")):
        logger = CsvLogger(out, rotate=rotate)
        for item in sorted(records, key=lambda r: r.seq):
            logger.write(item)
        for event in alerts:
            logger.side_log("alerts", ALERT_COLUMNS).write(event)
        logger.close()
        written.append(out.parent if rotate == "daily" else out)
    return written[0], written[1]


def test_a_folder_of_rotated_files_reports_as_the_one_file(tmp_path: Path) -> None:
    folder, whole = rotated_and_whole(tmp_path)
    days = sorted(p.name for p in folder.iterdir())
    assert len([d for d in days if not d.endswith(".alerts.csv")]) == 4
    assert len([d for d in days if d.endswith(".alerts.csv")]) == 3  # alerts on 3 of the days
    pattern = str(folder / "scores-2023111*.csv")  # the shell left it quoted: report globs it
    for given in ([folder], [Path(pattern)]):
        split, one = read_series(given), read_series([whole])
        assert split.keys() == one.keys()
        for mouse in one:
            assert summarize(split[mouse]) == summarize(one[mouse])
            np.testing.assert_array_equal(split[mouse].total, one[mouse].total)
            assert split[mouse].alerts == one[mouse].alerts
    assert summarize(read_series([folder])[RISING])["alerts"] == 2
    for given, out in ((folder, "r1"), (whole, "r2")):
        assert main(["report", str(given), "--out", str(tmp_path / out)]) == 0
    assert ((tmp_path / "r1" / "summary.json").read_text()
            == (tmp_path / "r2" / "summary.json").read_text())


@pytest.mark.parametrize(("name", "expected"), [
    ("empty", "empty: no score CSVs in this folder"),
    ("empty/scores-*.csv", r"empty/scores-\*\.csv: matches no score CSVs"),
])
def test_an_empty_folder_or_a_glob_matching_nothing_is_one_line_naming_it(
        tmp_path: Path, name: str, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "scores-20261207.alerts.csv").write_text("wall_time\n")  # no scores
    assert main(["report", str(tmp_path / name), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(expected, err) and str(tmp_path) in err and "\n" not in err
