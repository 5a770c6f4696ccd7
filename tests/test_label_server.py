"""The labelling server through Flask's test client: blind payloads, the tokens, loopback only
by default, skip / undo / resume, and bad requests refused with the reason. The real server
over real HTTP(S) is tests/test_label_http.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from label import project
from label.answers import AnswerLog
from label.cli import main
from label.errors import UserError
from label.raters import Raters
from label.server import _hold, cookie_names, create_app
from tests.label_util import Run, write_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return write_run(tmp_path_factory.mktemp("evidence"), samples=3, frames=1)


@pytest.fixture
def study(run: Run, tmp_path: Path) -> project.Project:
    assert main(["queue", str(run.csv), "--project", str(tmp_path / "study"), "--random", "6",
                 "--uncertain", "4", "--frames", "1", "--repeat", "0.2"]) == 0
    return project.load(tmp_path / "study")


TOKENS = {"rater": "r" * 32, "coordinator": "c" * 32}
PORT = 8765
ACCESS, RATER = cookie_names(PORT)


def server(proj: project.Project, max_raters: int = 20, **options: Any) -> Flask:
    """One server process's app; a second call is a restart."""
    return create_app(proj, AnswerLog(proj.answers_path), tokens=TOKENS, port=PORT,
                      raters=Raters(proj.folder / "raters.json", max_raters), **options)


def browser(app: Flask, rater: str | None = "ann", role: str = "rater",
            secret: str | None = None) -> FlaskClient:
    """A browser holding its role's token; given a rater name, it took it (with `secret`: the
    rater cookie of a browser met before)."""
    c = app.test_client()
    c.set_cookie(ACCESS, TOKENS[role])
    if secret is not None:
        c.set_cookie(RATER, secret)
    assert c.get("/").status_code == 200
    if rater is not None:
        assert c.post("/api/rater", json={"name": rater}).get_json() == {"rater": rater}
    return c


def client(proj: project.Project, rater: str | None = "ann", role: str = "rater",
           **options: Any) -> FlaskClient:
    return browser(server(proj, **options), rater, role)


def task(c: FlaskClient, kind: str = "face") -> dict[str, Any]:
    response = c.get(f"/api/task?task={kind}")
    assert response.status_code == 200
    return response.get_json()


def post(c: FlaskClient, path: str, **body: Any) -> Any:
    return c.post(path, json={"task": "face", **body})


def test_nothing_the_page_receives_names_a_mouse_camera_time_or_condition(
        study: project.Project, run: Run, tmp_path: Path) -> None:
    mice = tmp_path / "mice.csv"
    mice.write_text("mouse,condition\n" + "".join(f"{m},NTG-{m}\n" for m in run.mice))
    app = server(study, conditions=mice)
    coordinator = browser(app, None, "coordinator")
    seen = [coordinator.get("/").get_data(as_text=True),
            coordinator.get("/static/label.js").get_data(as_text=True)]
    images = []
    for rater in ("ann", "bob"):
        c = browser(app, rater)
        for kind in ("face", "box"):
            t = task(c, kind)
            for _ in range(t["total"]):
                seen.append(str(t))
                images.append(t["image"])
                body = {"levels": [1, 1, 1, 1, 1]} if kind == "face" else {"how": "suggested"
                                                                           if t["suggestion"]
                                                                           else "no_face"}
                t = c.post("/api/answer", json={"task": kind, "slot": t["slot"],
                                                **body}).get_json()
            seen.append(str(t))
            seen.append(str(c.post("/api/undo", json={"task": kind}).get_json()))
    seen.append(coordinator.get("/agreement").get_data(as_text=True))
    seen.append(str(coordinator.post("/api/export", json={}).get_json()))
    text = "\n".join(seen)
    secrets = {*run.mice, *run.cameras, "NTG", "crops", "evidence", "frames/",
               "scores", "2024", *(str(int(t))[:7] for t in run.times)}
    assert not [s for s in secrets if s in text]
    assert all(re.fullmatch(r"/image/[0-9a-f]{12}", url) for url in images)
    faces = [i for i in study.items if i.task == "face"]
    assert len(images[:len(faces) + 2]) == len(set(images[:len(faces) + 2]))  # a repeat
    assert len(set(images)) == len(faces) + 2 + 4  # has an id of its own; 4 cubicles
    for url in images[:3]:
        response = c.get(url)
        assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert c.get("/image/" + "0" * 12).status_code == 404


