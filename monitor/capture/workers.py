"""Capture workers: one thread per camera, turning a source into sampled frames.

Two clocks:
- live sources (device index, RTSP/HTTP URL) are sampled by the wall clock. In periodic mode the
  device is opened only when a sample is due and released after the burst, so a camera costs
  nothing between samples; a failure is retried with exponential backoff.
- media sources (video file, image folder or glob) are sampled by their own clock (frame index /
  fps), as fast as possible or paced at recorded speed; they end at their last frame.
A burst of k frames is grabbed at each due time and the sharpest one is kept.
"""

from __future__ import annotations

import glob
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from monitor.capture.readers import Arrival, Capture, DirectReader, NewestFrameReader
from monitor.config import Sampling

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
RELEASE_BETWEEN_S = 10.0  # periodic live sources sampled less often than this are closed between
BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
STREAM_TIMEOUT_MS = 10000  # open/read limit for RTSP/HTTP streams


Opener = Callable[[int | str], Capture]
FrameReader = DirectReader | NewestFrameReader


@dataclass
class Frame:
    """A sampled frame (BGR, as OpenCV gives it), or `image=None` when the camera was down."""

    camera: str
    image: np.ndarray | None
    wall_time: float
    mono_time: float
    source_time: float
    frame_index: int
    sharpness: float = float("nan")
    error: str = ""


@dataclass(frozen=True)
class CameraHealth:
    """One consistent reading of a camera's health: made by its worker under the worker's
    lock, read by the pipeline as a whole, never field by field."""

    state: str = "connecting"  # connecting, ok, down, ended, stopped
    error: str = ""
    frames_read: int = 0
    reconnects: int = 0
    last_frame_time: float | None = None
    fps: float = 0.0
    frames_dropped: int = 0  # frames a held-open stream sent while its worker was busy
    position: int = 0  # frames into recorded media, for progress bars
    total_frames: int = 0  # media length when known


class FrameQueue:
    """Frames waiting to be scored, bounded per camera; the pipeline takes all cameras' at once.

    Live capture never waits: when its camera's share is full, that camera's oldest frame is
    dropped and counted, so a fast camera can never push out another camera's samples. Replay
    waits instead, and once a stop is asked it keeps what was captured rather than drop it.
    """

    def __init__(self, size_per_camera: int) -> None:
        self._frames: dict[str, deque[Frame]] = {}
        self._size = size_per_camera
        self._cond = threading.Condition()  # one lock for the frames and the drop counts
        self._dropped: dict[str, int] = {}

    def put(self, frame: Frame, block: bool, stop: threading.Event) -> None:
        with self._cond:
            queued = self._frames.setdefault(frame.camera, deque())
            while block and len(queued) >= self._size and not stop.is_set():
                self._cond.wait(0.1)
            if not block and len(queued) >= self._size:
                queued.popleft()
                self._dropped[frame.camera] = self._dropped.get(frame.camera, 0) + 1
            queued.append(frame)
            self._cond.notify_all()

    def take_all(self, timeout: float) -> list[Frame]:
        """Everything queued now, oldest first (waiting up to `timeout` for the first frame)."""
        with self._cond:
            if not self._queued():
                self._cond.wait(timeout)
            frames = sorted((f for q in self._frames.values() for f in q),
                            key=lambda f: f.mono_time)
            for queued in self._frames.values():
                queued.clear()
            self._cond.notify_all()
            return frames

    def drops(self) -> dict[str, int]:
        """Frames dropped so far per camera (a copy)."""
        with self._cond:
            return dict(self._dropped)

    def depths(self) -> dict[str, int]:
        """Frames waiting now per camera: above zero while scoring falls behind its cameras."""
        with self._cond:
            return {camera: len(queued) for camera, queued in self._frames.items()}

    def __len__(self) -> int:
        with self._cond:  # a worker may be adding its camera's queue right now
            return self._queued()

    def _queued(self) -> int:
        return sum(len(q) for q in self._frames.values())


