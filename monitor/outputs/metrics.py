"""Metrics for Prometheus: what the monitor's messages say, served at `/metrics`.

The exporter is one more subscriber of the monitor's in-process endpoint, as its own screen is:
a thread of its own takes the score records, camera and status reports and keeps the latest of
each (`MonitorMetrics`), and prometheus_client's HTTP server turns them into metric families
when Prometheus scrapes. The pipeline thread publishes as it always did; it never waits for the
exporter, and a scrape never reaches it. Counters are the monitor's own counts since it started
(Prometheus handles the reset at a restart).

Series: 7 per camera (state, fps, frames read and dropped, reconnects, queue depth and drops),
3 per mouse (last total, status, pain), and about 30 for the monitor as a whole.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.config import Metrics, split_listen
from monitor.outputs.bus import Subscriber
from monitor.schema import CameraReport, Message, ScoreRecord, StatusReport

RECEIVE_MS = 250  # how often the exporter's thread looks for a stop
DRAIN_MS = 100  # once stopping: what arrives within this long is still counted
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class MetricsError(ValueError):
    """The metrics cannot be served (the port is taken); the message is one line."""


@dataclass
class MouseState:
    """What the newest record of one mouse said; `total` is its last scored total, `pain`
    whether its pain alert is raised."""

    camera: str
    status: str
    total: int | None
    pain: bool


@dataclass(frozen=True)
class Backlog:
    """Records a sink holds in memory because it cannot write them now, and those it lost."""

    held: int
    dropped: int
    failing: bool


def backlogs(status: StatusReport) -> dict[str, Backlog]:
    """Each sink's backlog by name (`sink` label): the CSV's, and the database's when `run`
    writes to one (its rows spooled while it is away)."""
    found = {"csv": Backlog(status.csv_backlog, status.csv_dropped, bool(status.csv_error))}
    if status.database:  # spooled rows are kept on disk and written later: none dropped
        found["database"] = Backlog(status.database_spooled, 0, bool(status.database_error))
    return found


class MonitorMetrics(Collector):
    """The latest camera reports, status report and per-mouse records, as metric families.
    `apply` runs on the exporter's thread, `collect` on the HTTP server's: one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cameras: dict[str, CameraReport] = {}
        self._status: StatusReport | None = None
        self._mice: dict[str, MouseState] = {}
        self._records: Counter[str] = Counter()
        self._latency = Histogram(
            "mgs_scoring_latency_seconds", "Capture to scored record, per record.",
            buckets=LATENCY_BUCKETS_S, registry=None)

    def apply(self, message: Message) -> None:
        with self._lock:
            if isinstance(message, ScoreRecord):
                self._record(message)
            elif isinstance(message, CameraReport):
                self._cameras[message.camera] = message
            elif isinstance(message, StatusReport):
                self._status = message

    def _record(self, record: ScoreRecord) -> None:
        self._records[record.status] += 1
        if record.latency_ms is not None:
            self._latency.observe(record.latency_ms / 1000.0)
        last = self._mice.get(record.mouse)
        total = record.total if record.total is not None else last.total if last else None
        self._mice[record.mouse] = MouseState(record.camera, record.status, total,
                                              "pain" in record.alert.split(","))

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cameras = list(self._cameras.values())
            status = self._status
            mice = dict(self._mice)
            records = dict(self._records)
            latency = list(self._latency.collect())
        yield from camera_families(cameras)
        yield from mouse_families(mice)
        records_family = CounterMetricFamily(
            "mgs_records", "Score records made, by the mouse's status.", labels=["status"])
        for name, count in sorted(records.items()):
            records_family.add_metric([name], count)
        yield records_family
        yield from latency
        if status is not None:
            yield from status_families(status)


def camera_families(cameras: list[CameraReport]) -> Iterator[Metric]:
    state = GaugeMetricFamily("mgs_camera_state", "1 for the camera's current state "
                              "(connecting, ok, down, ended, stopped).", labels=["camera", "state"])
    fps = GaugeMetricFamily("mgs_camera_fps", "Frames per second the camera delivers.",
                            labels=["camera"])
    read = CounterMetricFamily("mgs_camera_frames_read", "Frames read from the camera.",
                               labels=["camera"])
    dropped = CounterMetricFamily("mgs_camera_frames_dropped", "Frames the camera's reader "
                                  "missed or dropped.", labels=["camera"])
    reconnects = CounterMetricFamily("mgs_camera_reconnects", "Times the camera was opened "
                                     "again after it went down.", labels=["camera"])
    for report in cameras:
        state.add_metric([report.camera, report.state], 1)
        fps.add_metric([report.camera], report.fps)
        read.add_metric([report.camera], report.frames_read)
        dropped.add_metric([report.camera], report.frames_dropped)
        reconnects.add_metric([report.camera], report.reconnects)
    return iter((state, fps, read, dropped, reconnects))


