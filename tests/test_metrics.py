"""Metrics for Prometheus (monitor/outputs/metrics.py): what each message sets, the settings'
loopback rule, and a running monitor's /metrics page against what it published."""

from __future__ import annotations

import re
import socket
import threading
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from demo.build import DemoBuild
from monitor.cli import main
from monitor.config import DEFAULT_METRICS, ConfigError, build_config
from monitor.outputs.metrics import MetricsError, MonitorMetrics
from monitor.pipeline import Monitor
from monitor.schema import CameraReport, HookCounts, ScoreRecord, StatusReport
from monitor.scoring.analyzer import Models
from tests.conftest import free_port
from tests.metrics_util import parse, scrape_until, stalling_monitor, value
from tests.monitor_util import View


def config_with(demo: DemoBuild, metrics: object) -> dict[str, object]:
    return {**demo.config(), "metrics": metrics}


def test_metrics_are_off_unless_configured_and_on_loopback_by_default(
        demo_small: DemoBuild) -> None:
    assert build_config(demo_small.config()).metrics is None
    metrics = build_config(config_with(demo_small, {})).metrics
    assert metrics is not None and metrics.listen == DEFAULT_METRICS == "127.0.0.1:9560"


@pytest.mark.parametrize("listen", ["0.0.0.0:9560", "cage-host:9560", "[2001:db8::1]:9560"])
def test_metrics_beyond_this_machine_need_insecure(demo_small: DemoBuild, listen: str) -> None:
    with pytest.raises(ConfigError, match=rf"^lab.yaml: metrics: listen {re.escape(listen)} "
                                          r"reaches beyond this machine.*set insecure$"):
        build_config(config_with(demo_small, {"listen": listen}), origin="lab.yaml")
    opted = build_config(config_with(demo_small, {"listen": listen, "insecure": True}))
    assert opted.metrics is not None and opted.metrics.listen == listen


@pytest.mark.parametrize("listen", ["localhost:9560", "[::1]:9560", "127.0.0.2:9560"])
def test_loopback_addresses_need_no_opt_in(demo_small: DemoBuild, listen: str) -> None:
    metrics = build_config(config_with(demo_small, {"listen": listen})).metrics
    assert metrics is not None and not metrics.insecure


@pytest.mark.parametrize("listen", ["9560", "127.0.0.1:", "127.0.0.1:70000", ":9560",
                                    "127.0.0.1:0"])
