"""How a capture worker reads frames from an open source.

`DirectReader` reads when asked: recorded media, camera devices (whose drivers keep only a few
frames) and streams opened for one burst and closed again.

`NewestFrameReader` is for network streams held open between samples. An IP camera keeps
sending while nobody reads: frames the monitor does not take wait in the socket and FFmpeg's
buffers, and a later read returns the oldest of them. Read that way, a stream sampled slower
than it sends falls further behind with every sample, goes on giving frames for many seconds
after the camera died, and each frame's record carries the read time rather than the time the
frame came in. So a thread of its own grabs every frame as it arrives (FFmpeg's grab, without
the conversion to BGR) and notes when; the capture worker asks for the next frame to arrive
and only that one is converted. A dead connection ends the reads at once, a stalled one after
the read timeout; frames that arrive while the worker is still busy with the previous one of a
run are dropped and counted.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Capture(Protocol):
    """The part of cv2.VideoCapture the workers use; tests fake only this (the camera device)."""

    def isOpened(self) -> bool: ...
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def grab(self) -> bool: ...
    def retrieve(self) -> tuple[bool, np.ndarray | None]: ...
    def get(self, prop: int) -> float: ...
    def release(self) -> None: ...


@dataclass(frozen=True)
class Arrival:
    """A frame handed to the worker, with the clocks read when it arrived."""

    image: np.ndarray
    wall_time: float
    mono_time: float


class DirectReader:
    """Reads the capture when asked; the frame's time is the time it was read."""

    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.error = ""

    def next_frame(self, follow: bool) -> Arrival | None:
        ok, image = self.capture.read()
        if not ok or image is None:
            return None
        return Arrival(image, time.time(), time.monotonic())

    def take_drops(self) -> int:
        return 0  # nothing arrives unasked

    def close(self) -> None:
        self.capture.release()


class NewestFrameReader:
    """Owns an open stream: its thread grabs continuously and releases the stream when closed.

    Only that thread touches the capture (OpenCV's captures are not safe across threads), so
    a request is served by the grabbing thread itself, from the first frame to arrive after it.
    """

    def __init__(self, capture: Capture, timeout_s: float) -> None:
        self._capture = capture
        self._timeout_s = timeout_s
        self._cond = threading.Condition()
        self._wanted = False
        self._request = 0  # which request is waiting: a late hand-over never serves a newer one
        self._delivered: Arrival | None = None
        self._ended = False
        self._closing = False
        self._grabbed = 0  # frames arrived so far
        self._last_taken = 0  # the arrival number of the last frame handed over
        self._follow = False
        self._dropped = 0  # frames that arrived between two frames the worker read in a row
        self.error = ""  # a driver fault that ended the stream
        self._thread = threading.Thread(target=self._grab_all, name="stream-grab", daemon=True)
        self._thread.start()

    def next_frame(self, follow: bool) -> Arrival | None:
        """The next frame to arrive, or None when the stream ended or sent nothing within the
        timeout. `follow`: this read continues a run of reads (the rest of a burst, continuous
        sampling), so frames that arrived since the previous one were missed, and counted."""
        with self._cond:
            if self._ended:
                return None
            self._wanted, self._follow, self._delivered = True, follow, None
            self._request += 1
            self._cond.notify_all()
            deadline = time.monotonic() + self._timeout_s
            while self._delivered is None and not self._ended:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._wanted = False
            return self._delivered

    def take_drops(self) -> int:
        """Frames dropped since the last call."""
        with self._cond:
            dropped, self._dropped = self._dropped, 0
            return dropped

    def close(self) -> None:
        """Stop grabbing; the grabbing thread releases the stream after its current grab (a
        stalled stream can hold that for one read timeout, without holding the caller)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def _grab_all(self) -> None:
        try:
            while not self._closing and self._capture.grab():
                arrived = time.time(), time.monotonic()
                with self._cond:
                    self._grabbed += 1
                    # the first frame is the one FFmpeg read while opening: of unknown age
                    wanted = self._wanted and self._grabbed > 1
                    request, follow = self._request, self._follow
                if wanted and not self._hand_over(arrived, request, follow):
                    break
        except Exception as exc:  # a driver fault ends the stream; the worker reports it down
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()
            self._capture.release()

    def _hand_over(self, arrived: tuple[float, float], request: int, follow: bool) -> bool:
        """Convert the frame just grabbed for the waiting worker; False if it would not. A
        request that timed out meanwhile, or was replaced by a newer one, is not served."""
        ok, image = self._capture.retrieve()
        with self._cond:
            if not (self._wanted and self._request == request):
                return bool(ok)
            if follow and self._last_taken:
                self._dropped += self._grabbed - self._last_taken - 1
            self._last_taken = self._grabbed
            if ok and image is not None:
                self._delivered = Arrival(image, *arrived)
            self._wanted = False
            self._cond.notify_all()
        return bool(ok and image is not None)
