"""Benchmark: how well the monitor's scores on the demo scene match its ground truth.

Replays the demo videos through the real monitor (capture, localizer, scorer, alerts, CSV),
joins every scored record with truth.csv, and reports per-unit agreement, Pearson r of totals,
the scored fraction, and whether each pain mouse was flagged and each control was not; then
`mgs-eval --alerts` on the replay: pain mice caught, false alerts on controls and each pain
mouse's onset-to-alert time beside the one the scene's truth gives under the same rule.
Prints a table and writes bench/results/demo_accuracy.json.

    .venv/bin/python bench/demo_accuracy.py
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from figures import publish

from demo.build import DemoBuild, build_demo, truth_alert_delays, write_mice_table
from monitor.cli import main as mgs_monitor
from monitor.units import UNITS
from train.mgs_eval import cli as mgs_eval


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def main() -> None:
    demo = build_demo()
    out = Path(tempfile.mkdtemp()) / "demo.csv"
    args = ["replay", *map(str, demo.videos), "--models", str(demo.folder), "--every",
            str(demo.spec.every_s), "--burst", "1", "--out", str(out), "--no-publish",
            "--no-dashboard"]
    assert mgs_monitor(args) == 0
    truth = {(r["camera"], r["cubicle"], r["frame_index"]): r for r in read(demo.folder /
                                                                            "truth.csv")}
    rows = read(out)
    scored = [(r, truth[(r["camera"], r["cubicle"], r["frame_index"])])
              for r in rows if r["status"] == "scored"]
    visible = [t for t in (truth[(r["camera"], r["cubicle"], r["frame_index"])] for r in rows)
               if t["visible"] == "1"]
    agreement = {u: float(np.mean([r[u] == t[u] for r, t in scored])) for u in UNITS}
    got = np.array([int(r["total"]) for r, _ in scored])
    want = np.array([sum(int(t[u]) for u in UNITS) for _, t in scored])
    alerts: dict[str, bool] = defaultdict(bool)
    pain_mouse: dict[str, bool] = {}
    for row in rows:
        key = (row["camera"], row["cubicle"], row["frame_index"])
        alerts[row["mouse"]] |= row["alert"] == "pain"
        pain_mouse[row["mouse"]] = truth[key]["pain_mouse"] == "1"
    results = {
        "records": len(rows), "scored": len(scored),
        "scored_of_visible_faces": round(len(scored) / max(1, len(visible)), 3),
        "unit_agreement": {u: round(a, 3) for u, a in agreement.items()},
        "total_pearson_r": round(float(np.corrcoef(got, want)[0, 1]), 3),
        "total_mean_abs_error": round(float(np.abs(got - want).mean()), 3),
        "pain_mice_flagged": f"{sum(alerts[m] for m, p in pain_mouse.items() if p)}/"
                             f"{sum(pain_mouse.values())}",
        "controls_flagged": f"{sum(alerts[m] for m, p in pain_mouse.items() if not p)}/"
                            f"{sum(not p for p in pain_mouse.values())}",
        **alert_figures(demo, out),
        "demo_model_validation": demo.metrics,
    }
    publish("demo_accuracy", results, hidden=("demo_model_validation",))


def alert_figures(demo: DemoBuild, records: Path) -> dict[str, object]:
    """mgs-eval --alerts on the replay, and the delays the truth alone gives (same rule)."""
    out = records.parent / "alerts"
    assert mgs_eval(["--alerts", str(records), "--mice", str(write_mice_table(demo)),
                     "--out", str(out), "--bootstrap", "200"]) == 0
    report = json.loads((out / "report.json").read_text())
    figures = report["configured"]
    return {
        "alerts_pain_mice_caught": f"{figures['sensitivity']['caught']}/"
                                   f"{figures['sensitivity']['mice']}",
        "alerts_false_on_controls": f"{figures['false_alerts']['count']} on "
                                    f"{figures['false_alerts']['mice']} mice",
        "alerts_delay_s": {m["mouse"]: m["delay_s"] for m in report["mice"] if m["pain"]},
        "alerts_delay_s_by_truth": truth_alert_delays(demo),
    }


if __name__ == "__main__":
    main()
