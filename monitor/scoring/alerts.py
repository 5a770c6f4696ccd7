"""Per-mouse alerts: sustained pain on a window of scored samples, and mice that cannot be seen.

A single noisy snapshot must not page anyone at 3 a.m., and a mouse that has hidden its face for
an hour must not look fine. So the `pain` rule judges the mean of the mouse's last `window` scored
samples (raised at the threshold, cleared only below `clear_below`: hysteresis), optionally as a
rise over the mouse's own baseline, while `no_face` and `camera_down` are alerts of their own.
Time is the session clock, `record.source_time`, so a replayed recording alerts as it would have
live and tests are deterministic.

`AlertEngine.update` turns records into lifecycle events (raised, rate-limited `active` reminders,
cleared); an acknowledged alert (`acknowledge`: a person has seen it) sends no more reminders
until it clears, but stays active: only the readings clear it. `HookRunner` runs the lab's
pager command for them, off the pipeline thread, and `hook_failing` raises an alert of its own
when that command keeps failing.
"""

from __future__ import annotations

import math
import os
import queue
import subprocess
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import fmean

from monitor.config import MAX_ALERT_SAMPLES, AlertRule, Alerts
from monitor.schema import Acknowledgement, AlertEvent, HookCounts, ScoreRecord, alert_key
from monitor.units import UNITS

DEFAULT_THRESHOLD = 4.0
RULES = ("pain", "no_face", "camera_down")
HOOK_EVENTS = ("raised", "cleared")
HOOK_QUEUE_SIZE = 100
HOOK_FAILING_AFTER = 3  # failed or timed-out runs in a row that raise `hook_failing`
ALL_MICE = "*"

Levels = tuple[int, ...]
SCORED, UNSEEN, DOWN = "scored", "unseen", "camera_down"  # what one record says about a mouse


@dataclass(frozen=True)
class ResolvedRule:
    """A mouse's rule with defaults merged and every limit a number (inf = rule off)."""

    threshold: float
    clear_below: float
    units: tuple[str, ...] | None
    window: int
    min_valid: int
    baseline_samples: int
    no_face_after_s: float
    camera_down_after_s: float

    @classmethod
    def resolve(cls, rule: AlertRule, model_cutoff: float | None) -> ResolvedRule:
        threshold = next(t for t in (rule.threshold, model_cutoff, DEFAULT_THRESHOLD)
                         if t is not None)
        clear = threshold - 1.0 if rule.clear_below is None else min(rule.clear_below, threshold)
        return cls(threshold, clear, tuple(rule.units) if rule.units else None, rule.window,
                   rule.min_valid, rule.baseline_samples, _limit(rule.no_face_after_s),
                   _limit(rule.camera_down_after_s))

    def value(self, levels: Levels) -> float:
        """The sample's total, or the sum of the rule's units."""
        if self.units is None:
            return float(sum(levels))
        return float(sum(levels[UNITS.index(unit)] for unit in self.units))

    def baseline(self, first: Sequence[Levels]) -> float | None:
        """0 without a baseline; None until the mouse has its first n scored samples."""
        if not self.baseline_samples:
            return 0.0
        if len(first) < self.baseline_samples:
            return None
        return fmean(self.value(s) for s in first[:self.baseline_samples])

    @property
    def label(self) -> str:
        return "+".join(self.units) if self.units else "total"


@dataclass(frozen=True)
class _Reading:
    """One rule's view of a mouse after a record; value is nan when it cannot be judged."""

    value: float
    threshold: float
    fire: bool
    clear: bool
    detail: str


@dataclass
class _Alert:
    raised: AlertEvent  # its peak follows the value while the alert is active
    reminded: float  # session time of the last raised/active event
    acknowledged: Acknowledgement | None = None  # the latest, if a person has seen it


