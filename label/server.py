"""The labelling web page: Flask serving plain HTML, CSS and JS from this package.

Blind by construction: the page and its JSON get an image by an opaque id, a slot number in
the rater's own order, their own progress and, for face boxes, the localizer's suggestion in
the image's pixels. Images come as bytes alone: no file name, date or tag. Mouse, camera,
times and conditions stay in items.csv on the server.

Two roles (access.py): raters score; the coordinator also sees the agreement page and writes
the label files. Every request carries its role's token: the first in the URL (`/?token=...`),
which sets a cookie named after the port and is then removed from the address bar. Which rater
a browser is comes from its own secret cookie (raters.py), never from a request's body.
Bound to loopback, requests must also name a loopback host (a web page elsewhere cannot reach
the server through DNS rebinding).
"""

from __future__ import annotations

import fcntl
import hmac
import mimetypes
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, g, jsonify, redirect, render_template, request
from werkzeug.exceptions import HTTPException

from monitor.units import LEVELS, UNITS
from monitor.views.wsgi import (
    LOOPBACK_NAMES,
    error_reply,
    hostname,
    is_loopback,
    own_files_only,
    shown_host,
)

from . import access, agreement, web
from .access import COORDINATOR, RATER
from .answers import AnswerLog, progress
from .errors import UserError
from .export import export_folder, read_conditions
from .project import BOX, FACE, Item, Project
from .raters import NAME, Raters, Refused, new_secret, valid_secret
from .reference import NOT_SCOREABLE, REFERENCE

HOW = ("drawn", "suggested", "no_face")
MAX_JSON = 64 * 1024  # bytes; an answer is a few hundred
MAX_RATERS = 20
YEAR = 365 * 24 * 3600


def cookie_names(port: int) -> tuple[str, str]:
    """(access, rater) cookie names. Browsers keep cookies per host, not per port: two projects
    served on one host must not overwrite each other's."""
    return f"mgs_label_{port}", f"mgs_label_rater_{port}"


def create_app(project: Project, log: AnswerLog, *, tokens: dict[str, str], port: int,
               raters: Raters, conditions: Path | None = None, loopback: bool = True,
               secure: bool = False) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_JSON
    exporting = threading.Lock()
    app.json.sort_keys = False  # type: ignore[attr-defined]
    files = project.files()
    orders: dict[tuple[str, str], list[tuple[Item, bool]]] = {}  # bounded: raters are
    tasks = {item.task for item in project.items}
    access_cookie, rater_cookie = cookie_names(port)

    def order(rater: str, task: str) -> list[tuple[Item, bool]]:
        key = (rater, task)
        if key not in orders:  # dict writes are atomic; two threads at worst compute it twice
            orders[key] = project.order(rater, task)
        return orders[key]

    def role_of(given: str) -> str | None:
        found = None
        for role, token in tokens.items():  # compare with both, always: the time says nothing
            if hmac.compare_digest(given.encode(), token.encode()):
                found = role
        return found

    @app.before_request
    def guard() -> Any:
        if loopback and hostname(request.host) not in LOOPBACK_NAMES:
            abort(403, "this server answers only to a loopback host name")
        given = request.args.get("token")
        if given is not None and request.method == "GET":
            if role_of(given) is None:
                abort(403, "this token is not this server's: ask the coordinator for the address")
            response = redirect(request.path)  # keep the token out of the address bar
            response.set_cookie(access_cookie, given, httponly=True, samesite="Strict",
                                secure=secure)
            return response
        g.role = role_of(request.cookies.get(access_cookie, ""))
        if g.role is None:
            abort(403, "this server needs its token: open the address the coordinator gave you")
        g.secret = valid_secret(request.cookies.get(rater_cookie))
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        if getattr(g, "new_secret", None):
            response.set_cookie(rater_cookie, g.new_secret, max_age=YEAR, httponly=True,
                                samesite="Strict", secure=secure)
        own_files_only(response)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(HTTPException)
    def error(exc: HTTPException) -> Any:
        return error_reply(exc, request.path)

    @app.get("/")
    def index() -> str:
        if g.secret is None:  # this browser's first visit: its rater secret
            g.secret = g.new_secret = new_secret()
        return render_template("index.html", units=UNITS, levels=LEVELS, reference=REFERENCE,
                               not_scoreable=NOT_SCOREABLE, has_boxes=BOX in tasks,
                               has_faces=FACE in tasks, coordinator=g.role == COORDINATOR)

    @app.get("/agreement")
    def agreement_page() -> str:
        _coordinator()
        records = log.in_force()
        ratings, repeats = agreement.face_ratings(records)
        done: dict[str, dict[str, int]] = {}
        for r in records:
            if r["kind"] == "answer":
                counts = done.setdefault(r["rater"], {FACE: 0, BOX: 0})
                counts[r["task"]] += 1
        for name in raters.names():
            done.setdefault(name, {FACE: 0, BOX: 0})
        return render_template("agreement.html", units=UNITS, reference=REFERENCE,
                               pairs=agreement.pairs(ratings),
                               consistency=agreement.consistency(repeats), done=done,
                               taken=set(raters.names()), warnings=log.warnings)

    @app.get("/api/rater")
    def who() -> Any:
        return jsonify(rater=raters.name_of(g.secret) if g.secret else None)

    @app.post("/api/rater")
    def claim() -> Any:
        name = _body().get("name")
        if not isinstance(name, str) or not NAME.match(name.strip()):
            abort(400, "rater name: 1-40 letters, digits, spaces, dots, dashes or underscores")
        if g.secret is None:
            g.secret = g.new_secret = new_secret()
        try:
            name = raters.claim(g.secret, name)
        except Refused as exc:
            return jsonify(error=str(exc)), 409
        return jsonify(rater=name)

    @app.post("/api/release")
    def release() -> Any:
        _coordinator()
        name = _body().get("name")
        return jsonify(released=isinstance(name, str) and raters.release(name))

    @app.get("/api/task")
    def task() -> Any:
        return jsonify(_task(_rater(), request.args.get("task")))

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
        rater, task = _rater(), _task_name(body.get("task"))  # this browser's rater only
        undone = log.undo(rater, task)
        return jsonify({**_task(rater, task), "undone": undone is not None})

    @app.post("/api/export")
    def export() -> Any:
        _coordinator()
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
        path = files.get(iid)
        if path is None:
            abort(404, "no such image")
        # the bytes alone: no file name, no dates, no tag that could tell two copies apart
        mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Response(path.read_bytes(), mimetype=mimetype)

    def _rater() -> str:
        name = raters.name_of(g.secret) if g.secret else None
        if name is None:
            abort(403, "this browser has no rater name yet: reload the page and give yours")
        return name

    def _coordinator() -> None:
        if g.role != COORDINATOR:
            abort(403, "the agreement page and the label files are the coordinator's")

    def _task(rater: str, task: Any) -> dict[str, Any]:
        task = _task_name(task)
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
        rater, task = _rater(), _task_name(body.get("task"))
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


