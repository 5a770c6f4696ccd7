"""`mgs-eval --alerts`: the alert rules judged against what happened to each mouse.

Score CSVs (a replay of recorded videos, or live runs) are run again through the monitor's own
AlertEngine under the configured rule; a table of mice says which were in pain and since when.
Out come, by mouse, the share of pain mice alerted within a horizon of onset, how soon, and the
false alerts per control mouse-day; then a sweep over threshold, window and clear level picks a
rule on half of the mice and reports it on the other half. Needs no PyTorch.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import textwrap
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError
from rich.progress import Progress

from monitor.config import (
    MAX_ALERT_SAMPLES,
    Alerts,
    ConfigError,
    describe_errors,
    read_config_file,
)
from monitor.outputs.db_url import (
    DatabaseError,
    add_selection,
    database_as_csvs,
    selection_without_database,
)
from monitor.schema import ONSET_KINDS, is_side_file
from monitor.scoring.alerts import ResolvedRule
from monitor.scoring.models import SCORER, ModelError, OnnxModel
from monitor.views.alert_figures import Outcome, choose, figures, outcome, split_mice
from monitor.views.alert_page import DEMO_LINE, page, plot_curve, plot_timeline, summary_lines
from monitor.views.alert_replay import (
    Track,
    engine_spans,
    fast_pain_spans,
    pain_values,
    read_tracks,
)
from monitor.views.alert_truth import (
    MouseTruth,
    TruthError,
    onset_markers,
    read_mice,
    recording_starts,
    resolve,
)
from monitor.views.series_report import ReportError, score_csvs

USER_ERRORS = (ReportError, TruthError, ConfigError, ModelError, DatabaseError)


@dataclass(frozen=True)
class RulePoint:
    threshold: float
    window: int
    clear_below: float

    def text(self, min_valid: int) -> str:
        return (f"threshold {self.threshold:g}, window {self.window}, min_valid {min_valid}, "
                f"clear below {self.clear_below:g}")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgs-eval --alerts", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Alerts against truth: how many mice in pain an alert rule catches, how "
        "soon after onset, and how many false alerts it raises per control mouse-day; then "
        "the rule a sweep chooses on half of the mice, judged on the others. Runs on the "
        "monitor's own install (no PyTorch).")
    parser.add_argument("scores", nargs="*", type=Path,
                        help="score CSVs (replays or live runs; any schema), folders of them "
                        "or quoted glob patterns; their `.markers.csv` are read for onset "
                        "markers")
    parser.add_argument("--db", metavar="URL",
                        help="read the records and markers from this PostgreSQL database "
                        "(`mgs-monitor log --db`) instead of score CSVs")
    add_selection(parser)
    parser.add_argument("--mice", type=Path, required=True,
                        help="CSV mouse,condition[,onset]: onset in seconds of the records' "
                        "source time (video time for a replay) or a clock time "
                        "(2026-03-02T09:30); blank = the first onset marker, else the "
                        "mouse's first record")
    parser.add_argument("--config", type=Path,
                        help="monitor config whose `alerts:` rules are judged (default: the "
                        "monitor's defaults)")
    cutoff = parser.add_mutually_exclusive_group()
    cutoff.add_argument("--scorer", type=Path, metavar="ONNX",
                        help="the scorer the records came from: its metadata's pain_cutoff is "
                        "the threshold of a rule that gives none, as in the monitor (e.g. the "
                        "cut-off mgs-export wrote from mgs-eval)")
    cutoff.add_argument("--model-cutoff", type=float,
                        help="that pain_cutoff given as a number")
    parser.add_argument("--pain-conditions", default="pain",
                        help="comma-separated conditions that mean pain")
    parser.add_argument("--control-conditions", default="",
                        help="comma-separated conditions that mean no pain (default: every "
                        "condition not named pain)")
    parser.add_argument("--within-hours", type=float, default=24.0,
                        help="a pain mouse counts as caught when alerted this soon after onset")
    parser.add_argument("--max-false-per-day", type=float, default=0.1,
                        help="the chosen rule raises at most this many false alerts per "
                        "control mouse-day on the mice it is chosen on")
    parser.add_argument("--thresholds", default="1:10:0.5",
                        help="thresholds to sweep: START:STOP:STEP or a list")
    parser.add_argument("--windows", default="1,2,3,5,8", help="windows to sweep (samples)")
    parser.add_argument("--clear-gaps", default="0.5,1,2",
                        help="clear_below = threshold - gap, for each gap")
    parser.add_argument("--recorded-at", action="append", default=[], metavar="[CAMERA=]TIME",
                        help="when a replayed video began (ISO time), to place clock-time "
                        "onsets and markers on its records; repeat per camera")
    parser.add_argument("--onset-kinds", default=",".join(ONSET_KINDS),
                        help="marker kinds that mark an onset")
    parser.add_argument("--out", type=Path, default=Path("alerts-report"),
                        help="report folder: report.html, report.json, chosen-rule.yaml, PNGs")
    parser.add_argument("--bootstrap", type=int, default=1000, help="mouse bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="for the split and the bootstrap")
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    wrong = selection_without_database(args)
    if wrong:
        raise ReportError(f"{wrong} selects records of a database: add --db")
    if args.db:
        if args.scores:
            raise ReportError("give score CSVs or --db URL, not both")
        with tempfile.TemporaryDirectory(prefix="mgs-eval-") as folder:
            return evaluate(args, [database_as_csvs(args, Path(folder))])
    scores = [p for p in args.scores if not is_side_file(p)]
    if not scores:
        raise ReportError("no score CSVs given (only .alerts/.markers/.gaps files), and no "
                          "--db")
    return evaluate(args, score_csvs(scores))  # a folder or glob: a rotating logger's files


def evaluate(args: argparse.Namespace, scores: list[Path]) -> dict[str, Any]:
    alerts = load_alerts(args.config)
    cutoff = model_cutoff(args)
    grid = rule_grid(args.thresholds, args.windows, args.clear_gaps)
    tracks = read_tracks(scores)
    truths, left_out = _truths(args, scores, tracks)
    mice = sorted(truths)
    with Progress(transient=True) as progress:
        task = progress.add_task("alerts, as the monitor raised them", total=len(mice))
        spans = engine_spans(_only(tracks, mice), alerts, cutoff,
                             lambda: progress.advance(task))
        outcomes = [outcome(tracks[m], truths[m], spans[m]["pain"]) for m in mice]
        base = ResolvedRule.resolve(alerts.defaults, cutoff)
        swept = sweep(tracks, truths, base, grid, progress)
    results = _results(args, scores, tracks, truths, alerts, cutoff, outcomes, base, grid,
                       swept)
    results["left_out"] = left_out
    write(args.out, results, outcomes, truths, tracks, spans, base)
    _print(results)
    return results


def model_cutoff(args: argparse.Namespace) -> float | None:
    """The threshold of a rule that gives none: the scorer's pain_cutoff, as in the monitor."""
    if args.scorer is None:
        return float(args.model_cutoff) if args.model_cutoff is not None else None
    return OnnxModel(args.scorer, SCORER, ["CPUExecutionProvider"]).info.pain_cutoff


