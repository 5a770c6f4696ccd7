"""Following a Monitor from a test as a dashboard would: subscribed to its in-process endpoint."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from monitor.outputs.bus import Subscriber
from monitor.pipeline import Monitor
from monitor.schema import Message, ScoreRecord

M = TypeVar("M", bound=Message)


class View:
    """Every message a Monitor publishes, collected on the test's thread. Made before the
    monitor starts, so that nothing is missed."""

    def __init__(self, monitor: Monitor) -> None:
        self.subscriber = Subscriber(monitor.view_endpoint)
        self.messages: list[Message] = []

    def of(self, kind: type[M]) -> list[M]:
        return [m for m in self.messages if isinstance(m, kind)]

    def take(self, timeout_ms: int = 50) -> None:
        self.messages.extend(self.subscriber.receive(timeout_ms))

    def wait_for(self, condition: Callable[[View], object], seconds: float = 20.0) -> None:
        deadline = time.monotonic() + seconds
        while not condition(self) and time.monotonic() < deadline:
            self.take()
        assert condition(self), f"not seen within {seconds} s"

    def close(self) -> None:
        self.take(200)
        self.subscriber.close()


def run_until(monitor: Monitor, records: int, seconds: float = 20.0,
              also: Callable[[View], object] = lambda _view: True) -> View:
    """Start, follow until `records` score records were published (and `also` holds), stop
    and drain."""
    view = View(monitor)
    monitor.start()
    view.wait_for(lambda v: len(v.of(ScoreRecord)) >= records and also(v), seconds)
    monitor.request_stop()
    assert monitor.wait(10)
    view.close()
    assert monitor.error is None
    return view


def run_to_end(monitor: Monitor, seconds: float = 60.0) -> View:
    """Start, follow until the media ends, drain."""
    view = View(monitor)
    monitor.start()
    deadline = time.monotonic() + seconds
    while not monitor.wait(0) and time.monotonic() < deadline:
        view.take()
    assert monitor.wait(0), f"still running after {seconds} s"
    view.close()
    assert monitor.error is None
    return view
