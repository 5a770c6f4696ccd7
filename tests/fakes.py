"""The suite's only fakes: camera devices (everything behind them is real).

`FakeCamera`, `StallingCamera` and `HeldCamera` stand in for the device OpenCV would open;
`MjpegCamera` is an IP camera on loopback, read through OpenCV's own FFmpeg over real HTTP.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np

BLOCK = 16  # pixels per bit of the frame number painted into each streamed frame
BITS = 12


class FakeCamera:
    """A camera device: serves frames from a list; `None` entries are failed reads."""

    def __init__(self, frames: list[np.ndarray | None], opened: bool = True) -> None:
        self.frames = list(frames)
        self.opened = opened
        self.released = False
        self.grabbed: np.ndarray | None = None

    def isOpened(self) -> bool:
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.frames:
            return False, None
        frame = self.frames.pop(0)
        return frame is not None, frame

    def grab(self) -> bool:
        self.grabbed = self.frames.pop(0) if self.frames else None
        return self.grabbed is not None

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        return self.grabbed is not None, self.grabbed

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released = True


class StallingCamera(FakeCamera):
    """A camera device that serves its frames, then stalls in the driver call (no frame, no
    error) until `go_on` is set, so what the monitor counted holds still while a test reads
    it; after that it fails its reads."""

    def __init__(self, frames: list[np.ndarray | None], go_on: threading.Event) -> None:
        super().__init__(frames)
        self.go_on = go_on

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.frames:
            self.go_on.wait()
        return super().read()

    def grab(self) -> bool:
        if not self.frames:
            self.go_on.wait()
        return super().grab()


class HeldCamera:
    """A camera device (here: a real video, decoded by OpenCV) that delivers frames only when
    its gate lets it: by default once `started` is set, so a test can attach subscribers before
    the first sample; after `first` frames (when given) it holds again until `resumed` is set,
    so the monitor stands still with its alerts active while a test looks at them."""

    def __init__(self, capture: Any, started: threading.Event, first: int | None = None,
                 resumed: threading.Event | None = None) -> None:
        self.capture, self.started, self.first, self.resumed = capture, started, first, resumed
        self.taken = 0

    def _gate(self) -> None:
        self.started.wait()
        if self.first is not None and self.taken >= self.first and self.resumed is not None:
            self.resumed.wait()
        self.taken += 1

    def isOpened(self) -> bool:
        return bool(self.capture.isOpened())

    def read(self) -> tuple[bool, np.ndarray | None]:
        self._gate()
        return self.capture.read()  # type: ignore[no-any-return]

    def grab(self) -> bool:
        self._gate()
        return bool(self.capture.grab())

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        return self.capture.retrieve()  # type: ignore[no-any-return]

    def get(self, prop: int) -> float:
        return float(self.capture.get(prop))

    def release(self) -> None:
        self.capture.release()


class MjpegCamera:
    """An IP camera: MJPEG over HTTP at `fps`, sending whether or not anyone reads, as one does.

    Each frame carries its number (see `frame_number`); `sent` maps numbers to send times, so a
    test can tell how old a frame was when the monitor took it. `kill()` is the camera dying:
    every connection is closed at once.
    """

    def __init__(self, fps: float, picture: Callable[[int], np.ndarray] | None = None) -> None:
        self.fps = fps
        self.picture = picture or (lambda _n: np.full((240, 320, 3), 90, np.uint8))
        self.sent: dict[int, float] = {}
        self._dead = threading.Event()
        self._connections: list[socket.socket] = []
        self._numbers = itertools.count()
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                camera._stream(self)

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/stream.mjpg"

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        self._connections.append(handler.connection)
        handler.send_response(200)
        handler.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        handler.end_headers()
        start = time.monotonic()
        for k in itertools.count(1):
            if self._dead.is_set():
                return
            n = next(self._numbers)
            image = self.picture(n).copy()
            paint_number(image, n)
            jpeg = cv2.imencode(".jpg", image)[1].tobytes()
            self.sent[n] = time.time()
            try:
                handler.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                    b"Content-Length: %d\r\n\r\n%s\r\n" % (len(jpeg), jpeg))
            except OSError:
                return
            self._dead.wait(max(0.0, start + k / self.fps - time.monotonic()))

    def kill(self) -> None:
        self._dead.set()
        for connection in self._connections:
            with contextlib.suppress(OSError):  # already closed by the reader
                connection.shutdown(socket.SHUT_RDWR)
        self._server.shutdown()
        self._server.server_close()


def paint_number(image: np.ndarray, n: int) -> None:
    """Write `n` into the top row as black and white blocks, which survive JPEG."""
    for bit in range(BITS):
        image[:BLOCK, bit * BLOCK:(bit + 1) * BLOCK] = 255 if n >> bit & 1 else 0


def frame_number(image: np.ndarray) -> int:
    return sum(1 << bit for bit in range(BITS)
               if image[2:BLOCK - 2, bit * BLOCK + 2:(bit + 1) * BLOCK - 2].mean() > 128)
