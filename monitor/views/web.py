"""`mgs-monitor web`: every mouse and every alert in a browser, fed by the bus.

One subscriber, on a thread of its own (its socket made, used and closed there), feeds the
state (web_state.py); waitress (wsgi.py) serves the pages (web_app.py) from its own threads,
which only read that state. The same subscriber as `mgs-monitor dashboard`: one monitor, or
many through `mgs-monitor proxy`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.outputs.bus import Subscriber
from monitor.views import wsgi
from monitor.views.series_report import ReportError
from monitor.views.web_app import Commands, create_app
from monitor.views.web_history import read_history
from monitor.views.web_state import WebState

TOKEN_ENV = "MGS_WEB_TOKEN"
MIN_BITS = 128
DEFAULT_PORT = 8090
RECEIVE_MS = 250
BATCH = 2000  # messages taken per turn, so a stop is seen under a steady stream
CLOSE_S = 5.0  # the event streams' time to end at a stop
THREADS = 24  # each open page holds one for its event stream (STREAM_S at a time)


class WebError(ValueError):
    """A flag, token file or address the web view cannot use: one line naming it."""


@dataclass(frozen=True)
class WebSettings:
    endpoint: str
    server_key: Path | None = None
    client_key: Path | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    monitor_keys: dict[str, Path] = field(default_factory=dict)
    history: tuple[Path, ...] = ()  # score CSVs, folders or patterns: the week before start


def load_token(path: Path | None) -> tuple[str, str] | None:
    """(token, where it came from) from the file, else $MGS_WEB_TOKEN; None when neither."""
    if path is not None:
        try:
            given, source = path.read_text().strip(), f"--token-file {path}"
        except (OSError, UnicodeDecodeError) as exc:
            raise WebError(f"--token-file {path}: cannot read: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
    else:
        given, source = os.environ.get(TOKEN_ENV, "").strip(), f"${TOKEN_ENV}"
        if not given:
            return None
    if not given or any(c.isspace() or not c.isprintable() for c in given):
        raise WebError(f"{source}: the token is empty or holds spaces or unprintable characters")
    if wsgi.token_bits(given) < MIN_BITS:
        raise WebError(f"{source}: the token holds at most {wsgi.token_bits(given)} bits, "
                       f"fewer than {MIN_BITS}: use 32 or more hex digits (openssl rand -hex 16)")
    return given, source


def parse_monitor_key(text: str) -> tuple[str, Path]:
    """`PUBLISHER=FILE`: the public key of that monitor's command socket."""
    publisher, sep, path = text.partition("=")
    if not sep or not publisher or not path:
        raise WebError(f"--monitor-key {text}: expected PUBLISHER=FILE")
    key = Path(path).expanduser()
    if not key.is_file():
        raise WebError(f"--monitor-key {text}: {key}: file not found")
    return publisher, key


