"""The alerts-against-truth page: per mouse a timeline of its total with onset, alert spans and
unseen time, the table of figures, and the curve of mice caught against false alerts.

Drawing needs matplotlib; the figures themselves come from alert_figures.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from monitor.units import MAX_TOTAL
from monitor.views.alert_figures import Outcome
from monitor.views.alert_replay import UNSEEN_STATUSES, Span, Track
from monitor.views.alert_truth import MouseTruth

if TYPE_CHECKING:
    from matplotlib.axes import Axes

DEMO_LINE = ("DEMO: these records come from demo models trained on synthetic faces; the "
             "figures show how the evaluation works, not how well real mice are watched.")


def duration(seconds: float | None) -> str:
    """A time span in the unit that reads best."""
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    for limit, unit, size in ((120, "s", 1), (7200, "min", 60), (172800, "h", 3600)):
        if abs(seconds) < limit:
            return f"{seconds / size:.0f} {unit}" if size == 1 else f"{seconds / size:.1f} {unit}"
    return f"{seconds / 86400:.1f} d"


def _ci(pair: Any, fmt: str | Callable[[float], str]) -> str:
    if not pair:
        return ""
    show = fmt if callable(fmt) else fmt.format
    return f" [{show(pair[0])}, {show(pair[1])}]"


def summary_lines(fig: dict[str, Any], horizon_s: float) -> list[str]:
    """The rule's figures as lines a person reads: counts beside every share."""
    s, d, f = fig["sensitivity"], fig["delay_s"], fig["false_alerts"]
    under, before = fig["control_time_under_alert"], fig["raised_before_onset"]
    share = "n/a" if s["share"] is None else f"{s['share']:.0%}"
    lines = [f"pain mice alerted within {duration(horizon_s)} of onset: {s['caught']}/{s['mice']}"
             f" ({share}){_ci(s['ci'], '{:.0%}')}"
             + (f"; {s['not_judged']} not seen after onset" if s["not_judged"] else ""),
             f"onset to first alert: median {duration(d['median'])} "
             f"(IQR {duration(d['q1'])} to {duration(d['q3'])}; {d['mice']} mice)"
             + (f", CI of the median{_ci(d['ci'], duration)}" if d["ci"] else "")]
    rate = "n/a" if f["per_mouse_day"] is None else f"{f['per_mouse_day']:.3g}"
    zero = (f", under {f['zero_upper']:.3g} at 95%" if f["zero_upper"] is not None else "")
    lines.append(f"false alerts on controls: {f['count']} in {f['mouse_days']:.3g} mouse-days of "
                 f"{f['mice']} mice = {rate} per mouse-day{_ci(f['ci'], '{:.3g}')}{zero}")
    if under["share"] is not None:
        lines.append(f"control time under a pain alert: {under['share']:.2%}"
                     f"{_ci(under['ci'], '{:.2%}')}")
    lines.append(f"alerts raised before onset on pain mice: {before['count']} "
                 f"(on {before['mice']} mice)")
    unseen = fig["unseen"]
    if unseen["no_face_share"] is not None:
        lines.append(f"time unseen: no face {unseen['no_face_share']:.1%}, camera down "
                     f"{unseen['camera_down_share']:.1%}")
    return lines


