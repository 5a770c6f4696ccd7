"""Session report from score CSVs: per mouse, the total and unit levels over time with their
uncertainty, event markers, alert spans and how often the face could be scored at all.

Reads the logger's CSVs (several files of one session are joined; a folder or a glob pattern
names the files of a rotating logger, read as one series), plus `<name>.markers.csv`
(`wall_time,mouse,text`; mouse `*` = every mouse) and `<name>.alerts.csv`
(`wall_time,mouse,rule,event,...`) beside them where present. Writes one PNG per mouse,
`summary.json` and `index.html`. matplotlib is only needed for drawing, so reading and
summarising work on the monitor's own dependencies.

Under each mouse's plot, every alert span gets a row of thumbnails: the evidence its raised
event named (face crops; for no_face the whole frame), else crops of the rows scored inside it
(files older than evidence have neither: the span is listed without images). The images are
linked where they are, relative to the page, never copied. The acknowledgements a monitor
marked (kind `acknowledged`: who saw the alert, and their note) are listed under the span they
acknowledged.
"""

from __future__ import annotations

import csv
import glob
import html
import json
import math
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from monitor.schema import (
    ALERT_COLUMNS,
    CSV_COLUMNS,
    MARKER_HEADERS,
    SCORE_HEADERS,
    STATUSES,
    Marker,
    csv_header,
    is_side_file,
    side_file,
)
from monitor.units import LEVELS, MAX_TOTAL, UNITS

if TYPE_CHECKING:
    from matplotlib.axes import Axes

ALL_MICE = "*"
ROLLING = 10  # samples in the scoreable-fraction window
ALERT_COLUMNS_READ = csv_header(ALERT_COLUMNS)[:4]  # wall_time, mouse, rule, event
MAX_THUMBNAILS = 8  # crops shown for a span whose alert named no evidence
SECONDS_RULES = ("no_face", "camera_down")  # rules whose value is seconds, not an MGS value
_NUMBERS = ("total", "expected_total", *UNITS,
            *(f"p_{unit}_{level}" for unit in UNITS for level in LEVELS))
_INDEX = {name: CSV_COLUMNS.index(name) for name in
          ("wall_time", "mouse", "camera", "status", "alert", "model_kind", *_NUMBERS)}
_CROP = CSV_COLUMNS.index("crop")  # schema 3 on; older rows end before it


class ReportError(ValueError):
    """An input that cannot be reported on; the message is one line naming the file."""


class AlertSpan(NamedTuple):
    """One alert of one rule, raised to cleared (or to the mouse's last record)."""

    start: float
    end: float
    rule: str
    peak: float = math.nan  # highest value the alerts log gave it; NaN without one
    evidence: tuple[Path, ...] = ()  # the files its raised event named, as readable from here


@dataclass
class MouseSeries:
    """One mouse's records in time order; numbers are NaN where the sample was not scored."""

    mouse: str
    camera: str  # of the latest record
    time: np.ndarray  # wall_time, unix seconds
    status: list[str]
    total: np.ndarray
    expected_total: np.ndarray
    levels: np.ndarray  # [n, 5]
    band_low: np.ndarray  # expected_total - 1 SD, clipped to 0..10
    band_high: np.ndarray
    crops: list[Path | None]  # each record's face crop, None where none was kept
    markers: list[tuple[float, str]] = field(default_factory=list)
    acknowledged: list[tuple[float, str]] = field(default_factory=list)  # markers of that kind
    alerts: list[AlertSpan] = field(default_factory=list)
    demo: bool = False  # any of its records came from DEMO models (trained on synthetic faces)


class _Row(NamedTuple):
    wall_time: float
    mouse: str
    camera: str
    status: str
    alert: str
    model_kind: str
    numbers: list[float]  # _NUMBERS
    crop: Path | None


class _Event(NamedTuple):
    wall_time: float
    mouse: str
    rule: str
    event: str
    peak: float
    evidence: tuple[Path, ...]


