import threading
import time
from pathlib import Path

import pytest
import zmq

from monitor.alerts import AlertEvent
from monitor.bus import BusError, Publisher, Subscriber, is_local, make_keys, run_proxy
from monitor.records import CameraReport
from tests.conftest import free_port_endpoint
from tests.records_util import score_record


def receive_until(subscriber: Subscriber, count: int, seconds: float = 5.0) -> list:
    got: list = []
    deadline = time.monotonic() + seconds
    while len(got) < count and time.monotonic() < deadline:
        got.extend(subscriber.receive(100))
    return got


def test_records_travel_over_loopback(free_endpoint: str) -> None:
    publisher = Publisher(free_endpoint)
    subscriber = Subscriber(free_endpoint)
    try:
        time.sleep(0.3)  # let the subscription reach the publisher (slow joiner)
        publisher.publish_score(score_record(7, mouse="cam1-c3"))
        publisher.publish_camera(CameraReport("test", 1, time.time(), "cam1", "ok", 10))
        got = receive_until(subscriber, 2)
    finally:
        subscriber.close()
        publisher.close()
    assert got[0].score.mouse == "cam1-c3" and got[0].score.seq == 7
    assert got[0].score.face_box == (0.5, 0.5, 0.3, 0.3)
    assert got[1].camera.camera == "cam1" and got[1].camera.frames_read == 10


def test_malformed_messages_are_counted_not_parsed(free_endpoint: str) -> None:
    raw = zmq.Context.instance().socket(zmq.PUB)
    raw.bind(free_endpoint)
    subscriber = Subscriber(free_endpoint)
    try:
        time.sleep(0.3)
        raw.send_multipart([b"score", b"\x80\x04not json"])  # e.g. a pickle
        raw.send_multipart([b"score", b'{"schema": 99}'])
        raw.send_multipart([b"score", score_record(1).to_json()])
        got = receive_until(subscriber, 1)
    finally:
        subscriber.close()
        raw.close(linger=0)
    assert [m.score.seq for m in got] == [1]
    assert subscriber.malformed == 2 and "schema 99" in subscriber.last_error


def test_port_in_use_is_one_clear_line(free_endpoint: str) -> None:
    first = Publisher(free_endpoint)
    try:
        with pytest.raises(BusError, match="already in use"):
            Publisher(free_endpoint)
    finally:
        first.close()


def test_proxy_joins_two_publishers(free_endpoint: str) -> None:
    first, second, backend = free_endpoint, free_port_endpoint(), free_port_endpoint()
    stop = threading.Event()
    proxy = threading.Thread(target=run_proxy, args=([first, second], backend, stop.is_set))
    publishers = [Publisher(first), Publisher(second)]
    proxy.start()
    subscriber = Subscriber(backend)
    try:
        time.sleep(0.5)  # subscriptions travel subscriber -> proxy -> publishers
        publishers[0].publish_score(score_record(1, publisher="hostA"))
        publishers[1].publish_score(score_record(1, publisher="hostB"))
        got = receive_until(subscriber, 2)
    finally:
        stop.set()
        proxy.join(5)
        subscriber.close()
        for publisher in publishers:
            publisher.close()
    assert sorted(m.score.publisher for m in got) == ["hostA", "hostB"]


def test_alert_events_travel_and_parse(free_endpoint: str) -> None:
    event = AlertEvent(wall_time=1.0, time=2.0, mouse="M1", camera="cam0", rule="pain",
                       event="raised", value=5.0, threshold=4.0, since=2.0, peak=5.0,
                       detail="window mean 5")
    publisher, subscriber = Publisher(free_endpoint), Subscriber(free_endpoint)
    try:
        time.sleep(0.3)
        publisher.publish_alert(event)
        got = receive_until(subscriber, 1)
    finally:
        subscriber.close()
        publisher.close()
    assert got[0].alert == event


def test_curve_keys_encrypt_and_only_the_right_key_hears(tmp_path: Path,
                                                         free_endpoint: str) -> None:
    public, secret = make_keys(tmp_path / "keys")
    _, other = make_keys(tmp_path / "other")
    assert oct(secret.stat().st_mode & 0o777) == "0o600"
    publisher = Publisher(free_endpoint, secret_key=secret)
    good = Subscriber(free_endpoint, server_key=public)
    wrong = Subscriber(free_endpoint, server_key=other.with_suffix(".key"))
    plain = Subscriber(free_endpoint)
    try:
        time.sleep(0.5)
        for seq in (1, 2, 3):
            publisher.publish_score(score_record(seq))
        got = receive_until(good, 3)
        assert [m.score.seq for m in got] == [1, 2, 3]
        assert not list(wrong.receive(300)) and not list(plain.receive(300))
    finally:
        for socket in (good, wrong, plain):
            socket.close()
        publisher.close()


def test_binding_beyond_this_machine_needs_keys() -> None:
    with pytest.raises(BusError, match="reaches beyond this machine"):
        Publisher("tcp://0.0.0.0:5999")
    assert is_local("tcp://127.0.0.1:5560") and is_local("ipc:///tmp/x")
    assert not is_local("tcp://10.1.2.3:5560") and not is_local("tcp://*:5560")


def test_a_public_key_is_not_a_secret(tmp_path: Path, free_endpoint: str) -> None:
    public, _ = make_keys(tmp_path)
    with pytest.raises(BusError, match="holds no secret key"):
        Publisher(free_endpoint, secret_key=public)
