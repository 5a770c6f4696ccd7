"""`mgs-monitor web`: the state it keeps from the bus, its pages and JSON over real HTTP, its
access rules, and (in a real headless Chromium) a replayed demo monitor watched, alerted and
acknowledged from two browsers.

The browser tests need Debian's chromium and chromium-driver, as mgs-label's do; MGS_NO_BROWSER=1
skips them on purpose.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from monitor.cli import main
from monitor.outputs.bus import Publisher
from monitor.outputs.csvlog import CsvLogger, SideLog
from monitor.outputs.markers import acknowledgement_marker
from monitor.schema import (
    ALERT_COLUMNS,
    MARKER_COLUMNS,
    Acknowledgement,
    AlertCrop,
    AlertEvent,
    Message,
    alert_key,
    side_file,
)
from monitor.views.web import WebError, WebSettings, WebView
from monitor.views.web_app import reachable
from monitor.views.web_state import DAY, HOUR, WEEK, Series, WebState
from tests.browser_util import chromium as browser_window
from tests.fakes import HeldCamera
from tests.records_util import score_record
from tests.test_label_http import certificate  # noqa: F401  (a fixture: a self-signed pair)

TOKEN = "ab" * 24


def jpeg(shade: int) -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((48, 48, 3), shade, np.uint8))
    assert ok
    return data.tobytes()


def raised(mouse: str = "cam0-c1", evidence: tuple[str, ...] = (), since: float = 5.0,
           event: str = "raised", publisher: str = "test") -> AlertEvent:
    return AlertEvent(wall_time=time.time(), time=since, mouse=mouse, camera="cam0",
                      rule="pain", event=event, value=6.0, threshold=4.0, since=since,
                      peak=6.0, detail="window mean 6.0", evidence=evidence,
                      publisher=publisher)


def crop_of(event: AlertEvent, name: str, data: bytes) -> AlertCrop:
    return AlertCrop(publisher=event.publisher, alert=alert_key(event), mouse=event.mouse,
                     rule=event.rule, since=event.since, name=name,
                     jpeg=base64.b64encode(data).decode())


def ack_of(event: AlertEvent, who: str, note: str) -> Acknowledgement:
    return Acknowledgement(publisher=event.publisher, wall_time=time.time(), time=event.since,
                           mouse=event.mouse, camera=event.camera, rule=event.rule,
                           since=event.since, who=who, note=note, alert=alert_key(event))


@contextmanager
def web_view(endpoint: str, **settings: Any) -> Iterator[WebView]:
    view = WebView(WebSettings(endpoint, port=0, **settings))
    view.start()
    try:
        yield view
    finally:
        view.close()


def get(view: WebView, path: str, host: str | None = None, cookie: str | None = None,
        method: str = "GET", body: dict[str, Any] | None = None,
        tls: ssl.SSLContext | None = None, headers: dict[str, str] | None = None,
        ) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPSConnection("127.0.0.1", view.port, timeout=20, context=tls) \
        if tls else http.client.HTTPConnection("127.0.0.1", view.port, timeout=20)
    headers = {"Host": host or f"127.0.0.1:{view.port}", **(headers or {})}
    if cookie:
        headers["Cookie"] = cookie
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    connection.request(method, path, body=data, headers=headers)
    response = connection.getresponse()
    found = (response.status, dict(response.getheaders()), response.read())
    connection.close()
    return found


def overview(view: WebView) -> dict[str, Any]:
    status, _, body = get(view, "/api/state")
    assert status == 200
    return json.loads(body)  # type: ignore[no-any-return]


def until(check: Callable[[], bool], publish: Callable[[], None] | None = None,
          seconds: float = 20) -> None:
    """Waits for what the view shows, publishing again meanwhile (a subscriber joins late)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if publish is not None:
            publish()
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("the web view never showed it")


def send(publisher: Publisher, messages: list[Message]) -> Callable[[], None]:
    return lambda: [publisher.publish(m) for m in messages]  # type: ignore[func-returns-value]


# --- the state ----------------------------------------------------------------------------