@dataclass
class _Mouse:
    """What the engine remembers of one mouse across records (and reloads)."""

    recent: deque[Levels] = field(default_factory=lambda: deque(maxlen=MAX_ALERT_SAMPLES))
    crops: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_ALERT_SAMPLES))
    first: list[Levels] = field(default_factory=list)
    last_time: float | None = None
    last_kind: str = ""
    unseen_s: float = 0.0  # seconds without a scored face, camera-down time not counted
    down_since: float | None = None
    alerts: dict[str, _Alert] = field(default_factory=dict)

    def observe(self, t: float, kind: str, levels: Levels | None, crop: str = "") -> None:
        """Advance the clocks and the series by one record; time going back counts as none."""
        elapsed = 0.0 if self.last_time is None else max(0.0, t - self.last_time)
        if self.last_kind == SCORED:
            self.unseen_s = 0.0
        if self.last_kind != DOWN:
            self.down_since = None
        if kind == DOWN and self.down_since is None:
            self.down_since = t
        elif kind != DOWN and self.last_kind != DOWN:
            self.unseen_s += elapsed
        if levels is not None:
            self.recent.append(levels)
            self.crops.append(crop)
            if len(self.first) < MAX_ALERT_SAMPLES:
                self.first.append(levels)
        self.last_time, self.last_kind = t, kind

    def readings(self, rule: ResolvedRule, t: float, kind: str) -> dict[str, _Reading]:
        return {"pain": self._pain(rule), "no_face": self._no_face(rule, kind),
                "camera_down": self._camera_down(rule, t, kind)}

    def window_crops(self, rule: ResolvedRule) -> tuple[str, ...]:
        """The kept face crops of the samples in the pain window."""
        return tuple(crop for crop in list(self.crops)[-rule.window:] if crop)

    def pain_flag(self, rule: ResolvedRule, levels: Levels | None) -> bool | None:
        """This sample alone at or above the threshold; None if unscored or no baseline yet."""
        base = rule.baseline(self.first)
        if levels is None or base is None:
            return None
        return rule.value(levels) - base >= rule.threshold

    def _pain(self, rule: ResolvedRule) -> _Reading:
        window = [rule.value(s) for s in list(self.recent)[-rule.window:]]
        base = rule.baseline(self.first)
        limits = f"raise at {rule.threshold:g}, clear below {rule.clear_below:g}"
        if len(window) < rule.min_valid or base is None:
            waiting = (f"{len(window)} of {rule.min_valid} scored samples" if base is not None
                       else f"baseline needs {rule.baseline_samples} scored samples")
            return _Reading(math.nan, rule.threshold, False, False, f"{waiting}; {limits}")
        value = fmean(window) - base
        shown = ", ".join(f"{v:g}" for v in window)
        rise = f", {value:+.2f} over baseline {base:.2f}" if rule.baseline_samples else ""
        detail = f"{rule.label} mean {fmean(window):.2f} of ({shown}){rise}; {limits}"
        return _Reading(value, rule.threshold, value >= rule.threshold,
                        value < rule.clear_below, detail)

    def _no_face(self, rule: ResolvedRule, kind: str) -> _Reading:
        limit = rule.no_face_after_s
        on = kind != SCORED and self.unseen_s > limit
        what = "face scored after" if kind == SCORED else "no scored face for"
        detail = f"{what} {self.unseen_s:.0f} s; {_limit_text(limit)}"
        return _Reading(self.unseen_s, limit, on, not on, detail)

    def _camera_down(self, rule: ResolvedRule, t: float, kind: str) -> _Reading:
        limit = rule.camera_down_after_s
        down_s = 0.0 if self.down_since is None else max(0.0, t - self.down_since)
        on = kind == DOWN and down_s > limit
        what = "camera down for" if kind == DOWN else "camera back after"
        detail = f"{what} {down_s:.0f} s; {_limit_text(limit)}"
        return _Reading(down_s, limit, on, not on, detail)