def load_alerts(path: Path | None) -> Alerts:
    """The `alerts:` section of a monitor config, validated as the monitor would."""
    if path is None:
        return Alerts()
    raw = read_config_file(path).get("alerts") or {}
    try:
        return Alerts.model_validate(raw)
    except ValidationError as exc:
        where = "; ".join(f"alerts.{part}" for part in describe_errors(exc).split("; "))
        raise ConfigError(f"{path}: {where}") from None


def _truths(args: argparse.Namespace, scores: list[Path], tracks: dict[str, Track]
            ) -> tuple[dict[str, MouseTruth], dict[str, list[str]]]:
    """The judged mice, and the mice left out with the reason."""
    pain, control = _names(args.pain_conditions), _names(args.control_conditions)
    if pain & control:
        raise TruthError(f"--pain-conditions and --control-conditions both name "
                         f"{', '.join(sorted(pain & control))}")
    listed = read_mice(args.mice)
    markers = onset_markers(scores, _names(args.onset_kinds))
    truths = resolve(listed, tracks, pain, control, markers, recording_starts(args.recorded_at))
    if not truths:
        raise TruthError(f"{args.mice}: none of its mice has records in the score CSVs "
                         f"(they name {', '.join(sorted(tracks)[:5])}…)")
    return truths, {"not_in_mice_table": sorted(set(tracks) - set(listed)),
                    "no_records": sorted(set(listed) - set(tracks)),
                    "neither_pain_nor_control": sorted(set(listed) & set(tracks) - set(truths))}


def _names(text: str) -> set[str]:
    return {name.strip() for name in text.split(",") if name.strip()}


def _only(tracks: dict[str, Track], mice: list[str]) -> dict[str, Track]:
    return {mouse: tracks[mouse] for mouse in mice}


