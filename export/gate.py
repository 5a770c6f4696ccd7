"""What an exported model is known by, and whether it may go live.

mgs-export prints the figures each model will be known by and writes them into its metadata,
where the monitor shows them: the scorer's by mouse, from the mgs-eval report.json of its own
run (its `run_fingerprint` must match the run's files), the localizer's from its held-out views.
A model below its floor is refused unless the user passes --accept-weak; then its metadata says
it is below the floor, and the monitor shows that in red.

The floors:
- scorer: better than chance at telling pain mice from control mice, by mouse: the lower end of
  the by-mouse 95% CI of the AUROC above 0.5. A model whose interval reaches 0.5 cannot be told
  from one that scores at random, so its alerts would be noise.
- localizer: held-out recall at IoU >= 0.5 of at least 0.8. The scorer only ever sees the crop
  the localizer's box gives; below IoU 0.5 that crop misses much of the face, and more than one
  missed face in five would leave a mouse unscored or scored on part of its face.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.units import UNITS
from train import strict_json
from train.run import Run, RunError

CHANCE_AUROC = 0.5
LOCALIZER_RECALL_FLOOR = 0.8
ACCEPT = "pass --accept-weak to export it anyway, marked below the floor"


@dataclass(frozen=True)
class Figures:
    """The figures a model is known by: one line for people, the numbers for programs, and why
    it is below its floor ("" when it is not)."""

    text: str
    values: dict[str, Any] = field(default_factory=dict)
    below_floor: str = ""

    def metadata(self, accepted_weak: bool) -> dict[str, str]:
        """The ONNX metadata keys the monitor reads (monitor/scoring/models.py)."""
        return {"figures": self.text, "figures_values": strict_json.dumps(self.values),
                "below_floor": self.below_floor,
                "accepted_weak": "yes" if accepted_weak and self.below_floor else ""}


def read_report(report: Path) -> dict[str, Any]:
    """An mgs-eval report.json as a dict; one line naming the file otherwise."""
    try:
        content = json.loads(report.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RunError(f"{report}: not an mgs-eval report.json ({exc})") from None
    if not isinstance(content, dict):
        raise RunError(f"{report}: not an mgs-eval report.json (not a JSON object)")
    return content


def check_report_run(report: Path, content: dict[str, Any], run: Run, fold: Path) -> None:
    """Refuse a report that was not made from this run's models as they are now: from another
    run, from before a fold was retrained, or from an mgs-eval without fingerprints."""
    again = f"run mgs-eval --run {run.folder} again before exporting {fold.name}"
    written = content.get("run_fingerprint")
    if not isinstance(written, dict) or not written:
        raise RunError(f"{report}: no run_fingerprint (written by an older mgs-eval), so "
                       f"nothing ties it to {run.folder}; {again}")
    now = run.fingerprint()
    if written == now:
        return
    if not set(written.values()) & set(now.values()):
        raise RunError(f"{report}: made from another run, not {run.folder} (no fold's "
                       f"fingerprint matches); {again}")
    changed = sorted(name for name in set(written) | set(now) if written.get(name) != now.get(name))
    raise RunError(f"{report}: stale, {', '.join(changed)} of {run.folder} changed since it was "
                   f"written (retrained?); {again}")


def scorer_figures(report: Path | None, content: dict[str, Any] | None, run: Run) -> Figures:
    """The scorer's figures by mouse from its report (over the folds' test mice): AUROC of pain
    against control with its CI, r of the total, unit accuracies. Below the floor when the
    AUROC's CI reaches chance or the report cannot say."""
    if report is None or content is None:
        return Figures("no figures: exported without an mgs-eval report", {},
                       f"no figures by mouse: run mgs-eval --run {run.folder} --pain-conditions "
                       f"... and pass --report {run.folder / 'report' / 'report.json'}")
    by_mouse = content.get("by_mouse")
    if not isinstance(by_mouse, dict):
        return Figures("no figures by mouse", {}, f"{report} has no figures by mouse (labels "
                       "without mouse ids, or too few mice to resample)")
    auroc, r = _stat(by_mouse.get("auroc")), _stat(by_mouse.get("r"))
    units = {unit: _stat(by_mouse.get(f"accuracy {unit}")) for unit in UNITS}
    known = [s["value"] for s in units.values() if s["value"] is not None]
    accuracy = f"{min(known):.2f}-{max(known):.2f}" if known else "n/a"
    text = (f"by mouse ({by_mouse.get('n_mice', '?')} mice): AUROC {_with_ci(auroc)}, "
            f"r {_with_ci(r)}, unit accuracy {accuracy}")
    values = {"n_mice": by_mouse.get("n_mice"), "auroc": auroc, "r": r,
              "unit_accuracy": units, "floor": f"AUROC by mouse: 95% CI above {CHANCE_AUROC:g}"}
    return Figures(text, values, _scorer_below_floor(report, by_mouse, auroc))


def _scorer_below_floor(report: Path, by_mouse: dict[str, Any], auroc: dict[str, Any]) -> str:
    if "auroc" not in by_mouse:
        return f"{report} has no AUROC by mouse (mgs-eval without --pain-conditions)"
    if auroc["ci_low"] is None:
        return "its AUROC by mouse is undefined (no resample held both pain and control mice)"
    if auroc["ci_low"] <= CHANCE_AUROC:
        return (f"no better than chance by mouse: AUROC {_with_ci(auroc)}, whose 95% CI "
                f"reaches {CHANCE_AUROC:g}")
    return ""


def localizer_figures(source: Path, metrics: dict[str, Any]) -> Figures:
    """The localizer's figures on its held-out views: recall at IoU >= 0.5 (the floor), mean IoU
    and visibility accuracy."""
    recall = metrics.get("recall_iou50")
    text = (f"held-out recall at IoU>=0.5 {_num(recall)}, mean IoU "
            f"{_num(metrics.get('mean_iou'))}, visibility accuracy "
            f"{_num(metrics.get('visibility_accuracy'))}")
    values = {**{key: metrics.get(key) for key in ("recall_iou50", "mean_iou",
                                                   "visibility_accuracy")},
              "floor": f"recall_iou50 >= {LOCALIZER_RECALL_FLOOR:g}"}
    if not isinstance(recall, int | float):
        weak = f"{source} has no held-out recall at IoU>=0.5 (train it again)"
    elif recall < LOCALIZER_RECALL_FLOOR:
        weak = (f"held-out recall at IoU>=0.5 {recall:.2f} is below the floor "
                f"{LOCALIZER_RECALL_FLOOR:g}")
    else:
        weak = ""
    return Figures(text, values, weak)


def gate(source: Path, role: str, figures: Figures, accept_weak: bool) -> None:
    """Refuse, in one line naming the source, a model below its floor unless accepted."""
    if figures.below_floor and not accept_weak:
        raise RunError(f"{source}: {role} not exported, below the floor: {figures.below_floor}; "
                       f"{ACCEPT}")


def _stat(found: object) -> dict[str, Any]:
    """{value, ci_low, ci_high} of a report figure; None where the report has none."""
    stat = found if isinstance(found, dict) else {}
    return {key: _number(stat.get(key)) for key in ("value", "ci_low", "ci_high")}


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _num(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "n/a"


def _with_ci(stat: dict[str, Any]) -> str:
    return f"{_num(stat['value'])} [{_num(stat['ci_low'])}, {_num(stat['ci_high'])}]"
