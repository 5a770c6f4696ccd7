"""The way back: acknowledgements, crops and snapshots through the monitor's command socket.

Real sockets on loopback; the monitor tests replay the small demo scene of tests/conftest.py.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psycopg
import pytest
import zmq

from demo.build import DemoBuild
from monitor.capture.workers import open_capture
from monitor.cli import config_from_args, main, parse_args
from monitor.config import build_config
from monitor.outputs.bus import Serving
from monitor.outputs.bus_keys import BusError, make_keys
from monitor.outputs.commands import (
    AcknowledgeRequest,
    CommandClient,
    CommandError,
    CommandServer,
    Request,
    acknowledged,
    refused,
)
from monitor.pipeline import Monitor
from monitor.schema import (
    Acknowledgement,
    AlertCrop,
    AlertEvent,
    MessageError,
    ScoreRecord,
    StatusReport,
    alert_key,
    decode,
    encode,
    side_file,
)
from monitor.scoring.analyzer import Models
from monitor.views.series_report import read_series, summarize, write_report
from tests.fakes import HeldCamera
from tests.monitor_util import View

EVENT = AlertEvent(wall_time=1.0, time=20.0, mouse="M1", camera="cam0", rule="pain",
                   event="raised", value=5.0, threshold=4.0, since=20.0, peak=5.0, detail="d",
                   evidence=("evidence/crops/a.jpg",), publisher="mon-a")


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


# Messages ---------------------------------------------------------------------------------------
def test_the_new_messages_go_over_the_wire_and_back() -> None:
    ack = Acknowledgement(publisher="mon-a", wall_time=2.0, time=30.0, mouse="M1",
                          camera="cam0", rule="pain", since=20.0, who="Ann", note="seen",
                          alert=alert_key(EVENT))
    crop = AlertCrop(publisher="mon-a", alert=alert_key(EVENT), mouse="M1", rule="pain",
                     since=20.0, name="evidence/crops/a.jpg", jpeg="/9j/AA==")
    for message in (EVENT, ack, crop):
        assert decode(encode(message)) == message
    assert crop.jpeg_bytes() == b"\xff\xd8\xff\x00"


def test_one_alert_has_one_key_across_its_events_and_not_another_alerts() -> None:
    reminder = EVENT.model_copy(update={"event": "active", "time": 80.0, "value": 4.5})
    cleared = EVENT.model_copy(update={"event": "cleared", "time": 90.0})
    again = EVENT.model_copy(update={"time": 200.0, "since": 200.0})
    other = EVENT.model_copy(update={"publisher": "mon-b"})
    assert alert_key(EVENT) == alert_key(reminder) == alert_key(cleared)
    assert len({alert_key(EVENT), alert_key(again), alert_key(other)}) == 3
    # a subscriber computes the same key from the event it decoded
    assert alert_key(decode(encode(EVENT))) == alert_key(EVENT)  # type: ignore[arg-type]


def test_an_alert_event_without_its_publisher_is_refused_by_version() -> None:
    older = json.loads(EVENT.to_json())
    del older["publisher"]
    with pytest.raises(MessageError, match="alert event schema 3 is not 4"):
        decode([b"alert", json.dumps(older | {"schema": 3}).encode()])


def test_a_crop_is_bounded_in_size() -> None:
    with pytest.raises(ValueError, match="jpeg"):
        AlertCrop(publisher="p", alert="k", mouse="M1", rule="pain", since=1.0, name="a.jpg",
                  jpeg="A" * 1_000_000)


# The client against a bare command socket -------------------------------------------------------
@contextmanager
def serving(answer: Callable[[Request], dict[str, object]],
            endpoint: str | None = None) -> Iterator[str]:
    """A command socket answered by `answer` on a thread of its own, as a pipeline would."""
    endpoint = endpoint or free_endpoint()
    ready, stop = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def loop() -> None:
        try:
            server = CommandServer(endpoint, Serving())
        except BaseException as exc:
            failed.append(exc)
            ready.set()
            return
        ready.set()
        try:
            while not stop.wait(0.01):
                server.serve(answer)
        finally:
            server.close()

    thread = threading.Thread(target=loop)
    thread.start()
    ready.wait(5)
    try:
        if failed:
            raise failed[0]
        yield endpoint
    finally:
        stop.set()
        thread.join(5)


def _ack_everything(request: Request) -> dict[str, object]:
    if not isinstance(request, AcknowledgeRequest):
        return refused("no such camera")
    return acknowledged(Acknowledgement(
        publisher="mon-a", wall_time=2.0, time=30.0, mouse="M1", camera="cam0", rule="pain",
        since=20.0, who=request.who, note=request.note, alert=request.alert))


def test_the_client_gets_the_acknowledgement_or_the_refusals_one_line() -> None:
    with serving(_ack_everything) as endpoint:
        client = CommandClient(endpoint, timeout_s=5)
        ack = client.acknowledge("mon-a/M1/pain/20.000000", "Ann", "seen, treated")
        assert (ack.who, ack.note, ack.alert) == ("Ann", "seen, treated",
                                                  "mon-a/M1/pain/20.000000")
        with pytest.raises(CommandError, match="no such camera") as refusal:
            client.snapshot("cam9")
        assert "\n" not in str(refusal.value)
        with pytest.raises(CommandError, match="who: give a name of 1 to 40 characters"):
            client.acknowledge("k", "x" * 41, "")
        with pytest.raises(CommandError, match="note: 501 characters; at most 500"):
            client.acknowledge("k", "Ann", "n" * 501)


def test_a_monitor_that_is_gone_is_a_command_error_within_the_timeout() -> None:
    client = CommandClient(free_endpoint(), timeout_s=0.3)
    with pytest.raises(CommandError, match=r"no answer within 0\.3 s"):
        client.acknowledge("k", "Ann", "")


def test_a_request_that_is_not_a_command_is_refused_in_one_line() -> None:
    with serving(_ack_everything) as endpoint:
        req = zmq.Context.instance().socket(zmq.REQ)
        req.connect(endpoint)
        try:
            for request, error in ((b"not json", "the request is not JSON"),
                                   (b"[1]", "the request is not a JSON object"),
                                   (b'{"command": "reboot"}', "unknown command 'reboot'"),
                                   (b'{"command": "snapshot", "camera": 3}',
                                    "camera: expected text, got int")):
                req.send(request)
                assert req.poll(5000)
                assert json.loads(req.recv()) == {"ok": False, "error": error + (
                    "; known: acknowledge, snapshot, alerts" if "unknown" in error else "")}
        finally:
            req.close(linger=0)



# A monitor replaying the demo scene, held still half way -----------------------------------
HELD_AFTER = 12  # frames of the 2 fps demo video before the camera holds: 6 s of the scene
MICE = 4  # cubicles per demo camera
ALREADY = threading.Event()  # the held monitor's camera starts at once
ALREADY.set()


class Held:
    """A monitor on the first demo camera, every mouse's pain alert raised on its first scored
    sample and reminded every sample, held after HELD_AFTER frames; its view and a client."""

    def __init__(self, demo: DemoBuild, folder: Path, **raw: Any) -> None:
        self.go_on = threading.Event()
        self.csv = folder / "scores.csv"
        bus = {"endpoint": free_endpoint(), "commands": free_endpoint(), **raw.pop("bus", {})}
        self.config = build_config({
            **demo.config(), "cameras": [{"name": "cam0", "source": str(demo.videos[0])}],
            "sampling": {"every_s": 0.5, "burst": 1},
            "alerts": {"defaults": {"threshold": 0, "window": 1, "min_valid": 1},
                       "repeat_every_s": 0.5},
            "bus": bus, **raw})
        self.monitor = Monitor(self.config, Models.load(self.config), self.csv, realtime=False,
                               replay=True, opener=lambda source: HeldCamera(
                                   open_capture(source), ALREADY, HELD_AFTER, self.go_on))
        self.view = View(self.monitor)
        self.commands = bus["commands"]

    def start(self) -> None:
        """Start, and wait until every record before the hold is out."""
        self.monitor.start()
        self.view.wait_for(lambda v: len(v.of(ScoreRecord)) >= HELD_AFTER * MICE)

    def client(self, **keys: Any) -> CommandClient:
        return CommandClient(self.commands, timeout_s=5, **keys)

    def active(self) -> list[AlertEvent]:
        """The raised pain alerts that have been reminded at least once."""
        events = self.view.of(AlertEvent)
        reminded = {alert_key(e) for e in events if e.event == "active"}
        return [e for e in events if e.event == "raised" and alert_key(e) in reminded]

    def finish(self) -> None:
        self.go_on.set()
        self.monitor.request_stop()
        assert self.monitor.wait(20)
        self.view.close()
        assert self.monitor.error is None


@pytest.fixture
def held(demo_small: DemoBuild, tmp_path: Path) -> Iterator[Held]:
    monitor = Held(demo_small, tmp_path)
    monitor.start()
    try:
        yield monitor
    finally:
        monitor.go_on.set()
        monitor.monitor.request_stop()
        monitor.monitor.wait(20)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_an_acknowledgement_is_marked_published_and_stops_the_reminders_only(
        held: Held) -> None:
    alert, other = held.active()[:2]
    key = alert_key(alert)
    reminders_before = [e for e in held.view.of(AlertEvent)
                        if alert_key(e) == key and e.event == "active"]
    ack = held.client().acknowledge(key, "Ann Smith", "seen, buprenorphine given")
    assert (ack.alert, ack.mouse, ack.rule, ack.who) == (key, alert.mouse, "pain", "Ann Smith")
    held.view.wait_for(lambda v: bool(v.of(Acknowledgement)))
    assert held.view.of(Acknowledgement) == [ack]  # every subscriber hears it
    (marker,) = read_rows(side_file(held.csv, "markers"))
    assert (marker["mouse"], marker["kind"]) == (alert.mouse, "acknowledged")
    assert "Ann Smith" in marker["text"] and "buprenorphine given" in marker["text"]
    heard = len(held.view.messages)
    held.finish()  # the second half of the scene: every sample would remind again
    after = [e for e in held.view.messages[heard:] if isinstance(e, AlertEvent)]
    assert reminders_before
    assert not [e for e in after if alert_key(e) == key]  # no reminder, and still not cleared
    assert [e for e in after if alert_key(e) == alert_key(other) and e.event == "active"]
    assert held.view.of(ScoreRecord)[-1].alert.startswith("pain")  # still active at the end


def test_an_unknown_alert_is_refused_in_one_line(held: Held) -> None:
    with pytest.raises(CommandError, match=r"no active alert 'mgs-x/M9/pain/1\.000000' on ") as e:
        held.client().acknowledge("mgs-x/M9/pain/1.000000", "Ann", "")
    assert "\n" not in str(e.value)
    assert not side_file(held.csv, "markers").exists()


def test_the_crops_behind_a_raised_alert_arrive_as_their_evidence_files(held: Held) -> None:
    raised = [e for e in held.view.of(AlertEvent) if e.event == "raised" and e.evidence]
    held.finish()
    crops = {(c.alert, c.name): c for c in held.view.of(AlertCrop)}
    assert raised
    for event in raised:
        for name in event.evidence:
            crop = crops[alert_key(event), name]
            assert (crop.mouse, crop.rule, crop.since) == (event.mouse, event.rule, event.since)
            assert crop.jpeg_bytes() == (held.csv.parent / name).read_bytes()


def test_a_snapshot_is_the_cameras_latest_frame_annotated(held: Held) -> None:
    jpeg = held.client().snapshot("cam0")
    picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (360, 640, 3)  # the demo camera's frame size
    with pytest.raises(CommandError, match=r"no camera 'cam9' on .*; its cameras: cam0"):
        held.client().snapshot("cam9")


def test_the_status_report_says_where_commands_go(held: Held) -> None:
    held.view.wait_for(lambda v: bool(v.of(StatusReport)))
    assert held.view.of(StatusReport)[-1].commands == held.commands


def test_a_client_without_an_allowed_key_is_refused(demo_small: DemoBuild,
                                                    tmp_path: Path) -> None:
    server_key, secret = make_keys(tmp_path / "keys")
    web_public, web_secret = make_keys(tmp_path / "web", "web")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / web_public.name).write_bytes(web_public.read_bytes())
    _, stranger = make_keys(tmp_path / "other", "stranger")
    held = Held(demo_small, tmp_path, bus={"secret_key": str(secret),
                                           "allowed_clients": str(allowed)})
    held.start()
    try:
        alert = held.active()[0]
        with pytest.raises(CommandError, match="refuses this client's key"):
            held.client(server_key=server_key, client_key=stranger).acknowledge(
                alert_key(alert), "Ann", "")
        ack = held.client(server_key=server_key, client_key=web_secret).acknowledge(
            alert_key(alert), "Ann", "")
        assert ack.who == "Ann"
    finally:
        held.finish()


def test_a_command_port_in_use_is_one_line_at_start(demo_small: DemoBuild,
                                                     tmp_path: Path) -> None:
    with serving(_ack_everything) as taken:
        held = Held(demo_small, tmp_path, bus={"commands": taken})
        with pytest.raises(BusError, match=f"{taken} is already in use .* --commands or "
                                           "bus.commands"):
            held.monitor.start()
        held.view.close()


def test_the_acknowledgement_is_a_marker_in_the_database(demo_small: DemoBuild, tmp_path: Path,
                                                         database: str) -> None:
    held = Held(demo_small, tmp_path, database={"url": database,
                                                "spool": str(tmp_path / "spool")})
    held.start()
    try:
        alert = held.active()[0]
        held.client().acknowledge(alert_key(alert), "Ann", "seen")
    finally:
        held.finish()
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT mouse, text, kind FROM mgs_markers").fetchall()
    assert rows == [(alert.mouse, "pain alert acknowledged by Ann: seen", "acknowledged")]


def test_the_report_lists_the_acknowledgement_under_its_alert(held: Held, tmp_path: Path) -> None:
    alert = held.active()[0]
    held.client().acknowledge(alert_key(alert), "Ann", "seen, treated")
    held.finish()
    series = read_series([held.csv])
    assert summarize(series[alert.mouse])["acknowledgements"] == 1
    page = write_report([held.csv], tmp_path / "report").read_text()
    section = page.split(f"<h2>{alert.mouse} ")[1].split("<h2>")[0]
    assert "pain alert acknowledged by Ann: seen, treated" in section


def test_ack_from_the_terminal_by_mouse(held: Held, capsys: pytest.CaptureFixture[str]) -> None:
    alert = held.active()[0]
    assert [alert_key(e) for e in held.client().alerts() if e.mouse == alert.mouse] == [
        alert_key(alert)]
    assert main(["ack", "--endpoint", held.commands, "--mouse", alert.mouse, "--who", "Ann",
                 "--note", "seen"]) == 0
    assert capsys.readouterr().out == (f"pain alert of {alert.mouse} acknowledged by Ann on "
                                       f"{held.config.publisher}: its reminders stop until it "
                                       "clears\n")
    held.view.wait_for(lambda v: [a.alert for a in v.of(Acknowledgement)] == [alert_key(alert)])


@pytest.mark.parametrize(("args", "error"), [
    (["--mouse", "M9"], "no active alert of M9"),
    ([], "name the alert: --alert KEY, or --mouse (and --rule)"),
    (["--alert", "x/M1/pain/1.000000"], "no active alert 'x/M1/pain/1.000000'"),
])
def test_ack_from_the_terminal_says_what_is_wrong_in_one_line(
        held: Held, capsys: pytest.CaptureFixture[str], args: list[str], error: str) -> None:
    assert main(["ack", "--endpoint", held.commands, *args, "--who", "Ann"]) == 2
    err = capsys.readouterr().err
    assert error in err and err.count("\n") == 1


def test_ack_of_a_monitor_that_is_gone_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ack", "--endpoint", free_endpoint(), "--mouse", "M1", "--who", "Ann",
                 "--timeout", "0.3"]) == 2
    err = capsys.readouterr().err
    assert "no answer within 0.3 s" in err and err.count("\n") == 1


@pytest.mark.parametrize(("bus", "options", "expected"), [
    ({}, [], "tcp://127.0.0.1:5561"),  # beside the default publisher
    ({"endpoint": "tcp://127.0.0.1:6000"}, [], "tcp://127.0.0.1:6001"),  # a second monitor
    ({"endpoint": "ipc:///run/mgs/a"}, [], "ipc:///run/mgs/a-commands"),
    ({"commands": "tcp://127.0.0.1:7000"}, [], "tcp://127.0.0.1:7000"),
    ({}, ["--commands", "tcp://127.0.0.1:7001"], "tcp://127.0.0.1:7001"),
    ({}, ["--commands", "none"], ""),
    ({"commands": "none"}, [], ""),
])
def test_where_the_command_socket_is_bound(bus: dict[str, str], options: list[str],
                                           expected: str) -> None:
    args = parse_args(["replay", "a.mp4", "--models", "m", *options])
    config = config_from_args(args, {"cameras": [{"name": "cam0", "source": "a.mp4"}],
                                     "bus": bus})
    assert config.bus.command_endpoint == expected


def test_a_command_socket_beyond_this_machine_needs_keys(demo_small: DemoBuild,
                                                         tmp_path: Path) -> None:
    held = Held(demo_small, tmp_path, bus={"commands": "tcp://0.0.0.0:5561"})
    with pytest.raises(BusError, match=re.escape("tcp://0.0.0.0:5561 reaches beyond this "
                                                 "machine: give bus.secret_key")):
        held.monitor.start()
    held.view.close()


def test_a_logger_keeps_the_acknowledgement_as_a_marker_too(held: Held,
                                                             tmp_path: Path) -> None:
    """A facility's central logger hears the acknowledgement and marks it beside its own
    records, so a report made from them shows it. A subscriber joins a little after it
    connects, so the alert is acknowledged (again) until the logger has heard it."""
    logged = tmp_path / "logged.csv"
    logger = subprocess.Popen(
        [sys.executable, "-m", "monitor", "log", "--endpoint", held.config.bus.endpoint,
         "--out", str(logged), "--seconds", "60"], env={**os.environ, "COLUMNS": "200"},
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    alert = held.active()[0]
    markers = side_file(logged, "markers")
    try:
        assert logger.stderr is not None and "logging" in logger.stderr.readline()
        wait_until(lambda: markers.is_file() or not held.client().acknowledge(
            alert_key(alert), "Ann", "seen"))
    finally:
        logger.send_signal(signal.SIGINT)
        _, err = logger.communicate(timeout=30)
    assert logger.returncode == 0, err
    heard = [(r["mouse"], r["text"], r["kind"]) for r in read_rows(markers)]
    assert heard and set(heard) == {(alert.mouse, "pain alert acknowledged by Ann: seen",
                                     "acknowledged")}
    assert len(heard) <= len(read_rows(side_file(held.csv, "markers")))


def wait_until(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not so within {seconds} s"
        time.sleep(0.2)