def plot_timeline(track: Track, truth: MouseTruth, spans: list[Span], threshold: float,
                  out: Path) -> Path:
    """The mouse's total over source time, its onset, pain alert spans and unseen time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = float(track.time[0])
    size, unit = _axis_unit(track.observed)
    x = (track.time - start) / size
    fig, ax = plt.subplots(figsize=(9, 2.2))
    fig.subplots_adjust(left=0.075, right=0.99, bottom=0.22, top=0.86)  # fixed: many mice, fast
    scored = track.scored
    ax.plot(x[scored], track.levels[scored].sum(axis=1), ".", ms=3, color="#333",
            label="total")
    _shade(ax, x, np.isin(track.status, UNSEEN_STATUSES), "#bbb", "no face")
    _shade(ax, x, track.status == "camera_down", "#777", "camera down")
    for i, (raised, cleared) in enumerate(spans):
        end = track.time[-1] if cleared is None else cleared
        ax.axvspan((raised - start) / size, (end - start) / size, color="#d62728", alpha=0.25,
                   label="pain alert" if i == 0 else None)
    if truth.onset is not None:
        ax.axvline((truth.onset - start) / size, color="#1f77b4", ls="--", label="onset")
    ax.axhline(threshold, color="#d62728", lw=0.8, ls=":")
    ax.set(ylim=(-0.3, MAX_TOTAL + 0.3), xlabel=f"{unit} since first record", ylabel="total")
    ax.set_title(f"{truth.mouse} ({truth.condition})", loc="right", fontsize=10)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1), fontsize=7, ncols=5, frameon=False)
    path = out / f"{_safe(truth.mouse)}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _axis_unit(span_s: float) -> tuple[float, str]:
    for limit, size, unit in ((600, 1, "seconds"), (4 * 3600, 60, "minutes"),
                              (4 * 86400, 3600, "hours")):
        if span_s < limit:
            return size, unit
    return 86400, "days"


def _shade(ax: Axes, x: np.ndarray, mask: np.ndarray, colour: str, label: str) -> None:
    """One artist for every run of `mask`, each held until the next record."""
    if mask.any():
        ax.fill_between(x, -0.3, MAX_TOTAL + 0.3, where=mask, step="post", color=colour,
                        alpha=0.5, lw=0, label=label)


def plot_curve(points: list[dict[str, Any]], chosen: int | None, max_false: float,
               out: Path) -> Path:
    """Mice caught against false alerts per control mouse-day for every rule of the sweep, on
    the mice the rule is chosen on; the chosen rule also on the held-out mice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    part = "choice" if chosen is not None else "all"
    xs = [p[part]["false_alerts"]["per_mouse_day"] for p in points]
    ys = [p[part]["sensitivity"]["share"] for p in points]
    ax.scatter(xs, ys, s=12, color="#888", label=f"each rule ({part} mice)")
    if chosen is not None:
        for key, marker, colour, name in (("choice", "*", "#1f77b4", "chosen, on choice mice"),
                                          ("held_out", "D", "#d62728", "chosen, on held-out mice")):
            f = points[chosen][key]
            ax.scatter([f["false_alerts"]["per_mouse_day"]], [f["sensitivity"]["share"]],
                       s=90, marker=marker, color=colour, label=name, zorder=3)
    ax.axvline(max_false, color="#555", ls=":", lw=1, label=f"limit {max_false:g}/mouse-day")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlim(left=-0.003)  # a rule with no false alert sits at 0, visibly
    ax.set(xlabel="false alerts per control mouse-day", ylabel="pain mice alerted (share)",
           ylim=(-0.05, 1.05))
    ax.legend(fontsize=7, loc="lower right")
    path = out / "curve.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"


def page(results: dict[str, Any], outcomes: list[Outcome], truths: dict[str, MouseTruth],
         timelines: dict[str, Path], curve: Path | None, rule_yaml: str, out: Path) -> str:
    """The HTML: banner, the config's rule, the chosen rule, the per-mouse table, timelines."""
    horizon = results["within_s"]
    parts = ["<!doctype html><meta charset=utf-8><title>Alerts against truth</title>",
             "<style>body{font:14px sans-serif;max-width:960px;margin:1em auto}"
             "td,th{padding:2px 8px;text-align:right}td:first-child{text-align:left}"
             ".demo{background:#c00;color:#fff;padding:6px;font-weight:bold}"
             "pre{background:#f4f4f4;padding:8px}</style>",
             "<h1>Alerts against truth</h1>"]
    if results["demo"]:
        parts.append(f"<p class=demo>{html.escape(DEMO_LINE)}</p>")
    parts.append(f"<p>{html.escape(results['inputs'])}</p>")
    parts.append(f"<h2>The configured rule</h2><p>{html.escape(results['rule']['text'])}</p>")
    parts.append(_lines(summary_lines(results["configured"], horizon)))
    parts.append("<h2>Mice (configured rule)</h2>")
    parts += [f"<p><img src='{path.relative_to(out)}' alt='{html.escape(mouse)}'></p>"
              for mouse, path in timelines.items()]
    parts.append(_mouse_table(outcomes, truths, horizon))
    parts.append("<h2>A rule chosen out of sample</h2>")
    if curve is not None:
        parts.append(f"<img src='{curve.relative_to(out)}' alt='sweep curve'>")
    chosen = results["chosen"]
    if chosen is None:
        parts.append(f"<p>{html.escape(results['chosen_note'])}</p>")
    else:
        parts.append(f"<p>{html.escape(chosen['text'])}</p>")
        for key, name in (("choice", "on the mice it was chosen on"),
                          ("held_out", "on the held-out mice (the figures to quote)")):
            parts.append(f"<h3>{name}</h3>" + _lines(summary_lines(chosen[key], horizon)))
        parts.append(f"<pre>{html.escape(rule_yaml)}</pre>")
    return "\n".join(parts)


def _lines(lines: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>"


def _mouse_table(outcomes: list[Outcome], truths: dict[str, MouseTruth],
                 horizon_s: float) -> str:
    head = ("mouse", "condition", "onset from", "caught", "delay", "alerts raised",
            "before onset", "under alert", "no face", "camera down")
    rows = []
    for o in outcomes:
        t = truths[o.mouse]
        caught = ("yes" if o.caught(horizon_s) else "no") if o.pain and o.judged else (
            "not seen after onset" if o.pain else "")
        cells = (o.mouse, t.condition, t.onset_from or ("first record" if o.pain else ""),
                 caught, duration(o.delay_s) if o.pain else "", str(o.raises),
                 str(o.before_onset) if o.pain else "", duration(o.alert_s),
                 _pct(o.unseen_s, o.observed_s), _pct(o.down_s, o.observed_s))
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return ("<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows)
            + "</table>")


def _pct(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole > 0 else "n/a"