def quiet_opencv() -> None:
    """Keep OpenCV's and FFmpeg's own log lines (`can't open camera by index`, `moov atom not
    found`) off the terminal: the monitor's one line says what went wrong and names the source.
    A user who wants them sets OPENCV_LOG_LEVEL or OPENCV_FFMPEG_LOGLEVEL. Call before the first
    video is opened (FFmpeg reads its level then)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def is_live(source: int | str) -> bool:
    return isinstance(source, int) or is_stream(source)


def is_stream(source: int | str) -> bool:
    """A network stream (RTSP/HTTP URL), as opposed to a camera device or recorded media."""
    return isinstance(source, str) and "://" in source


def open_capture(source: int | str) -> Capture:
    """Open any supported source with OpenCV (image folders and globs as an image sequence)."""
    if isinstance(source, int):
        return cv2.VideoCapture(source)
    if is_stream(source):  # a stream that stalls without closing must time out, not hang
        return cv2.VideoCapture(source, cv2.CAP_FFMPEG, [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
        ])
    if is_image_sequence(source):
        return ImageSequence(source)
    return cv2.VideoCapture(source)


def is_image_sequence(source: str) -> bool:
    """An image folder or a glob pattern, read as one frame per image."""
    return Path(source).is_dir() or any(ch in source for ch in "*?[")


def media_problem(source: str) -> str:
    """Why a recorded source (video file, image folder or glob) cannot be replayed at all, or ""
    when it can: a recording that is missing, empty or not a video is refused before anything
    starts, rather than replayed as a camera that is down."""
    if is_image_sequence(source):
        return "" if ImageSequence(source).isOpened() else "no images here"
    path = Path(source)
    if not path.is_file():
        return "no such video file"
    if path.stat().st_size == 0:
        return "empty file, not a video"
    capture = cv2.VideoCapture(str(path))
    try:
        readable = capture.isOpened() and capture.read()[0]
    finally:
        capture.release()
    return "" if readable else "not a video OpenCV can read"


class ImageSequence:
    """Still images from a folder or glob, read like a video (one frame per image, sorted)."""

    def __init__(self, pattern: str) -> None:
        path = Path(pattern)
        names = sorted(path.iterdir()) if path.is_dir() else sorted(map(Path, glob.glob(pattern)))
        self.paths = [p for p in names if p.suffix.lower() in IMAGE_SUFFIXES]
        self.index = 0
        self.unreadable: list[Path] = []

    def isOpened(self) -> bool:
        return bool(self.paths)

    def grab(self) -> bool:
        self.index += 1
        return self.index <= len(self.paths)

    def read(self) -> tuple[bool, np.ndarray | None]:
        """The next readable image; unreadable files are skipped and counted, not an end."""
        while self.index < len(self.paths):
            image = cv2.imread(str(self.paths[self.index]), cv2.IMREAD_COLOR)
            self.index += 1
            if image is not None:
                return True, image
            self.unreadable.append(self.paths[self.index - 1])
        return False, None

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        """The image last grabbed (None if unreadable, as OpenCV answers)."""
        if not 0 < self.index <= len(self.paths):
            return False, None
        image = cv2.imread(str(self.paths[self.index - 1]), cv2.IMREAD_COLOR)
        return image is not None, image

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return float(len(self.paths))
        return 0.0  # no fps: every image is its own sample

    def release(self) -> None:
        self.index = len(self.paths)


def frame_sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian on every k-th pixel (~320 wide): higher means sharper. Only
    compared within a burst; the strided view ranks a frame above its blurred copies as well
    as an averaged copy does, at a fifth of the cost (bench/resize.py)."""
    step = max(1, image.shape[1] // 320)
    small = np.ascontiguousarray(image[::step, ::step])
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


class CaptureWorker(threading.Thread):
    """Samples one camera into the shared frame queue until `stop` is set or the media ends."""

    def __init__(self, camera: str, source: int | str, sampling: Sampling, frames: FrameQueue,
                 stop: threading.Event, *, opener: Opener = open_capture,
                 realtime: bool = True, wait_when_full: bool = False) -> None:
        super().__init__(name=f"capture-{camera}", daemon=True)
        self.camera = camera
        self.source = source
        self.sampling = sampling
        self.frames = frames
        self.stop = stop
        self.opener = opener
        self.realtime = realtime
        self.wait_when_full = wait_when_full
        # Written by this thread only, read by the pipeline through health(): under the lock.
        self._lock = threading.Lock()
        self._health = CameraHealth()
        self._recent: deque[float] = deque(maxlen=30)  # monotonic times of the latest reads
        self._position = 0  # frames read or grabbed; only this thread moves it

    def health(self) -> CameraHealth:
        with self._lock:
            return replace(self._health, position=self._position)

    def run(self) -> None:
        """Capture until stopped; an unexpected error is reported as the camera being down
        (with camera_down records) and a live camera is tried again after a pause."""
        live = is_live(self.source)
        while not self.stop.is_set():
            try:
                self._run_live() if live else self._run_media()
                break
            except Exception as exc:  # any capture failure is a camera failure
                error = f"{type(exc).__name__}: {exc}"
                self._set_state("down", error)
                now = time.time()
                self._put(Frame(self.camera, None, now, time.monotonic(), now, -1, error=error))
                pause = min(BACKOFF_S[-1], max(BACKOFF_S[0], self.sampling.every_s))
                if not live or self.stop.wait(pause):
                    break
        if self.health().state not in ("ended", "down"):
            self._set_state("stopped")

    # live sources -------------------------------------------------------------------------
    def _run_live(self) -> None:
        reader: FrameReader | None = None
        continuous = self.sampling.continuous
        keep_open = continuous or self.sampling.every_s < RELEASE_BETWEEN_S
        next_due = time.monotonic()
        failures = 0
        try:
            while not self.stop.is_set():
                if not continuous and self.stop.wait(max(0.0, next_due - time.monotonic())):
                    break
                next_due += 0.0 if continuous else self.sampling.every_s
                reader = reader or self._open_live(keep_open)
                frame = self._burst(reader, 1 if continuous else self.sampling.burst, None)
                if frame is None:
                    self._emit_down(self._why_down(reader))
                    self._close(reader)
                    reader = None
                    failures += 1
                    if continuous and self.stop.wait(BACKOFF_S[min(failures, len(BACKOFF_S)) - 1]):
                        break
                    continue
                failures = 0
                self._put(frame)
                if not keep_open:
                    self._close(reader)
                    reader = None
        finally:
            self._close(reader)

    def _open_live(self, keep_open: bool) -> FrameReader | None:
        """A reader on the opened source; a stream held open is kept drained to its newest."""
        capture = self.opener(self.source)
        if not capture.isOpened():
            capture.release()
            return None
        if keep_open and is_stream(self.source):
            return NewestFrameReader(capture, STREAM_TIMEOUT_MS / 1000)
        return DirectReader(capture)

    def _why_down(self, reader: FrameReader | None) -> str:
        if reader is None:
            return f"cannot open source {self.source!r}"
        detail = f": {reader.error}" if reader.error else ""
        return f"no frame from source {self.source!r}{detail}"

    def _emit_down(self, error: str) -> None:
        self._set_state("down", error)
        now = time.time()
        self._put(Frame(self.camera, None, now, time.monotonic(), now, -1, error=error))

    # media sources ------------------------------------------------------------------------
    def _run_media(self) -> None:
        capture = self.opener(self.source)
        if not capture.isOpened():
            capture.release()
            error = f"cannot open {self.source}"
            self._set_state("down", error)
            now = time.time()
            self._put(Frame(self.camera, None, now, time.monotonic(), 0.0, -1, error=error))
            return
        fps = capture.get(cv2.CAP_PROP_FPS)
        with self._lock:
            self._health = replace(self._health,
                                   total_frames=int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        step = 1 if self.sampling.continuous or fps <= 0 else None
        start = time.monotonic()
        next_due = 0.0
        reader = DirectReader(capture)
        try:
            while not self.stop.is_set():
                if step is None and not self._skip_to(capture, next_due, fps):
                    break
                if self.realtime and fps > 0:  # pace before reading: latency stays honest
                    self.stop.wait(max(0.0, start + self._position / fps - time.monotonic()))
                frame = self._burst(reader, 1 if step else self.sampling.burst, fps)
                if frame is None:
                    break
                next_due += self.sampling.every_s
                self._put(frame)
        finally:
            capture.release()
        if not self.stop.is_set():
            self._set_state("ended")

    def _skip_to(self, capture: Capture, due_s: float, fps: float) -> bool:
        """Advance without decoding to the first frame at or after `due_s` of media time."""
        while self._position / fps < due_s - 1e-9:
            if self.stop.is_set() or not capture.grab():
                return False
            self._advance()
        return True

    # shared -------------------------------------------------------------------------------
    def _burst(self, reader: FrameReader | None, count: int, fps: float | None) -> Frame | None:
        """Read `count` frames and keep the sharpest; None when the source gives nothing.
        `fps` is None for live sources, whose frames are timed by their arrival."""
        if reader is None:
            return None
        best: Frame | None = None
        for k in range(count):
            arrival = reader.next_frame(follow=k > 0 or self.sampling.continuous)
            if arrival is None:
                break
            best = self._keep_sharper(best, self._frame_of(arrival, fps))
        self._count_drops(reader.take_drops())
        return best

    def _frame_of(self, arrival: Arrival, fps: float | None) -> Frame:
        index = self._advance()
        # live: arrival time; media: its own clock (an image sequence: one second an image)
        source_time = arrival.wall_time if fps is None else index / fps if fps else float(index)
        frame = Frame(self.camera, arrival.image, arrival.wall_time, arrival.mono_time,
                      source_time, index, frame_sharpness(arrival.image))
        self._count_read(frame)
        return frame

    @staticmethod
    def _keep_sharper(best: Frame | None, candidate: Frame) -> Frame:
        return candidate if best is None or candidate.sharpness > best.sharpness else best

    def _count_read(self, frame: Frame) -> None:
        self._recent.append(frame.mono_time)
        with self._lock:
            health = self._health
            self._health = replace(
                health, state="ok", error="", frames_read=health.frames_read + 1,
                last_frame_time=frame.wall_time, fps=_rate(self._recent),
                reconnects=health.reconnects + (health.state == "down"))

    def _count_drops(self, dropped: int) -> None:
        if dropped:
            with self._lock:
                self._health = replace(self._health,
                                       frames_dropped=self._health.frames_dropped + dropped)

    def _put(self, frame: Frame) -> None:
        self.frames.put(frame, self.wait_when_full, self.stop)

    def _advance(self) -> int:
        """The index of the frame just read or grabbed; the published position moves on."""
        with self._lock:
            self._position += 1
            return self._position - 1

    def _set_state(self, state: str, error: str = "") -> None:
        with self._lock:  # state and error change together
            self._health = replace(self._health, state=state, error=error)

    @staticmethod
    def _close(reader: FrameReader | None) -> None:
        if reader is not None:
            reader.close()


def _rate(times: deque[float]) -> float:
    """Frames per second over the recent read times."""
    if len(times) < 2:
        return 0.0
    span = times[-1] - times[0]
    return (len(times) - 1) / span if span > 0 else 0.0
