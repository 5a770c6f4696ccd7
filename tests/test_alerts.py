"""Alert rules on hand-made record series: the session clock steps 120 s per sample."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from monitor.config import AlertRule, Alerts, ConfigError, build_config
from monitor.schema import (
    ALERT_COLUMNS,
    AlertEvent,
    HookCounts,
    ScoreRecord,
    alert_key,
    csv_header,
    csv_row,
)
from monitor.scoring.alerts import AlertEngine, HookRunner, hook_failing

STEP = 120.0


def record(mouse: str, t: float, total: int | None = None, status: str = "scored",
           levels: list[int] | None = None) -> ScoreRecord:
    """A record of `mouse` at session time t; a total becomes levels filling units in order."""
    if status == "scored" and levels is None:
        assert total is not None
        levels = [min(2, max(0, total - 2 * i)) for i in range(5)]
    return ScoreRecord(
        publisher="test", seq=int(t), wall_time=1e9 + t, mono_time=t, source_time=t,
        frame_index=int(t), camera="cam1", cubicle=1, mouse=mouse, status=status,
        levels=levels if status == "scored" else None,
        total=sum(levels) if status == "scored" and levels else None,
    )


def engine(model_cutoff: float | None = None, **alerts: Any) -> AlertEngine:
    """An engine whose reminders stay quiet unless a test sets repeat_every_s."""
    return AlertEngine(Alerts.model_validate({"repeat_every_s": 1e6, **alerts}), model_cutoff)


def feed(eng: AlertEngine, mouse: str, totals: list[int | None], start: float = 0.0,
         status: str = "no_face") -> list[tuple[int, AlertEvent]]:
    """(sample index, event) for a series; None is an unscored sample of `status`."""
    events = []
    for i, total in enumerate(totals):
        rec = record(mouse, start + i * STEP, total, "scored" if total is not None else status)
        events += [(i, e) for e in eng.update(rec)[1]]
    return events


def kinds(events: list[tuple[int, AlertEvent]]) -> list[tuple[int, str, str]]:
    return [(i, e.rule, e.event) for i, e in events]


def test_raised_where_the_window_mean_first_reaches_the_threshold() -> None:
    eng = engine(defaults={"threshold": 4})
    events = feed(eng, "M1", [1, 1, 1, 5, 6, 6])
    assert kinds(events) == [(4, "pain", "raised")]  # (1+5+6)/3 = 4
    raised = events[0][1]
    assert raised.value == pytest.approx(4.0) and raised.threshold == 4.0
    assert raised.time == raised.since == 4 * STEP and raised.mouse == "M1"
    assert feed(eng, "control", [1, 2, 1, 3, 2, 1, 6, 1, 1]) == []  # one high snapshot: no alert


def test_flapping_series_raises_once_then_clears_and_can_raise_again() -> None:
    eng = engine(defaults={"threshold": 4})
    flapping = [3, 5] * 10
    events = feed(eng, "M1", [*flapping, 1, 1, 6, 6])
    assert kinds(events) == [(1, "pain", "raised"), (21, "pain", "cleared"),
                             (23, "pain", "raised")]
    cleared = events[1][1]
    assert cleared.value == pytest.approx(7 / 3) and cleared.since == STEP
    assert cleared.peak == pytest.approx(13 / 3)


def test_explicit_clear_below() -> None:
    eng = engine(defaults={"threshold": 4, "clear_below": 2, "window": 2})
    assert kinds(feed(eng, "M1", [4, 4, 3, 2, 2, 1])) == [
        (1, "pain", "raised"), (5, "pain", "cleared")]  # (2+1)/2 = 1.5 < 2; 2.0 is not


def test_unscored_samples_neither_dilute_nor_count() -> None:
    eng = engine(defaults={"threshold": 4, "window": 3, "min_valid": 2,
                           "no_face_after_s": None})
    assert feed(eng, "M1", [8, None, None, None]) == []  # one scored sample cannot raise
    assert kinds(feed(eng, "M1", [None, 5], start=4 * STEP)) == [(1, "pain", "raised")]
    high = engine(defaults={"threshold": 4, "window": 5, "min_valid": 5})
    assert feed(high, "M1", [9, 9, 9, 9]) == []
    assert kinds(feed(high, "M1", [9], start=4 * STEP)) == [(0, "pain", "raised")]


def test_unit_subset_rule() -> None:
    eyes_ears = {"units": ["orbital_tightening", "ear_position"], "threshold": 2.5}
    eng = engine(defaults={"threshold": 4}, overrides={"M1": eyes_ears, "M2": eyes_ears})
    squint = [2, 0, 0, 2, 0]  # total 4, all of it on the two units that matter
    spread = [0, 2, 1, 0, 1]  # total 4 as well, none of it on them
    events = []
    for i, levels in enumerate([spread, spread, squint, squint]):
        events += eng.update(record("M1", i * STEP, levels=levels))[1]
        events += eng.update(record("M2", i * STEP, levels=spread))[1]
    assert [(e.mouse, e.time) for e in events] == [("M1", 3 * STEP)]  # (0+4+4)/3 >= 2.5
    assert "orbital_tightening+ear_position" in events[0].detail
    assert eng.rule_for("M1").units == ("orbital_tightening", "ear_position")


def test_baseline_rule_judges_the_rise_over_the_mouse_itself() -> None:
    eng = engine(defaults={"threshold": 2, "baseline_samples": 3})
    assert feed(eng, "calm", [1, 1, 1]) == []
    assert feed(eng, "grumpy", [5, 5, 5]) == []
    assert kinds(feed(eng, "calm", [5, 5], start=3 * STEP)) == [(1, "pain", "raised")]
    assert feed(eng, "grumpy", [5, 5, 6, 5], start=3 * STEP) == []
    early = record("new", 0.0, 9)
    eng.update(early)
    assert early.pain is None  # no baseline yet: this sample cannot be judged
    assert eng.active("calm")["pain"].value == pytest.approx(11 / 3 - 1)  # (1+5+5)/3 - 1


def test_no_face_for_too_long_raises_and_a_face_clears() -> None:
    eng = engine(defaults={"no_face_after_s": 600})
    events = feed(eng, "M1", [2, *[None] * 7, 2])
    assert kinds(events) == [(6, "no_face", "raised"), (8, "no_face", "cleared")]
    raised, cleared = (e for _, e in events)
    assert raised.value == 720 and raised.threshold == 600
    assert cleared.value == 8 * STEP and cleared.since == 6 * STEP
    assert kinds(feed(eng, "never-seen", [None] * 7, status="low_quality")) == [
        (6, "no_face", "raised")]


def test_camera_down_after_its_limit_and_no_face_does_not_count_it() -> None:
    eng = engine(defaults={"camera_down_after_s": 300, "no_face_after_s": 600})
    events = feed(eng, "M1", [2, *[None] * 60, None, 2], status="camera_down")
    assert kinds(events) == [(4, "camera_down", "raised"), (62, "camera_down", "cleared")]
    assert events[0][1].value == 360 and events[1][1].detail.startswith("camera back after")
    assert feed(eng, "M1", [None] * 3, start=63 * STEP, status="camera_down") == []  # new run
    eng.update(record("M2", 0.0, status="no_face"))
    rec = record("M2", 2 * 3600.0, status="camera_down")
    eng.update(rec)
    assert rec.alert == "" and rec.pain is None


def test_active_reminders_are_rate_limited_on_the_session_clock() -> None:
    eng = engine(defaults={"threshold": 4}, repeat_every_s=600)
    events = feed(eng, "M1", [6] * 14)
    assert kinds(events) == [(1, "pain", "raised"), (6, "pain", "active"),
                             (11, "pain", "active")]
    assert all(e.since == STEP for _, e in events)


def test_an_acknowledged_alert_stays_active_without_reminders_until_it_clears() -> None:
    rules = {"defaults": {"threshold": 4, "window": 1, "min_valid": 1}, "repeat_every_s": 120}
    eng = AlertEngine(Alerts.model_validate(rules), None, "rack1")
    (_, raised), (_, reminder) = feed(eng, "M1", [6, 6])
    key = alert_key(raised)
    assert raised.publisher == "rack1" and alert_key(reminder) == key
    assert eng.acknowledgement("rack1/M1/pain/0.000001", "Ann", "", 1e9) is None  # not one
    ack = eng.acknowledgement(key, "Ann", "seen", 1e9 + 300)
    assert ack is not None and (ack.mouse, ack.rule, ack.since, ack.time) == ("M1", "pain", 0.0,
                                                                            STEP)
    assert eng.acknowledge(ack)
    assert feed(eng, "M1", [6, 6, 6], start=2 * STEP) == []  # no reminder, still raised
    assert eng.active("M1")["pain"].since == 0.0
    events = feed(eng, "M1", [0, 6, 6], start=5 * STEP)  # cleared; a new alert reminds again
    assert kinds(events) == [(0, "pain", "cleared"), (1, "pain", "raised"),
                             (2, "pain", "active")]
    assert not eng.acknowledge(ack)  # the alert it named has cleared


def test_record_pain_and_alert_fields() -> None:
    eng = engine(defaults={"threshold": 4, "no_face_after_s": 200})
    seen = []
    for i, total in enumerate([5, 2, 6, None, None, None]):
        rec = record("M1", i * STEP, total, "scored" if total is not None else "no_face")
        judged, _ = eng.update(rec)
        assert rec.pain is None and rec.alert == ""  # the record fed in stays as it was
        seen.append((judged.pain, judged.alert))
    assert seen == [(True, ""), (False, ""), (True, "pain"), (None, "pain"),
                    (None, "pain,no_face"), (None, "pain,no_face")]
    assert set(eng.active("M1")) == {"pain", "no_face"} and eng.active("other") == {}


def test_peak_follows_the_value_while_active() -> None:
    eng = engine(defaults={"threshold": 4})
    feed(eng, "M1", [5, 5, 9, 9, 5])
    active = eng.active("M1")["pain"]
    assert active.event == "raised" and active.value == 5 and active.peak == pytest.approx(23 / 3)


def test_per_mouse_overrides_merge_with_defaults() -> None:
    eng = engine(defaults={"threshold": 5, "window": 4, "min_valid": 3},
                 overrides={"M1": {"window": 2, "min_valid": 2}, "M2": 3})
    m1, m2, other = eng.rule_for("M1"), eng.rule_for("M2"), eng.rule_for("M3")
    assert (m1.threshold, m1.window, m1.min_valid, m1.clear_below) == (5, 2, 2, 4)
    assert (m2.threshold, m2.window, m2.min_valid) == (3, 4, 3)
    assert (other.threshold, other.window) == (5, 4)
    assert kinds(feed(eng, "M2", [3, 3, 3])) == [(2, "pain", "raised")]
    assert eng.default == 5


def test_threshold_defaults_to_the_model_cutoff_then_4() -> None:
    assert engine().default == 4
    assert engine(model_cutoff=3.5).default == 3.5
    assert engine(model_cutoff=3.5, threshold=6).rule_for("M1").threshold == 6
    assert engine(model_cutoff=3.5, overrides={"M1": {"threshold": None}}).rule_for(
        "M1").threshold == 3.5


def test_simple_config_shapes_still_work() -> None:
    alerts = Alerts.model_validate({"threshold": 3, "overrides": {"M101": 2.5}})
    assert alerts.defaults.threshold == 3 and alerts.overrides["M101"].threshold == 2.5
    assert alerts.overrides["M101"].window == alerts.defaults.window == 3
    assert Alerts.model_validate({"threshold": None}).defaults.threshold is None
    assert Alerts(overrides={"M1": AlertRule(window=6)},
                  defaults=AlertRule(min_valid=3)).overrides["M1"].min_valid == 3


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        ({"threshold": 3, "defaults": {"threshold": 2}}, "alerts.defaults: give threshold or"),
        ({"overrides": {"M1": {"units": ["ears"]}}}, "alerts.overrides.M1.units: unknown unit"),
        ({"overrides": {"M1": {"window": 1}}}, "alerts.overrides.M1: min_valid 2 is more than"),
        ({"overrides": {"M1": {"units": ["nose_bulge"], "threshold": 3}}},
         "threshold 3 can never be reached"),
        ({"defaults": {"baseline_samples": 3}}, "needs its own threshold"),
        ({"threshold": 3, "defaults": {"clear_below": 3.5}}, "clear_below 3.5 is above"),
        ({"overrides": {"M1": True}}, "alerts.overrides.M1: Input should be"),
        ({"defaults": {"windows": 3}}, "alerts.defaults.windows: unknown key"),
        ({"on_alert": ["/nonexistent/pager", "--urgent"]},
         "alerts.on_alert: /nonexistent/pager: no such program"),
    ],
)
def test_bad_alert_configs_name_the_key(alerts: dict[str, Any], expected: str) -> None:
    raw = {"cameras": [{"name": "c", "source": 0}],
           "models": {"scorer": "s.onnx", "localizer": "l.onnx"}, "alerts": alerts}
    with pytest.raises(ConfigError, match=expected):
        build_config(raw)


def test_a_hook_that_is_not_executable_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "page-vet"
    script.write_text("#!/bin/sh\nexit 0\n")
    raw = {"cameras": [{"name": "c", "source": 0}],
           "models": {"scorer": "s.onnx", "localizer": "l.onnx"},
           "alerts": {"on_alert": [str(script)]}}
    with pytest.raises(ConfigError, match=f"alerts.on_alert: {script}: is not executable"):
        build_config(raw)
    script.chmod(0o755)
    assert build_config(raw).alerts.on_alert == [str(script)]


def test_reload_keeps_the_series_and_active_alerts() -> None:
    eng = engine(defaults={"threshold": 4})
    assert feed(eng, "M1", [3, 3, 3]) == [] and feed(eng, "M2", [6, 6]) != []
    with pytest.raises(ValidationError):
        Alerts.model_validate({"defaults": {"window": 0}})  # refused before it reaches reload
    eng.reload(Alerts.model_validate({"defaults": {"threshold": 9}, "overrides": {"M1": 2.5}}),
               None)
    assert eng.default == 9
    events = feed(eng, "M1", [None], start=3 * STEP) + feed(eng, "M2", [None], start=2 * STEP)
    assert [(e.mouse, e.rule, e.event) for _, e in events] == [
        ("M1", "pain", "raised"), ("M2", "pain", "cleared")]
    assert events[0][1].value == 3


def test_reload_turning_a_rule_off_clears_its_alert() -> None:
    eng = engine(defaults={"no_face_after_s": 300})
    feed(eng, "M1", [2, None, None, None])
    assert set(eng.active("M1")) == {"no_face"}
    eng.reload(Alerts.model_validate({"defaults": {"no_face_after_s": None}}), None)
    events = feed(eng, "M1", [None], start=4 * STEP)
    assert kinds(events) == [(0, "no_face", "cleared")] and "rule off" in events[0][1].detail


def test_event_csv_and_json() -> None:
    eng = engine(defaults={"threshold": 4})
    (_, event), = feed(eng, "M1", [5, 5])
    assert csv_header(ALERT_COLUMNS)[:7] == (
        "wall_time", "mouse", "rule", "event", "value", "threshold", "detail")
    row = dict(zip(csv_header(ALERT_COLUMNS), csv_row(ALERT_COLUMNS, event), strict=True))
    assert row["mouse"] == "M1" and row["rule"] == "pain" and row["event"] == "raised"
    assert float(row["value"]) == 5 and float(row["threshold"]) == 4
    assert float(row["wall_time"]) == pytest.approx(1e9 + STEP)
    payload = json.loads(event.to_json())
    assert payload["schema"] == 4 and payload["since"] == STEP and payload["camera"] == "cam1"


def raised_event(mouse: str = "M7") -> AlertEvent:
    return AlertEvent(wall_time=1e9, time=240.0, mouse=mouse, camera="cam2", rule="pain",
                      event="raised", value=4.5, threshold=4.0, since=240.0, peak=4.5,
                      detail="total mean 4.50 of (4, 5)")


def test_hook_runs_without_shell_with_event_in_environment(tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    script = ("import json, os, sys; json.dump({k: v for k, v in os.environ.items() "
              "if k.startswith('MGS_')}, open(sys.argv[1], 'w'))")
    runner = HookRunner([sys.executable, "-c", script, str(out)], timeout_s=10)
    runner.submit(raised_event().model_copy(update={"event": "active"}))  # pages no one
    runner.submit(raised_event())
    runner.close(timeout=10)
    env = json.loads(out.read_text())
    assert env["MGS_MOUSE"] == "M7" and env["MGS_CAMERA"] == "cam2" and env["MGS_RULE"] == "pain"
    assert env["MGS_EVENT"] == "raised" and float(env["MGS_VALUE"]) == 4.5
    assert float(env["MGS_THRESHOLD"]) == 4 and float(env["MGS_SINCE"]) == 240
    assert env["MGS_DETAIL"] == "total mean 4.50 of (4, 5)"
    assert (runner.stats.ok, runner.stats.failed, runner.stats.dropped) == (1, 0, 0)


def test_hanging_hook_is_killed_and_close_returns_promptly() -> None:
    runner = HookRunner([sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=0.5)
    runner.submit(raised_event())
    start = time.monotonic()
    runner.close(timeout=5)
    assert time.monotonic() - start < 4
    assert runner.stats.timed_out == 1 and "still running after 0.5 s" in runner.stats.last_error


def test_full_queue_drops_and_close_gives_up_on_the_rest() -> None:
    runner = HookRunner([sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=0.3)
    for i in range(105):
        runner.submit(raised_event(f"M{i}"))
    assert runner.stats.dropped >= 4
    start = time.monotonic()
    runner.close(timeout=0.2)
    assert time.monotonic() - start < 1
    runner.submit(raised_event())  # after close: dropped, never run
    deadline = time.monotonic() + 5
    while runner.stats.timed_out + runner.stats.dropped < 106 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner.stats.timed_out == 1 and runner.stats.dropped == 105  # the queue abandoned


def test_missing_hook_program_counts_as_failed(tmp_path: Path) -> None:
    missing = tmp_path / "page-vet"
    runner = HookRunner([str(missing), "--urgent"], timeout_s=5)
    runner.submit(raised_event())
    runner.submit(raised_event())
    runner.close(timeout=5)
    assert runner.stats.failed == 2 and runner.stats.ok == 0
    assert str(missing) in runner.stats.last_error


def test_failing_hook_reports_exit_status_and_stderr() -> None:
    runner = HookRunner([sys.executable, "-c", "import sys; sys.exit('pager refused')"],
                        timeout_s=5)
    runner.submit(raised_event())
    runner.close(timeout=5)
    assert runner.stats.failed == 1
    assert "exited with 1: pager refused" in runner.stats.last_error


def test_hook_failing_is_raised_after_three_in_a_row_and_cleared_when_one_works() -> None:
    assert hook_failing(HookCounts(failed=2, in_a_row=2), None, 100.0) is None
    raised = hook_failing(HookCounts(failed=5, ok=1, in_a_row=3, last_error="cannot run x"),
                          None, 100.0)
    assert raised is not None
    assert (raised.mouse, raised.rule, raised.event, raised.value) == ("*", "hook_failing",
                                                                       "raised", 3)
    assert "3 runs in a row failed; last: cannot run x" in raised.detail
    assert hook_failing(HookCounts(failed=6, in_a_row=4), raised, 200.0) is None  # still on
    cleared = hook_failing(HookCounts(failed=6, ok=1), raised, 300.0)
    assert cleared is not None and (cleared.event, cleared.since, cleared.wall_time) == (
        "cleared", 100.0, 300.0)


def test_failures_in_a_row_count_until_a_run_works(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    script = ("import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
              "n = int(p.read_text() or 0) + 1 if p.exists() else 1; p.write_text(str(n)); "
              "sys.exit('pager down' if n <= 2 else 0)")
    runner = HookRunner([sys.executable, "-c", script, str(counter)], timeout_s=10)
    runner.submit(raised_event("M1"))
    runner.submit(raised_event("M2"))
    runner.submit(raised_event("M3").model_copy(update={"rule": "hook_failing"}))  # not run
    deadline = time.monotonic() + 20
    while runner.stats.failed < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (runner.stats.failed, runner.stats.in_a_row) == (2, 2)
    runner.submit(raised_event("M4"))
    runner.close(timeout=10)
    assert (runner.stats.ok, runner.stats.failed, runner.stats.in_a_row) == (1, 2, 0)
    assert counter.read_text() == "3"
