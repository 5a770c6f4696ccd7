"""Benchmark: `mgs-eval --alerts` on a month of one 16-mouse rack sampled every 2 minutes.

A synthetic study over time (synth/study_course.py: noisy mice, hidden faces, cameras down;
~345,600 records) is written as a score CSV, then evaluated end to end as a user would run it
(read, the configured rule through the monitor's AlertEngine, a sweep of 100 rules, figures
with mouse bootstrap, the page). Beside it, in the same run: the time one AlertEngine.update
takes, so the plain loop over every rule can be estimated, and a check that the fast sweep
gives the engine's pain alerts on the full month for a few rules. Prints the figures and the
chosen rule's figures on the mice it was chosen on and on the held-out ones; writes
bench/results/alert_sweep.json.

    .venv/bin/python bench/alert_sweep.py [--days 30] [--mice 16]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from figures import publish

from monitor.config import AlertRule, Alerts
from monitor.scoring.alerts import ResolvedRule
from monitor.views.alert_eval import rule_grid
from monitor.views.alert_replay import engine_spans, fast_pain_spans, read_tracks
from synth.study_course import Course, write_study_course
from train.mgs_eval import cli

SWEEP = ("--thresholds", "0.5:10:0.5", "--windows", "1,3,5,8,12", "--clear-gaps", "1")  # 100


def engine_check(scores: Path, points: int) -> dict[str, Any]:
    """The engine and the fast sweep on the whole month for a few rules: equal alerts?"""
    tracks = read_tracks([scores])
    grid = rule_grid(*SWEEP[1::2])[:: max(1, 100 // points)][:points]
    base = ResolvedRule.resolve(AlertRule(), None)
    equal, seconds, records = True, 0.0, sum(len(t.time) for t in tracks.values())
    for point in grid:
        rule = replace(base, threshold=point.threshold, window=point.window,
                       min_valid=min(base.min_valid, point.window),
                       clear_below=point.clear_below)
        config = Alerts(defaults=AlertRule(threshold=rule.threshold, window=rule.window,
                                           min_valid=rule.min_valid,
                                           clear_below=rule.clear_below))
        started = time.perf_counter()
        reference = engine_spans(tracks, config, None)
        seconds += time.perf_counter() - started
        equal &= all(fast_pain_spans(track, rule) == reference[mouse]["pain"]
                     for mouse, track in tracks.items())
    return {"rules_checked": len(grid), "fast_equals_engine": equal,
            "engine_us_per_record": round(seconds / (len(grid) * records) * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--mice", type=int, default=16)
    parser.add_argument("--check-rules", type=int, default=3,
                        help="rules run through the engine on the whole month for the check")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.mkdtemp()))
    args = parser.parse_args()
    course = Course(mice=args.mice, days=args.days)
    started = time.perf_counter()
    scores, mice = write_study_course(args.workdir / "study", course)
    written = time.perf_counter() - started
    started = time.perf_counter()
    out = args.workdir / "report"
    assert cli(["--alerts", str(scores), "--mice", str(mice), "--within-hours", "12",
                "--out", str(out), *SWEEP]) == 0
    evaluated = time.perf_counter() - started
    report = json.loads((out / "report.json").read_text())
    check = engine_check(scores, args.check_rules)
    records = sum(1 for _ in scores.open()) - 1
    plain = check["engine_us_per_record"] * 1e-6 * records * len(report["points"])
    chosen = report["chosen"] or {}
    results = {
        "mice": args.mice, "days": args.days, "records": records,
        "rules_swept": len(report["points"]),
        "study_written_s": round(written, 1),
        "evaluation_s": round(evaluated, 1),
        "plain_engine_loop_estimate_s": round(plain),
        "speedup_vs_plain_loop": round(plain / evaluated, 1),
        **check,
        "chosen_rule": chosen.get("text", report["chosen_note"]),
        "chosen_on_choice_mice": _brief(chosen.get("choice")),
        "chosen_on_held_out_mice": _brief(chosen.get("held_out")),
        "configured_rule": _brief(report["configured"]),
    }
    publish("alert_sweep", results)


def _brief(figures: dict[str, Any] | None) -> dict[str, Any] | None:
    if figures is None:
        return None
    s, f, d = figures["sensitivity"], figures["false_alerts"], figures["delay_s"]
    return {"caught": f"{s['caught']}/{s['mice']}",
            "false_per_mouse_day": None if f["per_mouse_day"] is None
            else round(f["per_mouse_day"], 3),
            "median_delay_min": None if d["median"] is None else round(d["median"] / 60, 1)}


if __name__ == "__main__":
    main()
