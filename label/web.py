"""The HTTP(S) server under the scoring page: the monitor's waitress server
(monitor/views/wsgi.py), its errors said as mgs-label's."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from waitress.server import BaseWSGIServer

from monitor.views import wsgi
from monitor.views.wsgi import CHANNEL_TIMEOUT, MAX_BODY

from .errors import UserError

__all__ = ["CHANNEL_TIMEOUT", "MAX_BODY", "make_server", "tls_context"]


def make_server(app: Any, host: str, port: int, tls: ssl.SSLContext | None = None,
                channel_timeout: float = CHANNEL_TIMEOUT,
                cleanup_interval: float = 10) -> BaseWSGIServer:
    """A bound, not yet running, server; run() serves until KeyboardInterrupt or close()."""
    try:
        return wsgi.make_server(app, host, port, tls, channel_timeout, cleanup_interval,
                                ident="mgs-label")
    except wsgi.ServeError as exc:
        raise UserError(str(exc)) from None


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    try:
        return wsgi.tls_context(cert, key)
    except wsgi.ServeError as exc:
        raise UserError(str(exc)) from None