def read_series(csv_paths: list[Path]) -> dict[str, MouseSeries]:
    """Every mouse in the CSVs (joined, each mouse sorted by wall_time), with its markers and
    alert spans. Side files named too (`scores-*.csv` matches them) are read beside their score
    CSV, not as one."""
    csv_paths = score_csvs(csv_paths)
    by_mouse: dict[str, list[_Row]] = {}
    for path in csv_paths:
        for row in _read_scores(path):
            by_mouse.setdefault(row.mouse, []).append(row)
    if not by_mouse:
        raise ReportError(f"{describe_files([str(p) for p in csv_paths])}: no records")
    series = {mouse: _series(mouse, rows) for mouse, rows in sorted(by_mouse.items())}
    markers = [m for path in csv_paths for m in read_markers(side_file(path, "markers"))]
    for item in series.values():
        item.markers = sorted((m.wall_time, m.text) for m in markers
                              if m.mouse in (item.mouse, ALL_MICE))
        item.acknowledged = sorted((m.wall_time, m.text) for m in markers
                                   if m.mouse == item.mouse and m.kind == "acknowledged")
    alert_files = [side_file(p, "alerts") for p in csv_paths
                   if side_file(p, "alerts").is_file()]
    if alert_files:  # the alerts log is the record; the alert column is the fallback
        events = sorted((e for f in alert_files for e in _read_alerts(f)),
                        key=lambda e: e.wall_time)
        for item in series.values():
            item.alerts = _event_spans(events, item.mouse, float(item.time[-1]))
    return series


def total_sd(probs: np.ndarray) -> np.ndarray:
    """SD of the total from per-unit probabilities [..., units, levels], units independent:
    how far the expected total could be off when the model is unsure."""
    values = np.asarray(LEVELS, dtype=float)
    mean = (probs * values).sum(axis=-1, keepdims=True)
    variance = (probs * (values - mean) ** 2).sum(axis=-1)
    return np.sqrt(variance.sum(axis=-1))


def rolling_scoreable(status: list[str], window: int = ROLLING) -> np.ndarray:
    """Fraction of the last `window` samples (fewer at the start) that were scored, so periods
    of hidden faces stand out."""
    csum = np.concatenate([[0.0], np.cumsum([s == "scored" for s in status])])
    end = np.arange(1, len(status) + 1)
    start = np.maximum(end - window, 0)
    return (csum[end] - csum[start]) / (end - start)


def summarize(series: MouseSeries) -> dict[str, Any]:
    """Counts, scoreable fraction, total statistics and alert time; JSON-safe (None, not NaN)."""
    scored = ~np.isnan(series.total)
    not_scored = {status: 0 for status in STATUSES if status != "scored"}
    for status in series.status:
        if status != "scored":
            not_scored[status] = not_scored.get(status, 0) + 1
    totals = series.total[scored]
    return {
        "mouse": series.mouse,
        "camera": series.camera,
        "samples": len(series.status),
        "scored": int(scored.sum()),
        "not_scored": not_scored,
        "scoreable_fraction": float(scored.mean()),
        "mean_total": float(totals.mean()) if totals.size else None,
        "max_total": float(totals.max()) if totals.size else None,
        "first_time": float(series.time[0]),
        "last_time": float(series.time[-1]),
        "alerts": len(series.alerts),
        "alert_seconds": _covered(series.alerts),
        "acknowledgements": len(series.acknowledged),
        "demo": series.demo,
    }


def score_csvs(paths: list[Path]) -> list[Path]:
    """The score CSVs `paths` name: a file as it is, a folder's or a glob pattern's (quoted,
    so the shell leaves it) in name order, which is time order for the files of a rotating
    logger. Side files are read beside their score CSV, not as scores."""
    found = [p for path in paths for p in _named_files(path)]
    scores = list(dict.fromkeys(p for p in found if not is_side_file(p)))
    if not scores:
        raise ReportError("no score CSVs given")
    return scores


def _named_files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.glob("*.csv") if p.is_file() and not is_side_file(p))
        if not found:
            raise ReportError(f"{path}: no score CSVs in this folder")
        return found
    if path.exists() or not any(c in str(path) for c in "*?["):
        return [path]  # a missing file is named when it is read
    found = sorted(Path(p) for p in glob.glob(str(path))
                   if Path(p).is_file() and not is_side_file(Path(p)))
    if not found:
        raise ReportError(f"{path}: matches no score CSVs")
    return found


def describe_files(names: list[str]) -> str:
    """Files for a message or the page: all of a few, the first and last of many."""
    if len(names) <= 3:
        return ", ".join(names)
    return f"{names[0]} ... {names[-1]} ({len(names)} files)"