# The sweep ----------------------------------------------------------------------------------
def rule_grid(thresholds: str, windows: str, gaps: str) -> list[RulePoint]:
    """Every combination of threshold, window and clear gap."""
    found_t = _numbers(thresholds, "--thresholds")
    found_w = [int(w) for w in _numbers(windows, "--windows")]
    found_g = _numbers(gaps, "--clear-gaps")
    if any(not 0 <= t <= 10 for t in found_t):
        raise TruthError(f"--thresholds {thresholds}: every threshold is between 0 and 10")
    if any(not 1 <= w <= MAX_ALERT_SAMPLES for w in found_w):
        raise TruthError(f"--windows {windows}: every window is 1 to {MAX_ALERT_SAMPLES}")
    if any(g < 0 for g in found_g):
        raise TruthError(f"--clear-gaps {gaps}: a gap is 0 or more")
    return [RulePoint(t, w, t - g) for w in found_w for g in found_g for t in found_t]


def _numbers(text: str, flag: str) -> list[float]:
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0:
                raise ValueError
            return [round(float(v), 6) for v in np.arange(start, stop + step / 2, step)]
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise TruthError(f"{flag} {text}: give START:STOP:STEP (step > 0) or a list "
                         "like 1,2,3") from None


def sweep(tracks: dict[str, Track], truths: dict[str, MouseTruth], base: ResolvedRule,
          grid: list[RulePoint], progress: Progress | None = None) -> list[dict[str, Outcome]]:
    """Each rule's outcome per mouse, from the fast pain rule (the engine's events exactly);
    the window's values are computed once per mouse and shared by its thresholds."""
    swept: list[dict[str, Outcome]] = [{} for _ in grid]
    task = progress.add_task("sweeping rules", total=len(truths)) if progress else None
    for mouse, truth in truths.items():
        track = tracks[mouse]
        for window in sorted({p.window for p in grid}):
            rule = replace(base, window=window, min_valid=min(base.min_valid, window))
            values = pain_values(track, rule)
            for i, point in enumerate(grid):
                if point.window == window:
                    spans = fast_pain_spans(track, replace(
                        rule, threshold=point.threshold, clear_below=point.clear_below), values)
                    swept[i][mouse] = outcome(track, truth, spans)
        if progress is not None and task is not None:
            progress.advance(task)
    return swept


# Results ------------------------------------------------------------------------------------
def _results(args: argparse.Namespace, scores: list[Path], tracks: dict[str, Track],
             truths: dict[str, MouseTruth], alerts: Alerts, cutoff: float | None,
             outcomes: list[Outcome], base: ResolvedRule, grid: list[RulePoint],
             swept: list[dict[str, Outcome]]) -> dict[str, Any]:
    horizon = args.within_hours * 3600.0
    n_pain = sum(t.pain for t in truths.values())
    results: dict[str, Any] = {
        "demo": any(tracks[m].demo for m in truths),
        "inputs": f"{len(scores)} score CSV(s), {sum(len(tracks[m].time) for m in truths)} "
                  f"records of {len(truths)} mice ({n_pain} pain, {len(truths) - n_pain} "
                  f"control); times in source time",
        "within_s": horizon,
        "rule": {"threshold": base.threshold, "window": base.window,
                 "min_valid": base.min_valid, "clear_below": base.clear_below,
                 "units": base.units, "baseline_samples": base.baseline_samples,
                 "text": _rule_text(base, alerts, cutoff)},
        "configured": figures(outcomes, horizon, args.bootstrap, args.seed),
        "mice": [asdict(o) for o in outcomes],
        "max_false_per_day": args.max_false_per_day,
        "chosen": None, "chosen_note": "",
    }
    try:
        choice, held = split_mice(truths, args.seed)
    except ValueError as exc:
        results["chosen_note"] = f"no rule chosen: {exc}"
        choice, held = set(truths), set()
    points = [_point(p, found, choice, held, horizon)
              for p, found in zip(grid, swept, strict=True)]
    results["points"] = points
    best = choose([p["choice"] for p in points], args.max_false_per_day) if held else None
    if held and best is None:
        results["chosen_note"] = (f"no rule of the sweep stays within "
                                  f"{args.max_false_per_day:g} false alerts per control "
                                  "mouse-day on the choice mice")
    if best is not None:
        results["chosen"] = _chosen(args, grid[best], swept[best], choice, held, base, alerts,
                                    horizon)
        results["chosen_index"] = best
    return results


def _point(point: RulePoint, found: dict[str, Outcome], choice: set[str], held: set[str],
           horizon: float) -> dict[str, Any]:
    """One rule of the sweep: its figures on all mice, the choice mice and the held-out ones."""
    return {"threshold": point.threshold, "window": point.window,
            "clear_below": point.clear_below, "all": figures(list(found.values()), horizon),
            "choice": figures([found[m] for m in sorted(choice)], horizon),
            "held_out": figures([found[m] for m in sorted(held)], horizon)}


