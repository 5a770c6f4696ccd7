"""Signals, handled in the main thread only: SIGINT/SIGTERM ask for a clean stop, SIGHUP for a
reload of the alert rules."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def stop_on_signals(on_stop: Callable[[], None] | None = None,
                    on_reload: Callable[[], None] | None = None) -> Iterator[Callable[[], bool]]:
    """Install the handlers for the block (in the main thread; elsewhere none); yields a
    'stopping?' check."""
    stopping = False

    def handler(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        if on_stop is not None:
            on_stop()

    in_main = threading.current_thread() is threading.main_thread()
    signals = (signal.SIGINT, signal.SIGTERM) if in_main else ()
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    if in_main and on_reload is not None:
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: on_reload())
    try:
        yield lambda: stopping
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
