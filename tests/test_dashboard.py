"""The dashboard draws what the records said: checked on the text of a fixed-width console."""

from __future__ import annotations

import io
import math
import re

import pytest
from rich.console import Console

from monitor.schema import (
    Acknowledgement,
    AlertCrop,
    AlertEvent,
    CameraReport,
    HookCounts,
    MouseOrigins,
    ScoreRecord,
    StatusReport,
    alert_key,
)
from monitor.views.dashboard import (
    UNIT_HEADERS,
    DashboardState,
    format_age,
    render,
    sparkline,
)

NOW = 1_700_000_000.0


def score(
    mouse: str,
    camera: str = "cam0",
    cubicle: int = 1,
    status: str = "scored",
    levels: list[int] | None = None,
    wall_time: float = NOW,
    alert: str = "",
    seq: int = 0,
) -> ScoreRecord:
    """A record as the pipeline publishes it; levels only when scored, as the contract says."""
    scored = status == "scored"
    levels = (levels or [0, 1, 2, 1, 0]) if scored else None
    return ScoreRecord(
        publisher="test",
        seq=seq,
        wall_time=wall_time,
        mono_time=wall_time - NOW,
        source_time=wall_time,
        frame_index=seq,
        camera=camera,
        cubicle=cubicle,
        mouse=mouse,
        status=status,
        face_box=(0.5, 0.5, 0.2, 0.2) if scored else None,
        face_score=0.9 if scored else math.nan,
        sharpness=120.0,
        probs=[[1.0 if i == lv else 0.0 for i in range(3)] for lv in levels] if levels else None,
        levels=levels,
        total=sum(levels) if levels else None,
        expected_total=float(sum(levels)) if levels else None,
        pain=(sum(levels) >= 4) if levels else None,
        alert=alert,
        model_kind="demo",
        scorer_id="scorer",
        localizer_id="localizer",
        latency_ms=12.0,
    )


def camera(
    name: str = "cam0",
    state: str = "ok",
    dropped: int = 0,
    reconnects: int = 0,
    error: str = "",
) -> CameraReport:
    return CameraReport(
        publisher="test",
        seq=0,
        wall_time=NOW,
        camera=name,
        state=state,
        frames_read=1234,
        frames_dropped=dropped,
        reconnects=reconnects,
        last_frame_time=NOW,
        fps=14.96,
        latency_ms=33.0,
        error=error,
    )


def draw(state: DashboardState, now: float = NOW) -> str:
    console = Console(width=160, record=True, file=io.StringIO(), color_system=None)
    console.print(render(state, now))
    return console.export_text()


def row_of(text: str, mouse: str) -> str:
    """The one table line that holds `mouse`."""
    rows = [line for line in text.splitlines() if f" {mouse} " in line]
    assert len(rows) == 1, f"{mouse!r} on {len(rows)} lines:\n{text}"
    return rows[0]


def cells(line: str) -> list[str]:
    """The stripped cells of one table line (body rows use │, the header row ┃)."""
    return [c.strip() for c in re.split("[│┃]", line.strip().strip("│┃"))]


def styles_of(state: DashboardState, cell: str) -> list[str]:
    """Inline CSS of every span whose text is exactly `cell`, to check colours without ANSI."""
    console = Console(width=160, record=True, file=io.StringIO(), color_system="truecolor")
    console.print(render(state, NOW))
    html = console.export_html(inline_styles=True)
    spans = re.findall(r'<span style="([^"]*)">([^<]*)</span>', html)
    return [style for style, text in spans if text.strip() == cell]


def test_empty_state_renders_a_waiting_message() -> None:
    text = draw(DashboardState())
    assert "waiting for records…" in text
    assert "mgs-monitor" in text


def test_mice_appear_once_sorted_by_camera_then_cubicle() -> None:
    state = DashboardState()
    for mouse, cam, cub in [("m-d", "cam10", 1), ("m-c", "cam2", 2), ("m-b", "cam2", 1),
                            ("m-a", "cam0", 3)]:
        state.add_score(score(mouse, camera=cam, cubicle=cub))
    text = draw(state)
    order = ["m-a", "m-b", "m-c", "m-d"]
    for mouse in order:
        assert text.count(mouse) == 1
    assert [text.index(m) for m in order] == sorted(text.index(m) for m in order)
    assert "cam2/1" in row_of(text, "m-b")
    assert "cam10/1" in row_of(text, "m-d")