class AlertEngine:
    """Per-mouse alert state fed one record at a time, by the pipeline thread that owns it."""

    def __init__(self, alerts: Alerts, model_cutoff: float | None,
                 publisher: str = "") -> None:
        self._mice: dict[str, _Mouse] = {}
        self.publisher = publisher  # named in every event: the monitor that can acknowledge it
        self._configure(alerts, model_cutoff)

    def reload(self, alerts: Alerts, model_cutoff: float | None) -> None:
        """New rules. Each mouse keeps its series, baseline and active alerts; an alert the new
        rule no longer holds is cleared, with an event, on that mouse's next record."""
        self._configure(alerts, model_cutoff)

    def rule_for(self, mouse: str) -> ResolvedRule:
        rule = self._alerts.overrides.get(mouse, self._alerts.defaults)
        return ResolvedRule.resolve(rule, self._model_cutoff)

    def update(self, record: ScoreRecord) -> tuple[ScoreRecord, list[AlertEvent]]:
        """Feed one record of any status: the record with its `pain` and `alert` set, and the
        events it caused."""
        mouse = self._mice.setdefault(record.mouse, _Mouse())
        rule = self.rule_for(record.mouse)
        levels = tuple(record.levels) if record.status == SCORED and record.levels else None
        kind = SCORED if levels is not None else (DOWN if record.status == DOWN else UNSEEN)
        mouse.observe(record.source_time, kind, levels, record.crop)
        readings = mouse.readings(rule, record.source_time, kind)
        crops = mouse.window_crops(rule)
        events = [self._step(mouse, record, name, reading, crops if name == "pain" else ())
                  for name, reading in readings.items()]
        judged = record.model_copy(update={
            "pain": mouse.pain_flag(rule, levels),
            "alert": ",".join(name for name in RULES if name in mouse.alerts)})
        return judged, [event for event in events if event is not None]

    def active(self, mouse: str) -> dict[str, AlertEvent]:
        """The raised event of each active alert of a mouse, its peak up to date."""
        state = self._mice.get(mouse)
        return {name: alert.raised for name, alert in (state.alerts if state else {}).items()}

    def every_active(self) -> list[AlertEvent]:
        """The raised event of every active alert, mouse by mouse."""
        return [alert.raised for mouse in self._mice.values() for alert in mouse.alerts.values()]

    def acknowledgement(self, key: str, who: str, note: str,
                        wall_time: float) -> Acknowledgement | None:
        """What acknowledging the active alert `key` (its `alert_key`) would record, at the
        mouse's latest session time; None when no such alert is active. Nothing changes until
        `acknowledge`, so a marker that cannot be written leaves the alert as it was."""
        for mouse in self._mice.values():
            for alert in mouse.alerts.values():
                raised = alert.raised
                if alert_key(raised) == key:
                    return Acknowledgement(
                        publisher=self.publisher, wall_time=wall_time,
                        time=mouse.last_time if mouse.last_time is not None else raised.time,
                        mouse=raised.mouse, camera=raised.camera, rule=raised.rule,
                        since=raised.since, who=who, note=note, alert=key)
        return None

    def acknowledge(self, ack: Acknowledgement) -> bool:
        """Stop the reminders of the alert `ack` names while it stays active; False when it is
        no longer active."""
        mouse = self._mice.get(ack.mouse)
        alert = mouse.alerts.get(ack.rule) if mouse else None
        if alert is None or alert_key(alert.raised) != ack.alert:
            return False
        alert.acknowledged = ack
        return True

    def _configure(self, alerts: Alerts, model_cutoff: float | None) -> None:
        self._alerts = alerts
        self._model_cutoff = model_cutoff
        self.default = ResolvedRule.resolve(alerts.defaults, model_cutoff).threshold
        self.default_from = ("set in the config" if alerts.defaults.threshold is not None
                             else "the scorer's pain cut-off" if model_cutoff is not None
                             else "the default; the scorer has no pain cut-off")

    def _step(self, mouse: _Mouse, record: ScoreRecord, name: str, reading: _Reading,
              evidence: tuple[str, ...]) -> AlertEvent | None:
        """Raise, clear or remind: at most one event per rule per record."""
        t = record.source_time
        alert = mouse.alerts.get(name)
        if alert is None:
            if not reading.fire:
                return None
            raised = AlertEvent(wall_time=record.wall_time, time=t, mouse=record.mouse,
                                camera=record.camera, rule=name, event="raised",
                                value=reading.value, threshold=reading.threshold, since=t,
                                peak=reading.value, detail=reading.detail,
                                evidence=evidence, publisher=self.publisher)
            mouse.alerts[name] = _Alert(raised, t)
            return raised
        if reading.value > alert.raised.peak:  # nan never wins
            alert.raised = alert.raised.model_copy(update={"peak": reading.value})
        if reading.clear:
            del mouse.alerts[name]
            return _follow_up(alert, record, "cleared", reading)
        if alert.acknowledged is None and t - alert.reminded >= self._alerts.repeat_every_s:
            alert.reminded = t
            return _follow_up(alert, record, "active", reading)
        return None