def test_a_week_of_a_mouse_is_kept_in_bounded_memory_and_its_means_are_right() -> None:
    series, start, step = Series(), 1_800_000.0, 30.0
    n = int(8 * DAY / step)

    def total(t: float) -> float:  # one value per 30-minute block: every mean is known
        return float((t // 1800) % 10)

    for k in range(n):
        t = start + k * step
        series.add(t, total(t), (1.0, 0, 0, 0, total(t) % 3))
    end = start + (n - 1) * step
    week = series.points(end - WEEK)
    assert len(series.raw) == HOUR / step + 1 and len(week) < 700  # not the 20,160 samples
    assert end - WEEK <= week[0][0] < end - WEEK + 1800
    assert all(p[1] == total(p[0]) and p[2] == (1.0, 0, 0, 0, total(p[0]) % 3) for p in week)
    widths = np.diff([p[0] for p in week])
    assert set(widths[:100]) == {1800.0} and set(widths[-100:]) == {step}
    assert 300.0 in set(widths)  # 5-minute means between the last hour and the last day


def test_crops_are_held_within_their_byte_budget_oldest_first() -> None:
    state = WebState(crop_bytes=3 * len(jpeg(10)))
    events = [raised(f"cam0-c{k}", (f"e{k}.jpg",), since=float(k)) for k in range(1, 5)]
    for event in events:
        state.apply(event)
        state.apply(crop_of(event, event.evidence[0], jpeg(10)))
    assert len(state.crops) == 3 and state.held_bytes <= state.crop_bytes
    alerts = json.loads(state.overview_json()[1])["alerts"]
    assert [a["mouse"] for a in alerts] == ["cam0-c4", "cam0-c3", "cam0-c2", "cam0-c1"]
    assert [len(a["crops"]) for a in alerts] == [1, 1, 1, 0]  # the oldest alert's went first
    assert all(state.crop(a["crops"][0].rsplit("/", 1)[1]) == jpeg(10) for a in alerts[:3])


def test_an_alert_keeps_its_window_totals_acknowledgements_and_stays_active() -> None:
    state = WebState()
    records = []
    for seq, total in enumerate((7, 8, 9)):
        record = score_record(seq, total=total).model_copy(update={"crop": f"c{seq}.jpg"})
        records.append(record)
        state.apply(record)
    event = raised(evidence=("c1.jpg", "c2.jpg"))
    state.apply(event)
    state.apply(ack_of(event, "Dr Vet", "buprenorphine given"))
    alert = json.loads(state.overview_json()[1])["alerts"][0]
    assert alert["totals"] == [8.0, 9.0] and alert["active"]
    assert [(a["who"], a["note"]) for a in alert["acks"]] == [("Dr Vet", "buprenorphine given")]
    state.apply(raised(evidence=("c1.jpg", "c2.jpg"), event="cleared"))
    assert not json.loads(state.overview_json()[1])["alerts"][0]["active"]


def test_tiles_are_grouped_by_monitor_and_camera() -> None:
    state = WebState()
    for publisher, camera, cubicle in (("hostB", "rack2", 2), ("hostA", "rack1", 1),
                                       ("hostB", "rack2", 1), ("hostB", "rack1", 1)):
        state.apply(score_record(1, mouse=f"{publisher}-{camera}-c{cubicle}",
                                 publisher=publisher).model_copy(
            update={"camera": camera, "cubicle": cubicle}))
    monitors = json.loads(state.overview_json()[1])["monitors"]
    assert [(m["publisher"], [(c["name"], [t["mouse"] for t in c["mice"]])
                              for c in m["cameras"]]) for m in monitors] == [
        ("hostA", [("rack1", ["hostA-rack1-c1"])]),
        ("hostB", [("rack1", ["hostB-rack1-c1"]),
                   ("rack2", ["hostB-rack2-c1", "hostB-rack2-c2"])])]


# --- over HTTP ----------------------------------------------------------------------------


def test_the_page_shows_what_the_bus_says_with_crops_and_acknowledgements(
        free_endpoint: str) -> None:
    publisher = Publisher(free_endpoint)
    try:
        with web_view(free_endpoint) as view:
            records = [score_record(k, mouse=f"cam0-c{k}", total=k) for k in range(1, 5)]
            event = raised(evidence=("cam0-c1/a.jpg",))
            picture = jpeg(200)
            messages: list[Message] = [*records, event,
                                       crop_of(event, "cam0-c1/a.jpg", picture),
                                       ack_of(event, "Ann", "seen")]
            until(lambda: bool(overview(view)["alerts"])
                  and bool(overview(view)["alerts"][0]["acks"]),
                  send(publisher, messages))
            data = overview(view)
            tiles = [t for m in data["monitors"] for c in m["cameras"] for t in c["mice"]]
            assert [t["mouse"] for t in tiles] == [f"cam0-c{k}" for k in range(1, 5)]
            assert [t["total"] for t in tiles] == [1, 2, 3, 4] and data["demo"]
            alert = data["alerts"][0]
            assert alert["key"] == alert_key(event) and alert["acks"][0]["who"] == "Ann"
            status, headers, body = get(view, alert["crops"][0])
            assert status == 200 and body == picture
            assert headers["Content-Type"] == "image/jpeg"
            status, headers, page = get(view, "/")
            assert status == 200 and b"overview.js" in page
            assert "default-src 'self'" in headers["Content-Security-Policy"]
            assert b"http://" not in page and b"https://" not in page  # nothing from outside
            status, _, mouse = get(view, "/api/mouse/cam0-c3?span=week")
            assert status == 200 and json.loads(mouse)["points"][-1][1] == 3.0
            assert get(view, "/api/mouse/cam0-c3?span=year")[0] == 400
            assert get(view, "/api/mouse/nobody")[0] == 404
    finally:
        publisher.close(linger=0)


def test_the_event_stream_sends_the_state_as_it_changes(free_endpoint: str) -> None:
    publisher = Publisher(free_endpoint)
    try:
        with web_view(free_endpoint) as view:
            until(lambda: bool(overview(view)["monitors"]),
                  send(publisher, [score_record(1, mouse="cam0-c1")]))
            connection = http.client.HTTPConnection("127.0.0.1", view.port, timeout=20)
            connection.request("GET", "/events")
            response = connection.getresponse()
            assert response.getheader("Content-Type", "").startswith("text/event-stream")
            first = _next_state(response)
            assert [t["mouse"] for t in first["monitors"][0]["cameras"][0]["mice"]] == \
                ["cam0-c1"]
            publisher.publish(raised())
            second = _next_state(response)
            while not second["alerts"]:
                second = _next_state(response)
            assert second["alerts"][0]["mouse"] == "cam0-c1"
            connection.close()
    finally:
        publisher.close(linger=0)


def _next_state(response: http.client.HTTPResponse) -> dict[str, Any]:
    event = ""
    while True:
        line = response.readline().decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event == "state":
            return json.loads(line[6:])  # type: ignore[no-any-return]


def test_an_acknowledgement_to_a_monitor_without_a_command_socket_is_one_line(
        free_endpoint: str) -> None:
    publisher = Publisher(free_endpoint)
    event = raised()
    try:
        with web_view(free_endpoint) as view:
            until(lambda: bool(overview(view)["alerts"]), send(publisher, [event]))
            status, _, body = get(view, "/api/ack", method="POST",
                                  body={"alert": alert_key(event), "who": "Ann", "note": ""})
            assert status == 502
            assert json.loads(body)["error"] == (
                "monitor test serves no command socket (bus.commands)")
            for bad, line in (({"alert": alert_key(event), "who": ""}, "who: 1-40"),
                              ({"alert": "nope", "who": "Ann"}, "alert 'nope' is not one"),
                              ({"alert": alert_key(event), "who": "Ann", "note": "x" * 501},
                               "note: text of at most 500")):
                status, _, body = get(view, "/api/ack", method="POST", body=bad)
                assert status in (400, 404) and json.loads(body)["error"].startswith(line)
    finally:
        publisher.close(linger=0)


def test_requests_that_cannot_be_served_are_one_line_each(free_endpoint: str) -> None:
    publisher = Publisher(free_endpoint)
    record = score_record(1, mouse="cam0-c1")
    try:
        with web_view(free_endpoint) as view:
            until(lambda: bool(overview(view)["monitors"]), send(publisher, [record]))
            status, _, body = get(view, "/api/snapshot/cam9")
            assert status == 404 and json.loads(body)["error"] == "no monitor reports camera cam9"
            status, _, body = get(view, "/api/ack", method="POST", body={"who": "Ann"},
                                  headers={"Origin": "http://attacker.example"})
            assert status == 403 and "another site" in json.loads(body)["error"]
            status, _, body = get(view, "/api/ack", method="POST", body={"who": "Ann"},
                                  headers={"Content-Type": "text/plain"})
            assert status == 400 and json.loads(body)["error"] == "expected a JSON object"
    finally:
        publisher.close(linger=0)


def test_a_command_socket_bound_everywhere_is_reached_at_the_monitors_host() -> None:
    assert reachable("tcp://*:5561", "tcp://10.0.0.5:5560") == "tcp://10.0.0.5:5561"
    assert reachable("tcp://0.0.0.0:5561", "tcp://hostA:5560") == "tcp://hostA:5561"
    assert reachable("tcp://10.0.0.7:5561", "tcp://proxy:5562") == "tcp://10.0.0.7:5561"
    assert reachable("ipc:///run/mgs/commands", "tcp://hostA:5560") == \
        "ipc:///run/mgs/commands"


# --- access -------------------------------------------------------------------------------


def test_on_loopback_a_host_name_elsewhere_is_refused(free_endpoint: str) -> None:
    with web_view(free_endpoint) as view:
        assert get(view, "/")[0] == 200  # loopback, no token given: none needed
        status, _, body = get(view, "/", host="attacker.example")
        assert status == 403 and b"loopback host name" in body
        status, _, _ = get(view, "/api/state", host="attacker.example:80")
        assert status == 403


def test_off_loopback_a_token_is_needed_and_a_wrong_one_refused(
        free_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MGS_WEB_TOKEN", raising=False)
    with pytest.raises(WebError, match=r"--host 0\.0\.0\.0 reaches beyond this machine: give "
                                       r"a token"):
        WebView(WebSettings(free_endpoint, host="0.0.0.0", port=0))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with web_view(free_endpoint, host="0.0.0.0", token_file=token_file) as view:
        status, _, body = get(view, "/")
        assert status == 403 and b"needs its token" in body
        assert get(view, "/api/state")[0] == 403
        assert get(view, "/?token=" + "cd" * 24)[0] == 403
        assert get(view, "/api/state", cookie=f"mgs_web_{view.port}={'cd' * 24}")[0] == 403
        status, headers, _ = get(view, f"/?token={TOKEN}")
        assert status == 302 and headers["Location"] == "/"  # the token leaves the address
        cookie = headers["Set-Cookie"].split(";")[0]
        assert cookie == f"mgs_web_{view.port}={TOKEN}"
        assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
        assert get(view, "/api/state", cookie=cookie)[0] == 200
        assert get(view, "/", host="mgs.lab.example", cookie=cookie)[0] == 200


def test_https_with_a_certificate_and_a_secure_cookie(
        free_endpoint: str, tmp_path: Path, certificate: tuple[Path, Path],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = certificate
    monkeypatch.setenv("MGS_WEB_TOKEN", TOKEN)
    trust = ssl.create_default_context(cafile=str(cert))
    with web_view(free_endpoint, tls_cert=cert, tls_key=key) as view:
        assert view.address.startswith("https://127.0.0.1:")
        assert get(view, "/", tls=trust)[0] == 403  # a token given is needed on loopback too
        status, headers, _ = get(view, f"/?token={TOKEN}", tls=trust)
        assert status == 302 and "Secure" in headers["Set-Cookie"]
        cookie = headers["Set-Cookie"].split(";")[0]
        assert get(view, "/api/state", cookie=cookie, tls=trust)[0] == 200
        with pytest.raises(OSError):
            get(view, "/", tls=ssl.create_default_context())  # a certificate not trusted


def test_bad_web_flags_are_one_line(free_endpoint: str, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MGS_WEB_TOKEN", raising=False)
    short = tmp_path / "short"
    short.write_text("abc123\n")
    cases = [
        (["--listen", "0.0.0.0:0"], "--host 0.0.0.0 reaches beyond this machine"),
        (["--listen", "nowhere"], "--listen nowhere: expected HOST:PORT"),
        (["--token-file", str(tmp_path / "none")], f"--token-file {tmp_path / 'none'}: "
                                                   "cannot read"),
        (["--token-file", str(short)], f"--token-file {short}: the token holds at most 24 bits"),
        (["--monitor-key", "mon1"], "--monitor-key mon1: expected PUBLISHER=FILE"),
        (["--monitor-key", f"mon1={tmp_path / 'k'}"], f"{tmp_path / 'k'}: file not found"),
        (["--tls-cert", str(short)], "--tls-cert and --tls-key go together"),
        (["--tls-cert", str(short), "--tls-key", str(short)], "not a certificate and its key"),
        (["--client-key", str(short)], f"--client-key {short}: a client key is presented only"),
        (["--server-key", str(tmp_path / "server.key")], f"{tmp_path / 'server.key'}"),
    ]
    for flags, line in cases:
        assert main(["web", "--endpoint", free_endpoint, "--listen", "127.0.0.1:0",
                     *flags, "--seconds", "0.1"]) == 2, flags
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and line in err, (flags, err)
    monkeypatch.setenv("MGS_WEB_TOKEN", "tooshort")
    assert main(["web", "--endpoint", free_endpoint, "--listen", "0.0.0.0:0",
                 "--seconds", "0.1"]) == 2
    assert "$MGS_WEB_TOKEN: the token holds at most" in capsys.readouterr().err


def test_the_web_command_serves_until_its_time_is_up(free_endpoint: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["web", "--endpoint", free_endpoint, "--listen", "127.0.0.1:0",
                 "--seconds", "0.5"]) == 0
    assert f"web view of {free_endpoint} on http://127.0.0.1:" in capsys.readouterr().err


# --- the records of the week before the view started ---------------------------------------

LEVELS = [1, 0, 0, 0, 2]


def past_total(k: int) -> int:
    """Sample k (every 10 minutes from a half hour's start): 0, 2, 4 within each half hour,
    plus 1 in every other one, so each half hour's mean is 2 or 3."""
    return (k % 3) * 2 + (k // 3) % 2


def write_history(folder: Path, now: float) -> tuple[dict[float, int], float]:
    """Three days of a mouse's records ending two hours ago, one 8 days old, one after `now`;
    an alert an hour long two days ago and its acknowledgement. (samples, their first time)"""
    start = (now - 3 * DAY) // 1800 * 1800
    samples = {start + k * 600: past_total(k) for k in range(int((3 * DAY - 2 * HOUR) / 600))}
    logger = CsvLogger(folder / "scores.csv", fsync=False)
    base = score_record(1)
    for seq, (t, total) in enumerate([(now - 8 * DAY, 9), *samples.items(), (now + 60, 9)]):
        logger.write(base.model_copy(update={"seq": seq + 1, "wall_time": t, "total": total,
                                             "levels": tuple(LEVELS)}))
    logger.close()
    alert = raised(since=1.0).model_copy(update={"wall_time": start + DAY})
    alerts = logger.side_log("alerts", ALERT_COLUMNS)
    alerts.write(alert)
    alerts.write(alert.model_copy(update={"event": "cleared", "wall_time": start + DAY + HOUR}))
    markers = SideLog(side_file(folder / "scores.csv", "markers"), MARKER_COLUMNS)
    ack = ack_of(alert, "ana", "seen").model_copy(update={"wall_time": start + DAY + 600})
    markers.write(acknowledgement_marker(ack))
    markers.write(acknowledgement_marker(ack.model_copy(update={"wall_time": now - 8 * DAY})))
    return samples, start


def test_the_records_of_the_last_week_fill_a_mouse_page_with_right_means(
        free_endpoint: str, tmp_path: Path) -> None:
    samples, start = write_history(tmp_path, time.time())
    with web_view(free_endpoint, history=(tmp_path,)) as view:
        assert view.history_line == (f"read {len(samples)} records of 1 mice from the last "
                                     "7 days of --history")
        pages = {}
        for span in ("day", "week"):
            status, _, body = get(view, f"/api/mouse/cam0-c1?span={span}")
            assert status == 200, body
            pages[span] = json.loads(body)
    day, week = pages["day"], pages["week"]
    assert day["tile"]["total"] == samples[max(samples)] and day["camera"] == "cam0"
    assert day["points"] and all(p[0] >= day["now"] - DAY for p in day["points"])
    for t, total, levels in day["points"]:  # each 5-minute bucket holds one sample
        assert total == samples[t if t in samples else t - 150] and levels == LEVELS
    # past the day before the last sample (two hours ago), whose half hour may be part folded
    older = [p for p in week["points"] if p[0] < week["now"] - DAY - 3 * HOUR]
    assert older[0][0] == start + 900 and len(older) > 40
    for t, total, levels in older:  # half-hour means of 0, 2, 4 (+1 every other half hour)
        assert total == 2 + ((t - start) // 1800) % 2 and levels == LEVELS
    assert min(p[0] for p in week["points"]) > week["now"] - WEEK
    assert max(p[0] for p in week["points"]) < week["now"] - HOUR  # not the one after start
    spans = [(a["rule"], a["raised_wall"], a["cleared_wall"]) for a in week["alerts"]]
    assert spans == [("pain", start + DAY, start + DAY + HOUR)]
    assert [(m["wall_time"], m["text"], m["kind"]) for m in week["markers"]] == [
        (start + DAY + 600, "pain alert acknowledged by ana: seen", "acknowledged")]
    assert day["alerts"] == [] and day["markers"] == []  # two days ago: out of the day


def test_a_history_path_that_cannot_be_read_is_one_line(
        free_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.csv"
    assert main(["web", "--endpoint", free_endpoint, "--listen", "127.0.0.1:0",
                 "--history", str(missing), "--seconds", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--history: {missing}: no such file" in err, err


# --- in a real browser, on a replayed demo monitor --------------------------------------------

SHOTS = Path("/tmp/web-shots")
ALERTED = ("cam0-c1", "cam1-c2")  # the mice whose threshold is 0: they alert at once


def chromium(width: int, height: int) -> Any:
    return browser_window(width, height, "the web view's browser tests")


def wait_for(driver: Any, script: str, *args: Any, seconds: float = 60) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.2).until(
        lambda d: d.execute_script(script, *args))


def read_csv(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.skipif(__import__("os").environ.get("MGS_NO_BROWSER") == "1",
                    reason="MGS_NO_BROWSER=1: browser tests skipped on purpose")
def test_two_browsers_watch_a_replayed_demo_alert_and_acknowledge_it(
        demo_small: Any, tmp_path: Path) -> None:
    import threading

    from monitor.capture.workers import open_capture
    from monitor.config import build_config
    from monitor.pipeline import Monitor
    from monitor.schema import side_file
    from monitor.scoring.analyzer import Models
    from tests.conftest import free_port_endpoint

    started, resumed = threading.Event(), threading.Event()
    videos = [demo_small.videos[k % 2] for k in range(4)]  # four cameras: 16 mice
    endpoint, commands = free_port_endpoint(), free_port_endpoint()
    config = build_config({
        **demo_small.config(),
        "cameras": [{"name": f"cam{k}", "source": str(v)} for k, v in enumerate(videos)],
        "bus": {"endpoint": endpoint, "commands": commands},
        "alerts": {"defaults": {"threshold": 10, "window": 1, "min_valid": 1},
                   "overrides": dict.fromkeys(ALERTED, 0), "repeat_every_s": 1},
        "evidence": {"folder": str(tmp_path / "evidence")}})
    out = tmp_path / "scores.csv"
    monitor = Monitor(config, Models.load(config), out, realtime=False, replay=True,
                      opener=lambda source: HeldCamera(open_capture(source), started, first=12,
                                                       resumed=resumed))
    first = second = None
    with web_view(endpoint) as view:
        monitor.start()
        try:
            first, second = chromium(1280, 900), chromium(390, 844)
            for driver in (first, second):
                driver.get(f"http://127.0.0.1:{view.port}/")
                wait_for(driver, "return document.getElementById('live').className "
                                 "=== 'live on'")
                driver.execute_script("window.notReloaded = true")
            first.find_element("id", "who").send_keys("Dr Vet")
            started.set()
            # 16 tiles and the pain alert with its crops, without a reload
            wait_for(first, "return document.querySelectorAll('.tile').length === 16")
            key = wait_for(first, """
                const alert = [...document.querySelectorAll('.alert')].find((a) =>
                    a.querySelector('.rule').textContent.trim() === 'pain' &&
                    a.querySelector('h3 a').textContent === arguments[0]);
                const crops = alert ? [...alert.querySelectorAll('img.crop')] : [];
                return crops.length && crops.every((c) => c.complete && c.naturalWidth > 0)
                    ? alert.dataset.key : null;""", ALERTED[0])
            assert first.execute_script("return window.notReloaded") is True
            # acknowledged with a note: the monitor's reply, then the message from the bus
            alert = first.find_element("css selector", f'.alert[data-key="{key}"]')
            alert.find_element("css selector", "textarea").send_keys("buprenorphine given")
            alert.find_element("css selector", "button").click()
            wait_for(first, "return arguments[0].querySelector('.reply').className !== 'reply'",
                     alert)  # the monitor's answer, once "sending…" is done
            assert "acknowledged by Dr Vet" in alert.find_element(
                "css selector", ".reply").text
            for driver in (first, second):  # the second browser sees it too, without reload
                wait_for(driver, """const a = document.querySelector(
                    `.alert[data-key="${arguments[0]}"] .acks`);
                    return a && a.textContent.includes('Dr Vet') &&
                           a.textContent.includes('buprenorphine given');""", key)
                assert driver.execute_script("return window.notReloaded") is True
            tile = first.find_element("css selector", f'.tile[data-mouse="{ALERTED[0]}"]')
            assert "tile-acked" in tile.get_attribute("class")
            assert "active" in alert.find_element("css selector", ".state").text
            assert second.execute_script(
                "return document.documentElement.scrollWidth") <= 390  # no sideways scroll
            SHOTS.mkdir(exist_ok=True)
            first.save_screenshot(str(SHOTS / "web-view.png"))
            second.save_screenshot(str(SHOTS / "web-view-phone.png"))
            _the_mouse_page(first, view.port, ALERTED[0])
            first.save_screenshot(str(SHOTS / "web-view-mouse.png"))
            first.get(f"http://127.0.0.1:{view.port}/")  # the name was asked once: kept
            assert first.find_element("id", "who").get_attribute("value") == "Dr Vet"
        finally:
            resumed.set()
            started.set()
            assert monitor.wait(120) and monitor.error is None
            for driver in (first, second):
                if driver is not None:
                    driver.quit()
    _the_records_hold_the_acknowledgement(out, key, side_file)


def _the_mouse_page(driver: Any, port: int, mouse: str) -> None:
    """The mouse's series drawn, its alert span and acknowledgement, crops, and its camera's
    annotated snapshot taken by the monitor on request."""
    driver.get(f"http://127.0.0.1:{port}/mouse/{mouse}")
    wait_for(driver, "return document.querySelectorAll('#chart polyline.series').length === 6")
    wait_for(driver, "return document.querySelectorAll('#chart rect.span-pain').length > 0 && "
                     "document.querySelectorAll('#chart line.ack-line').length === 1")
    assert "buprenorphine given" in driver.find_element("id", "events").text
    wait_for(driver, "return [...document.querySelectorAll('#crops img')].some((c) => "
                     "c.complete && c.naturalWidth > 0)")
    driver.find_element("id", "take-snapshot").click()
    size = wait_for(driver, """const i = document.getElementById('snapshot');
        return !i.hidden && i.complete && i.naturalWidth ? [i.naturalWidth, i.naturalHeight]
        : null;""")
    assert size == [640, 360]  # the demo camera's frame, annotated by the monitor


def _the_records_hold_the_acknowledgement(out: Path, key: str, side_file: Any) -> None:
    """The marker is in the run's records; the acknowledged alert reminds no more, while the
    other one, not acknowledged, goes on reminding."""
    markers = [m for m in read_csv(side_file(out, "markers")) if m["kind"] == "acknowledged"]
    assert len(markers) == 1 and markers[0]["mouse"] == ALERTED[0]
    assert "Dr Vet" in markers[0]["text"] and "buprenorphine given" in markers[0]["text"]
    acked_at = float(markers[0]["wall_time"])
    events = read_csv(side_file(out, "alerts"))
    since = float(key.rsplit("/", 1)[1])

    def reminders(mouse: str) -> list[dict[str, str]]:
        return [e for e in events if e["mouse"] == mouse and e["rule"] == "pain"
                and e["event"] == "active" and float(e["wall_time"]) > acked_at]

    acked = [e for e in reminders(ALERTED[0]) if abs(float(e["since"]) - since) < 1e-6]
    assert acked == [] and reminders(ALERTED[1])


def test_the_demo_serves_its_web_view_beside_it_on_loopback(
        demo_small: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import free_port_endpoint

    monkeypatch.setattr("demo.build.build_demo", lambda **_options: demo_small)
    seen: dict[str, Any] = {}
    close = WebView.close

    def closing(view: WebView) -> None:  # what the view held when the demo ended
        seen["mice"], seen["address"] = sorted(view.state.board.mice), view.address
        close(view)

    monkeypatch.setattr(WebView, "close", closing)
    outputs = ["--no-dashboard", "--endpoint", free_port_endpoint(), "--commands",
               free_port_endpoint(), "--out", str(tmp_path / "scores.csv")]
    assert main(["demo", *outputs, "--web", "127.0.0.1:0"]) == 0
    assert seen["mice"] == [f"cam{k}-c{c}" for k in range(2) for c in range(1, 5)]
    assert f"web view of the demo: {seen['address']}" in capsys.readouterr().err
    assert seen["address"].startswith("http://127.0.0.1:")
    for flags, line in ((["--web", "0.0.0.0:8090"], "--web 0.0.0.0:8090: the demo serves its "
                                                    "web view on loopback only"),
                        (["--web", "--no-publish"], "--web follows the demo's bus: drop "
                                                    "--no-publish")):
        assert main(["demo", *outputs, *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and line in err, err


def test_a_new_studys_empty_records_and_files_untouched_for_a_week_give_no_history(
        free_endpoint: str, tmp_path: Path) -> None:
    empty, header_only, old = tmp_path / "empty", tmp_path / "new", tmp_path / "old"
    for folder in (empty, header_only, old):
        folder.mkdir()
    CsvLogger(header_only / "scores.csv", fsync=False).close()  # a header, no record yet
    samples, _ = write_history(old, time.time())
    week_ago = time.time() - 8 * DAY
    os.utime(old / "scores.csv", (week_ago, week_ago))  # its records all came later: skipped
    with web_view(free_endpoint, history=(empty, header_only, old)) as view:
        assert view.history_line == "read 0 records of 0 mice from the last 7 days of --history"
    os.utime(old / "scores.csv")  # written to now: the same file is read
    with web_view(free_endpoint, history=(empty, header_only, old)) as view:
        assert view.history_line == (f"read {len(samples)} records of 1 mice from the last "
                                     "7 days of --history")
