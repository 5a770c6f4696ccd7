"""The live terminal dashboard: plain state built from messages, and a pure render of it.

`DashboardState.apply` stores what the messages said (records, camera and status reports, alert
events and their acknowledgements), whichever monitor sent them and however they travelled;
`render(state, now)` turns it into Rich renderables without reading clocks or globals, so the
same state always draws the same screen and tests can check the text of a fixed-width console.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from monitor.schema import (
    Acknowledgement,
    AlertEvent,
    CameraReport,
    Message,
    MouseOrigins,
    ScoreRecord,
    SequenceTracker,
    StatusReport,
    alert_key,
)
from monitor.units import MAX_TOTAL, UNITS

BLOCKS = "▁▂▃▄▅▆▇█"
NEVER = "—"
DEMO_BANNER = " DEMO MODELS — not a real pain model: scores are synthetic "
BELOW_FLOOR = "[BELOW THE FLOOR]"
ERROR_WIDTH = 40

# Short headers in the order of monitor.units.UNITS: orbital_tightening -> OT, nose_bulge -> NB.
UNIT_HEADERS: tuple[str, ...] = tuple("".join(w[0] for w in u.split("_")).upper() for u in UNITS)

STATUS_STYLES = {
    "scored": "green",
    "no_face": "yellow",
    "low_quality": "yellow",
    "camera_down": "bold red",
}
CAMERA_STYLES = {
    "ok": "green",
    "down": "bold red",
    "connecting": "yellow",
    "ended": "yellow",
    "stopped": "dim",
}
LEVEL_STYLES = {0: "green", 1: "yellow", 2: "red"}


@dataclass
class MouseView:
    """What the dashboard remembers of one mouse: the latest record and the last scored one.

    They differ when the camera lost the face: the last score stays on screen, marked stale,
    so a gap in scoring never looks like a pain-free mouse.
    """

    latest: ScoreRecord
    scored: ScoreRecord | None
    totals: deque[float]

    @property
    def stale(self) -> bool:
        return self.scored is not None and self.latest is not self.scored


@dataclass
class DashboardState:
    """Plain data a subscriber updates from messages; no rendering happens here."""

    history: int = 30
    title: str = "mgs-monitor"
    demo: bool = False
    dropped: dict[str, int] = field(default_factory=dict)
    records_total: int = 0
    gaps: int = 0
    malformed: int = 0
    csv_path: str = ""
    alert_threshold: float | None = None
    notice: str = ""
    model_figures: str = ""  # what the models are known by (mgs-export)
    below_floor: str = ""  # why one is below its floor: the figures show in red
    mice: dict[str, MouseView] = field(default_factory=dict, init=False)
    alerts: dict[tuple[str, str], AlertEvent] = field(default_factory=dict, init=False)
    acknowledged: dict[str, Acknowledgement] = field(default_factory=dict, init=False)  # by key
    cameras: dict[str, CameraReport] = field(default_factory=dict, init=False)
    statuses: dict[str, StatusReport] = field(default_factory=dict, init=False)
    sequence: SequenceTracker = field(default_factory=SequenceTracker, init=False)
    origins: MouseOrigins = field(default_factory=MouseOrigins, init=False)
    mixed: list[str] = field(default_factory=list, init=False)  # mice two monitors share

    def __post_init__(self) -> None:
        if self.history < 1:
            raise ValueError(f"history must be at least 1, not {self.history}")

    def apply(self, message: Message) -> None:
        """Take in one message of any type."""
        if isinstance(message, ScoreRecord):
            self.add_score(message)
            self.gaps += self.sequence.check(message) is not None
            mixed = self.origins.check(message)
            if mixed:
                self.mixed.append(mixed)
            self.demo = self.demo or message.model_kind == "demo"
        elif isinstance(message, CameraReport):
            self.add_camera(message)
        elif isinstance(message, AlertEvent):
            self.add_alert(message)
        elif isinstance(message, StatusReport):
            self.add_status(message)
        elif isinstance(message, Acknowledgement):
            self.acknowledged[message.alert] = message

    def add_status(self, report: StatusReport) -> None:
        """The header follows the monitors' own reports: with one monitor its title, CSV and
        threshold; with several (through a proxy) their sums and what they agree on."""
        self.statuses[report.publisher] = report
        reports = list(self.statuses.values())
        self.records_total = sum(r.records for r in reports)
        self.demo = self.demo or report.model_kind == "demo"
        self.dropped = {camera: count for r in reports for camera, count in r.queue_dropped.items()}
        self._take_figures(reports)
        thresholds = {r.alert_threshold for r in reports}
        self.alert_threshold = thresholds.pop() if len(thresholds) == 1 else None
        if len(reports) == 1:
            self.title, self.csv_path = report.title, report.csv_path
        else:
            self.title = f"mgs-monitor — {len(reports)} monitors"
            self.csv_path = f"{len(reports)} files"
        noticed = [r for r in reports if r.notice]
        if noticed:
            latest = max(noticed, key=lambda r: r.notice_time or 0.0)
            self.notice = latest.notice if len(reports) == 1 else (
                f"{latest.publisher}: {latest.notice}")

    def _take_figures(self, reports: list[StatusReport]) -> None:
        """The models' figures; with several monitors on other models, each one's, named."""
        figures = {r.model_figures for r in reports if r.model_figures}
        self.model_figures = figures.pop() if len(figures) == 1 else "; ".join(
            f"{r.publisher}: {r.model_figures}" for r in reports if r.model_figures)
        self.below_floor = "; ".join(dict.fromkeys(
            r.model_below_floor for r in reports if r.model_below_floor))

    def add_score(self, record: ScoreRecord) -> None:
        """Keep the latest record per mouse; only scored records move the total and sparkline."""
        is_scored = record.status == "scored" and record.total is not None
        view = self.mice.get(record.mouse)
        if view is None:
            view = MouseView(latest=record, scored=None, totals=deque(maxlen=self.history))
            self.mice[record.mouse] = view
        view.latest = record
        if is_scored:
            view.scored = record
            view.totals.append(float(record.total or 0))

    def add_camera(self, report: CameraReport) -> None:
        """Keep the latest health report per camera."""
        self.cameras[report.camera] = report

    def add_alert(self, event: AlertEvent) -> None:
        """Active alerts by (mouse, rule): raised adds, active refreshes value/peak, cleared
        removes."""
        key = (event.mouse, event.rule)
        if event.event == "cleared":
            self.alerts.pop(key, None)
            self.acknowledged.pop(alert_key(event), None)  # a later raise is a new alert
            return
        raised = self.alerts.get(key)
        if raised is None or event.event == "raised":
            self.alerts[key] = event
        else:
            self.alerts[key] = raised.model_copy(update={
                "value": event.value, "peak": max(raised.peak, event.peak)})


def sparkline(values: Sequence[float], low: float = 0, high: float = MAX_TOTAL) -> str:
    """One block character per value, scaled from `low` (▁) to `high` (█); NaN is a blank."""
    return "".join(_block(v, low, high) for v in values)


def _block(value: float, low: float, high: float) -> str:
    if math.isnan(value):
        return " "
    if high <= low:
        return BLOCKS[0]
    fraction = min(max((value - low) / (high - low), 0.0), 1.0)
    return BLOCKS[round(fraction * (len(BLOCKS) - 1))]


def _one_decimal(value: float | None) -> str:
    return NEVER if value is None else f"{value:.1f}"


def format_age(seconds: float | None) -> str:
    """Compact age for a narrow column: 12s, 3m, 2h, 4d; '—' when there is none to show."""
    if seconds is None or math.isnan(seconds):
        return NEVER
    seconds = max(seconds, 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def render(state: DashboardState, now: float) -> RenderableType:
    """The whole screen for `state` at wall-clock `now` (the clock of record.wall_time)."""
    parts: list[RenderableType] = [_header(state)]
    if state.model_figures or state.below_floor:
        parts.append(_figures_line(state))
    if state.demo:
        parts.append(Text(DEMO_BANNER, style="bold yellow on red"))
    if state.notice:
        parts.append(Text(state.notice, style="magenta"))
    parts.extend(health_lines(state))
    if state.alerts:
        parts.append(_alerts_table(state, now))
    if state.mice:
        parts.append(_mice_table(state, now))
    else:
        parts.append(Text("waiting for records…", style="dim italic"))
    if state.cameras or state.dropped:
        parts.append(_cameras_table(state))
    return Group(*parts)


def _header(state: DashboardState) -> Text:
    threshold = NEVER if state.alert_threshold is None else f"{state.alert_threshold:g}"
    header = Text(state.title, style="bold")
    if state.demo:
        header.append("  [DEMO]", style="bold red")
    if state.below_floor:
        header.append(f"  {BELOW_FLOOR}", style="bold red")
    header.append(
        f"   records {state.records_total}   gaps {state.gaps}   "
        f"alert ≥ {threshold}   csv {state.csv_path or NEVER}",
        style="cyan",
    )
    if state.malformed:
        header.append(f"   malformed messages {state.malformed}", style="bold red")
    return header


def _figures_line(state: DashboardState) -> Text:
    """The models' figures under the header: red with the reason when one is below its floor."""
    if state.below_floor:
        return Text(f"models: {state.model_figures or 'no figures'} — below the floor "
                    f"(exported with --accept-weak): {state.below_floor}", style="bold red")
    return Text(f"models: {state.model_figures}", style="dim")