class WebView:
    """The web view running: its server bound at construction (an address in use is said
    before anything starts), serving and subscribing once `start()`ed, until `close()`."""

    def __init__(self, settings: WebSettings, state: WebState | None = None) -> None:
        if (settings.tls_cert is None) != (settings.tls_key is None):
            raise WebError("--tls-cert and --tls-key go together: the certificate and its key")
        found = load_token(settings.token_file)
        self.token = found[0] if found else None
        self.token_source = found[1] if found else ""
        self.loopback = wsgi.is_loopback(settings.host)
        if not self.loopback and self.token is None:
            raise WebError(f"--host {settings.host} reaches beyond this machine: give a token "
                           f"(--token-file FILE or ${TOKEN_ENV}; openssl rand -hex 24 makes one)")
        try:
            tls = wsgi.tls_context(settings.tls_cert, settings.tls_key) \
                if settings.tls_cert and settings.tls_key else None
            self.state = state or WebState()
            self._late = _Late()
            self.server = wsgi.make_server(self._late, settings.host, settings.port, tls,
                                           threads=THREADS, ident="mgs-monitor web")
        except wsgi.ServeError as exc:
            raise WebError(str(exc)) from None
        self.port = int(self.server.effective_port)  # type: ignore[attr-defined]
        commands = Commands(dict(settings.monitor_keys), settings.server_key,
                            settings.client_key, bus=settings.endpoint)
        self._late.app = create_app(self.state, port=self.port, token=self.token,
                                    loopback=self.loopback, commands=commands,
                                    secure=tls is not None)
        self.settings = settings
        self.tls = tls is not None
        self._stop = threading.Event()
        self._subscribed = threading.Event()  # set once the subscriber is made, or failed
        self._threads: list[threading.Thread] = []
        self.error: BaseException | None = None
        self.history_line = ""

    @property
    def address(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{wsgi.shown_host(self.settings.host)}:{self.port}/"

    def start(self) -> None:
        """Subscribes, then serves; a subscriber that cannot be made (a key file that cannot
        be read, a client key without a server key) is a WebError, and nothing is served.
        The records of --history are read first, so the bus adds only what came after them."""
        if self.settings.history:
            self._read_history()
        subscriber = threading.Thread(target=self._subscribe, name="web-subscriber",
                                      daemon=True)
        self._threads = [subscriber]
        subscriber.start()
        self._subscribed.wait()
        if self.error is not None:
            self.close()
            raise WebError(str(self.error))
        server = threading.Thread(target=self._serve, name="web-server", daemon=True)
        self._threads.append(server)
        server.start()

    def _read_history(self) -> None:
        try:
            mice = read_history(list(self.settings.history), before=time.time())
        except ReportError as exc:
            self.close()
            raise WebError(f"--history: {exc}") from None
        self.state.add_history(mice)
        self.history_line = (f"read {sum(m.records for m in mice)} records of {len(mice)} "
                             "mice from the last 7 days of --history")

    def close(self) -> None:
        """Ends the event streams first, so no request thread writes to a closed server."""
        self._stop.set()
        self.state.close()
        self.state.wait_streams_ended(CLOSE_S)
        time.sleep(0.2)  # their last bytes leave through the server's loop
        self.server.close()
        for thread in self._threads:
            thread.join(10)

    def _serve(self) -> None:
        try:
            self.server.run()
        except Exception as exc:  # the server closed under it, or a fault to say
            if not self._stop.is_set():
                self.error = exc

    def _subscribe(self) -> None:
        """The bus's messages into the state; this thread alone owns the socket."""
        settings = self.settings
        try:
            subscriber = Subscriber(settings.endpoint, server_key=settings.server_key,
                                    client_key=settings.client_key)
        except Exception as exc:
            self.error = exc
            return
        finally:
            self._subscribed.set()
        try:
            with subscriber:
                while not self._stop.is_set():
                    batch = list(subscriber.receive(RECEIVE_MS, most=BATCH))
                    if batch:
                        self.state.apply_all(batch)
                    for problem in subscriber.problems():
                        self.state.say(problem)
        except Exception as exc:
            self.error = exc
            self.state.say(f"the subscriber stopped: {exc}")


class _Late:
    """A WSGI app set after the server is made (the cookie is named after the bound port)."""

    app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


def run_web(settings: WebSettings, seconds: float | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM (or `seconds`)."""
    from monitor.signals import stop_on_signals

    view = WebView(settings)
    view.start()
    lines = [view.history_line] if view.history_line else []
    lines.append(f"web view of {settings.endpoint} on {view.address} (Ctrl-C stops)")
    if view.token is not None:
        lines.append(f"open {view.address}?token=... with the token from {view.token_source} "
                     f"({view.token[:4]}…); the page then keeps it in a cookie")
    if not view.loopback and not view.tls:
        lines.append("warning: the token and the page cross the network unencrypted: give "
                     "--tls-cert and --tls-key, or serve on 127.0.0.1 through an SSH tunnel")
    for line in lines:
        print(f"mgs-monitor web: {line}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + seconds if seconds else None
    try:
        with stop_on_signals() as stopping:
            while not stopping() and (deadline is None or time.monotonic() < deadline):
                time.sleep(0.2)
    finally:
        view.close()
    return 0