def write_report(csv_paths: list[Path], out: Path) -> Path:
    """`<mouse>.png` per mouse, `summary.json` and `index.html` into `out`; returns the HTML."""
    _require_matplotlib()
    csv_paths = score_csvs(csv_paths)
    series = read_series(csv_paths)
    out.mkdir(parents=True, exist_ok=True)
    summaries = {mouse: summarize(item) for mouse, item in series.items()}
    images = {mouse: _plot(item, out) for mouse, item in series.items()}
    (out / "summary.json").write_text(json.dumps(summaries, indent=1, allow_nan=False))
    page = out / "index.html"
    page.write_text(_html(csv_paths, summaries, images, series, out), encoding="utf-8")
    return page


# Reading


def _rows(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise ReportError(f"{path}: no such file")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ReportError(f"{path}: cannot read ({exc})") from exc


def score_rows(path: Path) -> list[list[str]]:
    """The data rows of a score CSV of any schema. Older schemas are the newest one's first
    columns, so a column sits at the same position in all of them (`CSV_COLUMNS.index`). A live
    file can end in a half-written row: rows of another length are skipped."""
    rows = _rows(path)
    if not rows or tuple(rows[0]) not in SCORE_HEADERS.values():
        raise ReportError(f"{path}: not an mgs-monitor score CSV (header differs)")
    return [row for row in rows[1:] if len(row) == len(rows[0])]


def _read_scores(path: Path) -> list[_Row]:
    rows = score_rows(path)  # its own errors (no such file, ...) are not a bad number
    try:
        return [_parse(row, path.parent) for row in rows]
    except ValueError as exc:
        raise ReportError(f"{path}: bad number ({exc})") from exc


def _parse(row: list[str], folder: Path) -> _Row:
    i = _INDEX
    numbers = [float(row[i[name]]) if row[i[name]] else math.nan for name in _NUMBERS]
    crop = row[_CROP] if len(row) > _CROP else ""
    return _Row(float(row[i["wall_time"]]), row[i["mouse"]], row[i["camera"]],
                row[i["status"]], row[i["alert"]], row[i["model_kind"]], numbers,
                folder / crop if crop else None)


def _series(mouse: str, rows: list[_Row]) -> MouseSeries:
    rows = sorted(rows, key=lambda r: r.wall_time)
    time = np.array([r.wall_time for r in rows])
    status = [r.status for r in rows]
    numbers = np.array([r.numbers for r in rows], dtype=float)
    numbers[np.array(status) != "scored"] = np.nan
    expected = numbers[:, 1]
    sd = total_sd(numbers[:, 2 + len(UNITS):].reshape(len(rows), len(UNITS), len(LEVELS)))
    return MouseSeries(
        mouse=mouse, camera=rows[-1].camera, time=time, status=status, total=numbers[:, 0],
        expected_total=expected, levels=numbers[:, 2:2 + len(UNITS)],
        band_low=np.clip(expected - sd, 0, MAX_TOTAL),
        band_high=np.clip(expected + sd, 0, MAX_TOTAL), crops=[r.crop for r in rows],
        alerts=_column_spans(time, np.array(["pain" in r.alert.split(",") for r in rows])),
        demo=any(r.model_kind == "demo" for r in rows),
    )


def _column_spans(time: np.ndarray, active: np.ndarray) -> list[AlertSpan]:
    """Runs of the score CSV's `alert` column: until the first record after the run."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
    last = len(time) - 1
    return [AlertSpan(float(time[a]), float(time[min(b, last)]), "pain")
            for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _table(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a small side CSV, with its needed columns checked."""
    rows = _rows(path)
    header = rows[0] if rows else []
    missing = [c for c in columns if c not in header]
    if missing:
        raise ReportError(f"{path}: missing columns {', '.join(missing)}")
    return [(n, dict(zip(header, row, strict=True)))
            for n, row in enumerate(rows[1:], start=2) if len(row) == len(header)]


def _time(path: Path, line: int, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ReportError(f"{path}: line {line}: wall_time {text!r} is not a number") from None


def read_markers(path: Path) -> list[Marker]:
    """The markers of a `<scores>.markers.csv` (none when there is no such file); files from
    before marker kinds give kind `note`."""
    if not path.is_file():
        return []
    return [Marker(_time(path, n, row["wall_time"]), row["mouse"], row["text"],
                   row.get("kind") or "note")
            for n, row in _table(path, MARKER_HEADERS[1])]


def _read_alerts(path: Path) -> list[_Event]:
    """Events with their peak (older files: the value; neither: NaN) and evidence, resolved
    against the score CSV's folder (older files name none)."""
    return [_Event(_time(path, n, row["wall_time"]), row["mouse"], row["rule"], row["event"],
                   _optional_number(row.get("peak") or row.get("value", "")),
                   tuple(path.parent / p for p in row.get("evidence", "").split(";") if p))
            for n, row in _table(path, ALERT_COLUMNS_READ)]


def _optional_number(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # only decorates a caption: not worth refusing the file over
        return math.nan


def _event_spans(events: list[_Event], mouse: str, last: float) -> list[AlertSpan]:
    """raised -> next cleared per rule; `active` opens a span too, as a file can begin mid-alert;
    an open span runs to the mouse's last record. The peak is the highest of its events."""
    opened: dict[str, AlertSpan] = {}
    spans = []
    for e in events:
        if e.mouse != mouse:
            continue
        span = opened.get(e.rule)
        if span is None:
            if e.event in ("raised", "active"):
                opened[e.rule] = AlertSpan(e.wall_time, e.wall_time, e.rule, e.peak,
                                           e.evidence if e.event == "raised" else ())
            continue
        span = span._replace(peak=float(np.fmax(span.peak, e.peak)))  # fmax: NaN never wins
        opened[e.rule] = span
        if e.event == "cleared":
            spans.append(opened.pop(e.rule)._replace(end=e.wall_time))
    spans += [span._replace(end=max(span.start, last)) for span in opened.values()]
    return sorted(spans, key=lambda s: s[:3])


def _covered(spans: list[AlertSpan]) -> float:
    """Seconds under any alert: overlapping rules count once."""
    total, reach = 0.0, -math.inf
    for start, end, *_ in sorted(spans, key=lambda s: s.start):
        total += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return total


# Drawing


def _require_matplotlib() -> None:
    try:
        import matplotlib
    except ImportError as exc:
        raise ReportError("matplotlib is needed for reports: pip install matplotlib") from exc
    matplotlib.use("Agg")


def _png_name(mouse: str) -> str:
    return re.sub(r"[^\w.-]", "_", mouse) + ".png"


def _plain(text: str) -> str:
    """Text shown literally: `$` would start matplotlib mathtext."""
    return text.replace("$", r"\$")


def _plot(series: MouseSeries, out: Path) -> str:
    """Draw one mouse's three panels into `out`; returns the file name."""
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    x = mdates.date2num(np.round(series.time * 1e6).astype(np.int64).astype("datetime64[us]"))
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(11, 7.5),
                             gridspec_kw={"height_ratios": [3, 2.2, 0.8]})
    try:
        _plot_total(axes[0], x, series)
        _plot_levels(axes[1], x, series)
        _plot_scoreable(axes[2], x, series)
        for ax in axes:
            _plot_markers(ax, series, text=ax is axes[0])
        _time_axis(axes)
        demo = " - DEMO MODELS, not a real pain model" if series.demo else ""
        fig.suptitle(_plain(f"{series.mouse} (camera {series.camera}){demo}"))
        fig.tight_layout()
        name = _png_name(series.mouse)
        fig.savefig(out / name, dpi=90)
    finally:
        plt.close(fig)
    return name


def _bridged(x: np.ndarray, *columns: np.ndarray) -> list[np.ndarray]:
    """Scored samples only, so a face hidden every other sample still gives a line; broken
    where more than ROLLING samples in a row were not scored."""
    keep = np.flatnonzero(~np.isnan(columns[0]))
    breaks = np.flatnonzero(np.diff(keep) > ROLLING) + 1
    return [np.insert(values[keep], breaks, np.nan) for values in (x, *columns)]


def _plot_total(ax: Axes, x: np.ndarray, series: MouseSeries) -> None:
    xs, expected, low, high = _bridged(x, series.expected_total, series.band_low,
                                       series.band_high)
    ax.fill_between(xs, low, high, color="tab:blue", alpha=0.2, lw=0, label="±1 SD")
    ax.plot(xs, expected, color="tab:blue", lw=1, label="expected total")
    ax.plot(x, series.total, ".", color="black", ms=3, label="total (scored)")
    for i, span in enumerate(series.alerts):
        ax.axvspan(_date(span.start), _date(span.end), color="red", alpha=0.15, lw=0,
                   label="alert" if i == 0 else None)
    ax.set_ylim(-0.3, MAX_TOTAL + 0.3)
    ax.set_ylabel("MGS total")
    ax.legend(loc="upper left", fontsize=7)


def _plot_levels(ax: Axes, x: np.ndarray, series: MouseSeries) -> None:
    """Units stacked top to bottom, each on its own 0..2 band."""
    bases = [3 * (len(UNITS) - 1 - i) for i in range(len(UNITS))]
    for i, base in enumerate(bases):
        ax.step(x, base + series.levels[:, i], where="post", lw=1)
        for level in (0, 2):
            ax.axhline(base + level, color="0.85", lw=0.5)
    ax.set_yticks([b + 1 for b in bases], [u.split("_")[0] for u in UNITS], fontsize=8)
    ax.set_ylim(-0.5, 3 * len(UNITS) - 0.5)
    ax.set_ylabel("levels 0-2")


def _plot_scoreable(ax: Axes, x: np.ndarray, series: MouseSeries) -> None:
    fraction = rolling_scoreable(series.status)
    ax.fill_between(x, 0, fraction, step="post", color="tab:green", alpha=0.4, lw=0)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"scored\n(last {ROLLING})", fontsize=8)


def _plot_markers(ax: Axes, series: MouseSeries, text: bool) -> None:
    for time, label in series.markers:
        ax.axvline(_date(time), color="0.3", ls="--", lw=0.8)
        if text:
            ax.text(_date(time), 0.98, _plain(label), transform=ax.get_xaxis_transform(),
                    rotation=90, ha="right", va="top", fontsize=7)


def _date(time: float) -> float:
    import matplotlib.dates as mdates

    return float(mdates.date2num(np.datetime64(round(time * 1e6), "us")))


def _time_axis(axes: np.ndarray) -> None:
    """Local clock time on every panel (shared), labelled on the bottom one."""
    import matplotlib.dates as mdates
    from dateutil.tz import tzlocal

    for ax in axes:
        locator = mdates.AutoDateLocator(tz=tzlocal())
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=tzlocal()))
    axes[-1].set_xlabel("local time")