def test_a_listen_that_is_not_host_port_is_one_line(demo_small: DemoBuild, listen: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(config_with(demo_small, {"listen": listen}), origin="lab.yaml")
    assert str(caught.value) == (f"lab.yaml: metrics.listen: {listen!r} is not HOST:PORT with a "
                                 "port from 1 to 65535")


def test_a_taken_metrics_port_stops_the_monitor_before_any_camera(
        demo_small: DemoBuild, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = build_config({**config_with(demo_small, {"listen": f"127.0.0.1:{port}"}),
                               "bus": {"enabled": False}})
        out = tmp_path / "s.csv"
        monitor = Monitor(config, Models.load(config), out, realtime=False, replay=True)
        with pytest.raises(MetricsError, match=rf"^metrics.listen 127.0.0.1:{port}: cannot "
                                               "serve there: Address already in use"):
            monitor.start()
        assert not out.exists()  # nothing was opened, no camera started
        lab = tmp_path / "lab.yaml"
        lab.write_text(f"metrics: {{listen: '127.0.0.1:{port}'}}\n")
        assert main(["replay", str(demo_small.videos[0]), "--models", str(demo_small.folder),
                     "--config", str(lab), "--out", str(out), "--no-dashboard"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"mgs-monitor: error: metrics.listen 127.0.0.1:{port}: cannot "
                              "serve there")


def exposition(metrics: MonitorMetrics) -> dict:
    registry = CollectorRegistry()
    registry.register(metrics)
    return parse(generate_latest(registry).decode())


def record(seq: int, mouse: str, status: str, total: int | None, alert: str = "",
           latency_ms: float | None = 40.0) -> ScoreRecord:
    return ScoreRecord(publisher="p", seq=seq, wall_time=1.0, mono_time=1.0, source_time=seq,
                       frame_index=seq, camera="cam1", cubicle=1, mouse=mouse, status=status,
                       total=total, alert=alert, latency_ms=latency_ms)


def test_a_database_away_is_its_sinks_backlog() -> None:
    """While the database `run` writes to is away, its spooled rows are its backlog, and it is
    failing; none is dropped (the spool is on disk)."""
    metrics = MonitorMetrics()
    metrics.apply(StatusReport(
        publisher="p", seq=1, wall_time=1.0, title="t", model_kind="demo", alert_threshold=4,
        records=3, database="postgresql://mgs@db/mgs", database_spooled=42,
        database_error="connection refused"))
    got = exposition(metrics)
    assert value(got, "mgs_sink_backlog_records", sink="database") == 42
    assert value(got, "mgs_sink_failing", sink="database") == 1
    assert value(got, "mgs_sink_dropped_records_total", sink="database") == 0
    assert value(got, "mgs_sink_failing", sink="csv") == 0


def test_each_message_sets_its_metrics() -> None:
    metrics = MonitorMetrics()
    metrics.apply(CameraReport(publisher="p", seq=1, wall_time=1.0, camera="cam1", state="ok",
                               frames_read=120, frames_dropped=3, reconnects=2, fps=4.5))
    metrics.apply(CameraReport(publisher="p", seq=2, wall_time=2.0, camera="cam1",
                               state="down", frames_read=121, frames_dropped=3, reconnects=2))
    hooks = HookCounts(ok=5, failed=2, timed_out=1, dropped=4, in_a_row=3)
    metrics.apply(StatusReport(
        publisher="p", seq=3, wall_time=2.0, title="t", model_kind="demo", alert_threshold=4,
        records=3, csv_backlog=17, csv_dropped=2, csv_error="disk full", hooks=hooks,
        queue_dropped={"cam2": 6}, queue_depth={"cam1": 5}, evidence_folder="ev",
        evidence_files=9, evidence_bytes=12345, evidence_dropped=7, evidence_error="budget full"))
    metrics.apply(record(4, "M101", "scored", 6, alert="no_face,pain"))
    metrics.apply(record(5, "M101", "no_face", None, alert="pain", latency_ms=None))
    metrics.apply(record(6, "M102", "scored", 1, latency_ms=3000.0))
    got = exposition(metrics)

    assert value(got, "mgs_camera_state", camera="cam1", state="down") == 1
    assert value(got, "mgs_camera_state", camera="cam1", state="ok") is None  # one per camera
    assert value(got, "mgs_camera_fps", camera="cam1") == 0
    assert value(got, "mgs_camera_frames_read_total", camera="cam1") == 121
    assert value(got, "mgs_camera_frames_dropped_total", camera="cam1") == 3
    assert value(got, "mgs_camera_reconnects_total", camera="cam1") == 2
    assert value(got, "mgs_queue_depth", camera="cam1") == 5
    assert value(got, "mgs_queue_depth", camera="cam2") == 0
    assert value(got, "mgs_queue_dropped_frames_total", camera="cam1") == 0
    assert value(got, "mgs_queue_dropped_frames_total", camera="cam2") == 6
    for result, count in (("ok", 5), ("failed", 2), ("timed_out", 1), ("dropped", 4)):
        assert value(got, "mgs_alert_hook_runs_total", result=result) == count
    assert value(got, "mgs_alert_hook_failing_in_a_row") == 3
    assert value(got, "mgs_evidence_bytes") == 12345
    assert value(got, "mgs_evidence_files") == 9
    assert value(got, "mgs_evidence_not_kept_files_total") == 7
    assert value(got, "mgs_evidence_paused") == 1
    assert value(got, "mgs_sink_backlog_records", sink="csv") == 17
    assert value(got, "mgs_sink_dropped_records_total", sink="csv") == 2
    assert value(got, "mgs_sink_failing", sink="csv") == 1
    assert value(got, "mgs_sink_backlog_records", sink="database") is None  # `run` writes none
    # M101: the last scored total stays while its face is not seen; pain is still raised
    assert value(got, "mgs_mouse_total", mouse="M101", camera="cam1") == 6
    assert value(got, "mgs_mouse_status", mouse="M101", camera="cam1", status="no_face") == 1
    assert value(got, "mgs_mouse_status", mouse="M101", camera="cam1", status="scored") is None
    assert value(got, "mgs_mouse_pain", mouse="M101", camera="cam1") == 1
    assert value(got, "mgs_mouse_pain", mouse="M102", camera="cam1") == 0
    assert value(got, "mgs_records_total", status="scored") == 2
    assert value(got, "mgs_records_total", status="no_face") == 1
    assert value(got, "mgs_scoring_latency_seconds_count") == 2
    assert value(got, "mgs_scoring_latency_seconds_sum") == pytest.approx(3.04)
    assert value(got, "mgs_scoring_latency_seconds_bucket", le="0.05") == 1
    assert value(got, "mgs_scoring_latency_seconds_bucket", le="2.5") == 1
    assert value(got, "mgs_scoring_latency_seconds_bucket", le="5.0") == 2


def test_evidence_turned_off_is_not_paused() -> None:
    metrics = MonitorMetrics()
    metrics.apply(StatusReport(publisher="p", seq=1, wall_time=1.0, title="t",
                               model_kind="demo", alert_threshold=4, records=0))
    assert value(exposition(metrics), "mgs_evidence_paused") == 0


def test_a_running_monitor_serves_what_it_published(demo_small: DemoBuild,
                                                    tmp_path: Path) -> None:
    """Three samples of four mice, then the camera stalls: once the page has counted every
    record and no frame waits (a status report after the stall), it says what the records
    and reports said."""
    port, go_on = free_port(), threading.Event()
    monitor = stalling_monitor(demo_small, tmp_path / "s.csv", port, 3, go_on)
    view = View(monitor)
    monitor.start()
    try:
        view.wait_for(lambda v: len(v.of(ScoreRecord)) == 12 and v.of(StatusReport))
        records = view.of(ScoreRecord)
        got = scrape_until(port, lambda s: sum(v for (name, _), v in s.items()
                                               if name == "mgs_records_total") == 12
                           and value(s, "mgs_queue_depth", camera="cam0") == 0)
    finally:
        go_on.set()
        monitor.request_stop()
        assert monitor.wait(20)
        view.close()
    assert monitor.error is None
    for status, count in Counter(r.status for r in records).items():
        assert value(got, "mgs_records_total", status=status) == count
    assert value(got, "mgs_scoring_latency_seconds_count") == 12
    assert value(got, "mgs_scoring_latency_seconds_sum") == pytest.approx(
        sum(r.latency_ms for r in records if r.latency_ms is not None) / 1000)
    last = {r.mouse: r for r in records}
    assert len(last) == 4
    for mouse, newest in last.items():
        scored = [r.total for r in records if r.mouse == mouse and r.total is not None]
        assert value(got, "mgs_mouse_total", mouse=mouse, camera="cam0") == \
            (scored[-1] if scored else None)
        assert value(got, "mgs_mouse_status", mouse=mouse, camera="cam0",
                     status=newest.status) == 1
        assert value(got, "mgs_mouse_pain", mouse=mouse, camera="cam0") == \
            ("pain" in newest.alert.split(","))
    assert any(r.total is not None and "pain" in r.alert for r in records)
    assert value(got, "mgs_camera_state", camera="cam0", state="ok") == 1
    reported = {r.frames_read for r in view.of(CameraReport)}  # the page shows one of them
    assert value(got, "mgs_camera_frames_read_total", camera="cam0") in reported - {0}
    assert value(got, "mgs_sink_backlog_records", sink="csv") == 0


def test_the_start_lines_say_where_metrics_are_served(
        demo_small: DemoBuild, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    lab = tmp_path / "lab.yaml"
    lab.write_text(f"metrics: {{listen: '127.0.0.1:{port}'}}\nbus: {{enabled: false}}\n")
    out = tmp_path / "s.csv"
    assert main(["replay", str(demo_small.videos[0]), "--models", str(demo_small.folder),
                 "--config", str(lab), "--out", str(out), "--no-dashboard"]) == 0
    assert f"metrics for Prometheus: http://127.0.0.1:{port}/metrics" in capsys.readouterr().err
    assert out.exists()
