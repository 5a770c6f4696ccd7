"""The one fake in the suite: a camera device (everything behind it is real)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np


class FakeCamera:
    """A camera device: serves frames from a list; `None` entries are failed reads."""

    def __init__(self, frames: list[np.ndarray | None], opened: bool = True) -> None:
        self.frames = list(frames)
        self.opened = opened
        self.released = False

    def isOpened(self) -> bool:
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.frames:
            return False, None
        frame = self.frames.pop(0)
        return frame is not None, frame

    def grab(self) -> bool:
        return bool(self.frames) and self.frames.pop(0) is not None

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released = True


class HeldCamera:
    """A camera device that starts delivering frames (here: a real video, decoded by OpenCV)
    only once `started` is set, so a test can attach subscribers before the first sample."""

    def __init__(self, capture: Any, started: threading.Event) -> None:
        self.capture = capture
        self.started = started

    def isOpened(self) -> bool:
        return bool(self.capture.isOpened())

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.started.wait()
        return self.capture.read()  # type: ignore[no-any-return]

    def grab(self) -> bool:
        self.started.wait()
        return bool(self.capture.grab())

    def get(self, prop: int) -> float:
        return float(self.capture.get(prop))

    def release(self) -> None:
        self.capture.release()