def health_lines(state: DashboardState) -> list[Text]:
    """What a monitor could not do, per monitor: hook runs that failed, records held back;
    and mice that two monitors both send, whose rows on this screen mix them."""
    lines = [Text(line, style="bold red") for line in state.mixed]
    for publisher, report in sorted(state.statuses.items()):
        who = f"{publisher}: " if len(state.statuses) > 1 else ""
        hooks = report.hooks
        if hooks.failed or hooks.timed_out or hooks.dropped:
            lines.append(Text(f"{who}alert hook runs: {hooks.ok} ok, {hooks.failed} failed, "
                              f"{hooks.timed_out} timed out, {hooks.dropped} dropped — "
                              f"{_truncate(hooks.last_error, 80)}", style="bold red"))
        if report.csv_error or report.csv_backlog or report.csv_dropped:
            lines.append(Text(f"{who}CSV: {report.csv_backlog} records held in memory, "
                              f"{report.csv_dropped} lost — {report.csv_error or 'writing'}",
                              style="bold red"))
        if report.evidence_folder:
            lines.append(_evidence_line(who, report))
    return lines


def _evidence_line(who: str, report: StatusReport) -> Text:
    """What evidence holds; red while it is not being kept (disk or budget full)."""
    line = (f"{who}evidence: {report.evidence_files} files, {report.evidence_bytes / 1e9:.2f} GB "
            f"in {report.evidence_folder}")
    if report.evidence_dropped:
        line += f", {report.evidence_dropped} not kept"
    if report.evidence_error:
        return Text(f"{line} — {report.evidence_error}", style="bold red")
    return Text(line, style="dim")


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort cam2 before cam10."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", text) if p)


