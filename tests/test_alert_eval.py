"""mgs-eval --alerts: alert rules judged against what happened, by mouse.

Records are real score CSVs (made with the monitor's own column spec, or by replaying the demo
scene through the monitor); the reference for every alert is the monitor's own AlertEngine.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from demo.build import DemoBuild, truth_alert_delays, write_mice_table
from export.onnx_export import export_scorer
from monitor.cli import main as monitor_main
from monitor.config import AlertRule, Alerts
from monitor.outputs.csvlog import CsvLogger
from monitor.outputs.markers import add_marker
from monitor.schema import SCORE_COLUMNS, SCORE_HEADERS, ScoreRecord, csv_header, csv_row
from monitor.scoring.alerts import ResolvedRule
from monitor.views.alert_eval import rule_grid
from monitor.views.alert_figures import clopper_pearson
from monitor.views.alert_replay import engine_spans, fast_pain_spans, read_tracks
from synth.study_course import START, Course, write_study_course
from tests.test_pipeline import replay_args
from train.mgs_eval import cli
from train.models import UnitScorer

ROOT = Path(__file__).parent.parent
DAY = 86400.0


def write_scores(path: Path, series: dict[str, list[tuple[float, str, int]]],
                 live: bool = True) -> Path:
    """A score CSV: per mouse (source time, status, total spread over the units)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_header(SCORE_COLUMNS))
        for mouse, samples in series.items():
            for k, (t, status, total) in enumerate(samples):
                levels = tuple(min(2, max(0, total - 2 * u)) for u in range(5))
                scored = status == "scored"
                record = ScoreRecord(
                    publisher="t", seq=k, wall_time=t if live else 1.8e9 + t, mono_time=t,
                    source_time=t, frame_index=k, camera="cam0", cubicle=1, mouse=mouse,
                    status=status, levels=levels if scored else None,
                    total=sum(levels) if scored else None, model_kind="trained")
                writer.writerow(csv_row(SCORE_COLUMNS, record))
    return path


