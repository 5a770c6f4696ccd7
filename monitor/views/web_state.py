"""What `mgs-monitor web` knows: built from the bus's messages by one thread (after the
week of records `--history` names, web_history.py), read by many.

The subscriber's thread is the only writer (`WebState.apply`); the page's request threads read
JSON snapshots made under the same lock and kept per version, so a hundred browsers cost one
snapshot per change. Memory is bounded whatever the monitors send: per mouse a week of its
totals and levels (each sample of the last hour, 5-minute means to a day, 30-minute means to a
week), the newest alerts, and crops within a byte budget, oldest dropped first.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import threading
import time
from array import array
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from monitor.schema import (
    Acknowledgement,
    AlertCrop,
    AlertEvent,
    CameraReport,
    Message,
    ScoreRecord,
    alert_key,
)
from monitor.units import UNITS
from monitor.views.dashboard import DashboardState, health_lines, natural_key
from monitor.views.web_history import PastMouse, PastSpan

HOUR, DAY, WEEK = 3600.0, 86400.0, 7 * 86400.0
RAW_MAX = 720  # samples of the last hour kept as they came (faster sampling folds sooner)
# (bucket width, kept for) past the last hour: 5-minute means to a day, 30-minute means to a
# week; about 300 points each, as many as a chart's width shows, ~80 kB a mouse at most
TIERS = ((300.0, DAY), (1800.0, WEEK))
SPARK = 60  # scored totals a tile's sparkline shows
MAX_ALERTS = 500  # alerts listed (newest); older ones go, with their crops
MAX_SPANS = 200  # alerts remembered per mouse for its page
CROP_BYTES = 64 << 20  # crops held in memory, all alerts together
MAX_CROP = 1 << 20  # one crop larger than this is not kept (crops are a few KB)
RECENT_CROPS = 64  # per mouse: the crop names of its latest records, to find a window's totals
ACKS_PER_MOUSE = 200

Point = tuple[float, float, tuple[float, ...]]  # wall time, total, unit levels


class Series:
    """One mouse's scored totals and levels over the last week, in bounded memory."""

    def __init__(self) -> None:
        self.raw: deque[Point] = deque()
        self.tiers: list[deque[array[float]]] = [deque() for _ in TIERS]  # start, n, sums

    def add(self, t: float, total: float, levels: tuple[float, ...]) -> None:
        self.raw.append((t, total, levels))
        while self.raw and (self.raw[0][0] < t - HOUR or len(self.raw) > RAW_MAX):
            self._fold(0, self.raw.popleft())
        for k, (_width, keep) in enumerate(TIERS):
            tier = self.tiers[k]
            while tier and tier[0][0] < t - keep:
                bucket = tier.popleft()
                if k + 1 < len(TIERS):
                    self._fold(k + 1, _mean(bucket, TIERS[k][0]), weight=bucket[1])

    def _fold(self, k: int, point: Point, weight: float = 1) -> None:
        t, total, levels = point
        start = math.floor(t / TIERS[k][0]) * TIERS[k][0]
        tier = self.tiers[k]
        if not tier or tier[-1][0] != start:
            tier.append(array("d", [start] + [0.0] * (2 + len(levels))))
        bucket = tier[-1]
        bucket[1] += weight
        bucket[2] += total * weight
        for k, level in enumerate(levels, start=3):
            bucket[k] += level * weight

    def points(self, since: float) -> list[Point]:
        """Oldest first: bucket means, then the samples of the last hour."""
        out = [_mean(b, TIERS[k][0]) for k in reversed(range(len(TIERS))) for b in self.tiers[k]]
        out.extend(self.raw)
        return [p for p in out if p[0] >= since]


def _mean(bucket: array[float], width: float) -> Point:
    start, n, total = bucket[0], bucket[1], bucket[2]
    return (start + width / 2, total / n, tuple(v / n for v in bucket[3:]))


