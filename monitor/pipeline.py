"""The monitor's data flow: capture workers -> faces -> batched scoring -> records -> sinks.

The pure part, frames in and records out, is `Analyzer` (monitor/scoring/analyzer.py).
`Monitor` owns the threads: one capture
worker per camera, and one pipeline thread that scores whatever frames are due across all
cameras as one batch, judges them for alerts, and sends the records, events and reports to its
sinks (the CSV first, then the publisher, then the alert hook; monitor/outputs/sinks.py). The
pipeline reaches the rest of the world only through those messages: a dashboard in this process
subscribes to `Monitor.view_endpoint` like any other subscriber. The way back is the command
socket, which the pipeline thread answers between batches: an acknowledgement reaches the alert
engine on the thread that owns it, and a snapshot is drawn from the latest frame it scored
(monitor/outputs/commands.py). Shutdown stops the sources first, drains the queue, and closes
the sinks last, so nothing scored is lost.
"""

from __future__ import annotations

import base64
import itertools
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from monitor.capture.workers import CaptureWorker, Frame, FrameQueue, Opener, open_capture
from monitor.config import ConfigError, MonitorConfig, load_config
from monitor.outputs.commands import (
    AcknowledgeRequest,
    AlertsRequest,
    Request,
    acknowledged,
    alerts_listed,
    refused,
    snapshot_taken,
)
from monitor.outputs.csvlog import Rotate
from monitor.outputs.evidence import EvidenceWriter
from monitor.outputs.markers import MarkerError, acknowledgement_marker
from monitor.outputs.metrics import MetricsServer, open_metrics
from monitor.outputs.sinks import Sinks, open_sinks
from monitor.schema import (
    AlertCrop,
    AlertEvent,
    CameraReport,
    ScoreRecord,
    StatusReport,
    alert_key,
)
from monitor.scoring.alerts import AlertEngine, hook_failing
from monitor.scoring.analyzer import Analyzer, Models
from monitor.views.snapshot import annotate

if TYPE_CHECKING:  # the database driver is loaded only when the config names a database
    from monitor.outputs.database import DatabaseLog

REPORT_EVERY_S = 2.0  # camera and status reports, besides those sent on every change
STOP_GRACE_S = 5.0  # how long a stop waits for capture workers stuck in a driver call
SNAPSHOT_QUALITY = 85  # JPEG quality of a snapshot sent through the command socket
_views = itertools.count(1)  # in-process endpoints, one per Monitor