def _mouse_key(view: MouseView) -> tuple[object, ...]:
    record = view.latest
    return (natural_key(record.camera), record.cubicle, natural_key(record.mouse))


def _mice_table(state: DashboardState, now: float) -> Table:
    table = Table(title="mice", title_justify="left", expand=False)
    table.add_column("mouse", no_wrap=True, style="bold")
    table.add_column("cam/cub", no_wrap=True)
    table.add_column("total", no_wrap=True, overflow="ellipsis", max_width=48)
    for header in UNIT_HEADERS:
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("trend", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("age", justify="right", no_wrap=True)
    for view in sorted(state.mice.values(), key=_mouse_key):
        table.add_row(*_mouse_row(view, state, now))
    return table


def _mouse_row(view: MouseView, state: DashboardState, now: float) -> list[Text]:
    latest, scored = view.latest, view.scored
    age = None if scored is None else now - scored.wall_time
    return [
        Text(latest.mouse),
        Text(f"{latest.camera}/{latest.cubicle}"),
        _total_cell(view, state.alert_threshold),
        *_level_cells(scored, dim=view.stale),
        Text(sparkline(list(view.totals)), style="cyan"),
        Text(latest.status, style=STATUS_STYLES.get(latest.status, "")),
        Text(format_age(age), style="dim" if view.stale else ""),
    ]


def _total_cell(view: MouseView, threshold: float | None) -> Text:
    """Total of the last scored record: red at/above threshold, bold red with the alerts the
    latest record carries (a no_face alert shows even before any score)."""
    scored, alert = view.scored, view.latest.alert
    if scored is None or scored.total is None:
        return Text(alert or NEVER, style="bold red" if alert else "dim")
    if alert:
        cell = Text(f"{scored.total} {alert}", style="bold red")
    elif threshold is not None:
        cell = Text(str(scored.total), style="red" if scored.total >= threshold else "green")
    else:
        cell = Text(str(scored.total))
    if view.stale:
        cell.stylize("dim")
        cell.append(" stale", style="dim italic")
    return cell


def _level_cells(scored: ScoreRecord | None, dim: bool) -> list[Text]:
    levels: Sequence[int | None] = (
        scored.levels if scored is not None and scored.levels else [None] * len(UNITS)
    )
    cells = []
    for level in levels:
        if level is None:
            cells.append(Text("·", style="dim"))
            continue
        style = LEVEL_STYLES.get(level, "")
        cells.append(Text(str(level), style=f"{style} dim" if dim else style))
    return cells


def _alerts_table(state: DashboardState, now: float) -> Table:
    table = Table(title="alerts", title_justify="left", expand=False, style="red")
    for name in ("mouse", "alert", "since", "value", "peak", "threshold", "detail",
                 "acknowledged"):
        table.add_column(name, no_wrap=True)
    for (mouse, rule), event in sorted(state.alerts.items(),
                                       key=lambda kv: (natural_key(kv[0][0]), kv[0][1])):
        ack = state.acknowledged.get(alert_key(event))
        table.add_row(Text(mouse, style="bold"), Text(rule, style="yellow" if ack else "bold red"),
                      Text(format_age(now - event.wall_time)), Text(_one_decimal(event.value)),
                      Text(f"{event.peak:.1f}"), Text(f"{event.threshold:g}"),
                      Text(_truncate(event.detail, ERROR_WIDTH)), _acknowledged_cell(ack))
    return table


def _acknowledged_cell(ack: Acknowledgement | None) -> Text:
    """Who has seen the alert, and their note: a colleague need not come a second time."""
    if ack is None:
        return Text("")
    note = f": {ack.note}" if ack.note else ""
    return Text(_truncate(f"by {ack.who}{note}", ERROR_WIDTH), style="yellow")


def _cameras_table(state: DashboardState) -> Table:
    table = Table(title="cameras", title_justify="left", expand=False)
    table.add_column("camera", no_wrap=True, style="bold")
    table.add_column("state", no_wrap=True)
    for name in ("fps", "read", "dropped", "reconnects", "latency ms"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("last error", no_wrap=True, overflow="ellipsis")
    names = sorted(set(state.cameras) | set(state.dropped), key=natural_key)
    for name in names:
        table.add_row(*_camera_row(name, state.cameras.get(name), state.dropped.get(name, 0)))
    return table


def _camera_row(name: str, report: CameraReport | None, queue_dropped: int) -> list[Text]:
    """A camera's drops are the reader's own plus frames the pipeline's bounded queues shed."""
    if report is None:
        return [Text(name), Text(NEVER, style="dim"), Text(NEVER), Text(NEVER),
                Text(str(queue_dropped)), Text(NEVER), Text(NEVER), Text("")]
    latency = NEVER if report.latency_ms is None else f"{report.latency_ms:.0f}"
    return [
        Text(name),
        Text(report.state, style=CAMERA_STYLES.get(report.state, "")),
        Text(f"{report.fps:.1f}"),
        Text(str(report.frames_read)),
        Text(str(report.frames_dropped + queue_dropped)),
        Text(str(report.reconnects)),
        Text(latency),
        Text(_truncate(report.error, ERROR_WIDTH), style="red"),
    ]


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
