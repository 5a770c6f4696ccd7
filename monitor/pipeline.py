"""The monitor's data flow: capture workers -> faces -> batched scoring -> records -> outputs.

`Analyzer` is the pure part (frames in, records out). `Monitor` owns the threads: one capture
worker per camera and one pipeline thread that scores whatever frames are due across all
cameras as one batch, then writes each record to the CSV (durable first), the ZeroMQ publisher
and the dashboard state. Shutdown stops the sources first, drains the queue, and closes the
outputs last, so nothing scored is lost.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from monitor.alerts import AlertEngine, AlertEvent, HookRunner
from monitor.bus import Publisher
from monitor.capture import CaptureWorker, Frame, FrameQueue, Opener, open_capture
from monitor.config import Camera, ConfigError, MonitorConfig, load_config
from monitor.csvlog import CsvLogger, SideLog
from monitor.faces import FaceFinder, FaceResult, cubicle_pixels
from monitor.models import LOCALIZER, SCORER, OnnxModel
from monitor.records import CameraReport, ScoreRecord
from monitor.scoring import Scorer, UnitScores

CAMERA_REPORT_EVERY_S = 2.0
STOP_GRACE_S = 5.0  # how long a stop waits for capture workers stuck in a driver call


@dataclass
class Models:
    """The two loaded models; loading validates them (ModelError names the file)."""

    scorer: OnnxModel
    localizer: OnnxModel

    @classmethod
    def load(cls, config: MonitorConfig) -> Models:
        m = config.models
        return cls(OnnxModel(m.scorer, SCORER, m.providers, m.threads),
                   OnnxModel(m.localizer, LOCALIZER, m.providers, m.threads))

    @property
    def is_demo(self) -> bool:
        return self.scorer.info.is_demo or self.localizer.info.is_demo

    @property
    def precision(self) -> str:
        return self.scorer.info.extra.get("precision", "fp32")

    def mismatch(self) -> str:
        """A line for the user when the scorer file does not suit the device it runs on."""
        if self.precision == "fp16" and self.scorer.providers[0] == "CPUExecutionProvider":
            return ("fp16 scorer running on the CPU: slower than the fp32 file, which is the "
                    "one to use without a GPU")
        return ""


class Analyzer:
    """Frames in, one record per cubicle out: localize all cubicles, score all faces at once."""

    def __init__(self, config: MonitorConfig, models: Models) -> None:
        self.config = config
        self.models = models
        self.cameras = {c.name: c for c in config.cameras}
        self.scorer = Scorer(models.scorer)
        self.finder = FaceFinder(models.localizer, config.faces, self.scorer.input_size)
        self._seq = itertools.count(1)
        self.model_kind = "demo" if models.is_demo else "trained"

    def process(self, frames: list[Frame]) -> list[ScoreRecord]:
        slots: list[tuple[Frame, int]] = []  # (frame, cubicle index) per region, in order
        regions: list[np.ndarray] = []
        for frame in frames:
            if frame.image is None:
                continue
            for index, cubicle in enumerate(self._camera(frame).cubicle_list()):
                x0, y0, x1, y1 = cubicle_pixels(frame.image.shape, cubicle)
                regions.append(frame.image[y0:y1, x0:x1])
                slots.append((frame, index))
        faces = self.finder.find(regions)
        crops = [f.crop for f in faces if f.crop is not None]
        scores = iter(self.scorer.score(crops) if crops else [])
        found = {(id(fr), i): (face, next(scores) if face.crop is not None else None)
                 for (fr, i), face in zip(slots, faces, strict=True)}
        records = []
        for frame in frames:
            for index, cubicle in enumerate(self._camera(frame).cubicle_list()):
                face, unit_scores = found.get((id(frame), index), (None, None))
                records.append(self.record_for(frame, index + 1, cubicle.mouse, face, unit_scores))
        return records

    def _camera(self, frame: Frame) -> Camera:
        return self.cameras[frame.camera]

    def record_for(self, frame: Frame, cubicle: int, mouse: str, face: FaceResult | None,
                scores: UnitScores | None) -> ScoreRecord:
        """One record; without a face result the frame was missing, unless crops were scored."""
        status = face.status if face else ("scored" if scores else "camera_down")
        return ScoreRecord(
            publisher=self.config.publisher, seq=next(self._seq), wall_time=time.time(),
            mono_time=time.monotonic(), source_time=frame.source_time,
            frame_index=frame.frame_index, camera=frame.camera, cubicle=cubicle, mouse=mouse,
            status=status, face_box=face.box if face else None,
            face_score=face.score if face else float("nan"),
            sharpness=face.sharpness if face else float("nan"),
            probs=scores.probs.round(5).tolist() if scores else None,
            levels=scores.levels if scores else None, total=scores.total if scores else None,
            expected_total=scores.expected_total if scores else None,
            model_kind=self.model_kind, scorer_id=self.models.scorer.info.model_id,
            localizer_id=self.models.localizer.info.model_id,
            latency_ms=(time.monotonic() - frame.mono_time) * 1000.0,
        )


@dataclass
class Outputs:
    """Where records go, in this order: the CSV (durable first), ZeroMQ, the dashboard.

    Alert events go to `<csv>.alerts.csv`, the `alert` topic, the dashboard and the hook."""

    csv: CsvLogger | None = None
    publisher: Publisher | None = None
    on_score: Callable[[ScoreRecord], None] | None = None
    on_camera: Callable[[CameraReport], None] | None = None
    on_alert: Callable[[AlertEvent], None] | None = None
    on_notice: Callable[[str], None] | None = None
    hooks: HookRunner | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    alert_log: SideLog | None = field(init=False, default=None)
    _csv_error: str = field(init=False, default="")

    def __post_init__(self) -> None:
        if self.csv is not None:
            self.alert_log = SideLog(self.csv.path.with_suffix(".alerts.csv"),
                                     AlertEvent.CSV_COLUMNS)

    def alerts(self, events: list[AlertEvent]) -> None:
        for event in events:
            if self.alert_log:
                try:
                    self.alert_log.write(event.csv_row())
                except OSError as exc:  # published and shown all the same
                    self.notice(f"cannot write {self.alert_log.path}: {exc.strerror or exc}")
            if self.publisher:
                self.publisher.publish_alert(event)
            if self.hooks and event.event in ("raised", "cleared"):
                self.hooks.submit(event)
            if self.on_alert:
                with self.lock:
                    self.on_alert(event)

    def notice(self, text: str) -> None:
        if self.on_notice:
            with self.lock:
                self.on_notice(text)

    def scores(self, records: list[ScoreRecord]) -> None:
        for record in records:
            if self.csv:
                self.csv.write(record)
            if self.publisher:
                self.publisher.publish_score(record)
            if self.on_score:
                with self.lock:
                    self.on_score(record)
        if self.csv and records:
            self.csv.sync()
            self._csv_state()

    def _csv_state(self) -> None:
        """Say when the CSV stops taking records (disk full) and when it resumes."""
        assert self.csv is not None
        error = self.csv.error
        if error == self._csv_error:
            return
        self._csv_error = error
        lost = (f"{self.csv.dropped} records lost when the backlog overflowed"
                if self.csv.dropped else "nothing lost")
        self.notice(f"{error}; {self.csv.backlog} records held in memory, scoring goes on"
                    if error else f"{self.csv.path}: writing resumed, {lost}")

    def camera(self, report: CameraReport) -> None:
        if self.publisher:
            self.publisher.publish_camera(report)
        if self.on_camera:
            with self.lock:
                self.on_camera(report)

    def close(self) -> None:
        """Close all outputs, the CSV first; re-raise the first failure after trying them all."""
        failures = []
        hooks = self.hooks
        finish_hooks = hooks and (lambda: hooks.close(timeout=hooks.timeout_s + 1.0))
        for close in (self.csv and self.csv.close, self.publisher and self.publisher.close,
                      finish_hooks):
            try:
                if close:
                    close()
            except Exception as exc:
                failures.append(exc)
        if failures:
            raise failures[0]


class Monitor:
    """Runs the capture workers and the pipeline thread until stopped or the media ends."""

    def __init__(self, config: MonitorConfig, models: Models, outputs: Outputs, *,
                 opener: Opener = open_capture, realtime: bool = True,
                 replay: bool = False, config_path: Path | None = None) -> None:
        self.config = config
        self.analyzer = Analyzer(config, models)
        self.alerts = AlertEngine(config.alerts, models.scorer.info.pain_cutoff)
        self.config_path = config_path
        self._config_mtime = _mtime(config_path)
        self._reload = threading.Event()
        self.outputs = outputs
        self.frames = FrameQueue(config.queue_size)
        self.stop_sources = threading.Event()
        self.workers = [
            CaptureWorker(cam.name, cam.source, config.sampling_for(cam), self.frames,
                          self.stop_sources, opener=opener, realtime=realtime,
                          wait_when_full=replay)
            for cam in config.cameras
        ]
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)
        self._reports = itertools.count(1)
        self._last_report: dict[str, tuple[str, float]] = {}
        self.latency_ms: dict[str, float] = {}
        self._stop_asked: float | None = None
        self.last_loop = time.monotonic()  # for the systemd watchdog
        self.records = 0
        self.error: BaseException | None = None

    def start(self) -> None:
        for worker in self.workers:
            worker.start()
        self._thread.start()

    def request_reload(self) -> None:
        """Re-read the alert rules from the config file (SIGHUP); the series are kept."""
        self._reload.set()

    def request_stop(self) -> None:
        """Stop the sources; the pipeline then drains what they already captured."""
        self.stop_sources.set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the pipeline to finish; True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            while True:
                sources_done = self._sources_done()
                frames = self.frames.take_all(timeout=0.2)
                if frames:
                    self._score(frames)
                if sources_done and not frames and not len(self.frames):
                    break
                self._report_cameras()
                self._reload_if_asked()
                self.last_loop = time.monotonic()
            self._report_cameras(final=True)
        except BaseException as exc:  # surfaced by the CLI; capture is stopped, outputs closed
            self.error = exc
            self.stop_sources.set()
        finally:
            self._close_outputs()

    def _sources_done(self) -> bool:
        """All workers finished, or a stop was asked long enough ago: a worker stuck in a
        driver call (a dead stream, a wedged device) must not hold the shutdown."""
        if not any(w.is_alive() for w in self.workers):
            return True
        if not self.stop_sources.is_set():
            return False
        if self._stop_asked is None:
            self._stop_asked = time.monotonic()
        return time.monotonic() - self._stop_asked > STOP_GRACE_S

    def _close_outputs(self) -> None:
        """Close every output even if one fails; the first failure becomes the run's error."""
        try:
            self.outputs.close()
        except Exception as exc:  # e.g. the disk filled up before the last flush
            self.error = self.error or exc

    def _score(self, frames: list[Frame]) -> None:
        records = self.analyzer.process(frames)
        events = [event for record in records for event in self.alerts.update(record)]
        self.outputs.scores(records)
        self.outputs.alerts(events)
        self.records += len(records)
        for record in records:
            self.latency_ms[record.camera] = record.latency_ms

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
            self.outputs.notice(f"config reload refused, old alert rules kept: {exc}")
            return
        self.alerts.reload(new.alerts, self.analyzer.models.scorer.info.pain_cutoff)
        self.outputs.notice(f"{self.config_path}: alert rules reloaded "
                            "(cameras and models need a restart)")

    def _report_cameras(self, final: bool = False) -> None:
        """A report per camera when its state changes, every few seconds, and at the end."""
        now = time.monotonic()
        for worker in self.workers:
            stats = worker.stats
            last_state, last_time = self._last_report.get(worker.camera, ("", 0.0))
            due = stats.state != last_state or now - last_time >= CAMERA_REPORT_EVERY_S
            if not (due or final):
                continue
            self._last_report[worker.camera] = (stats.state, now)
            self.outputs.camera(CameraReport(
                publisher=self.config.publisher, seq=next(self._reports), wall_time=time.time(),
                camera=worker.camera, state=stats.state, frames_read=stats.frames_read,
                frames_dropped=self.frames.dropped.get(worker.camera, 0),
                reconnects=stats.reconnects, last_frame_time=stats.last_frame_time,
                fps=stats.fps(), latency_ms=self.latency_ms.get(worker.camera, float("nan")),
                error=stats.error,
            ))


def _mtime(path: Path | None) -> float | None:
    try:
        return path.stat().st_mtime if path else None
    except OSError:
        return None