def mouse_families(mice: dict[str, MouseState]) -> Iterator[Metric]:
    total = GaugeMetricFamily("mgs_mouse_total", "The mouse's last scored MGS total (0-10).",
                              labels=["mouse", "camera"])
    status = GaugeMetricFamily("mgs_mouse_status", "1 for the status of the mouse's newest "
                               "record (scored, no_face, low_quality, camera_down).",
                               labels=["mouse", "camera", "status"])
    pain = GaugeMetricFamily("mgs_mouse_pain", "1 while the mouse's pain alert is raised.",
                             labels=["mouse", "camera"])
    for mouse, state in sorted(mice.items()):
        if state.total is not None:
            total.add_metric([mouse, state.camera], state.total)
        status.add_metric([mouse, state.camera, state.status], 1)
        pain.add_metric([mouse, state.camera], int(state.pain))
    return iter((total, status, pain))


def status_families(status: StatusReport) -> Iterator[Metric]:
    yield from queue_families(status)
    yield from hook_families(status)
    yield from evidence_families(status)
    yield from backlog_families(status)


def queue_families(status: StatusReport) -> Iterable[Metric]:
    depth = GaugeMetricFamily("mgs_queue_depth", "Frames waiting to be scored.",
                              labels=["camera"])
    drops = CounterMetricFamily("mgs_queue_dropped_frames", "Frames dropped because the "
                                "camera's share of the queue was full.", labels=["camera"])
    for camera in sorted(status.queue_depth.keys() | status.queue_dropped.keys()):
        depth.add_metric([camera], status.queue_depth.get(camera, 0))
        drops.add_metric([camera], status.queue_dropped.get(camera, 0))  # 0: rate() sees it
    return depth, drops


def hook_families(status: StatusReport) -> Iterable[Metric]:
    hooks = status.hooks
    runs = CounterMetricFamily("mgs_alert_hook_runs", "Runs of the alert hook (on_alert), by "
                               "result.", labels=["result"])
    for result, count in (("ok", hooks.ok), ("failed", hooks.failed),
                          ("timed_out", hooks.timed_out), ("dropped", hooks.dropped)):
        runs.add_metric([result], count)
    in_a_row = GaugeMetricFamily("mgs_alert_hook_failing_in_a_row", "Hook runs failed or "
                                 "timed out since the last one that worked.",
                                 value=hooks.in_a_row)
    return runs, in_a_row


def evidence_families(status: StatusReport) -> Iterable[Metric]:
    kept = bool(status.evidence_folder)
    return (
        GaugeMetricFamily("mgs_evidence_bytes", "Bytes of evidence kept on disk.",
                          value=status.evidence_bytes),
        GaugeMetricFamily("mgs_evidence_files", "Evidence files kept on disk.",
                          value=status.evidence_files),
        CounterMetricFamily("mgs_evidence_not_kept_files", "Evidence files not kept (the "
                            "writer's queue full, the disk refusing).",
                            value=status.evidence_dropped),
        GaugeMetricFamily("mgs_evidence_paused", "1 while evidence is not being kept (disk "
                          "full, budget full of pinned files).",
                          value=int(kept and bool(status.evidence_error))),
    )


def backlog_families(status: StatusReport) -> Iterable[Metric]:
    held = GaugeMetricFamily("mgs_sink_backlog_records", "Records held in memory because the "
                             "sink cannot write them now.", labels=["sink"])
    dropped = CounterMetricFamily("mgs_sink_dropped_records", "Records lost when the sink's "
                                  "backlog overflowed.", labels=["sink"])
    failing = GaugeMetricFamily("mgs_sink_failing", "1 while the sink cannot write.",
                                labels=["sink"])
    for sink, backlog in backlogs(status).items():
        held.add_metric([sink], backlog.held)
        dropped.add_metric([sink], backlog.dropped)
        failing.add_metric([sink], int(backlog.failing))
    return held, dropped, failing


class MetricsServer:
    """Serves one monitor's metrics: the HTTP server bound at once (a taken port is raised
    here, before the monitor starts), and a thread subscribed to `endpoint` before the
    monitor's publisher binds it, so it counts from the first record."""

    def __init__(self, settings: Metrics, endpoint: str) -> None:
        host, port = split_listen(settings.listen)
        self.metrics = MonitorMetrics()
        registry = CollectorRegistry()
        registry.register(self.metrics)
        try:
            self._httpd, _ = start_http_server(port, host, registry)
        except OSError as exc:
            raise MetricsError(f"metrics.listen {settings.listen}: cannot serve there: "
                               f"{exc.strerror or exc} (another mgs-monitor?)") from exc
        self.port = self._httpd.server_address[1]
        self._endpoint = endpoint
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._follow, name="metrics", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._shutdown_http()
            raise self._error

    def _follow(self) -> None:
        """The subscriber is made, used and closed on this thread."""
        try:
            subscriber = Subscriber(self._endpoint)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        with subscriber:
            self._ready.set()
            while not self._stop.is_set():
                for message in subscriber.receive(RECEIVE_MS):
                    self.metrics.apply(message)
            for message in subscriber.receive(DRAIN_MS):
                self.metrics.apply(message)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._shutdown_http()

    def _shutdown_http(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def open_metrics(settings: Metrics | None, endpoint: str) -> MetricsServer | None:
    """The monitor's metrics server when the config has a `metrics` section."""
    return MetricsServer(settings, endpoint) if settings is not None else None