class Monitor:
    """Runs the capture workers and the pipeline thread until stopped or the media ends.

    The pipeline thread owns everything after the frame queue: the analyzer, the alert engine
    and the sinks, which it opens and closes itself. Other threads reach it only through
    `request_stop` / `request_reload` and the messages it publishes; `records` and `error` are
    read once it has finished (`wait`)."""

    def __init__(self, config: MonitorConfig, models: Models, csv_path: Path | None, *,
                 opener: Opener = open_capture, realtime: bool = True,
                 replay: bool = False, config_path: Path | None = None,
                 rotate: Rotate = "never") -> None:
        self.config = config
        self.csv_path = csv_path
        self.rotate: Rotate = rotate
        self._analyzer = Analyzer(config, models)
        self._alerts = AlertEngine(config.alerts, models.scorer.info.pain_cutoff,
                                   config.publisher)
        self.title = monitor_title(config, models, replay)
        self.view_endpoint = f"inproc://mgs-monitor-view-{next(_views)}"
        self.config_path = config_path
        self._config_mtime = _mtime(config_path)
        self._reload = threading.Event()
        self._frames = FrameQueue(config.queue_size)
        self._stop_sources = threading.Event()
        self._workers = [
            CaptureWorker(cam.name, cam.source, config.sampling_for(cam), self._frames,
                          self._stop_sources, opener=opener, realtime=realtime,
                          wait_when_full=replay)
            for cam in config.cameras
        ]
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)
        self._opened = threading.Event()
        self._reports = itertools.count(1)
        self._last_report: dict[str, tuple[str, float]] = {}
        self._next_status = 0.0
        self._notice: tuple[str, float | None] = ("", None)
        self._hook_failures = 0
        self._hook_alert: AlertEvent | None = None  # hook_failing, while raised
        self._latency_ms: dict[str, float | None] = {}
        self._latest: dict[str, tuple[Frame, list[ScoreRecord]]] = {}  # for snapshots
        self._stop_asked: float | None = None
        self.metrics: MetricsServer | None = None
        self.records = 0
        self._last_seq = 0  # of the last record published: in each status report
        self.error: BaseException | None = None

    def start(self) -> None:
        """Open the sinks and start the cameras; a sink that cannot be opened (CSV, port) is
        raised here, before any camera starts, as is a metrics port that is taken. The metrics
        server subscribes before the pipeline binds, so it counts every record."""
        self.metrics = open_metrics(self.config.metrics, self.view_endpoint)
        self._thread.start()
        self._opened.wait()
        if self.error is not None:
            self._thread.join()
            raise self.error

    def request_reload(self) -> None:
        """Re-read the alert rules from the config file (SIGHUP); the series are kept."""
        self._reload.set()

    def alert_line(self) -> str:
        """The default pain threshold and where it comes from, for the start line (read before
        `start`: the pipeline thread owns the alert engine after)."""
        return (f"pain alerts at a window mean >= {self._alerts.default:g} "
                f"({self._alerts.default_from})")

    def request_stop(self) -> None:
        """Stop the sources; the pipeline then drains what they already captured."""
        self._stop_sources.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the pipeline to finish; True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            with open_sinks(self.config, self.csv_path, self.view_endpoint,
                            self._post_notice, self.rotate) as sinks:
                for worker in self._workers:
                    worker.start()
                self._opened.set()
                self._loop(sinks)
        except BaseException as exc:  # surfaced by the caller; capture is stopped
            self.error = exc
            self._stop_sources.set()
        finally:
            if self.metrics is not None:  # after the publisher: the last reports are counted
                self.metrics.close()
            self._opened.set()

    def _loop(self, sinks: Sinks) -> None:
        while True:
            sources_done = self._sources_done()
            frames = self._frames.take_all(timeout=0.2)
            if frames:
                self._score(sinks, frames)
            if sources_done and not frames and not len(self._frames):
                break
            self._report_cameras(sinks)
            self._reload_if_asked()
            self._report_status(sinks)
            self._publish_crops(sinks)
            if sinks.commands:
                sinks.commands.serve(lambda request: self._answer(sinks, request))
        if sinks.evidence:  # what is queued is written first, so the last report counts it
            sinks.evidence.close()
            self._publish_crops(sinks)
        self._report_cameras(sinks, final=True)
        self._report_status(sinks, final=True)

    def _sources_done(self) -> bool:
        """All workers finished, or a stop was asked long enough ago: a worker stuck in a
        driver call (a dead stream, a wedged device) must not hold the shutdown."""
        if not any(w.is_alive() for w in self._workers):
            return True
        if not self._stop_sources.is_set():
            return False
        if self._stop_asked is None:
            self._stop_asked = time.monotonic()
        return time.monotonic() - self._stop_asked > STOP_GRACE_S

    def _score(self, sinks: Sinks, frames: list[Frame]) -> None:
        evidence = sinks.evidence
        analyzed = keep_crops(self._analyzer.analyze(frames), evidence)
        judged = [self._alerts.update(record) for record in analyzed]
        records = [record for record, _ in judged]
        events = [event for _, events in judged for event in events]
        sinks.scores(records)
        if evidence:
            events = self._keep_frames(evidence, frames, records, events)
        sinks.alerts(events)
        if evidence:
            for event in events:
                if event.event == "raised":
                    evidence.send_back(event)
        self.records += len(records)
        if records:
            self._last_seq = records[-1].seq
        for record in records:
            self._latency_ms[record.camera] = record.latency_ms
        self._keep_latest(frames, records)

    def _keep_latest(self, frames: list[Frame], records: list[ScoreRecord]) -> None:
        """Each camera's latest frame with its records: what a snapshot draws."""
        for frame in frames:
            if frame.image is not None:
                self._latest[frame.camera] = (frame, [
                    r for r in records if r.camera == frame.camera
                    and r.frame_index == frame.frame_index and r.source_time == frame.source_time])

    def _publish_crops(self, sinks: Sinks) -> None:
        """The evidence files of raised alerts, read back by the evidence writer, published one
        message each for subscribers whose disk is not this one."""
        if sinks.evidence is None:
            return
        for event, name, data in sinks.evidence.returned():
            sinks.publish(AlertCrop(publisher=self.config.publisher, alert=alert_key(event),
                                    mouse=event.mouse, rule=event.rule, since=event.since,
                                    name=name, jpeg=base64.b64encode(data).decode()))

    def _answer(self, sinks: Sinks, request: Request) -> dict[str, object]:
        """The reply to one command (monitor/outputs/commands.py)."""
        if isinstance(request, AcknowledgeRequest):
            return self._acknowledge(sinks, request)
        if isinstance(request, AlertsRequest):
            return alerts_listed(self._alerts.every_active())
        return self._snapshot(request.camera)

    def _acknowledge(self, sinks: Sinks, request: AcknowledgeRequest) -> dict[str, object]:
        """Marker first, then the reminders stop, then everyone is told."""
        ack = self._alerts.acknowledgement(request.alert, request.who, request.note,
                                           time.time())
        if ack is None:
            return refused(f"no active alert {request.alert!r} on {self.config.publisher} "
                           "(cleared, or raised by another monitor)")
        try:
            sinks.mark(acknowledgement_marker(ack))
        except MarkerError as exc:
            return refused(f"not acknowledged: {exc}")
        self._alerts.acknowledge(ack)
        sinks.publish(ack)
        return acknowledged(ack)

    def _snapshot(self, camera: str) -> dict[str, object]:
        """The camera's latest scored frame drawn as `mgs-monitor snapshot` draws it, as JPEG."""
        if camera not in self._analyzer.cameras:
            return refused(f"no camera {camera!r} on {self.config.publisher}; its cameras: "
                           f"{', '.join(self._analyzer.cameras)}")
        latest = self._latest.get(camera)
        if latest is None:
            return refused(f"camera {camera!r} has given no frame yet")
        frame, records = latest
        picture = annotate(frame, self._analyzer.cameras[camera], records)
        ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, SNAPSHOT_QUALITY])
        if not ok:
            return refused(f"camera {camera!r}: the frame could not be encoded as JPEG")
        height, width = picture.shape[:2]
        return snapshot_taken(data.tobytes(), width, height)

    def _keep_frames(self, evidence: EvidenceWriter, frames: list[Frame],
                     records: list[ScoreRecord], events: list[AlertEvent]) -> list[AlertEvent]:
        """Whole frames for face boxes: each camera's first, then every `frame_every_s`, and the
        one a no_face alert was raised on (one frame, however many mice it raised for), which
        the alert then names."""
        raised = {(e.camera, e.time) for e in events if _raises_no_face(e)}
        kept: dict[tuple[str, float], str] = {}
        for frame in frames:
            at = (frame.camera, frame.source_time)
            camera = self._analyzer.cameras[frame.camera]
            own = [r for r in records if (r.camera, r.source_time) == at and
                   r.frame_index == frame.frame_index]
            reason = "no_face" if at in raised else evidence.frame_due(*at)
            if frame.image is None or not reason or at in kept or \
                    len(own) != len(camera.cubicle_list()):
                continue
            kept[at] = evidence.keep_frame(camera, frame.image, own, reason)
        return [e.model_copy(update={"evidence": (kept[e.camera, e.time],)})
                if _raises_no_face(e) and kept.get((e.camera, e.time)) else e for e in events]

    def _post_notice(self, text: str) -> None:
        """Something a person should read: it goes out in a status report at once."""
        self._notice = (text, time.time())
        self._next_status = 0.0

    def _reload_if_asked(self) -> None:
        """New alert rules on SIGHUP or when the config file changes; a bad file is refused
        with the reason and the rules in force stay."""
        mtime = _mtime(self.config_path)
        if self.config_path is None or not (self._reload.is_set() or mtime != self._config_mtime):
            return
        self._reload.clear()
        self._config_mtime = mtime
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            self._post_notice(f"config reload refused, old alert rules kept: {exc}")
            return
        self._alerts.reload(new.alerts, self._analyzer.models.scorer.info.pain_cutoff)
        self._post_notice(f"{self.config_path}: alert rules reloaded "
                          "(cameras and models need a restart)")

    def _report_cameras(self, sinks: Sinks, final: bool = False) -> None:
        """A report per camera when its state changes, every few seconds, and at the end."""
        now = time.monotonic()
        for worker in self._workers:
            health = worker.health()
            last_state, last_time = self._last_report.get(worker.camera, ("", 0.0))
            due = health.state != last_state or now - last_time >= REPORT_EVERY_S
            if not (due or final):
                continue
            self._last_report[worker.camera] = (health.state, now)
            sinks.publish(CameraReport(
                publisher=self.config.publisher, seq=next(self._reports), wall_time=time.time(),
                camera=worker.camera, state=health.state, frames_read=health.frames_read,
                frames_dropped=health.frames_dropped,
                reconnects=health.reconnects, last_frame_time=health.last_frame_time,
                fps=health.fps, latency_ms=self._latency_ms.get(worker.camera),
                error=health.error, position=health.position, total_frames=health.total_frames,
            ))

    def _report_status(self, sinks: Sinks, final: bool = False) -> None:
        """The monitor's own state every few seconds, at once after a notice, and at the end."""
        sinks.evidence_state()
        hooks = sinks.hook_counts()
        if hooks.failed + hooks.timed_out > self._hook_failures:
            self._hook_failures = hooks.failed + hooks.timed_out
            self._post_notice(f"alert hook failing ({hooks.failed} failed, {hooks.timed_out} "
                              f"timed out so far): {hooks.last_error}")
        event = hook_failing(hooks, self._hook_alert, time.time(), self.config.publisher)
        if event is not None:
            self._hook_alert = event if event.event == "raised" else None
            sinks.alerts([event])
        now = time.monotonic()
        if now < self._next_status and not final:
            return
        self._next_status = now + REPORT_EVERY_S
        csv = sinks.csv
        notice, notice_time = self._notice
        sinks.publish(StatusReport(
            publisher=self.config.publisher, seq=next(self._reports), wall_time=time.time(),
            title=self.title, model_kind=self._analyzer.models.kind,
            alert_threshold=self._alerts.default, records=self.records,
            model_figures=self._analyzer.models.figures(),
            model_below_floor=self._analyzer.models.below_floor(),
            csv_path=str(csv.path) if csv else "", csv_backlog=csv.backlog if csv else 0,
            csv_dropped=csv.dropped if csv else 0, csv_error=csv.error if csv else "",
            queue_dropped=self._frames.drops(), queue_depth=self._frames.depths(), hooks=hooks,
            notice=notice, notice_time=notice_time, **_evidence_fields(sinks.evidence),
            **_database_fields(sinks.database),
            commands=sinks.commands.endpoint if sinks.commands else "",
            instance=self._analyzer.instance, last_seq=self._last_seq,
        ))