def test_latest_scored_total_and_levels_are_shown() -> None:
    state = DashboardState()
    state.add_score(score("m1", levels=[0, 0, 0, 0, 0], wall_time=NOW - 20))
    state.add_score(score("m1", levels=[2, 1, 0, 2, 1], wall_time=NOW - 5))
    text = draw(state)
    header = next(line for line in text.splitlines() if "mouse" in line)
    assert cells(header)[3:8] == list(UNIT_HEADERS) == ["OT", "NB", "CB", "EP", "WC"]
    row = cells(row_of(text, "m1"))
    assert row[2] == "6"
    assert row[3:8] == ["2", "1", "0", "2", "1"]
    assert row[8] == "▁▅"
    assert row[9] == "scored"
    assert row[10] == "5s"


def test_no_face_after_score_keeps_previous_total_as_stale() -> None:
    state = DashboardState()
    state.add_score(score("m1", levels=[1, 1, 1, 1, 0], wall_time=NOW - 180))
    state.add_score(score("m1", status="no_face", wall_time=NOW - 1))
    row = cells(row_of(draw(state), "m1"))
    assert row[2] == "4 stale"
    assert row[3:8] == ["1", "1", "1", "1", "0"]
    assert row[8] == "▄"  # the unscored record adds nothing to the trend
    assert row[9] == "no_face"
    assert row[10] == "3m"


def test_mouse_never_scored_shows_dashes() -> None:
    state = DashboardState()
    state.add_score(score("m1", status="camera_down"))
    row = cells(row_of(draw(state), "m1"))
    assert row[2] == "—"
    assert row[9] == "camera_down"
    assert row[10] == "—"


def test_alert_text_is_shown_with_the_total() -> None:
    state = DashboardState()
    state.alert_threshold = 5
    state.add_score(score("m1", levels=[2, 2, 2, 1, 1], alert="MGS 8 ≥ 5 for 3 samples"))
    state.add_score(score("m2", camera="cam1", levels=[2, 2, 1, 0, 0]))
    text = draw(state)
    assert cells(row_of(text, "m1"))[2] == "8 MGS 8 ≥ 5 for 3 samples"
    assert cells(row_of(text, "m2"))[2] == "5"
    assert "alert ≥ 5" in text


def test_totals_are_coloured_by_threshold_and_alert() -> None:
    state = DashboardState()
    state.alert_threshold = 5
    state.add_score(score("m1", levels=[0, 0, 1, 0, 0]))
    state.add_score(score("m2", camera="cam1", levels=[2, 2, 1, 0, 0]))
    state.add_score(score("m3", camera="cam2", levels=[2, 2, 2, 2, 2], alert="ALERT"))
    green, red = "color: #008000", "color: #800000"
    assert any(green in style for style in styles_of(state, "1"))  # below threshold
    assert any(red in style and "bold" not in style for style in styles_of(state, "5"))  # at it
    assert any(red in style and "bold" in style for style in styles_of(state, "10 ALERT"))


def test_demo_banner_only_when_demo() -> None:
    state = DashboardState()
    state.title = "mgs-monitor — 4 cameras"
    state.records_total, state.gaps, state.csv_path = 1234, 3, "/data/mgs.csv"
    text = draw(state)
    assert "DEMO" not in text
    header = text.splitlines()[0]
    for part in ("mgs-monitor — 4 cameras", "records 1234", "gaps 3", "/data/mgs.csv"):
        assert part in header
    state.demo = True
    text = draw(state)
    assert "DEMO MODELS — not a real pain model" in text
    assert "[DEMO]" in text.splitlines()[0]


def test_cameras_table_shows_state_drops_and_reconnects() -> None:
    state = DashboardState()
    state.add_camera(camera("cam0", state="ok", dropped=2, reconnects=0))
    state.add_camera(camera("cam1", state="down", dropped=5, reconnects=7, error="x" * 100))
    state.add_camera(camera("cam1", state="down", dropped=6, reconnects=8, error="x" * 100))
    state.dropped = {"cam1": 10, "cam9": 4}
    text = draw(state)
    cam0, cam1, cam9 = (cells(row_of(text, c)) for c in ("cam0", "cam1", "cam9"))
    assert cam0[:7] == ["cam0", "ok", "15.0", "1234", "2", "0", "33"]
    assert cam1[:7] == ["cam1", "down", "15.0", "1234", "16", "8", "33"]
    assert cam1[7] == "x" * 39 + "…"
    assert cam9[4] == "4"  # queue drops for a camera that has not reported yet


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0, 10], "▁█"),
        ([0, 5, 10], "▁▅█"),
        ([-3, 15], "▁█"),
        ([], ""),
        ([math.nan, 10], " █"),
    ],
)
def test_sparkline(values: list[float], expected: str) -> None:
    assert sparkline(values) == expected