class HookRunner:
    """Runs the `on_alert` command for raised/cleared events on a thread of its own, so a slow or
    hanging pager never delays scoring. No shell: the event goes in MGS_* variables."""

    def __init__(self, argv: Sequence[str], timeout_s: float) -> None:
        self.argv = list(argv)
        self.timeout_s = timeout_s
        self._counts = HookCounts()
        self._lock = threading.Lock()
        self._queue: queue.Queue[AlertEvent | None] = queue.Queue()
        self._closed = False
        self._abandoned = threading.Event()
        self._thread = threading.Thread(target=self._work, name="alert-hook", daemon=True)
        self._thread.start()

    @property
    def stats(self) -> HookCounts:
        """The outcomes so far, read under the lock the hook thread writes them under."""
        with self._lock:
            return self._counts

    def submit(self, event: AlertEvent) -> None:
        """Queue a run for a raised or cleared event; a full queue drops (and counts) it. The
        hook's own failure is not sent to the hook."""
        if event.event not in HOOK_EVENTS or event.rule == "hook_failing":
            return
        # Only close() and submit() put, from the pipeline thread, so the bound holds.
        if self._closed or self._queue.qsize() >= HOOK_QUEUE_SIZE:
            self._outcome("dropped", "")
            return
        self._queue.put(event)

    def close(self, timeout: float = 5.0) -> None:
        """Let queued runs finish for up to `timeout` seconds; whatever is left is dropped."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout)
        self._abandoned.set()

    def _work(self) -> None:
        while (event := self._queue.get()) is not None:
            if self._abandoned.is_set():
                self._outcome("dropped", "")
            else:
                self._run(event)

    def _run(self, event: AlertEvent) -> None:
        program = self.argv[0]
        try:
            done = subprocess.run(self.argv, env=os.environ | hook_env(event),
                                  timeout=self.timeout_s, stdin=subprocess.DEVNULL,
                                  capture_output=True, check=False)
        except subprocess.TimeoutExpired:
            self._outcome("timed_out", f"{program} still running after {self.timeout_s:g} s: "
                          "killed")
        except OSError as exc:
            self._outcome("failed", f"cannot run {program}: {exc.strerror or exc}")
        else:
            if done.returncode == 0:
                self._outcome("ok", "")
            else:
                stderr = " ".join(done.stderr.decode(errors="replace").split())[-300:]
                self._outcome("failed", f"{program} exited with {done.returncode}: {stderr}")

    def _outcome(self, kind: str, error: str) -> None:
        with self._lock:
            counts = self._counts
            update: dict[str, object] = {kind: getattr(counts, kind) + 1}
            if kind in ("ok", "failed", "timed_out"):
                update["in_a_row"] = 0 if kind == "ok" else counts.in_a_row + 1
            if error:
                update["last_error"] = error
            self._counts = counts.model_copy(update=update)


def hook_failing(counts: HookCounts, raised: AlertEvent | None, now: float,
                 publisher: str = "") -> AlertEvent | None:
    """The `hook_failing` alert's next event, if any: raised once the hook has failed
    HOOK_FAILING_AFTER times in a row, cleared when a run works again. Wall clock; mouse `*`."""
    failing = counts.in_a_row >= HOOK_FAILING_AFTER
    if raised is None and failing:
        return AlertEvent(
            wall_time=now, time=now, mouse=ALL_MICE, camera="", rule="hook_failing",
            event="raised", value=counts.in_a_row, threshold=HOOK_FAILING_AFTER, since=now,
            peak=counts.in_a_row,
            detail=f"{counts.in_a_row} runs in a row failed; last: {counts.last_error}",
            publisher=publisher)
    if raised is not None and not failing:
        return raised.model_copy(update={
            "wall_time": now, "time": now, "event": "cleared", "value": 0.0,
            "detail": f"the hook ran again after {raised.peak:g} failures"})
    return None


def hook_env(event: AlertEvent) -> dict[str, str]:
    """The MGS_* variables a hook command gets."""
    names = ("mouse", "camera", "rule", "event", "value", "threshold", "since", "peak", "time",
             "detail")
    found = {f"MGS_{name.upper()}": _text(getattr(event, name)) for name in names}
    return found | {"MGS_EVIDENCE": ";".join(event.evidence)}


def _follow_up(alert: _Alert, record: ScoreRecord, kind: str, reading: _Reading) -> AlertEvent:
    """An active or cleared event: the raised event brought up to this record."""
    return alert.raised.model_copy(update={
        "wall_time": record.wall_time, "time": record.source_time, "camera": record.camera,
        "event": kind, "value": None if math.isnan(reading.value) else reading.value,
        "detail": reading.detail})  # model_copy does not validate: unknown made None here


def _limit(seconds: float | None) -> float:
    return math.inf if seconds is None else seconds


def _limit_text(limit: float) -> str:
    return f"limit {limit:g} s" if math.isfinite(limit) else "rule off"


def _text(value: object) -> str:
    """Numbers as in the record CSV: three decimals, empty when unknown (None or nan)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return str(value)
