"""The way back: acknowledgements, crops and snapshots through the monitor's command socket.

Real sockets on loopback; the monitor tests replay the small demo scene of tests/conftest.py.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import zmq

from monitor.bus import Serving
from monitor.outputs.commands import (
    AcknowledgeRequest,
    CommandClient,
    CommandError,
    CommandServer,
    Request,
    acknowledged,
    refused,
)
from monitor.schema import (
    Acknowledgement,
    AlertCrop,
    AlertEvent,
    MessageError,
    alert_key,
    decode,
    encode,
)

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
                    "; known: acknowledge, snapshot" if "unknown" in error else "")}
        finally:
            req.close(linger=0)