def test_each_rater_has_an_order_of_their_own(study: project.Project) -> None:
    app = server(study)
    ann, bob = task(browser(app, "ann")), task(browser(app, "bob"))
    orders = [[i.id for i, _ in study.order(r, "face")] for r in ("ann", "bob", "cy")]
    assert orders[0] != orders[1] != orders[2]
    assert ann["image"] == f"/image/{orders[0][0]}" and bob["image"] == f"/image/{orders[1][0]}"


def test_skip_undo_and_resume(study: project.Project) -> None:
    c = client(study)
    first = task(c)
    assert first["slot"] == 0 and first["done"] == 0 and first["total"] == 12
    t = post(c, "/api/skip", slot=0).get_json()
    assert t["slot"] == 1 and t["skipped"] == 1
    t = post(c, "/api/answer", slot=1, levels=[0, 1, 2, None, 2]).get_json()
    assert t["slot"] == 2 and t["done"] == 1
    assert post(c, "/api/answer", slot=1, levels=[0] * 5).status_code == 409
    t = post(c, "/api/undo").get_json()
    assert t["undone"] and t["slot"] == 1 and t["done"] == 0
    post(c, "/api/answer", slot=1, levels=[2] * 5)
    secret = c.get_cookie(RATER)
    assert secret is not None
    restarted = browser(server(study), None, secret=secret.value)  # a new process reads the log
    assert restarted.get("/api/rater").get_json() == {"rater": "ann"}
    assert task(restarted)["slot"] == 2
    for slot in range(2, 12):
        t = post(restarted, "/api/answer", slot=slot, levels=[1] * 5).get_json()
    assert t["slot"] == 0 and t["skipped"] == 1  # the skipped one comes back last
    t = post(restarted, "/api/answer", slot=0, levels=[0] * 5).get_json()
    assert t == {"task": "face", "done": 12, "total": 12, "skipped": 0, "finished": True}


def test_bad_requests_say_what_is_wrong(study: project.Project) -> None:
    c = client(study)
    for name in ("", " ", "a" * 41, "<b>"):
        response = c.post("/api/rater", json={"name": name})
        assert response.status_code == 400 and "rater name" in response.get_json()["error"]
    for body, why in [({"rater": "ann", "task": "eyes"}, "task='eyes'"),
                      ({"rater": "ann", "task": "face", "slot": 99}, "slot=99"),
                      ({"rater": "ann", "task": "face", "slot": 0, "levels": [3, 0, 0, 0, 0]},
                       "levels must be"),
                      ({"rater": "ann", "task": "box", "slot": 0, "how": "guess"}, "how="),
                      ({"rater": "ann", "task": "box", "slot": 0, "how": "drawn",
                        "box": [5, 5, 1, 1]}, "smaller than 2 pixels")]:
        response = c.post("/api/answer", json=body)
        assert response.status_code == 400 and why in response.get_json()["error"]
    assert c.post("/api/answer", data="x").status_code == 400


def test_a_drawn_box_is_clipped_to_the_image(study: project.Project) -> None:
    c = client(study)
    t = task(c, kind="box")
    post(c, "/api/answer", task="box", slot=t["slot"], how="drawn", box=[-5, 10, 60, 9999])
    (record,) = AnswerLog(study.answers_path).stack("ann", "box")
    assert record["box"] == [0.0, 10.0, 55.0, t["height"] - 10.0]


