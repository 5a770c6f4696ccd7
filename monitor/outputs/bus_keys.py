"""CURVE keys of the bus: keypairs, who may subscribe, and why a connection is refused.

A publisher (a monitor, a proxy's backend) holds a server keypair; its public half lets a
subscriber check it talks to that publisher and encrypts the stream. A subscriber presents a
client keypair; a publisher with an allowed-clients folder (public keys, `*.key`) takes only
those, checked by a ZAP handler (ZeroMQ's RFC 27) that runs on a thread of its own, one per
ZeroMQ context. A refused handshake is never reported by ZeroMQ's data path, so a subscriber
reads its socket's monitor events to tell the user why nothing arrives.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import threading
from pathlib import Path
from typing import ClassVar

import zmq
import zmq.auth
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # fixed by libzmq: where CURVE servers ask
ZAP_POLL_MS = 200  # how often the handler's thread looks at its stop flag


class BusError(RuntimeError):
    """The bus cannot be set up; the message is one line for the user."""


def make_keys(folder: Path, name: str = "server") -> tuple[Path, Path]:
    """A CURVE keypair: `<name>.key_secret` stays with its owner, `<name>.key` (public) goes to
    the other side (a monitor's to its subscribers; a subscriber's to the monitor's
    allowed-clients folder)."""
    if not name or "/" in name or name.startswith("."):
        raise BusError(f"--name {name!r}: give a plain file name, e.g. logger1")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for existing in (folder / f"{name}.key", folder / f"{name}.key_secret"):
            if existing.exists():  # a key others already trust is never overwritten
                raise BusError(f"{existing}: already exists; choose another --name or folder")
        public, secret = zmq.auth.create_certificates(str(folder), name)
        os.chmod(secret, 0o600)
    except OSError as exc:
        raise BusError(f"{folder}: cannot write the keys here: {exc.strerror or exc}") from exc
    return Path(public), Path(secret)


def certificate(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    """The keys of a certificate file; `secret`: the secret half is required."""
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise BusError(f"{path}: not a CURVE certificate from `mgs-monitor keys` ({exc})") from exc
    if secret and secret_key is None:
        raise BusError(f"{path}: holds no secret key; give the *.key_secret file")
    return public, secret_key


def serve_encrypted(socket: zmq.Socket, secret_key: Path,
                    allowed_clients: Path | None) -> Gate | None:
    """Make `socket` a CURVE server; with `allowed_clients`, only those keys may connect (the
    returned gate must be closed with the socket)."""
    public, secret = certificate(secret_key, secret=True)
    socket.curve_server = True
    socket.curve_publickey, socket.curve_secretkey = public, secret
    if allowed_clients is None:
        return None
    gate = Gate(socket.context, allowed_clients)
    socket.zap_domain = gate.domain.encode()
    return gate


def connect_encrypted(socket: zmq.Socket, server_key: Path | None,
                      client_key: Path | None) -> None:
    """Set how `socket`'s next connect() authenticates: CURVE to the publisher of `server_key`
    presenting `client_key` (a fresh keypair without one), or plain without a server key.
    Options are taken at connect(), so one socket can reach publishers of different keys."""
    if server_key is None:
        socket.curve_server = False  # back to no encryption for this connection
        return
    socket.curve_serverkey = certificate(server_key, secret=False)[0]
    if client_key is not None:
        public, secret = certificate(client_key, secret=True)
    else:
        public, secret = zmq.curve_keypair()
    socket.curve_publickey, socket.curve_secretkey = public, secret


def allowed_keys(folder: Path) -> set[bytes]:
    """The public keys (Z85) in an allowed-clients folder; BusError when there are none."""
    try:
        keys = set(zmq.auth.load_certificates(str(folder)))
    except (OSError, ValueError) as exc:
        raise BusError(f"{folder}: cannot read the allowed clients' keys ({exc})") from exc
    if not keys:
        raise BusError(f"{folder}: holds no public keys (*.key); make one per subscriber with "
                       "`mgs-monitor keys DIR --name NAME` and copy its NAME.key here")
    return keys


class Gate:
    """One socket's allowed-clients folder, registered with its context's ZAP handler."""

    def __init__(self, context: zmq.Context, folder: Path) -> None:
        allowed_keys(folder)  # refused at start: an empty folder would let nobody in
        self.domain = f"mgs-allowed-{next(_domains)}"
        self._handler = _ZapHandler.join(context, self.domain, folder)

    def close(self) -> None:
        self._handler.leave(self.domain)


_domains = itertools.count(1)


class _ZapHandler:
    """Answers the ZAP requests of one context on a thread of its own. A request of a domain a
    Gate registered is allowed when the client's key is in that folder (re-read whenever the
    folder changes, so adding or removing a key file takes effect at the next connection);
    any other domain is a socket that checks no client keys, and is let through as before."""

    _registry: ClassVar[threading.Lock] = threading.Lock()  # guards _running
    _running: ClassVar[dict[int, _ZapHandler]] = {}  # id(context) -> its handler

    def __init__(self, context: zmq.Context) -> None:
        self._lock = threading.Lock()  # guards _folders, also read by the handler's thread
        self._folders: dict[str, Path] = {}
        self._cache: dict[Path, tuple[int, set[bytes]]] = {}
        self._stop = threading.Event()
        self._bound = threading.Event()
        self._error: str = ""
        self._context = context
        self._thread = threading.Thread(target=self._serve, name="bus-zap", daemon=True)

    @classmethod
    def join(cls, context: zmq.Context, domain: str, folder: Path) -> _ZapHandler:
        with cls._registry:
            handler = cls._running.get(id(context))
            if handler is None:
                handler = cls(context)
                handler._start()
                cls._running[id(context)] = handler
            with handler._lock:
                handler._folders[domain] = folder
            return handler

    def leave(self, domain: str) -> None:
        """The last one to leave stops the thread, before another can start on the context."""
        with self._registry:
            with self._lock:
                self._folders.pop(domain, None)
                if self._folders:
                    return
            self._running.pop(id(self._context), None)
            self._stop.set()
            self._thread.join(5)

    def _start(self) -> None:
        self._thread.start()
        self._bound.wait(5)
        if self._error:
            raise BusError(self._error)

    def _serve(self) -> None:
        socket = self._context.socket(zmq.REP)
        try:
            try:
                socket.bind(ZAP_ENDPOINT)
            except zmq.ZMQError as exc:
                reason = "another authenticator runs here" if exc.errno == errno.EADDRINUSE \
                    else str(exc)
                self._error = f"cannot check client keys: {reason}"
                return
            finally:
                self._bound.set()
            while not self._stop.is_set():
                if socket.poll(ZAP_POLL_MS, zmq.POLLIN):
                    socket.send_multipart(self._answer(socket.recv_multipart()))
        finally:
            socket.close(linger=0)

    def _answer(self, request: list[bytes]) -> list[bytes]:
        """RFC 27: version, id, domain, address, identity, mechanism, credentials."""
        request_id = request[1] if len(request) > 1 else b""
        if len(request) < 6 or request[0] != b"1.0":
            return [b"1.0", request_id, b"400", b"malformed ZAP request", b"", b""]
        domain, mechanism, credentials = request[2].decode(errors="replace"), request[5], \
            request[6:]
        with self._lock:
            folder = self._folders.get(domain)
        if folder is None:
            return [b"1.0", request_id, b"200", b"OK", b"", b""]
        if mechanism != b"CURVE" or len(credentials) != 1:
            return [b"1.0", request_id, b"400", b"CURVE required", b"", b""]
        client = z85.encode(credentials[0])
        if client in self._keys(folder):
            return [b"1.0", request_id, b"200", b"OK", client, b""]
        return [b"1.0", request_id, b"400", b"client key not allowed", b"", b""]

    def _keys(self, folder: Path) -> set[bytes]:
        try:
            changed = folder.stat().st_mtime_ns
            cached = self._cache.get(folder)
            if cached is None or cached[0] != changed:
                self._cache[folder] = (changed, allowed_keys(folder))
            return self._cache[folder][1]
        except (OSError, BusError):
            return set()  # a folder gone or emptied lets nobody in


# Why a subscriber hears nothing ---------------------------------------------------------------
WATCHED = (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
           | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED)


def refusal(event: int, value: int, endpoint: str, encrypted: bool) -> str:
    """One line saying why a handshake with `endpoint` failed, and what to give."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return (f"{endpoint} refuses this subscriber's key: add its public key (.key) to the "
                "publisher's allowed-clients folder, give its .key_secret as --client-key, and "
                "restart this subscriber (a refused connection is not retried)")
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and not encrypted:
        return (f"{endpoint} encrypts (CURVE): give its public server key (--server-key, or "
                "ENDPOINT=KEYFILE for the proxy)")
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return f"{endpoint} does not encrypt: give no server key for it"
    return (f"{endpoint}: the encrypted handshake failed: the server key given is not the one "
            "this publisher holds (its server.key from `mgs-monitor keys`)")


class HandshakeWatch:
    """Reads a socket's monitor events: each refused handshake becomes one line, said once per
    endpoint until a handshake with it succeeds. Used by the socket's own thread."""

    def __init__(self, socket: zmq.Socket, encrypted: dict[str, bool]) -> None:
        self._socket = socket
        self._monitor = socket.get_monitor_socket(WATCHED)
        self._encrypted = encrypted  # endpoint -> connected with a server key
        self._said: dict[str, str] = {}

    def problems(self) -> list[str]:
        found = []
        while self._monitor.poll(0, zmq.POLLIN):
            event = recv_monitor_message(self._monitor)
            endpoint = event["endpoint"].decode(errors="replace") \
                if isinstance(event["endpoint"], bytes) else str(event["endpoint"])
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._said.pop(endpoint, None)
                continue
            line = refusal(event["event"], int(event["value"]), endpoint,
                           self._encrypted.get(endpoint, False))
            if self._said.get(endpoint) != line:
                self._said[endpoint] = line
                found.append(line)
        return found

    def close(self) -> None:
        with contextlib.suppress(zmq.ZMQError):  # the socket may be closed already
            self._socket.disable_monitor()
        self._monitor.close(linger=0)