@dataclass
class AlertView:
    """One alert across its raised, active and cleared events."""

    key: str
    raised: AlertEvent
    latest: AlertEvent
    cleared_wall: float | None = None
    crops: list[str] = field(default_factory=list)  # crop ids served at /crop/<id>
    crop_names: set[str] = field(default_factory=set)  # their evidence paths
    acks: list[Acknowledgement] = field(default_factory=list)
    totals: list[float | None] = field(default_factory=list)  # of the window's samples

    def as_json(self, held: Mapping[str, bytes]) -> dict[str, Any]:
        """As the page reads it; only the crops still `held` in memory."""
        event = self.raised
        return {"key": self.key, "publisher": event.publisher, "mouse": event.mouse,
                "camera": event.camera, "rule": event.rule, "since": event.since,
                "raised_wall": event.wall_time, "cleared_wall": self.cleared_wall,
                "active": self.cleared_wall is None, "value": self.latest.value,
                "peak": max(event.peak, self.latest.peak), "threshold": event.threshold,
                "detail": self.latest.detail, "totals": self.totals,
                "crops": [f"/crop/{c}" for c in self.crops if c in held],
                "acks": [_ack_json(a) for a in self.acks]}


@dataclass
class MouseState:
    series: Series = field(default_factory=Series)
    alerts: deque[AlertView] = field(default_factory=lambda: deque(maxlen=MAX_SPANS))
    acks: deque[Acknowledgement] = field(default_factory=lambda: deque(maxlen=ACKS_PER_MOUSE))
    recent: deque[tuple[str, int | None]] = field(
        default_factory=lambda: deque(maxlen=RECENT_CROPS))  # (crop name, total)
    past: PastMouse | None = None  # read from the records at start (--history)