def test_sparkline_has_one_char_per_value_and_custom_range() -> None:
    values = [float(v) for v in range(11)]
    line = sparkline(values)
    assert len(line) == len(values)
    assert line[0] == "▁" and line[-1] == "█"
    assert list(line) == sorted(line)
    assert sparkline([1, 2], low=1, high=2) == "▁█"
    assert sparkline([4], low=4, high=4) == "▁"


def test_history_bounds_the_sparkline() -> None:
    state = DashboardState(history=3)
    for i in range(6):
        state.add_score(score("m1", levels=[2, 2, 2, 2, 2] if i < 3 else [0, 0, 0, 0, 0]))
    assert cells(row_of(draw(state), "m1"))[8] == "▁▁▁"
    with pytest.raises(ValueError):
        DashboardState(history=0)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (None, "—"),
        (math.nan, "—"),
        (-4.0, "0s"),
        (0.0, "0s"),
        (12.7, "12s"),
        (59.9, "59s"),
        (60.0, "1m"),
        (3599.0, "59m"),
        (3600.0, "1h"),
        (7300.0, "2h"),
        (86400.0 * 3, "3d"),
    ],
)
def test_format_age(seconds: float | None, expected: str) -> None:
    assert format_age(seconds) == expected


def _alert(event: str, value: float | None, peak: float, wall: float) -> AlertEvent:
    return AlertEvent(wall_time=wall, time=wall, mouse="cam0-c1", camera="cam0", rule="pain",
                      event=event, value=value, threshold=4.0, since=wall, peak=peak,
                      detail="window mean 5.0")


def test_alerts_table_follows_the_lifecycle() -> None:
    state = DashboardState()
    state.add_alert(_alert("raised", 5.0, 5.0, 1000.0))
    state.add_alert(_alert("active", 4.5, 6.0, 1600.0))
    console = Console(width=160, file=io.StringIO(), record=True)
    console.print(render(state, 1000.0 + 125))
    text = console.export_text()
    assert "alerts" in text and "cam0-c1" in text and "2m" in text  # since the raise
    assert "6.0" in text and "4.5" in text  # peak kept, value refreshed
    state.add_alert(_alert("cleared", 2.0, 6.0, 1700.0))
    console = Console(width=160, file=io.StringIO(), record=True)
    console.print(render(state, 1800.0))
    assert "alerts" not in console.export_text()


def test_an_acknowledged_alert_shows_who_saw_it_until_it_clears() -> None:
    state = DashboardState()
    raised = _alert("raised", 5.0, 5.0, 1000.0)
    state.apply(raised)
    state.apply(Acknowledgement(publisher="", wall_time=1100.0, time=1100.0, mouse="cam0-c1",
                                camera="cam0", rule="pain", since=1000.0, who="Ann Smith",
                                note="buprenorphine given", alert=alert_key(raised)))
    state.apply(AlertCrop(publisher="", alert=alert_key(raised), mouse="cam0-c1", rule="pain",
                          since=1000.0, name="evidence/a.jpg", jpeg="/9j/"))  # not drawn
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(render(state, 1200.0))
    text = console.export_text()
    assert "acknowledged" in text and "by Ann Smith: buprenorphine given" in text
    state.apply(_alert("cleared", 2.0, 6.0, 1700.0))
    state.apply(_alert("raised", 5.0, 5.0, 1800.0))  # a new alert: nobody has seen it yet
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(render(state, 1900.0))
    assert "Ann Smith" not in console.export_text()


def status(publisher: str = "rack1", **fields: object) -> StatusReport:
    base: dict[str, object] = {
        "publisher": publisher, "seq": 1, "wall_time": NOW,
        "title": f"mgs-monitor live — {publisher}", "model_kind": "trained",
        "alert_threshold": 5.0, "records": 120, "csv_path": "/d/s.csv"}
    return StatusReport.model_validate(base | fields)


def test_the_header_and_health_come_from_status_reports() -> None:
    state = DashboardState()
    state.apply(status(hooks=HookCounts(ok=2, failed=3, last_error="cannot run /opt/pager"),
                       queue_dropped={"cam0": 7}, notice="config reload refused: lab.yaml",
                       notice_time=NOW))
    state.apply(camera("cam0", dropped=2))
    state.malformed = 4
    text = draw(state)
    header = text.splitlines()[0]
    for part in ("mgs-monitor live — rack1", "records 120", "alert ≥ 5", "/d/s.csv",
                 "malformed messages 4"):
        assert part in header
    assert "config reload refused: lab.yaml" in text
    assert "alert hook runs: 2 ok, 3 failed, 0 timed out, 0 dropped — cannot run /opt/pager" in text
    assert cells(row_of(text, "cam0"))[4] == "9"  # the reader's 2 and the queue's 7
    assert "CSV:" not in text and "DEMO" not in text