def test_the_token_is_needed_on_every_request(study: project.Project) -> None:
    c = server(study, loopback=False).test_client()
    assert c.get("/").status_code == 403
    assert c.get("/api/task?task=face&rater=ann").status_code == 403
    assert c.get("/?token=wrong").status_code == 403
    response = c.get(f"/?token={TOKENS['rater']}")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert "HttpOnly" in response.headers["Set-Cookie"]
    assert response.headers["Set-Cookie"].startswith(f"{ACCESS}=")  # the port in its name
    assert c.get("/").status_code == 200  # the cookie carries it now
    assert c.post("/api/rater", json={"name": "ann"}).status_code == 200
    assert task(c)["slot"] == 0
    c.delete_cookie(ACCESS)
    assert c.get("/static/label.css").status_code == 403


def test_loopback_server_answers_only_to_loopback_names(study: project.Project) -> None:
    c = client(study)
    for host in ("::1", "attacker.example"):  # the token's cookie goes there too
        c.set_cookie(ACCESS, TOKENS["rater"], domain=host)
    assert c.get("/", headers={"Host": "localhost:8765"}).status_code == 200
    assert c.get("/", headers={"Host": "[::1]:8765"}).status_code == 200
    assert c.get("/", headers={"Host": "attacker.example:8765"}).status_code == 403


def test_serve_refuses_a_short_token_a_missing_project_and_a_second_server(
        study: project.Project, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MGS_LABEL_TOKEN", "s3cret")  # every address needs a token of 128 bits
    assert main(["serve", str(study.folder), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "$MGS_LABEL_TOKEN: the token holds at most" in err
    assert main(["serve", str(study.folder.parent / "none")]) == 2
    assert "not a mgs-label project" in capsys.readouterr().err
    held = _hold(study.folder)
    try:
        with pytest.raises(UserError, match="another mgs-label serve is running"):
            _hold(study.folder)
    finally:
        held.close()


def test_agreement_page_shows_kappas_and_consistency(tmp_path: Path) -> None:
    source = tmp_path / "faces"
    source.mkdir()
    rng = np.random.default_rng(0)
    for n in range(12):
        cv2.imwrite(str(source / f"{n}.png"), rng.integers(0, 255, (32, 32, 3), np.uint8))
    assert main(["queue", "--images", str(source), "--project", str(tmp_path / "p"),
                 "--repeat", "0.25"]) == 0
    proj = project.load(tmp_path / "p")
    app = server(proj)
    for rater, shift in (("ann", 0), ("bob", 1)):
        c = browser(app, rater)
        t = task(c)
        while not t["finished"]:
            level = (t["slot"] + shift) % 3
            t = c.post("/api/answer", json={"task": "face", "slot": t["slot"],
                                            "levels": [level] * 5}).get_json()
        assert c.get("/agreement").status_code == 403  # a rater sees their own progress only
    page = browser(app, None, "coordinator").get("/agreement").get_data(as_text=True)
    assert "ann &ndash; bob" in page and "ICC" in page and "images seen twice" in page
    assert re.search(r"<td>ann</td><td>3</td>", page)  # 3 of 12 images came back


def test_export_from_the_page_is_json_only_and_keeps_mice_off_the_page(
        study: project.Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mice = tmp_path / "mice.csv"
    mice.write_text("mouse,condition\ncam0-c1,pain\n")
    c = client(study, None, "coordinator", conditions=mice)
    assert c.post("/api/export").status_code == 400  # a cross-site form post carries no JSON
    mice.write_text("mouse,condition\ncam0-c1,pain\ncam0-c1,control\n")  # edited meanwhile
    response = c.post("/api/export", json={})
    assert response.status_code == 400
    assert "cam0-c1" not in response.get_data(as_text=True)
    assert "terminal" in response.get_json()["error"]
    assert "cam0-c1" in capsys.readouterr().err  # where the person running it reads it


def test_the_server_starts_without_the_training_libraries() -> None:
    """A rater waits for `mgs-label serve` to start: scikit-learn and PyTorch (seconds to import)
    are loaded only by what needs them, the agreement page and training."""
    code = ("import sys, label.cli, label.server; "
            "loaded = [m for m in ('sklearn', 'torch', 'pingouin') if m in sys.modules]; "
            "sys.exit(', '.join(loaded) or None)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
