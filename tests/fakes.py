"""The one fake in the suite: a camera device (everything behind it is real)."""

from __future__ import annotations

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