def serve(folder: Path, host: str, port: int, conditions: Path | None, *,
          max_raters: int = MAX_RATERS, tls_cert: Path | None = None,
          tls_key: Path | None = None) -> int:
    """Serves the project with waitress (web.py) until Ctrl-C or SIGTERM."""
    from .project import load

    if (tls_cert is None) != (tls_key is None):
        raise UserError("--tls-cert and --tls-key go together: the certificate and its key")
    if max_raters < 1:
        raise UserError(f"--max-raters {max_raters}: must be 1 or more")
    project = load(folder)
    if conditions is not None:
        read_conditions(conditions)  # a broken table is named now, not at the first export
    tls = web.tls_context(tls_cert, tls_key) if tls_cert and tls_key else None
    held = _hold(folder)
    try:
        tokens = access.load_both(folder)
        log = AnswerLog(project.answers_path)
        for warning in log.warnings:
            print(f"mgs-label: warning: {warning}", file=sys.stderr)
        late = _Late()  # the cookies are named after the port, known once it is bound
        server = web.make_server(late, host, port, tls)
        bound = int(server.effective_port)  # type: ignore[attr-defined]
        late.app = create_app(project, log, tokens={r: t.value for r, t in tokens.items()},
                              port=bound, raters=Raters(folder / "raters.json", max_raters),
                              conditions=conditions, loopback=is_loopback(host),
                              secure=tls is not None)
        base = f"{'https' if tls else 'http'}://{shown_host(host)}:{bound}"
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _stop)  # systemd and kill stop it as Ctrl-C does
        try:
            urls = access.write_addresses(folder, base, tokens)
            _say_where(folder, base, tokens, urls, plain=tls is None and not is_loopback(host))
            server.run()  # returns on Ctrl-C, after its worker threads finished
        except KeyboardInterrupt:
            pass  # stopped before it began serving
        finally:
            server.close()
    finally:
        held.close()
    return 0


class _Late:
    """A WSGI app set after the server is made."""

    app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


def _say_where(folder: Path, base: str, tokens: dict[str, access.Token],
               urls: dict[str, Path], plain: bool) -> None:
    rater = tokens[RATER]
    lines = [f"serving {folder} on {base}/ (Ctrl-C stops; every answer is already on disk)",
             f"raters open the address in {urls[RATER]} (token {rater.hint} from {rater.source})",
             f"the coordinator opens the address in {urls[COORDINATOR]} (agreement page and "
             f"label files; token {tokens[COORDINATOR].hint} from {tokens[COORDINATOR].source})"]
    if plain:
        lines.append("warning: tokens and answers cross the network unencrypted: give "
                     "--tls-cert and --tls-key, or serve on 127.0.0.1 through an SSH tunnel")
    for line in lines:
        print(f"mgs-label: {line}", file=sys.stderr, flush=True)


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