# The page

STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
         "td,th{border:1px solid #bbb;padding:3px 6px;font-size:13px}th{background:#eee}"
         "img{max-width:100%;border:1px solid #ddd}"
         ".span{margin:.8em 0}.span p{margin:.2em 0;font-size:13px}.ack{color:#850}"
         ".thumbs img{height:128px;width:auto;margin:0 3px 3px 0;vertical-align:top}"
         ".missing{display:inline-block;height:128px;width:128px;margin:0 3px 3px 0;"
         "vertical-align:top;overflow-wrap:anywhere;font-size:11px;color:#a00;"
         "border:1px dashed #a00;padding:4px;box-sizing:border-box}"
         ".demo{background:#c00;color:#fff;font-weight:bold;padding:8px}")
CAPTION = ("Top: total of each scored sample (points), expected total with ±1 SD band, event "
           "markers (dashed), alert spans (red). Middle: the five unit levels. Bottom: fraction "
           f"of the last {ROLLING} samples that were scored (low = face hidden or unusable).")


def _clock(time: float) -> str:
    return datetime.fromtimestamp(time).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _summary_table(summaries: dict[str, dict[str, Any]]) -> str:
    statuses = list(dict.fromkeys(s for summary in summaries.values()
                                  for s in summary["not_scored"]))
    header = ["mouse", "camera", "samples", "scored", *statuses, "scoreable", "mean total",
              "max total", "alerts", "alert time", "first", "last"]
    rows = [[s["mouse"], s["camera"], str(s["samples"]), str(s["scored"]),
             *(str(s["not_scored"].get(status, 0)) for status in statuses),
             f"{100 * s['scoreable_fraction']:.1f}%", _number(s["mean_total"]),
             _number(s["max_total"]), str(s["alerts"]), _duration(s["alert_seconds"]),
             _clock(s["first_time"]), _clock(s["last_time"])] for s in summaries.values()]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _demo_banner(mice: list[str], total: int) -> str:
    which = "every mouse" if len(mice) == total else f"{len(mice)} of {total} mice"
    return (f"DEMO MODELS — not a real pain model: the scores of {which} come from models "
            "trained on synthetic cartoon faces.")


