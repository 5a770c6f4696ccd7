"""ZeroMQ publishing and subscribing of the monitor's messages (monitor/schema.py).

Messages are two frames, [topic, JSON]; topics are prefixes (`score`, `camera`, `alert`,
`status`). Each socket is made, used and closed by one thread. Messages are parsed as data and
checked against their schema, never unpickled.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import zmq
import zmq.auth

from monitor.schema import MESSAGE_TYPES, Message, MessageError, decode, encode

CLOSE_LINGER_MS = 1000  # time given to queued messages when a publisher shuts down


class BusError(RuntimeError):
    """The bus cannot be set up; the message is one line for the user."""


LOOPBACK_HOSTS = ("127.", "localhost", "[::1]", "::1")


def is_local(endpoint: str) -> bool:
    """Loopback TCP, or a transport that never leaves the machine (ipc, inproc)."""
    scheme, _, rest = endpoint.partition("://")
    return scheme in ("ipc", "inproc") or rest.startswith(LOOPBACK_HOSTS)


def make_keys(folder: Path) -> tuple[Path, Path]:
    """A CURVE keypair for a publisher: `server.key_secret` stays with the monitor,
    `server.key` (public) goes to every subscriber."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        public, secret = zmq.auth.create_certificates(str(folder), "server")
        os.chmod(secret, 0o600)
    except OSError as exc:
        raise BusError(f"{folder}: cannot write the keys here: {exc.strerror or exc}") from exc
    return Path(public), Path(secret)


def _certificate(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise BusError(f"{path}: not a CURVE certificate from `mgs-monitor keys` ({exc})") from exc
    if secret and secret_key is None:
        raise BusError(f"{path}: holds no secret key; give the *.key_secret file")
    return public, secret_key


class Publisher:
    """A PUB socket bound to `endpoint` and to any `also` endpoints (e.g. the in-process view of
    the monitor's own dashboard); loopback and in-process endpoints need no keys."""

    def __init__(self, endpoint: str, context: zmq.Context | None = None, *,
                 secret_key: Path | None = None, insecure: bool = False,
                 also: tuple[str, ...] = ()) -> None:
        if not (is_local(endpoint) or secret_key or insecure):
            raise BusError(f"{endpoint} reaches beyond this machine: give bus.secret_key (make "
                           "one with `mgs-monitor keys DIR`) or, knowingly, bus.insecure: true")
        self.endpoint = endpoint
        self.socket = (context or zmq.Context.instance()).socket(zmq.PUB)
        self.socket.setsockopt(zmq.SNDHWM, 10000)
        try:
            if secret_key is not None:
                public, secret = _certificate(secret_key, secret=True)
                self.socket.curve_server = True
                self.socket.curve_publickey, self.socket.curve_secretkey = public, secret
            for where in (endpoint, *also):
                self._bind(where)
        except BaseException:
            self.socket.close(linger=0)
            raise

    def _bind(self, endpoint: str) -> None:
        try:
            self.socket.bind(endpoint)
        except zmq.ZMQError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BusError(
                    f"{endpoint} is already in use (another mgs-monitor?); choose another with "
                    "--endpoint or bus.endpoint"
                ) from exc
            raise BusError(f"cannot bind {endpoint}: {exc}") from exc

    def publish(self, message: Message) -> None:
        self.socket.send_multipart(encode(message))

    def close(self) -> None:
        self.socket.close(linger=CLOSE_LINGER_MS)


class Subscriber:
    """Receives messages from one or more publishers; counts (and skips) malformed ones."""

    def __init__(self, endpoint: str, topics: tuple[bytes, ...] = tuple(MESSAGE_TYPES),
                 context: zmq.Context | None = None, *, server_key: Path | None = None) -> None:
        self.socket = (context or zmq.Context.instance()).socket(zmq.SUB)
        self.socket.setsockopt(zmq.RCVHWM, 100000)
        try:
            if server_key is not None:  # only a publisher holding the matching secret is heard
                self.socket.curve_serverkey = _certificate(server_key, secret=False)[0]
                self.socket.curve_publickey, self.socket.curve_secretkey = zmq.curve_keypair()
            for topic in topics:
                self.socket.setsockopt(zmq.SUBSCRIBE, topic)
            self.socket.connect(endpoint)
        except zmq.ZMQError as exc:
            self.socket.close(linger=0)
            raise BusError(f"cannot connect to {endpoint}: {exc}") from exc
        except BaseException:
            self.socket.close(linger=0)
            raise
        self.malformed = 0
        self.last_error = ""

    def receive(self, timeout_ms: int) -> Iterator[Message]:
        """Everything that arrives within `timeout_ms` of the first wait, parsed."""
        wait = timeout_ms
        while self.socket.poll(wait, zmq.POLLIN):
            wait = 0
            try:
                message = decode(self.socket.recv_multipart())
            except MessageError as exc:
                self.malformed += 1
                self.last_error = str(exc)
                continue
            yield message

    def close(self) -> None:
        self.socket.close(linger=0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def run_proxy(sources: list[str], backend: str, stop: Callable[[], bool],
              context: zmq.Context | None = None) -> None:
    """Forward the records of every monitor in `sources` (their PUB endpoints, joined by an
    XSUB socket) to every subscriber of `backend` (XPUB), so many capture hosts feed one
    dashboard and logger. Runs until `stop()` is true."""
    if not is_local(backend):
        raise BusError(f"{backend}: the proxy republishes without encryption, so it binds only "
                       "on this machine")
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