def _chosen(args: argparse.Namespace, point: RulePoint, found: dict[str, Outcome],
            choice: set[str], held: set[str], base: ResolvedRule, alerts: Alerts,
            horizon: float) -> dict[str, Any]:
    min_valid = min(base.min_valid, point.window)
    n = {part: (sum(found[m].pain for m in mice), sum(not found[m].pain for m in mice))
         for part, mice in (("choice", choice), ("held_out", held))}
    chosen = {
        "threshold": point.threshold, "window": point.window, "min_valid": min_valid,
        "clear_below": point.clear_below,
        "text": (f"{point.text(min_valid)}: chosen on {len(choice)} mice ({n['choice'][0]} "
                 f"pain, {n['choice'][1]} control) for the most pain mice caught within "
                 f"{args.max_false_per_day:g} false alerts per control mouse-day; judged on "
                 f"the other {len(held)} ({n['held_out'][0]} pain, {n['held_out'][1]} "
                 "control)"),
        "choice": figures([found[m] for m in sorted(choice)], horizon, args.bootstrap,
                          args.seed),
        "held_out": figures([found[m] for m in sorted(held)], horizon, args.bootstrap,
                            args.seed),
    }
    chosen["yaml"] = rule_yaml(alerts, chosen, horizon)
    return chosen


def rule_yaml(alerts: Alerts, chosen: dict[str, Any], horizon: float) -> str:
    """The chosen rule as a config block, with the figures it was chosen by as comments."""
    rule = alerts.defaults.model_dump(exclude_unset=True) | {
        key: chosen[key] for key in ("threshold", "window", "min_valid", "clear_below")}
    said = [f"Chosen by mgs-eval --alerts: {chosen['text']}."]
    for key, name in (("choice", "On the choice mice"), ("held_out", "On the held-out mice")):
        said.append(f"{name}: " + "; ".join(summary_lines(chosen[key], horizon)[:3]) + ".")
    comments = [f"# {line}" for text in said for line in textwrap.wrap(text, 96)]
    block = yaml.safe_dump({"alerts": {"defaults": rule}}, sort_keys=False)
    return "\n".join(comments) + "\n" + block


def _rule_text(rule: ResolvedRule, alerts: Alerts, cutoff: float | None) -> str:
    extra = f"; {len(alerts.overrides)} per-mouse override(s) applied" if alerts.overrides else ""
    source = ("the config" if alerts.defaults.threshold is not None else
              "the monitor's default" if cutoff is None else "the scorer's pain_cutoff")
    baseline = (f", as a rise over the first {rule.baseline_samples} samples"
                if rule.baseline_samples else "")
    return (f"pain: {rule.label} mean of {rule.window} scored samples (at least "
            f"{rule.min_valid}) raised at {rule.threshold:g} (from {source}), cleared below "
            f"{rule.clear_below:g}{baseline}{extra}. The sweep varies threshold, window and "
            "clear level of the default rule, for every mouse alike.")


def write(out: Path, results: dict[str, Any], outcomes: list[Outcome],
          truths: dict[str, MouseTruth], tracks: dict[str, Track],
          spans: dict[str, dict[str, Any]], base: ResolvedRule) -> Path:
    """report.json, chosen-rule.yaml, the PNGs and report.html into `out`."""
    (out / "mice").mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(results, indent=1, allow_nan=False))
    chosen = results["chosen"]
    yaml_text = chosen["yaml"] if chosen else ""
    if chosen:
        (out / "chosen-rule.yaml").write_text(yaml_text)
    timelines = {m: plot_timeline(tracks[m], truths[m], spans[m]["pain"], base.threshold,
                                  out / "mice") for m in sorted(truths)}
    curve = plot_curve(results["points"], results.get("chosen_index"),
                       results["max_false_per_day"], out) if results["points"] else None
    html_page = out / "report.html"
    html_page.write_text(page(results, outcomes, truths, timelines, curve, yaml_text, out),
                         encoding="utf-8")
    results["page"] = str(html_page)
    return html_page


def _print(results: dict[str, Any]) -> None:
    if results["demo"]:
        print(DEMO_LINE)
    print(results["inputs"])
    for reason, mice in results["left_out"].items():
        if mice:
            print(f"left out, {reason.replace('_', ' ')}: {len(mice)} "
                  f"({', '.join(mice[:6])}{'…' if len(mice) > 6 else ''})")
    print(f"configured rule: {results['rule']['text'].split('. ')[0]}")
    for line in summary_lines(results["configured"], results["within_s"]):
        print(f"  {line}")
    chosen = results["chosen"]
    if chosen is None:
        print(results["chosen_note"])
    else:
        print(f"chosen rule: {chosen['text']}")
        for key in ("choice", "held_out"):
            print(f"  on the {key.replace('_', '-')} mice:")
            for line in summary_lines(chosen[key], results["within_s"])[:3]:
                print(f"    {line}")
    print(f"report written to {results['page']}")