def write_mice(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text("mouse,condition,onset\n" + "".join(f"{m},{c},{o}\n" for m, c, o in rows))
    return path


def evaluate(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "report"
    assert cli(["--alerts", *args, "--out", str(out), "--bootstrap", "200"]) == 0
    return json.loads((out / "report.json").read_text(), parse_constant=_refuse)


def _refuse(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


# Counting by mouse --------------------------------------------------------------------------
def steady(total_before: int, total_after: int, switch: float, samples: int = 20,
           every: float = 3600.0) -> list[tuple[float, str, int]]:
    return [(START + k * every, "scored", total_after if START + k * every >= switch
             else total_before) for k in range(samples)]


def test_each_figure_is_counted_by_mouse(tmp_path: Path) -> None:
    """Two pain mice (one caught 2 h after onset, one never), two controls (one with one false
    alert of 3 h): window 1, threshold 4, so every alert is known by hand."""
    onset = START + 5 * 3600
    scores = write_scores(tmp_path / "s.csv", {
        "p1": steady(0, 6, onset + 2 * 3600),
        "p2": steady(1, 2, onset),
        "c1": [*steady(0, 0, 0)[:10], (START + 10 * 3600, "scored", 5),
               (START + 11 * 3600, "scored", 5), (START + 12 * 3600, "no_face", 0),
               (START + 13 * 3600, "scored", 0), *steady(0, 0, 0)[14:]],
        "c2": steady(0, 0, 0),
        "other": steady(0, 0, 0)})
    mice = write_mice(tmp_path / "mice.csv", [("p1", "NTG", str(onset)), ("p2", "NTG", str(onset)),
                                              ("c1", "saline", ""), ("c2", "saline", ""),
                                              ("gone", "saline", "")])
    config = tmp_path / "lab.yaml"
    config.write_text("alerts:\n  defaults: {threshold: 4, window: 1, min_valid: 1}\n")
    found = evaluate(tmp_path, str(scores), "--mice", str(mice), "--config", str(config),
                     "--pain-conditions", "NTG", "--within-hours", "24")
    figures = found["configured"]
    assert figures["sensitivity"] | {"ci": None} == {"caught": 1, "mice": 2, "share": 0.5,
                                                     "ci": None, "not_judged": 0}
    assert figures["sensitivity"]["ci"] == pytest.approx(list(clopper_pearson(1, 2)))
    assert figures["delay_s"]["median"] == 2 * 3600
    false = figures["false_alerts"]
    assert (false["count"], false["mice"]) == (1, 2)
    assert false["mouse_days"] == pytest.approx(2 * 19 * 3600 / DAY)
    assert false["per_mouse_day"] == pytest.approx(1 / (2 * 19 / 24))
    assert figures["control_time_under_alert"]["seconds"] == 3 * 3600  # raised 10 h, cleared 13 h
    c1 = next(m for m in found["mice"] if m["mouse"] == "c1")
    assert (c1["raises"], c1["unseen_s"]) == (1, 3600)
    assert found["left_out"] == {"not_in_mice_table": ["other"], "no_records": ["gone"],
                                 "neither_pain_nor_control": []}


def test_a_pain_mouse_outside_the_horizon_is_not_caught(tmp_path: Path) -> None:
    onset = START + 2 * 3600
    scores = write_scores(tmp_path / "s.csv", {"p1": steady(0, 8, onset + 6 * 3600),
                                               "c1": steady(0, 0, 0)})
    mice = write_mice(tmp_path / "mice.csv", [("p1", "pain", str(onset)), ("c1", "control", "")])
    within_5 = evaluate(tmp_path, str(scores), "--mice", str(mice), "--within-hours", "5")
    within_7 = evaluate(tmp_path, str(scores), "--mice", str(mice), "--within-hours", "7")
    assert within_5["configured"]["sensitivity"]["caught"] == 0
    assert within_7["configured"]["sensitivity"]["caught"] == 1
    assert within_7["configured"]["delay_s"]["median"] == 7 * 3600  # window 3, min_valid 2


def test_an_alert_before_onset_is_counted_and_one_still_open_catches_at_onset(
        tmp_path: Path) -> None:
    onset = START + 4 * 3600
    scores = write_scores(tmp_path / "s.csv", {"p1": steady(0, 9, START + 2 * 3600),
                                               "c1": steady(0, 0, 0)})
    mice = write_mice(tmp_path / "mice.csv", [("p1", "pain", str(onset)), ("c1", "control", "")])
    found = evaluate(tmp_path, str(scores), "--mice", str(mice))["configured"]
    assert found["raised_before_onset"] == {"count": 1, "mice": 1}
    assert found["sensitivity"]["caught"] == 1 and found["delay_s"]["median"] == 0


# The reference: the monitor's own engine ----------------------------------------------------
@pytest.mark.slow
def test_the_fast_rule_gives_the_engines_alerts_on_every_series(tmp_path: Path) -> None:
    """The sweep's pain alerts equal the AlertEngine's raised/cleared events, mouse by mouse,
    on the benchmark's study generator (noisy mice, hidden faces, cameras down), over
    thresholds, windows and clear levels, with units and a baseline too."""
    scores, _ = write_study_course(tmp_path, Course(mice=16, days=1.0), seed=3)
    tracks = read_tracks([scores])
    grid = rule_grid("1:9:1", "1,3,8", "0.5,2")
    variants = [(AlertRule(), grid),
                (AlertRule(threshold=2, units=["orbital_tightening", "ear_position"]),
                 rule_grid("0.5:4:0.5", "1,3", "0.5")),
                (AlertRule(threshold=2, baseline_samples=20, min_valid=3, window=3), grid[::7])]
    checked = spans_seen = 0
    for variant, points in variants:
        base = ResolvedRule.resolve(variant, None)
        for point in points:
            rule = replace(base, threshold=point.threshold, window=point.window,
                           min_valid=min(base.min_valid, point.window),
                           clear_below=point.clear_below)
            config = Alerts(defaults=variant.model_copy(update={
                "threshold": rule.threshold, "window": rule.window,
                "min_valid": rule.min_valid, "clear_below": rule.clear_below}))
            reference = engine_spans(tracks, config, None)
            for mouse, track in tracks.items():
                fast = fast_pain_spans(track, rule)
                assert fast == reference[mouse]["pain"], (mouse, point, variant)
                checked += 1
                spans_seen += len(fast)
    assert checked > 16 * len(grid) and spans_seen > 500


# Choosing out of sample ---------------------------------------------------------------------
@pytest.mark.slow
def test_the_rule_is_chosen_on_some_mice_and_judged_on_the_others(tmp_path: Path) -> None:
    scores, mice = write_study_course(tmp_path / "study", Course(mice=16, days=3.0), seed=0)
    found = evaluate(tmp_path, str(scores), "--mice", str(mice), "--within-hours", "12",
                     "--thresholds", "2:8:0.5", "--windows", "1,3,5", "--clear-gaps", "1")
    chosen = found["chosen"]
    assert chosen is not None and len(found["points"]) == 13 * 3
    choice = _mice_of(chosen["choice"]), _mice_of(chosen["held_out"])
    assert choice == ((4, 4), (4, 4))  # halves stratified by condition
    assert chosen["choice"]["false_alerts"]["per_mouse_day"] <= 0.1
    picked = found["points"][found["chosen_index"]]
    assert (picked["threshold"], picked["window"]) == (chosen["threshold"], chosen["window"])
    block = yaml.safe_load((tmp_path / "report" / "chosen-rule.yaml").read_text())
    rule = Alerts.model_validate(block["alerts"]).defaults
    assert (rule.threshold, rule.window, rule.clear_below) == (
        chosen["threshold"], chosen["window"], chosen["clear_below"])
    # The held-out mice play no part in the choice: a rule chosen with their records changed
    # beyond recognition is the same rule.
    held = _held_out_mice(found, tmp_path / "study" / "mice.csv")
    spoiled = _spoil(scores, held, tmp_path / "spoiled.csv")
    again = evaluate(tmp_path / "again", str(spoiled), "--mice", str(mice), "--within-hours",
                     "12", "--thresholds", "2:8:0.5", "--windows", "1,3,5", "--clear-gaps", "1")
    assert again["chosen_index"] == found["chosen_index"]
    assert again["chosen"]["choice"] == chosen["choice"]
    assert again["chosen"]["held_out"] != chosen["held_out"]


def _mice_of(figures: dict) -> tuple[int, int]:
    return figures["sensitivity"]["mice"], figures["false_alerts"]["mice"]


def _held_out_mice(found: dict, mice_csv: Path) -> set[str]:
    """The held-out mice, found again from the split's own rule (same seed)."""
    from monitor.views.alert_figures import split_mice
    from monitor.views.alert_truth import MouseTruth

    with mice_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    truths = {r["mouse"]: MouseTruth(r["mouse"], r["condition"], r["condition"] == "pain",
                                     None, "") for r in rows}
    _, held = split_mice(truths, 0)
    assert len(held) == 8
    return held


def _spoil(scores: Path, mice: set[str], out: Path) -> Path:
    """Every scored sample of these mice at the top of the scale."""
    header = csv_header(SCORE_COLUMNS)
    with scores.open(newline="") as source, out.open("w", newline="") as target:
        reader, writer = csv.reader(source), csv.writer(target)
        writer.writerow(next(reader))
        for row in reader:
            if row[header.index("mouse")] in mice and row[header.index("status")] == "scored":
                for unit in header[header.index("orbital_tightening"):][:5]:
                    row[header.index(unit)] = "2"
            writer.writerow(row)
    return out


def test_no_rule_is_chosen_with_one_mouse_of_a_condition(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    scores = write_scores(tmp_path / "s.csv", {"p1": steady(0, 9, START), "c1": steady(0, 0, 0),
                                               "c2": steady(0, 0, 0)})
    mice = write_mice(tmp_path / "mice.csv", [("p1", "pain", ""), ("c1", "control", ""),
                                              ("c2", "control", "")])
    found = evaluate(tmp_path, str(scores), "--mice", str(mice))
    assert found["chosen"] is None and "1 pain mouse" in found["chosen_note"]
    assert found["configured"]["sensitivity"]["caught"] == 1  # onset: its first record
    assert found["configured"]["delay_s"]["ci"] is None  # one mouse: no interval
    assert not (tmp_path / "report" / "chosen-rule.yaml").exists()
    assert "no rule chosen" in capsys.readouterr().out


# Onsets from clocks and markers -------------------------------------------------------------
def test_a_clock_time_onset_needs_the_recording_start_for_a_replay(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    samples = [(float(k * 60), "scored", 8 if k >= 10 else 0) for k in range(20)]
    scores = write_scores(tmp_path / "s.csv", {"p1": samples, "c1": [(t, s, 0) for t, s, _ in
                                                                     samples]}, live=False)
    mice = write_mice(tmp_path / "mice.csv", [("p1", "pain", "2026-03-02T09:10:00+00:00"),
                                              ("c1", "control", "")])
    out = tmp_path / "r"
    assert cli(["--alerts", str(scores), "--mice", str(mice), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{mice}: line 2: onset" in err and "--recorded-at cam0=TIME" in err
    assert err.count("\n") == 1
    found = evaluate(tmp_path, str(scores), "--mice", str(mice),
                     "--recorded-at", "cam0=2026-03-02T09:00:00+00:00")
    assert found["configured"]["delay_s"]["median"] == 60.0  # onset at 600 s; alert at 660 s


def test_an_injection_marker_gives_the_onset(tmp_path: Path) -> None:
    onset = START + 3 * 3600
    scores = write_scores(tmp_path / "scores-1.csv", {"p1": steady(0, 8, onset),
                                                      "c1": steady(0, 0, 0)})
    assert monitor_main(["mark", "p1", "NTG 10 mg/kg", "--kind", "injection", "--csv",
                         str(scores)]) == 0
    markers = tmp_path / "scores-1.markers.csv"
    rows = markers.read_text().splitlines()
    markers.write_text(rows[0] + "\n" + f"{onset:.3f}," + rows[1].split(",", 1)[1] + "\n")
    mice = write_mice(tmp_path / "mice.csv", [("p1", "pain", ""), ("c1", "control", "")])
    found = evaluate(tmp_path, str(scores), "--mice", str(mice))
    assert found["configured"]["delay_s"]["median"] == 3600  # window 3, min 2: one sample later
    page = (tmp_path / "report" / "report.html").read_text()
    assert "injection marker" in page and "NTG 10 mg/kg" in page


def test_a_rotating_loggers_folder_is_judged_as_the_one_file(tmp_path: Path) -> None:
    """An hourly-rotating logger's files, named by their folder or a glob, with the onset in
    an injection marker beside one hour's file: the same figures as from one file."""
    onset = START + 5 * 3600
    series = {"p1": steady(0, 6, onset + 2 * 3600), "p2": steady(1, 2, onset),
              "c1": steady(0, 0, 0), "c2": [*steady(0, 0, 0)[:10], *steady(5, 5, 0)[10:13],
                                             *steady(0, 0, 0)[13:]]}
    whole = tmp_path / "whole" / "scores.csv"
    folder = tmp_path / "folder"
    for out, rotate in ((whole, "never"), (folder / "scores.csv", "hourly")):
        logger = CsvLogger(out, rotate=rotate)
        for mouse, samples in series.items():
            write_records(logger, mouse, samples)
        logger.close()
    hour_5 = folder / "scores-" f"{datetime.fromtimestamp(onset, UTC):%Y%m%d-%H}.csv"
    for beside in (whole, hour_5):
        add_marker(beside, "*", "NTG 10 mg/kg", when=onset, kind="injection")
    assert len(list(folder.glob("scores-*-??.csv"))) == 20
    mice = write_mice(tmp_path / "mice.csv", [("p1", "NTG", ""), ("p2", "NTG", ""),
                                              ("c1", "saline", ""), ("c2", "saline", "")])
    args = ["--mice", str(mice), "--pain-conditions", "NTG", "--seed", "1"]
    one = evaluate(tmp_path, str(whole), *args)
    for named in (str(folder), str(folder / "scores-*.csv")):
        split = evaluate(tmp_path, named, *args)
        assert split["inputs"].startswith("20 score CSV(s)")
        for key in ("configured", "mice", "left_out"):
            assert split[key] == one[key]
    assert one["configured"]["false_alerts"]["count"] == 1


def write_records(logger: CsvLogger, mouse: str, samples: list[tuple[float, str, int]]) -> None:
    for k, (t, status, total) in enumerate(samples):
        levels = tuple(min(2, max(0, total - 2 * u)) for u in range(5))
        logger.write(ScoreRecord(
            publisher=mouse, seq=k, wall_time=t, mono_time=t, source_time=t, frame_index=k,
            camera="cam0", cubicle=1, mouse=mouse, status=status, levels=levels,
            total=sum(levels), model_kind="trained"))


@pytest.mark.parametrize(("table", "expected"), [
    ("mouse,group\np1,pain\n", "missing column(s) condition"),
    ("mouse,condition\np1,pain\np1,pain\n", "line 3: mouse p1 is listed twice"),
    ("mouse,condition,onset\np1,pain,yesterday\n", "line 2: onset: 'yesterday'"),
    ("mouse,condition\nzz,pain\n", "none of its mice has records"),
])
def test_a_bad_mice_table_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      table: str, expected: str) -> None:
    scores = write_scores(tmp_path / "s.csv", {"p1": steady(0, 0, 0)})
    mice = tmp_path / "mice.csv"
    mice.write_text(table)
    assert cli(["--alerts", str(scores), "--mice", str(mice), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_a_bad_sweep_or_rule_is_one_line(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    scores = write_scores(tmp_path / "s.csv", {"p1": steady(0, 0, 0)})
    mice = write_mice(tmp_path / "mice.csv", [("p1", "pain", "")])
    config = tmp_path / "lab.yaml"
    config.write_text("alerts:\n  defaults: {window: 0}\n")
    for extra, expected in ((["--thresholds", "1:5:0"], "--thresholds 1:5:0"),
                            (["--windows", "0,3"], "--windows 0,3"),
                            (["--config", str(config)], f"{config}: alerts.defaults.window")):
        assert cli(["--alerts", str(scores), "--mice", str(mice), "--out",
                    str(tmp_path / "r"), *extra]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1


# The monitor's install, the demo -------------------------------------------------------------
def test_it_runs_without_pytorch(tmp_path: Path) -> None:
    scores = write_scores(tmp_path / "s.csv", {"p1": steady(0, 8, START + 3600),
                                               "c1": steady(0, 0, 0)})
    mice = write_mice(tmp_path / "mice.csv", [("p1", "pain", str(START + 3600)),
                                              ("c1", "control", "")])
    code = ("import sys\n"
            "for name in ('torch', 'torchvision', 'scipy', 'sklearn'):\n"
            "    sys.modules[name] = None\n"
            "from train.mgs_eval import cli\n"
            f"sys.exit(cli(['--alerts', {str(scores)!r}, '--mice', {str(mice)!r}, "
            f"'--out', {str(tmp_path / 'r')!r}]))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pain mice alerted within 24.0 h of onset: 1/1" in done.stdout
    blocked = subprocess.run([sys.executable, "-c", code.replace("'--alerts', ", "")],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert blocked.returncode == 2 and "`mgs-eval --alerts` works without it" in blocked.stderr


def test_the_demo_replay_is_judged_as_counted_by_hand(demo_small: DemoBuild,
                                                     tmp_path: Path) -> None:
    """The demo scene replayed through the monitor, its CSV judged: every figure equals what
    the default rule gives when applied by hand to the monitor's own rows (the small demo's
    models are too weak to promise what the full demo's do: README, "Are the alerts right?")."""
    records = tmp_path / "scores.csv"
    assert monitor_main(replay_args(demo_small, records)) == 0
    mice = write_mice_table(demo_small)
    found = evaluate(tmp_path, str(records), "--mice", str(mice))
    with records.open() as handle:
        rows = list(csv.DictReader(handle))
    onset = 0.2 * demo_small.spec.seconds
    caught, delays, false = 0, {}, 0
    for line in mice.read_text().splitlines()[1:]:
        mouse, condition, _ = line.split(",")
        series = sorted((float(r["source_time"]), int(r["total"]) if r["total"] else None)
                        for r in rows if r["mouse"] == mouse)
        spans = hand_spans(series)
        if condition == "pain":
            moments = [max(a, onset) for a, b in spans if b is None or b > onset]
            if moments:
                caught += 1
                delays[mouse] = min(moments) - onset
        else:
            false += len(spans)
    figures = found["configured"]
    assert figures["sensitivity"]["caught"] == caught
    assert figures["sensitivity"]["mice"] == 2 * demo_small.spec.cameras
    assert figures["false_alerts"]["count"] == false
    assert {m["mouse"]: m["delay_s"] for m in found["mice"]
            if m["delay_s"] is not None} == pytest.approx(delays)
    assert found["demo"] and "DEMO" in (tmp_path / "report" / "report.html").read_text()


def hand_spans(series: list[tuple[float, int | None]], threshold: float = 4.0,
               window: int = 3, min_valid: int = 2) -> list[tuple[float, float | None]]:
    """The default pain rule, by hand: raised when the mean of the last `window` scored totals
    reaches the threshold, cleared when it falls below threshold - 1."""
    totals: list[int] = []
    spans: list[tuple[float, float | None]] = []
    for t, total in series:
        if total is None:
            continue
        totals.append(total)
        last = totals[-window:]
        if len(last) < min_valid:
            continue
        mean = sum(last) / len(last)
        active = bool(spans) and spans[-1][1] is None
        if not active and mean >= threshold:
            spans.append((t, None))
        elif active and mean < threshold - 1:
            spans[-1] = (spans[-1][0], t)
    return spans


def test_a_perfect_monitor_on_the_demo_scene_alerts_as_its_truth_says(demo_small: DemoBuild,
                                                                       tmp_path: Path) -> None:
    """What a monitor that scored every visible face as the scene's truth would write: every
    pain mouse alerted after its onset when the truth says, no control alerted."""
    with (demo_small.folder / "truth.csv").open() as handle:
        truth = list(csv.DictReader(handle))
    every = int(demo_small.spec.every_s * demo_small.spec.fps)
    units = csv_header(SCORE_COLUMNS)[csv_header(SCORE_COLUMNS).index("orbital_tightening"):][:5]
    records = tmp_path / "scores.csv"
    with records.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_header(SCORE_COLUMNS))
        for k, row in enumerate(r for r in truth if int(r["frame_index"]) % every == 0):
            levels = tuple(int(row[u]) for u in units) if row["visible"] == "1" else None
            writer.writerow(csv_row(SCORE_COLUMNS, ScoreRecord(
                publisher="truth", seq=k, wall_time=1.8e9 + k, mono_time=k,
                source_time=float(row["source_time"]), frame_index=int(row["frame_index"]),
                camera=row["camera"], cubicle=int(row["cubicle"]), mouse=row["mouse"],
                status="scored" if levels else "no_face", levels=levels,
                total=sum(levels) if levels else None, model_kind="demo")))
    found = evaluate(tmp_path, str(records), "--mice", str(write_mice_table(demo_small)))
    pain = 2 * demo_small.spec.cameras
    figures = found["configured"]
    assert (figures["sensitivity"]["caught"], figures["sensitivity"]["mice"]) == (pain, pain)
    assert (figures["false_alerts"]["count"], figures["false_alerts"]["mice"]) == (0, pain)
    assert figures["raised_before_onset"]["count"] == 0
    expected = truth_alert_delays(demo_small)
    assert len(expected) == pain
    assert {m["mouse"]: m["delay_s"] for m in found["mice"] if m["pain"]} == \
        pytest.approx(expected)


def test_clopper_pearson_matches_published_values() -> None:
    assert clopper_pearson(8, 8) == pytest.approx((0.6306, 1.0), abs=1e-4)
    assert clopper_pearson(0, 10) == pytest.approx((0.0, 0.3085), abs=1e-4)
    assert clopper_pearson(5, 10) == pytest.approx((0.1871, 0.8129), abs=1e-4)
    assert all(math.isnan(v) for v in clopper_pearson(0, 0))


def test_the_grid_is_every_combination() -> None:
    grid = rule_grid("2:3:0.5", "1,3", "0.5,1")
    assert len(grid) == 3 * 2 * 2
    assert {(p.threshold, p.window, p.clear_below) for p in grid} == {
        (t, w, t - g) for t, w, g in itertools.product((2.0, 2.5, 3.0), (1, 3), (0.5, 1.0))}


@pytest.mark.slow
def test_the_scorers_exported_cutoff_is_the_threshold(tmp_path: Path) -> None:
    """As in the monitor: a rule without a threshold takes the scorer's pain_cutoff, so the
    cut-off mgs-eval chose per image is judged as the alert it becomes."""
    torch.manual_seed(0)
    scorer = export_scorer(UnitScorer("tiny", 32).eval(), tmp_path / "scorer.onnx",
                           np.zeros((2, 32, 32, 3), np.uint8), kind="trained", pain_cutoff=7)
    onset = START + 3600
    scores = write_scores(tmp_path / "s.csv", {"p1": steady(0, 6, onset), "c1": steady(0, 0, 0)})
    mice = write_mice(tmp_path / "mice.csv", [("p1", "pain", str(onset)), ("c1", "control", "")])
    default = evaluate(tmp_path / "a", str(scores), "--mice", str(mice))
    exported = evaluate(tmp_path / "b", str(scores), "--mice", str(mice), "--scorer",
                        str(scorer))
    assert default["rule"]["threshold"] == 4 and "the monitor's default" in default["rule"]["text"]
    assert exported["rule"]["threshold"] == 7
    assert "the scorer's pain_cutoff" in exported["rule"]["text"]
    assert default["configured"]["sensitivity"]["caught"] == 1
    assert exported["configured"]["sensitivity"]["caught"] == 0  # totals of 6 never reach 7


def test_score_csvs_of_every_schema_are_read_alike(tmp_path: Path) -> None:
    """Older files are the newest one's first columns: the same records in a schema-1 file
    (no `instance`, no `crop`) and a torn last row give the same figures."""
    onset = START + 3600
    newest = write_scores(tmp_path / "new.csv", {"p1": steady(0, 8, onset),
                                                 "c1": steady(0, 0, 0)})
    rows = newest.read_text().splitlines()
    oldest = tmp_path / "old.csv"
    oldest.write_text("\n".join(",".join(row.split(",")[:len(SCORE_HEADERS[1])])
                                for row in rows) + "\n" + rows[-1][:40])
    assert oldest.read_text().splitlines()[0].split(",") == list(SCORE_HEADERS[1])
    mice = write_mice(tmp_path / "mice.csv", [("p1", "pain", str(onset)), ("c1", "control", "")])
    new = evaluate(tmp_path / "a", str(newest), "--mice", str(mice))
    old = evaluate(tmp_path / "b", str(oldest), "--mice", str(mice))
    assert new["configured"] == old["configured"] and new["mice"] == old["mice"]
    assert new["configured"]["sensitivity"]["caught"] == 1