class WebState:
    """The web view's state; `apply` from the subscriber's thread, the rest from any thread."""

    def __init__(self, *, crop_bytes: int = CROP_BYTES, max_alerts: int = MAX_ALERTS) -> None:
        self.board = DashboardState(history=SPARK)  # tiles, cameras, notices: as the terminal's
        self.mice: dict[str, MouseState] = {}
        self.alerts: OrderedDict[str, AlertView] = OrderedDict()  # oldest raised first
        self.crops: OrderedDict[str, bytes] = OrderedDict()
        self.crop_bytes, self.max_alerts = crop_bytes, max_alerts
        self.held_bytes = 0
        self.version = 0
        self.closed = False
        self.problems: list[str] = []
        self._crop_ids = 0
        self.streams = 0  # event streams open
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._snapshot: tuple[int, str] = (-1, "")

    # --- the subscriber's thread -----------------------------------------------------------

    def apply(self, message: Message) -> None:
        self.apply_all([message])

    def apply_all(self, messages: list[Message]) -> None:
        """Take in messages of any type; one change for the browsers."""
        with self._changed:
            for message in messages:
                self._take(message)
            self.version += 1
            self._changed.notify_all()

    def _take(self, message: Message) -> None:
        self.board.apply(message)
        if isinstance(message, ScoreRecord):
            self._add_record(message)
        elif isinstance(message, AlertEvent):
            self._add_event(message)
        elif isinstance(message, Acknowledgement):
            self._add_ack(message)
        elif isinstance(message, AlertCrop):
            self._add_crop(message)

    def add_history(self, mice: list[PastMouse]) -> None:
        """The week before the view started, before any live record: each point added oldest
        first, so its buckets hold the same means as had it arrived on the bus."""
        with self._changed:
            for past in mice:
                mouse = self._mouse(past.mouse)
                mouse.past = past
                for t, total, levels in past.points:
                    mouse.series.add(t, total, levels)
            self.version += 1
            self._changed.notify_all()

    def say(self, problem: str) -> None:
        """A line about the bus itself (e.g. the monitor refuses this subscriber's key)."""
        with self._changed:
            self.problems = [*self.problems[-4:], problem]
            self.version += 1
            self._changed.notify_all()

    def close(self) -> None:
        """Wakes every event stream so that it ends."""
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def _mouse(self, mouse: str) -> MouseState:
        return self.mice.setdefault(mouse, MouseState())

    def _add_record(self, record: ScoreRecord) -> None:
        mouse = self._mouse(record.mouse)
        if record.crop:
            mouse.recent.append((record.crop, record.total))
        if record.status == "scored" and record.total is not None and record.levels:
            mouse.series.add(record.wall_time, float(record.total),
                             tuple(float(v) for v in record.levels))

    def _add_event(self, event: AlertEvent) -> None:
        key = alert_key(event)
        view = self.alerts.get(key)
        if view is None:
            view = AlertView(key, event, event)
            self.alerts[key] = view
            if event.mouse != "*":
                self._mouse(event.mouse).alerts.append(view)
            while len(self.alerts) > self.max_alerts:
                _, gone = self.alerts.popitem(last=False)
                self._drop_crops(gone.crops)
        view.latest = event
        if event.event == "cleared":
            view.cleared_wall = event.wall_time
        if not view.totals and event.evidence:
            view.totals = self._window_totals(event)

    def _window_totals(self, event: AlertEvent) -> list[float | None]:
        """The totals of the samples whose crops the raise named, when the records are here."""
        recent = dict(self._mouse(event.mouse).recent)
        if not all(name in recent for name in event.evidence):
            return []
        return [None if recent[name] is None else float(recent[name])  # type: ignore[arg-type]
                for name in event.evidence]

    def _add_ack(self, ack: Acknowledgement) -> None:
        mouse = self._mouse(ack.mouse)
        if ack in mouse.acks:  # the same message twice (e.g. through two proxies)
            return
        view = self.alerts.get(ack.alert)
        if view is not None:
            view.acks.append(ack)
        mouse.acks.append(ack)

    def _add_crop(self, crop: AlertCrop) -> None:
        view = self.alerts.get(crop.alert)
        try:
            data = base64.b64decode(crop.jpeg, validate=True)
        except (binascii.Error, ValueError):
            return
        if view is None or len(data) > MAX_CROP or crop.name in view.crop_names:
            return
        view.crop_names.add(crop.name)
        self._crop_ids += 1
        crop_id = f"{self._crop_ids}.jpg"
        self.crops[crop_id] = data
        self.held_bytes += len(data)
        view.crops.append(crop_id)
        while self.held_bytes > self.crop_bytes and self.crops:
            _, old = self.crops.popitem(last=False)
            self.held_bytes -= len(old)

    def _drop_crops(self, ids: list[str]) -> None:
        for crop_id in ids:
            data = self.crops.pop(crop_id, None)
            if data is not None:
                self.held_bytes -= len(data)

    # --- the request threads ---------------------------------------------------------------

    def wait(self, version: int, timeout: float) -> int:
        """The version once it differs from `version` (or the timeout passed, or closed)."""
        with self._changed:
            self._changed.wait_for(lambda: self.version != version or self.closed, timeout)
            return self.version

    def pause(self, seconds: float) -> None:
        """Sleeps, cut short when the view closes."""
        with self._changed:
            self._changed.wait_for(lambda: self.closed, seconds)

    def opened(self, count: int) -> None:
        """An event stream opens (+1) or ends (-1)."""
        with self._changed:
            self.streams += count
            self._changed.notify_all()

    def wait_streams_ended(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.streams == 0, timeout)

    def overview_json(self) -> tuple[int, str]:
        """(version, the overview as JSON text); made once per version."""
        with self._lock:
            if self._snapshot[0] != self.version:
                self._snapshot = (self.version, json.dumps(self._overview(time.time())))
            return self._snapshot

    def crop(self, crop_id: str) -> bytes | None:
        with self._lock:
            return self.crops.get(crop_id)

    def alert(self, key: str) -> AlertEvent | None:
        with self._lock:
            view = self.alerts.get(key)
            return view.raised if view is not None else None

    def commands_of(self, publisher: str) -> str:
        """The command endpoint a monitor says it serves ('' when it serves none or is
        unknown)."""
        with self._lock:
            report = self.board.statuses.get(publisher)
            return report.commands if report is not None else ""

    def owner_of(self, camera: str) -> str | None:
        """The monitor that reports the camera."""
        with self._lock:
            report = self.board.cameras.get(camera)
            return report.publisher if report is not None else None

    def mouse_json(self, mouse: str, span: float) -> dict[str, Any] | None:
        """A mouse's page: its series over the last `span` seconds, alert spans, acks, crops."""
        with self._lock:
            state, view = self.mice.get(mouse), self.board.mice.get(mouse)
            if state is None or (view is None and state.past is None):
                return None
            now = time.time()
            past = state.past
            if view is not None:
                camera, publisher = view.latest.camera, view.latest.publisher
                tile = _tile(view, self.board, now)
            else:  # only its records so far: the tile of its last one
                assert past is not None
                camera, publisher, tile = past.camera, "", _past_tile(past, now)
            alerts = [a.as_json(self.crops) for a in state.alerts]
            crops = [c for a in reversed(alerts) for c in a["crops"]][:12]
            earlier = [_past_span(past, s) for s in past.spans
                       if s.end >= now - span] if past else []
            return {"mouse": mouse, "camera": camera, "publisher": publisher,
                    "units": list(UNITS), "now": now, "span": span,
                    "demo": self.board.demo, "tile": tile,
                    "points": [[t, total, list(levels)] for t, total, levels
                               in state.series.points(now - span)],
                    "alerts": earlier + alerts, "acks": [_ack_json(a) for a in state.acks],
                    "markers": [{"wall_time": m.wall_time, "text": m.text, "kind": m.kind}
                                for m in (past.markers if past else [])
                                if m.wall_time >= now - span],
                    "crops": crops}

    def _overview(self, now: float) -> dict[str, Any]:
        board = self.board
        groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for view in sorted(board.mice.values(), key=lambda v: _order(v.latest)):
            record = view.latest
            groups.setdefault(record.publisher, {}).setdefault(record.camera, []).append(
                _tile(view, board, now))
        for report in board.cameras.values():  # a camera down from its start has no mice yet
            groups.setdefault(report.publisher, {}).setdefault(report.camera, [])
        monitors = [{"publisher": publisher,
                     "title": board.statuses[publisher].title
                     if publisher in board.statuses else publisher,
                     "cameras": [_camera(name, board, tiles, now) for name, tiles
                                 in sorted(cameras.items(), key=lambda c: natural_key(c[0]))]}
                    for publisher, cameras in sorted(groups.items())]
        return {"now": now, "version": self.version, "title": board.title, "demo": board.demo,
                "records": board.records_total, "notice": board.notice,
                "health": [{"text": line.plain, "bad": "red" in str(line.style)}
                           for line in health_lines(board)],
                "problems": self.problems, "models": board.model_figures,
                "below_floor": board.below_floor, "threshold": board.alert_threshold,
                "monitors": monitors,
                "alerts": [a.as_json(self.crops) for a in reversed(self.alerts.values())]}


