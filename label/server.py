"""The labelling web page: Flask serving plain HTML, CSS and JS from this package.

Blind by construction: the page and its JSON get an image by an opaque id, a slot number in
the rater's own order, progress counts and, for face boxes, the localizer's suggestion in the
image's pixels. Mouse, camera, times and conditions stay in items.csv on the server.

Bound to loopback, requests must name a loopback host (a web page elsewhere cannot reach the
server through DNS rebinding). With a token, every request must carry it: the first in the
URL (`/?token=...`), which sets a cookie and is then removed from the address bar.
"""

from __future__ import annotations

import fcntl
import hmac
import ipaddress
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, jsonify, redirect, render_template, request, send_file
from werkzeug.exceptions import HTTPException

from monitor.units import LEVELS, UNITS

from . import agreement
from .answers import AnswerLog, progress
from .errors import UserError
from .export import export_folder, read_conditions
from .project import BOX, FACE, Item, Project
from .reference import NOT_SCOREABLE, REFERENCE

COOKIE = "mgs_label_token"
RATER = re.compile(r"^\w[\w .-]{0,39}$")
TOKEN_IN_URL = re.compile(r"token=[^&\s]*")
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
HOW = ("drawn", "suggested", "no_face")


def create_app(project: Project, log: AnswerLog, *, token: str | None = None,
               conditions: Path | None = None, loopback: bool = True) -> Flask:
    app = Flask(__name__)
    exporting = threading.Lock()
    app.json.sort_keys = False  # type: ignore[attr-defined]
    images = project.by_id()
    orders: dict[tuple[str, str], list[tuple[Item, bool]]] = {}
    tasks = {item.task for item in project.items}

    def order(rater: str, task: str) -> list[tuple[Item, bool]]:
        key = (rater, task)
        if key not in orders:  # dict writes are atomic; two threads at worst compute it twice
            orders[key] = project.order(rater, task)
        return orders[key]

    @app.before_request
    def guard() -> Any:
        if loopback and _hostname(request.host) not in LOOPBACK_NAMES:
            abort(403, "this server answers only to a loopback host name")
        if token is None:
            return None
        given = request.args.get("token") or request.cookies.get(COOKIE) or ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            abort(403, "this server needs its token: open the address mgs-label serve printed")
        if "token" in request.args and request.method == "GET":
            response = redirect(request.path)  # keep the token out of the address bar
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
            return response
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self'"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(HTTPException)
    def error(exc: HTTPException) -> Any:
        if request.path.startswith("/api/"):
            return jsonify(error=exc.description), exc.code
        return Response(f"{exc.code} {exc.description}\n", exc.code, mimetype="text/plain")

    @app.get("/")
    def index() -> str:
        return render_template("index.html", units=UNITS, levels=LEVELS, reference=REFERENCE,
                               not_scoreable=NOT_SCOREABLE, has_boxes=BOX in tasks,
                               has_faces=FACE in tasks)

    @app.get("/agreement")
    def agreement_page() -> str:
        records = log.in_force()
        ratings, repeats = agreement.face_ratings(records)
        done: dict[str, dict[str, int]] = {}
        for r in records:
            if r["kind"] == "answer":
                counts = done.setdefault(r["rater"], {FACE: 0, BOX: 0})
                counts[r["task"]] += 1
        return render_template("agreement.html", units=UNITS, reference=REFERENCE,
                               pairs=agreement.pairs(ratings),
                               consistency=agreement.consistency(repeats), done=done,
                               warnings=log.warnings)

    @app.get("/api/task")
    def task() -> Any:
        return jsonify(_task(request.args.get("rater"), request.args.get("task")))

    @app.post("/api/answer")
    def answer() -> Any:
        body = _body()
        rater, task, slot, item = _slot(body)
        if task == FACE:
            values: dict[str, Any] = {"levels": _levels(body.get("levels"))}
        else:
            values = _box_answer(body, item)
        try:
            log.answer(rater, task, slot, item.id, **values)
        except ValueError as exc:
            return jsonify(error=str(exc), next=_task(rater, task)), 409
        return jsonify(_task(rater, task))

    @app.post("/api/skip")
    def skip() -> Any:
        rater, task, slot, item = _slot(_body())
        log.skip(rater, task, slot, item.id)
        return jsonify(_task(rater, task))

    @app.post("/api/undo")
    def undo() -> Any:
        body = _body()
        rater, task = _rater(body.get("rater")), _task_name(body.get("task"))
        undone = log.undo(rater, task)
        return jsonify({**_task(rater, task), "undone": undone is not None})

    @app.post("/api/export")
    def export() -> Any:
        _body()  # JSON only: a page of another site cannot send it without asking first
        with exporting:  # two clicks write one after the other, never into one file at once
            try:
                report = export_folder(project.folder, conditions, log=log, project=project)
            except UserError as exc:  # may name mice and conditions: the terminal gets it
                print(f"mgs-label: export failed: {exc}", file=sys.stderr)
                abort(400, "export failed: the reason is in the terminal running mgs-label")
        return jsonify(report.as_dict())

    @app.get("/image/<iid>")
    def image(iid: str) -> Any:
        item = images.get(iid)
        if item is None:
            abort(404, "no such image")
        return send_file(project.folder / item.image, max_age=0)

    def _task(rater: Any, task: Any) -> dict[str, Any]:
        rater, task = _rater(rater), _task_name(task)
        slots = order(rater, task)
        answered, skips = progress(log.stack(rater, task))
        payload: dict[str, Any] = {"task": task, "done": len(answered), "total": len(slots),
                                   "skipped": len(skips)}
        open_slots = [s for s in range(len(slots)) if s not in answered]
        if not open_slots:
            return {**payload, "finished": True}
        slot = min(open_slots, key=lambda s: (skips[s], s))  # skipped ones come back last
        item, again = slots[slot]
        payload.update(finished=False, slot=slot, width=item.width, height=item.height,
                       image=f"/image/{item.repeat_id if again else item.id}")
        if task == BOX:
            payload["suggestion"] = item.suggested_box()
        return payload

    def _slot(body: dict[str, Any]) -> tuple[str, str, int, Item]:
        rater, task = _rater(body.get("rater")), _task_name(body.get("task"))
        slot = body.get("slot")
        slots = order(rater, task)
        if not isinstance(slot, int) or isinstance(slot, bool) or not 0 <= slot < len(slots):
            abort(400, f"slot={slot!r} is not a position in this rater's queue")
        return rater, task, slot, slots[slot][0]

    def _task_name(value: Any) -> str:
        if value not in tasks:
            abort(400, f"task={value!r} is not one of {sorted(tasks)}")
        return str(value)

    return app


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, "expected a JSON object")
    return body