def _database_fields(database: DatabaseLog | None) -> dict[str, Any]:
    """The status report's database fields: none without a database."""
    if database is None:
        return {}
    return {"database": database.shown, "database_spooled": database.spooled,
            "database_error": database.error}


def _raises_no_face(event: AlertEvent) -> bool:
    return event.rule == "no_face" and event.event == "raised"


def keep_crops(analyzed: list[tuple[ScoreRecord, np.ndarray | None]],
               evidence: EvidenceWriter | None) -> list[ScoreRecord]:
    """The records, each naming its crop when evidence is kept: the path goes into the record
    now, the pixels to the writer thread."""
    if evidence is None:
        return [record for record, _ in analyzed]
    return [evidence.keep_crop(record, crop) for record, crop in analyzed]


def _evidence_fields(evidence: EvidenceWriter | None) -> dict[str, Any]:
    if evidence is None:
        return {}
    counts = evidence.counts()
    return {"evidence_folder": str(evidence.folder), "evidence_files": counts.files,
            "evidence_bytes": counts.bytes, "evidence_dropped": counts.dropped,
            "evidence_error": counts.error}


def monitor_title(config: MonitorConfig, models: Models, replay: bool) -> str:
    """What runs, as the dashboard's header says it: mode, cameras, mice, device, precision."""
    mice = sum(len(c.cubicle_list()) for c in config.cameras)
    what = "replay" if replay else "live"
    return (f"mgs-monitor {what} — {len(config.cameras)} cameras, {mice} mice, "
            f"{models.scorer.runtime} {models.precision}")


def _mtime(path: Path | None) -> float | None:
    try:
        return path.stat().st_mtime if path else None
    except OSError:
        return None
