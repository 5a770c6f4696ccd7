"""ZeroMQ publishing and subscribing of the monitor's messages (monitor/schema.py).

Messages are two frames, [topic, JSON]; topics are prefixes (`score`, `camera`, `alert`,
`status`, `ack`, `crop`). Each socket is made, used and closed by one thread. Messages are
parsed as data and checked against their schema, never unpickled. Keys and who may subscribe:
monitor/outputs/bus_keys.py.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import zmq

from monitor.outputs.bus_keys import (
    BusError,
    Gate,
    HandshakeWatch,
    connect_encrypted,
    serve_encrypted,
)
from monitor.schema import MESSAGE_TYPES, Message, MessageError, decode, encode

CLOSE_LINGER_MS = 1000  # time given to queued messages when a publisher shuts down
# Messages queued per peer by publishers, the proxy (each side) and subscribers: 5 s of the
# 20,000 records/s a proxy and a logger are measured to carry (bench/facility_load.py), so a
# burst or a subscriber's pause is held, not dropped. Past it a PUB socket drops without a
# word; the logger finds such losses by sequence number and says them (log_service.py).
QUEUE_HWM = 100_000
FORWARD_BATCH = 1000  # messages the proxy moves per wake-up before it looks at anything else
TICK_S = 0.2  # how often the proxy reads its handshake events
LOOPBACK_HOSTS = ("127.", "localhost", "[::1]", "::1")


def is_local(endpoint: str) -> bool:
    """Loopback TCP, or a transport that never leaves the machine (ipc, inproc)."""
    scheme, _, rest = endpoint.partition("://")
    return scheme in ("ipc", "inproc") or rest.startswith(LOOPBACK_HOSTS)


@dataclass(frozen=True)
class Serving:
    """How a bound socket serves: `secret_key` encrypts (CURVE server), `allowed_clients` is a
    folder of the public keys that may subscribe, `insecure` allows plain text off this
    machine. `names` are the settings an error should point to."""

    secret_key: Path | None = None
    allowed_clients: Path | None = None
    insecure: bool = False
    names: tuple[str, str, str] = ("bus.secret_key", "bus.allowed_clients", "bus.insecure")

    def check(self, endpoint: str) -> None:
        key, allowed, insecure = self.names
        if self.allowed_clients is not None and self.secret_key is None:
            raise BusError(f"{allowed} {self.allowed_clients}: clients are known by their CURVE "
                           f"keys, so it needs {key} too")
        if not (is_local(endpoint) or self.secret_key or self.insecure):
            raise BusError(f"{endpoint} reaches beyond this machine: give {key} (make one "
                           f"with `mgs-monitor keys DIR`) or, knowingly, {insecure}")

    def apply(self, socket: zmq.Socket) -> Gate | None:
        if self.secret_key is None:
            return None
        return serve_encrypted(socket, self.secret_key, self.allowed_clients)


@dataclass(frozen=True)
class Upstream:
    """A publisher to subscribe to, and its public server key when it encrypts."""

    endpoint: str
    server_key: Path | None = None

    @classmethod
    def parse(cls, text: str) -> Upstream:
        """`ENDPOINT` or `ENDPOINT=KEYFILE` (endpoints hold no `=`)."""
        endpoint, _, key = text.partition("=")
        return cls(endpoint, Path(key).expanduser() if key else None)


class Publisher:
    """A PUB socket bound to `endpoint` and to any `also` endpoints (e.g. the in-process view of
    the monitor's own dashboard); loopback and in-process endpoints need no keys."""

    def __init__(self, endpoint: str, context: zmq.Context | None = None, *,
                 secret_key: Path | None = None, insecure: bool = False,
                 allowed_clients: Path | None = None, also: tuple[str, ...] = ()) -> None:
        serving = Serving(secret_key, allowed_clients, insecure)
        serving.check(endpoint)
        self.endpoint = endpoint
        self.socket = (context or zmq.Context.instance()).socket(zmq.PUB)
        self.socket.setsockopt(zmq.SNDHWM, QUEUE_HWM)
        self._gate: Gate | None = None
        try:
            self._gate = serving.apply(self.socket)
            for where in (endpoint, *also):
                self._bind(where)
        except BaseException:
            self.close(linger=0)
            raise

    def _bind(self, endpoint: str) -> None:
        bind(self.socket, endpoint, "--endpoint or bus.endpoint")

    def publish(self, message: Message) -> None:
        self.socket.send_multipart(encode(message))

    def close(self, linger: int = CLOSE_LINGER_MS) -> None:
        self.socket.close(linger=linger)
        if self._gate is not None:
            self._gate.close()


def bind(socket: zmq.Socket, endpoint: str, setting: str) -> None:
    try:
        socket.bind(endpoint)
    except zmq.ZMQError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise BusError(f"{endpoint} is already in use (another mgs-monitor?); choose "
                           f"another with {setting}") from exc
        raise BusError(f"cannot bind {endpoint}: {exc}") from exc


class Subscriber:
    """Receives messages from one or more publishers; counts (and skips) malformed ones, and
    says why a publisher refuses the connection (`problems`)."""

    def __init__(self, endpoint: str, topics: tuple[bytes, ...] = tuple(MESSAGE_TYPES),
                 context: zmq.Context | None = None, *, server_key: Path | None = None,
                 client_key: Path | None = None) -> None:
        if client_key is not None and server_key is None:
            raise BusError(f"--client-key {client_key}: a client key is presented only to a "
                           "publisher that encrypts; give its --server-key too")
        self.socket = (context or zmq.Context.instance()).socket(zmq.SUB)
        self.socket.setsockopt(zmq.RCVHWM, QUEUE_HWM)
        self._watch: HandshakeWatch | None = None
        try:
            # only a publisher holding the matching secret is heard
            connect_encrypted(self.socket, server_key, client_key)
            for topic in topics:
                self.socket.setsockopt(zmq.SUBSCRIBE, topic)
            if not endpoint.startswith("inproc://"):  # no handshake in-process
                self._watch = HandshakeWatch(self.socket, {endpoint: server_key is not None})
            self.socket.connect(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise BusError(f"cannot connect to {endpoint}: {exc}") from exc
        except BaseException:
            self.close()
            raise
        self.malformed = 0
        self.last_error = ""

    def problems(self) -> list[str]:
        """New lines saying why a publisher refused this subscriber, if one did."""
        return self._watch.problems() if self._watch is not None else []

    def receive(self, timeout_ms: int, most: int | None = None) -> Iterator[Message]:
        """Everything that arrives within `timeout_ms` of the first wait, parsed; at most `most`
        messages when given, so that under a steady stream a caller still gets its turn."""
        wait, taken = timeout_ms, 0
        while (most is None or taken < most) and self.socket.poll(wait, zmq.POLLIN):
            wait, taken = 0, taken + 1
            try:
                message = decode(self.socket.recv_multipart())
            except MessageError as exc:
                self.malformed += 1
                self.last_error = str(exc)
                continue
            yield message

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
        self.socket.close(linger=0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def run_proxy(sources: Sequence[Upstream], backend: str, stop: Callable[[], bool],
              context: zmq.Context | None = None, *, serving: Serving | None = None,
              client_key: Path | None = None, say: Callable[[str], None] = print) -> None:
    """Forward the records of every monitor in `sources` (their PUB endpoints, joined by an
    XSUB socket, each with its own server key when it encrypts, all presenting `client_key`)
    to every subscriber of `backend` (XPUB, served as `serving` says), so many capture hosts
    feed one dashboard and logger. `say` gets each refused handshake once. Runs until
    `stop()` is true."""
    serving = serving or Serving(names=("--secret-key", "--allowed-clients", "--insecure"))
    serving.check(backend)
    ctx = context or zmq.Context.instance()
    xsub, xpub = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
    xsub.setsockopt(zmq.RCVHWM, QUEUE_HWM)
    xpub.setsockopt(zmq.SNDHWM, QUEUE_HWM)
    gate: Gate | None = None
    watch = HandshakeWatch(xsub, {s.endpoint: s.server_key is not None for s in sources})
    try:
        gate = serving.apply(xpub)
        bind(xpub, backend, "--backend")
        for source in sources:
            connect_encrypted(xsub, source.server_key, client_key)
            try:
                xsub.connect(source.endpoint)
            except zmq.ZMQError as exc:
                raise BusError(f"proxy cannot connect to {source.endpoint}: {exc}") from exc
        _forward(xsub, xpub, stop, lambda: list(map(say, watch.problems())))
    finally:
        watch.close()
        xsub.close(linger=0)
        xpub.close(linger=0)
        if gate is not None:
            gate.close()


def _forward(xsub: zmq.Socket, xpub: zmq.Socket, stop: Callable[[], bool],
             tick: Callable[[], object]) -> None:
    """Move messages both ways, a batch per wake-up: one message per poll (and a look at the
    handshakes after each) ran slower than the publishers, whose queues then overflowed."""
    poller = zmq.Poller()
    poller.register(xsub, zmq.POLLIN)
    poller.register(xpub, zmq.POLLIN)
    next_tick = 0.0
    while not stop():
        ready = dict(poller.poll(200))
        if xsub in ready:  # data flows publishers -> subscribers
            _move(xsub, xpub, FORWARD_BATCH)
        if xpub in ready:  # subscriptions flow subscribers -> publishers
            _move(xpub, xsub, FORWARD_BATCH)
        if time.monotonic() >= next_tick:
            tick()
            next_tick = time.monotonic() + TICK_S


def _move(source: zmq.Socket, target: zmq.Socket, most: int) -> None:
    for _ in range(most):
        try:
            frames = source.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        target.send_multipart(frames)
