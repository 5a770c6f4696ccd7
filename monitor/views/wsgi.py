"""The HTTP(S) server under the web pages (mgs-label's scoring page, `mgs-monitor web`):
waitress, with limits fit for a lab network.

waitress reads each request whole on one event loop before a worker thread runs it, so a slow
or idle client holds no thread; connections idle for CHANNEL_TIMEOUT seconds are closed, and
bodies over MAX_BODY bytes refused with 413 (the pages' JSON is a few hundred bytes).

waitress speaks no TLS, so with a certificate each accepted connection is wrapped by Python's
ssl module and its channel does the handshake and the reads without blocking: a TLS record may
arrive in pieces (the read waits for more) and may hold more than one read takes (the rest is
read at once, since the socket will not say it is there).
"""

from __future__ import annotations

import ipaddress
import math
import socket
import ssl
import string
import time
from pathlib import Path
from typing import Any

from flask import Response, jsonify
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server
from werkzeug.exceptions import HTTPException

THREADS = 8
CHANNEL_TIMEOUT = 60  # seconds a connection may sit idle, or send nothing of its request
MAX_BODY = 1 << 20  # bytes; the server refuses more with 413 before reading them
CONNECTIONS = 100
HEX = set(string.hexdigits)
URLSAFE = set(string.ascii_letters + string.digits + "-_")


class ServeError(ValueError):
    """A host, port or certificate that cannot be served: one line naming the flag and value."""


def make_server(app: Any, host: str, port: int, tls: ssl.SSLContext | None = None,
                channel_timeout: float = CHANNEL_TIMEOUT, cleanup_interval: float = 10, *,
                ident: str = "mgs-monitor", threads: int = THREADS) -> BaseWSGIServer:
    """A bound, not yet running, server; run() serves until KeyboardInterrupt or close()."""
    try:
        server = create_server(
            app, host=host, port=port, threads=threads, channel_timeout=channel_timeout,
            cleanup_interval=cleanup_interval, max_request_body_size=MAX_BODY,
            connection_limit=CONNECTIONS, url_scheme="https" if tls else "http",
            ident=ident, clear_untrusted_proxy_headers=True)
    except OSError as exc:
        raise ServeError(f"--host {host} --port {port}: cannot listen: "
                        f"{exc.strerror or exc}") from None
    if tls is not None:
        server.channel_class = _tls_channel(tls)  # type: ignore[union-attr]
    return server  # type: ignore[return-value]


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context of the certificate chain and its key; one line naming the file when
    either cannot be used."""
    for path, flag in ((cert, "--tls-cert"), (key, "--tls-key")):
        if not path.is_file():
            raise ServeError(f"{flag} {path}: file not found")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ServeError(f"--tls-cert {cert} --tls-key {key}: not a certificate and its key: "
                        f"{getattr(exc, 'reason', None) or exc}") from None
    return context


def _tls_channel(context: ssl.SSLContext) -> type[HTTPChannel]:
    class TLSChannel(HTTPChannel):
        def __init__(self, server: Any, sock: Any, addr: Any, adj: Any, map: Any = None
                     ) -> None:
            self.shaken = False
            self.want_write = False
            sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            super().__init__(server, sock, addr, adj, map=map)

        def writable(self) -> bool:
            return self.want_write if not self.shaken else bool(super().writable())

        def handle_write(self) -> None:
            if self.shaken:
                super().handle_write()
            elif self._handshake():
                self.handle_read()  # the request may have come with the handshake

        def handle_read(self) -> None:
            if not self.shaken and not self._handshake():
                return
            data = b""
            try:
                while True:  # what the TLS layer holds already, select() cannot see
                    chunk = self.socket.recv(self.adj.recv_bytes)
                    if not chunk:
                        self.handle_close()
                        return
                    data += chunk
                    if not self.socket.pending():
                        break
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass  # the rest of a record is still on its way
            except OSError:
                self.handle_close()
                return
            if data:
                self.last_activity = time.time()
                self.received(data)

        def send(self, data: bytes, do_close: bool = True) -> int:
            try:
                return int(self.socket.send(data))
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return 0
            except OSError:
                if do_close:
                    self.handle_close()
                return 0

        def _handshake(self) -> bool:
            try:
                self.socket.do_handshake()
            except ssl.SSLWantReadError:
                self.want_write = False
                return False
            except ssl.SSLWantWriteError:
                self.want_write = True
                return False
            except OSError:  # not TLS, a refused certificate, a reset: nothing to answer
                self.handle_close()
                return False
            self.shaken, self.want_write = True, False
            self.last_activity = time.time()
            return True

    return TLSChannel


LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}


def hostname(host: str) -> str:
    """The host part of a Host header: `[::1]:5000` -> `::1`, `localhost:5000` -> `localhost`."""
    if host.startswith("["):
        return host[1:host.find("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def shown_host(host: str) -> str:
    """The host name people type: this machine's name for a wildcard address."""
    if host in ("0.0.0.0", "::", ""):
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host


def token_bits(token: str) -> int:
    """What a token can hold at most: its length times the bits of its alphabet (hex digits
    4, URL-safe base64 6, any other printable ASCII about 6.5)."""
    chars = set(token)
    per = 4.0 if chars <= HEX else 6.0 if chars <= URLSAFE else math.log2(94)
    return int(len(token) * per)


def own_files_only(response: Response, images: str = "'self'") -> None:
    """The headers of a page that loads nothing from elsewhere and is never framed, sniffed or
    named in another site's referrer."""
    response.headers["Content-Security-Policy"] = \
        f"default-src 'self'; img-src {images}; frame-ancestors 'none'"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"


def error_reply(exc: HTTPException, path: str) -> Any:
    """A refusal as the page reads it: JSON under /api/, one line of text elsewhere."""
    if path.startswith("/api/"):
        return jsonify(error=exc.description), exc.code
    return Response(f"{exc.code} {exc.description}\n", exc.code, mimetype="text/plain")
