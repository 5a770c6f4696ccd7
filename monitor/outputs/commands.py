"""The way back to a monitor: a command socket beside its publisher, and the client that uses it.

The monitor only publishes; a person who has seen an alert must be able to say so to the
monitor that raised it, and a view must be able to ask for a camera's latest annotated frame.
The monitor binds a ZeroMQ REP socket at `bus.commands` (default tcp://127.0.0.1:5561, beside
the publisher's 5560), served as the publisher is: the same CURVE secret key, allowed-clients
folder and loopback rule (monitor/outputs/bus.py `Serving`). Requests and replies are JSON objects:

    {"command": "acknowledge", "alert": KEY, "who": NAME, "note": TEXT}
        -> {"ok": true, "acknowledgement": {...}}   (an Acknowledgement, monitor/schema.py)
    {"command": "snapshot", "camera": NAME}
        -> {"ok": true, "jpeg": BASE64, "width": W, "height": H}
    {"command": "alerts"}
        -> {"ok": true, "alerts": [{...}, ...]}       (the raised event of each active alert)
    anything refused -> {"ok": false, "error": "one line"}

The pipeline thread owns the socket and answers between batches (`CommandServer.serve`), so a
request reaches the alert engine on the thread that owns it, with no lock. `CommandClient`
makes one socket per call, so any thread may use it, and never waits past its timeout.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zmq

from monitor.outputs.bus import Serving, bind
from monitor.outputs.bus_keys import BusError, Gate, HandshakeWatch, connect_encrypted
from monitor.schema import Acknowledgement, AlertEvent, MessageError

MAX_REQUEST_BYTES = 64_000  # an acknowledgement is a few hundred bytes; more is not one
MAX_WHO = 40
MAX_NOTE = 500
REQUESTS_PER_TURN = 20  # answered per pipeline turn, so a flood never holds up scoring
WAIT_STEP_MS = 100  # how often a waiting client looks for a refused handshake


class CommandError(Exception):
    """A command the monitor refused or never answered; one line for the user."""


# Requests, as the monitor reads them -------------------------------------------------------
@dataclass(frozen=True)
class AcknowledgeRequest:
    alert: str
    who: str
    note: str


@dataclass(frozen=True)
class SnapshotRequest:
    camera: str


@dataclass(frozen=True)
class AlertsRequest:
    """The monitor's active alerts: what `mgs-monitor ack --mouse` chooses from."""


Request = AcknowledgeRequest | SnapshotRequest | AlertsRequest


class RequestError(ValueError):
    """A request the monitor cannot act on; its one line goes back as the error reply."""


def parse_request(data: bytes) -> Request:
    """A request checked: a JSON object naming a known command with its fields, who 1 to
    MAX_WHO characters and a note of at most MAX_NOTE."""
    try:
        request = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise RequestError("the request is not JSON") from None
    if not isinstance(request, dict):
        raise RequestError("the request is not a JSON object")
    command = request.get("command")
    if command == "acknowledge":
        who = _text(request, "who").strip()
        if not 1 <= len(who) <= MAX_WHO:
            raise RequestError(f"who: give a name of 1 to {MAX_WHO} characters")
        note = _text(request, "note").strip()
        if len(note) > MAX_NOTE:
            raise RequestError(f"note: {len(note)} characters; at most {MAX_NOTE}")
        return AcknowledgeRequest(_text(request, "alert"), who, note)
    if command == "snapshot":
        return SnapshotRequest(_text(request, "camera"))
    if command == "alerts":
        return AlertsRequest()
    raise RequestError(f"unknown command {command!r}; known: acknowledge, snapshot, alerts")


def _text(request: dict[str, object], key: str) -> str:
    value = request.get(key, "")
    if not isinstance(value, str):
        raise RequestError(f"{key}: expected text, got {type(value).__name__}")
    return value


def refused(error: str) -> dict[str, object]:
    return {"ok": False, "error": error}


def acknowledged(ack: Acknowledgement) -> dict[str, object]:
    return {"ok": True, "acknowledgement": ack.model_dump(mode="json", by_alias=True)}


def alerts_listed(active: list[AlertEvent]) -> dict[str, object]:
    return {"ok": True, "alerts": [e.model_dump(mode="json", by_alias=True) for e in active]}


def snapshot_taken(jpeg: bytes, width: int, height: int) -> dict[str, object]:
    return {"ok": True, "jpeg": base64.b64encode(jpeg).decode(), "width": width,
            "height": height}