def _figure(mouse: str, camera: str, image: str) -> str:
    src = html.escape(urllib.parse.quote(image), quote=True)
    return (f"<h2>{html.escape(mouse)} <small>camera {html.escape(camera)}</small></h2>"
            f'<img src="{src}" alt="{html.escape(mouse, quote=True)}">')


def _span_images(series: MouseSeries, span: AlertSpan) -> tuple[list[Path], str]:
    """The images of one alert span and what they are: the files its raised event named, else
    up to MAX_THUMBNAILS crops scored inside it, evenly spread."""
    if span.evidence:
        return list(span.evidence), "the evidence the alert named"
    inside = [crop for time, crop in zip(series.time, series.crops, strict=True)
              if crop is not None and span.start <= time <= span.end]
    if len(inside) <= MAX_THUMBNAILS:
        return inside, "crops scored in the span" if inside else "no images kept"
    picks = np.linspace(0, len(inside) - 1, MAX_THUMBNAILS).round().astype(int)
    return [inside[i] for i in picks], f"{MAX_THUMBNAILS} of {len(inside)} crops scored in the span"


def _thumbnail(path: Path, folder: Path) -> str:
    """A linked image, relative to the page in `folder`; text where the file is gone (removed
    by the evidence budget, or moved), not a broken image."""
    rel = Path(os.path.relpath(path, folder)).as_posix()
    if not path.is_file():
        return f"<span class='missing'>missing: {html.escape(rel)}</span>"
    src = html.escape(urllib.parse.quote(rel), quote=True)
    return (f'<a href="{src}"><img src="{src}" alt="{html.escape(path.name, quote=True)}" '
            f'loading="lazy"></a>')