def _order(record: ScoreRecord) -> tuple[object, ...]:
    """cam2 before cam10, cubicles in order."""
    return (natural_key(record.camera), record.cubicle, natural_key(record.mouse))


def _tile(view: Any, board: DashboardState, now: float) -> dict[str, Any]:
    record = view.latest
    shown = view.scored or record
    alerts = [event.rule for (mouse, _rule), event in board.alerts.items()
              if mouse == record.mouse]
    return {"mouse": record.mouse, "camera": record.camera, "cubicle": record.cubicle,
            "status": record.status, "total": shown.total,
            "levels": list(shown.levels) if shown.levels else None,
            "stale": view.stale, "age": max(0.0, now - record.wall_time),
            "alerts": sorted(alerts), "demo": record.model_kind == "demo",
            "spark": list(view.totals)}


def _past_tile(past: PastMouse, now: float) -> dict[str, Any]:
    wall_time, status, total, levels = past.latest
    return {"mouse": past.mouse, "camera": past.camera, "cubicle": None, "status": status,
            "total": total, "levels": list(levels) if levels else None, "stale": True,
            "age": max(0.0, now - wall_time), "alerts": [], "demo": False, "spark": []}


def _past_span(past: PastMouse, span: PastSpan) -> dict[str, Any]:
    """An alert span of the records, in the form of a live alert's, closed."""
    return {"key": "", "publisher": "", "mouse": past.mouse, "camera": past.camera,
            "rule": span.rule, "since": None, "raised_wall": span.start,
            "cleared_wall": span.end, "active": False, "value": None, "peak": None,
            "threshold": None, "detail": "from the records", "totals": [], "crops": [],
            "acks": []}


def _camera(name: str, board: DashboardState, tiles: list[dict[str, Any]],
            now: float) -> dict[str, Any]:
    report: CameraReport | None = board.cameras.get(name)
    return {"name": name, "state": report.state if report else "",
            "fps": report.fps if report else None, "error": report.error if report else "",
            "reconnects": report.reconnects if report else 0,
            "frame_age": (now - report.last_frame_time)
            if report and report.last_frame_time else None,
            "dropped": board.dropped.get(name, 0), "mice": tiles}


def _ack_json(ack: Acknowledgement) -> dict[str, Any]:
    return {"alert": ack.alert, "mouse": ack.mouse, "rule": ack.rule, "who": ack.who,
            "note": ack.note, "wall_time": ack.wall_time, "publisher": ack.publisher}