# The monitor's side ---------------------------------------------------------------------------
class CommandServer:
    """The monitor's REP socket; made, used and closed by the pipeline thread."""

    def __init__(self, endpoint: str, serving: Serving,
                 context: zmq.Context | None = None) -> None:
        serving.check(endpoint)
        self.endpoint = endpoint
        self.socket = (context or zmq.Context.instance()).socket(zmq.REP)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        self._gate: Gate | None = None
        try:
            self._gate = serving.apply(self.socket)
            bind(self.socket, endpoint, "--commands or bus.commands")
        except BaseException:
            self.close()
            raise

    def serve(self, answer: Callable[[Request], dict[str, object]]) -> int:
        """Answer the requests waiting now (a few at most), without waiting for more; how
        many were answered."""
        answered = 0
        while answered < REQUESTS_PER_TURN and self.socket.poll(0, zmq.POLLIN):
            data = self.socket.recv()
            try:
                reply = answer(parse_request(data))
            except RequestError as exc:
                reply = refused(str(exc))
            self.socket.send(json.dumps(reply).encode())
            answered += 1
        return answered

    def close(self) -> None:
        self.socket.close(linger=0)
        if self._gate is not None:
            self._gate.close()


# The client's side ----------------------------------------------------------------------------
class CommandClient:
    """Sends commands to one monitor's command socket; a new socket for each call, so threads
    may share a client. A monitor that does not answer within `timeout_s` is a CommandError."""

    def __init__(self, endpoint: str, *, server_key: Path | None = None,
                 client_key: Path | None = None, timeout_s: float = 5.0) -> None:
        if client_key is not None and server_key is None:
            raise CommandError(f"--client-key {client_key}: a client key is presented only to "
                               "a monitor that encrypts; give its --server-key too")
        self.endpoint = endpoint
        self.server_key = server_key
        self.client_key = client_key
        self.timeout_s = timeout_s
        self._context: zmq.Context = zmq.Context.instance()

    def acknowledge(self, alert: str, who: str, note: str) -> Acknowledgement:
        reply = self._call({"command": "acknowledge", "alert": alert, "who": who, "note": note})
        try:
            return Acknowledgement.from_json(json.dumps(reply.get("acknowledgement")).encode())
        except MessageError as exc:
            raise CommandError(f"{self.endpoint}: {exc}") from None

    def snapshot(self, camera: str) -> bytes:
        """The JPEG of the camera's latest frame, annotated as `mgs-monitor snapshot` draws."""
        reply = self._call({"command": "snapshot", "camera": camera})
        jpeg = reply.get("jpeg")
        if not isinstance(jpeg, str):
            raise CommandError(f"{self.endpoint}: the snapshot reply holds no picture")
        return base64.b64decode(jpeg)

    def alerts(self) -> list[AlertEvent]:
        """The raised event of each alert active on the monitor now."""
        listed = self._call({"command": "alerts"}).get("alerts")
        try:
            return [AlertEvent.from_json(json.dumps(event).encode())
                    for event in (listed if isinstance(listed, list) else [])]
        except MessageError as exc:
            raise CommandError(f"{self.endpoint}: {exc}") from None

    def close(self) -> None:
        """Nothing stays open between calls; kept so a client can be closed like a socket."""

    def _call(self, request: dict[str, str]) -> dict[str, object]:
        """Send one request and wait for its reply; the error reply's line as CommandError."""
        socket = self._context.socket(zmq.REQ)
        watch: HandshakeWatch | None = None
        try:
            try:
                connect_encrypted(socket, self.server_key, self.client_key)
                watch = HandshakeWatch(socket, {self.endpoint: self.server_key is not None})
                socket.connect(self.endpoint)
            except zmq.ZMQError as exc:
                raise CommandError(f"cannot connect to {self.endpoint}: {exc}") from exc
            except BusError as exc:
                raise CommandError(str(exc)) from None
            socket.send(json.dumps(request).encode())
            reply = self._wait(socket, watch)
        finally:
            if watch is not None:
                watch.close()
            socket.close(linger=0)
        if reply.get("ok") is not True:
            raise CommandError(f"{self.endpoint}: {reply.get('error') or 'refused'}")
        return reply

    def _wait(self, socket: zmq.Socket, watch: HandshakeWatch) -> dict[str, object]:
        """The reply, or CommandError once the timeout passes or the monitor refuses us."""
        left_ms = int(self.timeout_s * 1000)
        while left_ms > 0:
            if socket.poll(min(WAIT_STEP_MS, left_ms), zmq.POLLIN):
                return _reply(self.endpoint, socket.recv())
            left_ms -= WAIT_STEP_MS
            for problem in watch.problems():
                raise CommandError(problem.replace("subscriber", "client"))
        raise CommandError(f"{self.endpoint}: no answer within {self.timeout_s:g} s (is the "
                           "monitor running, with this as its bus.commands?)")


def _reply(endpoint: str, data: bytes) -> dict[str, object]:
    try:
        reply = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        reply = None
    if not isinstance(reply, dict):
        raise CommandError(f"{endpoint}: the reply is not a JSON object")
    return reply