def _span_caption(span: AlertSpan, what: str) -> str:
    unit = " s" if span.rule in SECONDS_RULES else ""
    peak = "" if math.isnan(span.peak) else f", peak {span.peak:.2f}{unit}"
    return f"{span.rule} raised {_clock(span.start)}{peak} — {what}"


def _alert_rows(series: MouseSeries, folder: Path) -> str:
    """Per alert span a caption and a row of thumbnails, so a person sees the faces behind it."""
    rows = []
    for span in series.alerts:
        files, what = _span_images(series, span)
        thumbs = "".join(_thumbnail(path, folder) for path in files)
        seen = "".join(f"<p class='ack'>{html.escape(f'{_clock(t)} {text}')}</p>"
                       for t, text in _acknowledging(series, span))
        rows.append(f"<div class='span'><p>{html.escape(_span_caption(span, what))}</p>{seen}"
                    f"<div class='thumbs'>{thumbs}</div></div>")
    return f"<h3>Alerts</h3>{''.join(rows)}" if rows else ""


def _acknowledging(series: MouseSeries, span: AlertSpan) -> list[tuple[float, str]]:
    """The acknowledgements of a span: of its rule (their text begins with it), made after it
    was raised and before the next alert of that rule."""
    later = [s.start for s in series.alerts if s.rule == span.rule and s.start > span.start]
    until = min(later, default=math.inf)
    return [(t, text) for t, text in series.acknowledged
            if text.startswith(f"{span.rule} alert") and span.start <= t < until]


def _html(csv_paths: list[Path], summaries: dict[str, dict[str, Any]],
          images: dict[str, str], series: dict[str, MouseSeries], folder: Path) -> str:
    sources = describe_files([path.name for path in csv_paths])
    demo = [s["mouse"] for s in summaries.values() if s["demo"]]
    parts = [f"<h1>MGS monitor report</h1><p>{len(summaries)} mice from "
             f"{html.escape(sources)}; times are local.</p>",
             *([f"<p class='demo'>{html.escape(_demo_banner(demo, len(summaries)))}</p>"]
               if demo else []),
             _summary_table(summaries), f"<p>{html.escape(CAPTION)}</p>",
             *(_figure(mouse, summaries[mouse]["camera"], image)
               + _alert_rows(series[mouse], folder) for mouse, image in images.items())]
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>MGS monitor report"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
