"""The labelling server through Flask's test client: blind payloads, the token, loopback only
by default, skip / undo / resume, and bad requests refused with the reason."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from flask.testing import FlaskClient

from label import project
from label.answers import AnswerLog
from label.cli import main
from label.errors import UserError
from label.server import _hold, create_app
from tests.label_util import Run, write_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return write_run(tmp_path_factory.mktemp("evidence"), samples=3, frames=1)


@pytest.fixture
def study(run: Run, tmp_path: Path) -> project.Project:
    assert main(["queue", str(run.csv), "--project", str(tmp_path / "study"), "--random", "6",
                 "--uncertain", "4", "--frames", "1", "--repeat", "0.2"]) == 0
    return project.load(tmp_path / "study")


def client(proj: project.Project, **options: Any) -> FlaskClient:
    app = create_app(proj, AnswerLog(proj.answers_path), **options)
    return app.test_client()


def task(c: FlaskClient, rater: str = "ann", kind: str = "face") -> dict[str, Any]:
    response = c.get(f"/api/task?task={kind}&rater={rater}")
    assert response.status_code == 200
    return response.get_json()


def post(c: FlaskClient, path: str, **body: Any) -> Any:
    return c.post(path, json={"rater": "ann", "task": "face", **body})


def test_nothing_the_page_receives_names_a_mouse_camera_time_or_condition(
        study: project.Project, run: Run, tmp_path: Path) -> None:
    mice = tmp_path / "mice.csv"
    mice.write_text("mouse,condition\n" + "".join(f"{m},NTG-{m}\n" for m in run.mice))
    c = client(study, conditions=mice)
    seen = [c.get("/").get_data(as_text=True), c.get("/static/label.js").get_data(as_text=True)]
    images = []
    for rater in ("ann", "bob"):
        for kind in ("face", "box"):
            t = task(c, rater, kind)
            for _ in range(t["total"]):
                seen.append(str(t))
                images.append(t["image"])
                body = {"levels": [1, 1, 1, 1, 1]} if kind == "face" else {"how": "suggested"
                                                                           if t["suggestion"]
                                                                           else "no_face"}
                t = c.post("/api/answer", json={"rater": rater, "task": kind, "slot": t["slot"],
                                                **body}).get_json()
            seen.append(str(t))
            seen.append(str(c.post("/api/undo", json={"rater": rater, "task": kind}).get_json()))
    seen.append(c.get("/agreement").get_data(as_text=True))
    seen.append(str(c.post("/api/export", json={}).get_json()))
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
    c = client(study)
    ann, bob = task(c, "ann"), task(c, "bob")
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
    restarted = client(study)  # a new server process reads the log
    assert task(restarted)["slot"] == 2
    for slot in range(2, 12):
        t = post(restarted, "/api/answer", slot=slot, levels=[1] * 5).get_json()
    assert t["slot"] == 0 and t["skipped"] == 1  # the skipped one comes back last
    t = post(restarted, "/api/answer", slot=0, levels=[0] * 5).get_json()
    assert t == {"task": "face", "done": 12, "total": 12, "skipped": 0, "finished": True}


def test_bad_requests_say_what_is_wrong(study: project.Project) -> None:
    c = client(study)
    for body, why in [({"rater": "", "task": "face"}, "rater name"),
                      ({"rater": "ann", "task": "eyes"}, "task='eyes'"),
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
    c = client(study, token="s3cret", loopback=False)
    assert c.get("/").status_code == 403
    assert c.get("/api/task?task=face&rater=ann").status_code == 403
    assert c.get("/?token=wrong").status_code == 403
    response = c.get("/?token=s3cret")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert "HttpOnly" in response.headers["Set-Cookie"]
    assert c.get("/").status_code == 200  # the cookie carries it now
    assert task(c)["slot"] == 0
    c.delete_cookie("mgs_label_token")
    assert c.get("/static/label.css").status_code == 403


def test_loopback_server_answers_only_to_loopback_names(study: project.Project) -> None:
    c = client(study)
    assert c.get("/", headers={"Host": "localhost:8765"}).status_code == 200
    assert c.get("/", headers={"Host": "[::1]:8765"}).status_code == 200
    assert c.get("/", headers={"Host": "attacker.example:8765"}).status_code == 403


def test_serve_refuses_other_addresses_without_a_token(
        study: project.Project, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MGS_LABEL_TOKEN", raising=False)
    assert main(["serve", str(study.folder), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--host 0.0.0.0 is not a loopback address: give --token" in err
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
    c = client(proj)
    for rater, shift in (("ann", 0), ("bob", 1)):
        t = task(c, rater)
        while not t["finished"]:
            level = (t["slot"] + shift) % 3
            t = c.post("/api/answer", json={"rater": rater, "task": "face", "slot": t["slot"],
                                            "levels": [level] * 5}).get_json()
    page = c.get("/agreement").get_data(as_text=True)
    assert "ann &ndash; bob" in page and "ICC" in page and "images seen twice" in page
    assert re.search(r"<td>ann</td><td>3</td>", page)  # 3 of 12 images came back


def test_export_from_the_page_is_json_only_and_keeps_mice_off_the_page(
        study: project.Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mice = tmp_path / "mice.csv"
    mice.write_text("mouse,condition\ncam0-c1,pain\n")
    c = client(study, conditions=mice)
    assert c.post("/api/export").status_code == 400  # a cross-site form post carries no JSON
    mice.write_text("mouse,condition\ncam0-c1,pain\ncam0-c1,control\n")  # edited meanwhile
    response = c.post("/api/export", json={})
    assert response.status_code == 400
    assert "cam0-c1" not in response.get_data(as_text=True)
    assert "terminal" in response.get_json()["error"]
    assert "cam0-c1" in capsys.readouterr().err  # where the person running it reads it
