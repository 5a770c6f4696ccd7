"""The web view's pages and JSON: Flask over the state the bus keeps (web_state.py).

Access as mgs-label's: bound to loopback, a request must name a loopback host (no DNS
rebinding) and needs no token unless one is given; on any other address every request carries
the token, the first in the URL (`/?token=...`), which sets a cookie named after the port and
is then removed from the address bar. The page's own files only (Content-Security-Policy
'self'): nothing is loaded from outside. Acknowledgements and snapshots go to the monitor that
raised the alert or owns the camera, through its command socket (monitor/outputs/commands.py);
the acknowledgement then comes back over the bus to every browser.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, jsonify, redirect, render_template, request
from werkzeug.exceptions import HTTPException

from monitor.outputs.commands import CommandClient, CommandError
from monitor.views.web_state import DAY, WEEK, WebState
from monitor.views.wsgi import LOOPBACK_NAMES, error_reply, hostname, own_files_only

NAME = re.compile(r"^[\w .'-]{1,40}$")
MAX_NOTE = 500
MAX_JSON = 16 * 1024
STREAM_S = 30.0  # an event stream ends after this long and the browser opens the next: no
# request thread is held for ever, and a closed tab frees its thread within this
KEEPALIVE_S = 10.0
PACE_S = 0.5  # at most two updates a second per browser, however fast records come
SPANS = {"day": DAY, "week": WEEK}


@dataclass(frozen=True)
class Commands:
    """How the view reaches monitors' command sockets: each publisher's public key
    (`--monitor-key`), else the bus's `--server-key`, and the view's own `--client-key`."""

    monitor_keys: dict[str, Path] = field(default_factory=dict)
    server_key: Path | None = None
    client_key: Path | None = None
    timeout_s: float = 5.0
    bus: str = ""  # the endpoint the view subscribes to

    def client(self, endpoint: str, publisher: str) -> CommandClient:
        return CommandClient(reachable(endpoint, self.bus),
                             server_key=self.monitor_keys.get(publisher, self.server_key),
                             client_key=self.client_key, timeout_s=self.timeout_s)


WILDCARDS = ("*", "0.0.0.0", "[::]", "::")


def reachable(endpoint: str, bus: str) -> str:
    """A command endpoint bound on every interface (`tcp://*:5561`) names no host to connect
    to: the host of the bus endpoint the view follows is taken (the monitor's own when the view
    subscribes to it directly; behind a proxy, monitors bind their command sockets to their
    own addresses)."""
    scheme, _, rest = endpoint.partition("://")
    host, _, port = rest.rpartition(":")
    if scheme != "tcp" or host not in WILDCARDS:
        return endpoint
    bus_host = bus.partition("://")[2].rpartition(":")[0]
    return f"tcp://{bus_host or '127.0.0.1'}:{port}"


def cookie_name(port: int) -> str:
    """Browsers keep cookies per host, not per port: two views on one host keep theirs apart."""
    return f"mgs_web_{port}"


def create_app(state: WebState, *, port: int, token: str | None, loopback: bool,
               commands: Commands, secure: bool = False,
               stream_s: float = STREAM_S) -> Flask:
    app = Flask(__name__, template_folder="web_templates", static_folder="web_static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_JSON
    app.json.sort_keys = False  # type: ignore[attr-defined]
    cookie = cookie_name(port)

    def good(given: str) -> bool:
        return token is not None and hmac.compare_digest(given.encode(), token.encode())

    @app.before_request
    def guard() -> Any:
        if loopback and hostname(request.host) not in LOOPBACK_NAMES:
            abort(403, "this server answers only to a loopback host name")
        origin = request.headers.get("Origin")  # a browser's, on every POST
        if origin is not None and origin.split("://", 1)[-1].lower() != request.host.lower():
            abort(403, "a page of another site cannot use this one")
        if token is None:
            return None
        given = request.args.get("token")
        if given is not None and request.method == "GET":
            if not good(given):
                abort(403, "this token is not this server's")
            response = redirect(request.path)  # keep the token out of the address bar
            response.set_cookie(cookie, given, httponly=True, samesite="Strict", secure=secure)
            return response
        if not good(request.cookies.get(cookie, "")):
            abort(403, "this server needs its token: open the address with ?token=...")
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        own_files_only(response, "'self' data:")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(HTTPException)
    def error(exc: HTTPException) -> Any:
        return error_reply(exc, request.path)

    @app.get("/")
    def index() -> str:
        return render_template("index.html")

    @app.get("/mouse/<path:mouse>")
    def mouse_page(mouse: str) -> str:
        return render_template("mouse.html", mouse=mouse)

    @app.get("/api/state")
    def overview() -> Response:
        return Response(state.overview_json()[1], mimetype="application/json")

    @app.get("/events")
    def events() -> Response:
        stream = _stream(state, stream_s)
        return Response(stream, mimetype="text/event-stream",
                        headers={"X-Accel-Buffering": "no"})

    @app.get("/api/mouse/<path:mouse>")
    def mouse_data(mouse: str) -> Any:
        span = SPANS.get(request.args.get("span", "day"))
        if span is None:
            abort(400, f"span={request.args.get('span')!r} is not one of {', '.join(SPANS)}")
        found = state.mouse_json(mouse, span)
        if found is None:
            abort(404, f"no records of mouse {mouse} yet")
        return jsonify(found)

    @app.get("/crop/<crop_id>")
    def crop(crop_id: str) -> Response:
        data = state.crop(crop_id)
        if data is None:
            abort(404, "no such crop (or no longer held)")
        return Response(data, mimetype="image/jpeg",
                        headers={"Cache-Control": "private, max-age=86400"})

    @app.post("/api/ack")
    def acknowledge() -> Any:
        body = _body()
        key, who, note = body.get("alert"), body.get("who"), body.get("note", "")
        if not isinstance(who, str) or not NAME.match(who.strip()):
            abort(400, "who: 1-40 letters, digits, spaces, dots, dashes or apostrophes")
        if not isinstance(note, str) or len(note) > MAX_NOTE:
            abort(400, f"note: text of at most {MAX_NOTE} characters")
        event = state.alert(key) if isinstance(key, str) else None
        if event is None or not isinstance(key, str):
            abort(404, f"alert {key!r} is not one this view has seen")
        endpoint = state.commands_of(event.publisher)
        ack = _ask(endpoint, event.publisher, commands,
                   lambda client: client.acknowledge(key, who.strip(), note.strip()))
        return jsonify(ok=True, who=ack.who, note=ack.note, wall_time=ack.wall_time)

    @app.get("/api/snapshot/<camera>")
    def snapshot(camera: str) -> Response:
        publisher = state.owner_of(camera)
        if publisher is None:
            abort(404, f"no monitor reports camera {camera}")
        jpeg = _ask(state.commands_of(publisher), publisher, commands,
                    lambda client: client.snapshot(camera))
        return Response(jpeg, mimetype="image/jpeg")

    return app


def _ask(endpoint: str, publisher: str, commands: Commands,
         call: Callable[[CommandClient], Any]) -> Any:
    """One request to a monitor's command socket; its refusal or silence as a 502 line."""
    if not endpoint:
        abort(502, f"monitor {publisher} serves no command socket (bus.commands)")
    try:
        client = commands.client(endpoint, publisher)
    except CommandError as exc:
        abort(502, f"monitor {publisher}: {exc}")
    try:
        return call(client)
    except CommandError as exc:
        abort(502, f"monitor {publisher}: {exc}")
    finally:
        client.close()


def _stream(state: WebState, seconds: float) -> Iterator[str]:
    """Server-sent events: the overview whenever it changed, paced; a comment now and then
    keeps proxies from closing the connection; ends after `seconds` (the browser reconnects)."""
    end = time.monotonic() + seconds
    state.opened(+1)
    try:
        yield "retry: 1000\n\n"
        seen = -1
        while time.monotonic() < end and not state.closed:
            version, text = state.overview_json()
            if version != seen:
                seen = version
                yield f"event: state\ndata: {text}\n\n"
                state.pause(PACE_S)
            elif state.wait(seen, min(KEEPALIVE_S, max(0.0, end - time.monotonic()))) == seen:
                yield ": still here\n\n"
    finally:
        state.opened(-1)


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, "expected a JSON object")
    return body