def _rater(value: Any) -> str:
    if not isinstance(value, str) or not RATER.match(value.strip()):
        abort(400, "rater name: 1-40 letters, digits, spaces, dots, dashes or underscores")
    return value.strip()


def _levels(value: Any) -> list[int | None]:
    if (not isinstance(value, list) or len(value) != len(UNITS)
            or any(v is not None and (type(v) is not int or v not in LEVELS) for v in value)):
        abort(400, f"levels must be {len(UNITS)} values, each 0, 1, 2 or null")
    return value


def _box_answer(body: dict[str, Any], item: Item) -> dict[str, Any]:
    how = body.get("how")
    if how not in HOW:
        abort(400, f"how={how!r} is not one of {', '.join(HOW)}")
    if how == "no_face":
        return {"how": how, "box": None}
    if how == "suggested":
        box = item.suggested_box()
        if box is None:
            abort(400, "this image has no suggested box")
        return {"how": how, "box": box}
    raw = body.get("box")
    try:
        x, y, w, h = (float(v) for v in raw)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        abort(400, "box must be [x, y, w, h] in the image's pixels")
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(item.width), x + w), min(float(item.height), y + h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        abort(400, "box is smaller than 2 pixels inside the image")
    return {"how": how, "box": [round(v, 1) for v in (x0, y0, x1 - x0, y1 - y0)]}


def _hostname(host: str) -> str:
    """The host part of a Host header: `[::1]:5000` -> `::1`, `localhost:5000` -> `localhost`."""
    if host.startswith("["):
        return host[1:host.find("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(folder: Path, host: str, port: int, token: str | None,
          conditions: Path | None) -> int:
    """Runs Werkzeug's threaded development server until Ctrl-C: fine for a few raters on
    loopback or a trusted lab network, not a public web server."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    from .project import load

    class Handler(WSGIRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            self.path = TOKEN_IN_URL.sub("token=***", self.path)  # the secret stays out of logs
            super().log_request(code, size)

    loopback = is_loopback(host)
    if not loopback and not token:
        raise UserError(f"--host {host} is not a loopback address: give --token (every "
                        "request must then carry it) or serve on 127.0.0.1")
    project = load(folder)
    if conditions is not None:
        read_conditions(conditions)  # a broken table is named now, not at the first export
    held = _hold(folder)
    log = AnswerLog(project.answers_path)
    for warning in log.warnings:
        print(f"mgs-label: warning: {warning}", file=sys.stderr)
    app = create_app(project, log, token=token, conditions=conditions, loopback=loopback)
    try:
        server = make_server(host, port, app, threaded=True, request_handler=Handler)
    except OSError as exc:
        held.close()
        raise UserError(f"--host {host} --port {port}: cannot listen: {exc.strerror}") from None
    shown = f"[{host}]" if ":" in host else host
    query = f"/?token={token}" if token else "/"
    print(f"mgs-label: serving {folder} on http://{shown}:{server.port}{query} "
          "(Ctrl-C stops; every answer is already on disk)", file=sys.stderr)
    signal.signal(signal.SIGTERM, _stop)  # systemd and kill stop it as Ctrl-C does
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        held.close()
    return 0


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _hold(folder: Path) -> Any:
    """An exclusive lock on the project: one server process owns its answers log."""
    handle = (folder / ".serve.lock").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise UserError(f"{folder}: another mgs-label serve is running on this project") from None
    return handle
