"""ZeroMQ publishing and subscribing of records.

Messages are two frames, [topic, JSON]; topics are prefixes (`score`, `camera`). Each socket is
used by the one thread that created it. Messages are parsed as data and checked against the
record schema, never unpickled.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import zmq

from monitor.alerts import AlertEvent
from monitor.records import (
    TOPIC_ALERT,
    TOPIC_CAMERA,
    TOPIC_SCORE,
    CameraReport,
    RecordError,
    ScoreRecord,
)

CLOSE_LINGER_MS = 1000  # time given to queued messages when a publisher shuts down


class BusError(RuntimeError):
    """The bus cannot be set up; the message is one line for the user."""


class Publisher:
    def __init__(self, endpoint: str, context: zmq.Context | None = None) -> None:
        self.endpoint = endpoint
        self.socket = (context or zmq.Context.instance()).socket(zmq.PUB)
        self.socket.setsockopt(zmq.SNDHWM, 10000)
        try:
            self.socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self.socket.close(linger=0)
            if exc.errno == errno.EADDRINUSE:
                raise BusError(
                    f"{endpoint} is already in use (another mgs-monitor?); choose another with "
                    "--endpoint or bus.endpoint"
                ) from exc
            raise BusError(f"cannot bind {endpoint}: {exc}") from exc

    def publish_score(self, record: ScoreRecord) -> None:
        self.socket.send_multipart([TOPIC_SCORE, record.to_json()])

    def publish_camera(self, report: CameraReport) -> None:
        self.socket.send_multipart([TOPIC_CAMERA, report.to_json()])

    def publish_alert(self, event: AlertEvent) -> None:
        self.socket.send_multipart([TOPIC_ALERT, event.to_json()])

    def close(self) -> None:
        self.socket.close(linger=CLOSE_LINGER_MS)


@dataclass
class Received:
    """One parsed message: exactly one of `score` / `camera` / `alert` is set."""

    score: ScoreRecord | None = None
    camera: CameraReport | None = None
    alert: AlertEvent | None = None


class Subscriber:
    """Receives records from one or more publishers; counts (and skips) malformed messages."""

    def __init__(self, endpoint: str,
                 topics: tuple[bytes, ...] = (TOPIC_SCORE, TOPIC_CAMERA, TOPIC_ALERT),
                 context: zmq.Context | None = None) -> None:
        self.socket = (context or zmq.Context.instance()).socket(zmq.SUB)
        self.socket.setsockopt(zmq.RCVHWM, 100000)
        for topic in topics:
            self.socket.setsockopt(zmq.SUBSCRIBE, topic)
        try:
            self.socket.connect(endpoint)
        except zmq.ZMQError as exc:
            self.socket.close(linger=0)
            raise BusError(f"cannot connect to {endpoint}: {exc}") from exc
        self.malformed = 0
        self.last_error = ""

    def receive(self, timeout_ms: int) -> Iterator[Received]:
        """Everything that arrives within `timeout_ms` of the first wait, parsed."""
        wait = timeout_ms
        while self.socket.poll(wait, zmq.POLLIN):
            wait = 0
            parsed = self._parse(self.socket.recv_multipart())
            if parsed is not None:
                yield parsed

    def _parse(self, frames: list[bytes]) -> Received | None:
        try:
            if len(frames) != 2:
                raise RecordError(f"expected 2 message frames, got {len(frames)}")
            topic, payload = frames
            if topic == TOPIC_SCORE:
                return Received(score=ScoreRecord.from_json(payload))
            if topic == TOPIC_CAMERA:
                return Received(camera=CameraReport.from_json(payload))
            if topic == TOPIC_ALERT:
                return Received(alert=AlertEvent.from_json(payload))
            raise RecordError(f"unknown topic {topic!r}")
        except (RecordError, TypeError) as exc:
            self.malformed += 1
            self.last_error = str(exc)
            return None

    def close(self) -> None:
        self.socket.close(linger=0)


def run_proxy(sources: list[str], backend: str, stop: Callable[[], bool],
              context: zmq.Context | None = None) -> None:
    """Forward the records of every monitor in `sources` (their PUB endpoints, joined by an
    XSUB socket) to every subscriber of `backend` (XPUB), so many capture hosts feed one
    dashboard and logger. Runs until `stop()` is true."""
    ctx = context or zmq.Context.instance()
    xsub, xpub = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
    try:
        try:
            xpub.bind(backend)
            for source in sources:
                xsub.connect(source)
        except zmq.ZMQError as exc:
            raise BusError(f"proxy cannot use {backend} / {', '.join(sources)}: {exc}") from exc
        poller = zmq.Poller()
        poller.register(xsub, zmq.POLLIN)
        poller.register(xpub, zmq.POLLIN)
        while not stop():
            ready = dict(poller.poll(200))
            if xsub in ready:  # data flows publishers -> subscribers
                xpub.send_multipart(xsub.recv_multipart())
            if xpub in ready:  # subscriptions flow subscribers -> publishers
                xsub.send_multipart(xpub.recv_multipart())
    finally:
        xsub.close(linger=0)
        xpub.close(linger=0)