def test_two_monitors_are_summed_and_their_notices_named() -> None:
    state = DashboardState()
    state.apply(status("rackA", records=100, csv_error="cannot write /d/a.csv: No space left",
                       csv_backlog=40, notice="disk full", notice_time=NOW - 10))
    state.apply(status("rackB", records=50, alert_threshold=6.0, model_kind="demo",
                       notice="hook failing", notice_time=NOW))
    text = draw(state)
    header = text.splitlines()[0]
    assert "mgs-monitor — 2 monitors" in header and "records 150" in header
    assert "alert ≥ —" in header  # they differ
    assert "rackB: hook failing" in text and "DEMO MODELS" in text
    assert ("rackA: CSV: 40 records held in memory, 0 lost — cannot write /d/a.csv: No space "
            "left") in " ".join(text.split())


def test_evidence_is_shown_and_red_while_it_is_not_kept() -> None:
    state = DashboardState()
    state.apply(status(evidence_folder="/d/evidence", evidence_files=1200,
                       evidence_bytes=2_500_000_000))
    assert "evidence: 1200 files, 2.50 GB in /d/evidence" in " ".join(draw(state).split())
    state.apply(status(evidence_folder="/d/evidence", evidence_files=1200,
                       evidence_bytes=2_500_000_000, evidence_dropped=7,
                       evidence_error="evidence paused, scoring goes on: No space left"))
    assert ("evidence: 1200 files, 2.50 GB in /d/evidence, 7 not kept — evidence paused, "
            "scoring goes on: No space left") in " ".join(draw(state).split())
    state.apply(status())  # evidence off: nothing said
    assert "evidence:" not in draw(state)


def from_run(mouse: str, publisher: str, instance: str, seq: int) -> ScoreRecord:
    return score(mouse, seq=seq).model_copy(update={"publisher": publisher, "instance": instance})


def test_a_mouse_two_monitors_send_is_said_once_a_restart_is_not() -> None:
    origins = MouseOrigins()
    restart = [from_run("cam0-c1", "hostA", "run1", 1), from_run("cam0-c1", "hostA", "run1", 2),
               from_run("cam0-c1", "hostA", "run2", 1), from_run("cam0-c1", "hostA", "run2", 2)]
    assert [origins.check(r) for r in restart] == [None] * 4
    other_host = [origins.check(from_run(m, "hostB", "run9", k))
                  for k, m in enumerate(["cam0-c1", "cam0-c2", "cam0-c1"])]
    assert other_host[0] == (
        "mouse cam0-c1 comes from two monitors, hostA (run run1) and hostB (run run9): their "
        "records would be mixed up; give each monitor its own camera or mouse names (and "
        "`publisher` id)")
    assert other_host[1:] == [None, None]


def test_two_runs_of_one_publisher_sending_at_once_are_not_a_restart() -> None:
    origins = MouseOrigins()
    both = [from_run("cam0-c1", "host", run, k) for k in range(3) for run in ("aaaa", "bbbb")]
    said = [n for n in map(origins.check, both) if n]
    assert len(said) == 1 and "host (run bbbb) and host (run aaaa)" in said[0]


def test_the_dashboard_shows_a_shared_mouse_and_counts_no_false_gaps() -> None:
    state = DashboardState()
    for k in range(1, 4):
        state.apply(from_run("cam0-c1", "host", "aaaa", k))
        state.apply(from_run("cam0-c1", "host", "bbbb", k))
    assert state.gaps == 0 and len(state.mixed) == 1
    assert "mouse cam0-c1 comes from two monitors" in " ".join(draw(state).split())


def test_unknown_numbers_from_the_wire_are_dashes() -> None:
    """A camera report before the first record (latency null) and a reminder whose window value
    is unknown (value null) are drawn, not refused."""
    state = DashboardState()
    state.add_camera(camera("cam0", state="ok").model_copy(update={"latency_ms": None}))
    state.add_alert(_alert("raised", 5.0, 5.0, 1000.0))
    state.add_alert(_alert("active", None, 5.0, 1600.0))
    text = draw(state, 1700.0)
    assert cells(row_of(text, "cam0"))[6] == "—"
    assert cells(row_of(text, "cam0-c1"))[3:5] == ["—", "5.0"]  # value unknown, peak kept
