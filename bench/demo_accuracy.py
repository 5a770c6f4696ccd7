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

import json
import tempfile
from pathlib import Path

from figures import publish

from demo.build import (
    DemoBuild,
    build_demo,
    records_against_truth,
    truth_alert_delays,
    write_mice_table,
)
from monitor.cli import main as mgs_monitor
from train.mgs_eval import cli as mgs_eval


def main() -> None:
    demo = build_demo()
    out = Path(tempfile.mkdtemp()) / "demo.csv"
    args = ["replay", *map(str, demo.videos), "--models", str(demo.models), "--every",
            str(demo.spec.every_s), "--burst", "1", "--out", str(out), "--no-publish",
            "--no-dashboard"]
    assert mgs_monitor(args) == 0
    joined = records_against_truth(demo, out)
    pain, controls = joined["pain_mice_alerted"], joined["controls_alerted"]
    results = {
        "records": joined["records"], "scored": joined["scored"],
        "scored_of_visible_faces": round(joined["scored_of_visible_faces"], 3),
        "unit_agreement": {u: round(a, 3) for u, a in joined["unit_agreement"].items()},
        "total_pearson_r": round(joined["total_pearson_r"], 3),
        "total_mean_abs_error": round(joined["total_mean_abs_error"], 3),
        "pain_mice_flagged": f"{sum(pain.values())}/{len(pain)}",
        "controls_flagged": f"{sum(controls.values())}/{len(controls)}",
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
