import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import zmq

from monitor.config import Alerts
from monitor.outputs.bus import (
    BusError,
    Publisher,
    Serving,
    Subscriber,
    Upstream,
    is_local,
    run_proxy,
)
from monitor.outputs.bus_keys import make_keys
from monitor.schema import (
    AlertEvent,
    CameraReport,
    HookCounts,
    MessageError,
    ScoreRecord,
    SequenceTracker,
    StatusReport,
    decode,
    encode,
    side_file,
)
from monitor.scoring.alerts import AlertEngine
from monitor.views.log_service import run_logger
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
        publisher.publish(score_record(7, mouse="cam1-c3"))
        publisher.publish(CameraReport(publisher="test", seq=1, wall_time=time.time(),
                                       camera="cam1", state="ok", frames_read=10))
        got = receive_until(subscriber, 2)
    finally:
        subscriber.close()
        publisher.close()
    assert got[0] == score_record(7, mouse="cam1-c3").model_copy(
        update={"wall_time": got[0].wall_time, "mono_time": got[0].mono_time})
    assert got[0].face_box == (0.5, 0.5, 0.3, 0.3) and got[0].probs[0] == (0.2, 0.7, 0.1)
    assert isinstance(got[1], CameraReport)
    assert got[1].camera == "cam1" and got[1].frames_read == 10


def test_malformed_messages_are_counted_not_parsed(free_endpoint: str) -> None:
    raw = zmq.Context.instance().socket(zmq.PUB)
    raw.bind(free_endpoint)
    subscriber = Subscriber(free_endpoint)
    try:
        time.sleep(0.3)
        raw.send_multipart([b"score", b"\x80\x04not json"])  # e.g. a pickle
        raw.send_multipart([b"score", b'{"schema": 99}'])
        wrong_type = json.loads(score_record(2).to_json()) | {"seq": "2"}
        raw.send_multipart([b"score", json.dumps(wrong_type).encode()])
        raw.send_multipart([b"score", score_record(1).to_json()])
        got = receive_until(subscriber, 1)
    finally:
        subscriber.close()
        raw.close(linger=0)
    assert [m.seq for m in got] == [1]
    assert subscriber.malformed == 3
    assert subscriber.last_error == "score record: seq: Input should be a valid integer"


@pytest.mark.parametrize(("change", "message"), [
    ({"schema": 1}, "score record schema 1 is not 4; update mgs-monitor on the older side"),
    ({"mood": "calm"}, "score record: mood: unknown field"),
    ({"levels": [0, 1, 3, 0, 0]}, "levels.2: Input should be less than or equal to 2"),
    ({"levels": [0, 1]}, "levels: Tuple should have at least 5 items"),
    ({"status": "guessed"}, "status: Input should be 'scored', 'no_face'"),
    ({"face_score": "0.9"}, "face_score: Input should be a valid number"),
])
def test_messages_are_checked_field_by_field(change: dict, message: str) -> None:
    payload = json.loads(score_record(1).to_json()) | change
    with pytest.raises(MessageError) as refused:
        decode([b"score", json.dumps(payload).encode()])
    assert message in str(refused.value)


def test_every_message_type_survives_the_wire() -> None:
    event = AlertEvent(wall_time=1.0, time=2.0, mouse="M1", camera="cam0", rule="pain",
                       event="raised", value=5.0, threshold=4.0, since=2.0, peak=5.0,
                       detail="window mean 5")
    status = StatusReport(publisher="p", seq=3, wall_time=1.0, title="t", model_kind="demo",
                          alert_threshold=4.0, records=10, queue_dropped={"cam0": 2},
                          hooks=HookCounts(failed=1, last_error="no pager"), notice="n")
    camera = CameraReport(publisher="p", seq=4, wall_time=1.0, camera="cam0", state="down",
                          error="gone", position=5, total_frames=9)
    for message in (score_record(1), event, status, camera):
        back = decode(encode(message))
        assert type(back) is type(message) and back.to_json() == message.to_json()  # NaN != NaN
    with pytest.raises(MessageError, match="unknown topic"):
        decode([b"gossip", b"{}"])


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
    proxy = threading.Thread(target=run_proxy,
                             args=([Upstream(first), Upstream(second)], backend, stop.is_set))
    publishers = [Publisher(first), Publisher(second)]
    proxy.start()
    subscriber = Subscriber(backend)
    try:
        time.sleep(0.5)  # subscriptions travel subscriber -> proxy -> publishers
        publishers[0].publish(score_record(1, publisher="hostA"))
        publishers[1].publish(score_record(1, publisher="hostB"))
        got = receive_until(subscriber, 2)
    finally:
        stop.set()
        proxy.join(5)
        subscriber.close()
        for publisher in publishers:
            publisher.close()
    assert sorted(m.publisher for m in got) == ["hostA", "hostB"]


def test_alert_events_travel_and_parse(free_endpoint: str) -> None:
    event = AlertEvent(wall_time=1.0, time=2.0, mouse="M1", camera="cam0", rule="pain",
                       event="raised", value=5.0, threshold=4.0, since=2.0, peak=5.0,
                       detail="window mean 5")
    publisher, subscriber = Publisher(free_endpoint), Subscriber(free_endpoint)
    try:
        time.sleep(0.3)
        publisher.publish(event)
        got = receive_until(subscriber, 1)
    finally:
        subscriber.close()
        publisher.close()
    assert got == [event]


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
            publisher.publish(score_record(seq))
        got = receive_until(good, 3)
        assert [m.seq for m in got] == [1, 2, 3]
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


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def _pain_reminder_without_a_value() -> AlertEvent:
    """A pain alert's reminder after a reload asked for more scored samples than there are:
    the window value is unknown."""
    rules = {"defaults": {"threshold": 4, "window": 2}, "repeat_every_s": 100}
    engine = AlertEngine(Alerts.model_validate(rules), None)
    events = []
    for i, status in enumerate(["scored", "scored", "no_face"]):
        if i == 2:
            engine.reload(Alerts.model_validate(rules | {"defaults": {
                "threshold": 4, "window": 5, "min_valid": 5}}), None)
        record = score_record(i + 1, total=6 if status == "scored" else None, status=status)
        events += engine.update(record.model_copy(update={"source_time": 120.0 * i}))[1]
    assert [e.event for e in events] == ["raised", "active"]
    return events[-1]


def test_every_message_is_standard_json_with_null_for_unknown() -> None:
    """Other languages' JSON parsers refuse NaN and Infinity: unknown numbers go as null."""
    camera_down = ScoreRecord(
        publisher="p", seq=1, wall_time=1.0, mono_time=1.0, source_time=1.0, frame_index=0,
        camera="cam0", cubicle=1, mouse="M1", status="camera_down", face_score=math.nan,
        sharpness=math.nan, latency_ms=math.inf)
    no_face = score_record(2, status="no_face").model_copy(update={"sharpness": None})
    camera = CameraReport(publisher="p", seq=1, wall_time=1.0, camera="cam0", state="ok")
    reminder = _pain_reminder_without_a_value()
    status = StatusReport(publisher="p", seq=3, wall_time=1.0, title="t", model_kind="demo",
                          alert_threshold=4.0, records=10)
    for message in (camera_down, no_face, camera, reminder, status):
        payload = json.loads(message.to_json(), parse_constant=_not_json)
        assert decode(encode(message)) == message
    assert json.loads(camera_down.to_json())["sharpness"] is None
    assert json.loads(camera_down.to_json())["latency_ms"] is None
    assert json.loads(no_face.to_json())["sharpness"] is None
    assert json.loads(camera.to_json())["latency_ms"] is None
    assert reminder.value is None and json.loads(reminder.to_json())["value"] is None
    assert payload["schema"] == 7  # 3 added the models' figures, 4 the queue depth, 5 the
    # database, 6 the command endpoint, 7 the run and its last record; NaN never changed it


def test_a_nan_of_an_older_monitor_is_refused_by_version() -> None:
    old = b'{"schema":3,"sharpness":NaN}'
    with pytest.raises(MessageError, match="schema 3 is not 4"):
        decode([b"score", old])


def test_a_status_report_without_the_models_figures_is_refused_by_version() -> None:
    """Schema 3 carries the models' figures; a dashboard must not show an older monitor's
    models as if none were below the floor."""
    status = StatusReport(publisher="p", seq=3, wall_time=1.0, title="t", model_kind="trained",
                          alert_threshold=4.0, records=10, model_figures="scorer x",
                          model_below_floor="scorer y")
    payload = json.loads(status.to_json())
    assert (payload["model_figures"], payload["model_below_floor"]) == ("scorer x", "scorer y")
    older = {k: v for k, v in payload.items() if not k.startswith("model_f")
             and k != "model_below_floor"} | {"schema": 2}
    with pytest.raises(MessageError, match="status report schema 2 is not 7"):
        decode([b"status", json.dumps(older).encode()])


def test_a_status_report_without_the_queue_depth_is_refused_by_version() -> None:
    """Schema 4 says how many frames wait per camera; an older monitor's report is refused by
    its version, not read as an empty queue."""
    status = StatusReport(publisher="p", seq=3, wall_time=1.0, title="t", model_kind="trained",
                          alert_threshold=4.0, records=10, queue_depth={"cam0": 3})
    payload = json.loads(status.to_json())
    assert payload["queue_depth"] == {"cam0": 3}
    older = {k: v for k, v in payload.items() if k != "queue_depth"} | {"schema": 3}
    with pytest.raises(MessageError, match="status report schema 3 is not 7"):
        decode([b"status", json.dumps(older).encode()])


def test_a_status_report_without_the_database_is_refused_by_version() -> None:
    """Schema 5 says the database's spool and error; an older monitor's report is refused by
    its version, not read as a monitor without a database."""
    status = StatusReport(publisher="p", seq=3, wall_time=1.0, title="t", model_kind="trained",
                          alert_threshold=4.0, records=10, database="postgresql://mgs@db/mgs",
                          database_spooled=12, database_error="connection refused")
    payload = json.loads(status.to_json())
    assert (payload["database"], payload["database_spooled"]) == ("postgresql://mgs@db/mgs", 12)
    older = {k: v for k, v in payload.items() if not k.startswith("database")} | {"schema": 4}
    with pytest.raises(MessageError, match="status report schema 4 is not 7"):
        decode([b"status", json.dumps(older).encode()])


def test_a_status_report_without_its_last_record_is_refused_by_version() -> None:
    """Schema 7 names the run and its last published record; a schema 6 report is refused by
    its version, not read as a run that has published nothing."""
    status = StatusReport(publisher="p", seq=3, wall_time=1.0, title="t", model_kind="trained",
                          alert_threshold=4.0, records=10, instance="run1", last_seq=10)
    payload = json.loads(status.to_json())
    assert (payload["instance"], payload["last_seq"]) == ("run1", 10)
    older = {k: v for k, v in payload.items() if k not in ("instance", "last_seq")}
    with pytest.raises(MessageError, match="status report schema 6 is not 7"):
        decode([b"status", json.dumps(older | {"schema": 6}).encode()])


def test_a_status_report_reveals_the_records_lost_at_the_end_of_a_run() -> None:
    """No later record shows that a run's last records were lost; the report that follows them
    does. A run first heard of by its report starts there, and an older monitor's report (no
    run named) says nothing."""
    def record(seq: int, run: str = "run1") -> ScoreRecord:
        return score_record(seq).model_copy(update={"instance": run})

    tracker = SequenceTracker()
    assert tracker.check(record(1)) is None and tracker.check(record(2)) is None
    report = StatusReport(publisher="test", seq=9, wall_time=5.0, title="t", model_kind="demo",
                          alert_threshold=4.0, records=6, instance="run1", last_seq=6)
    gap = tracker.check_report(report)
    assert gap is not None and (gap.publisher, gap.first_missing, gap.last_missing,
                                gap.instance) == ("test", 3, 6, "run1")
    assert tracker.check_report(report) is None  # said once
    assert tracker.check(record(7)) is None  # the next record follows on
    assert tracker.check_report(report.model_copy(update={"last_seq": 7})) is None
    joined = report.model_copy(update={"instance": "run2", "last_seq": 40})
    assert tracker.check_report(joined) is None  # before this subscriber: not lost to it
    assert tracker.check(record(41, "run2")) is None
    assert tracker.check_report(joined.model_copy(update={"last_seq": 44})) is not None
    assert tracker.check_report(report.model_copy(update={"instance": "", "last_seq": 99})) \
        is None


# Encryption end to end -------------------------------------------------------------------------
class Proxy:
    """`run_proxy` on a thread, collecting what it says."""

    def __init__(self, sources: list[Upstream], backend: str, **options: object) -> None:
        self.said: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=run_proxy, args=(sources, backend, self.stop.is_set),
                                       kwargs={"say": self.said.append, **options})
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive()


def eventually(check: Callable[[], object], seconds: float = 10.0) -> None:
    """Wait for what the sockets' threads do in their own time (a handshake, a refusal)."""
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)


def publish_until_heard(publisher: Publisher, subscriber: Subscriber, count: int) -> list:
    """Publish a first record until one arrives (subscriptions travel through the proxy and
    handshakes take a moment), then `count` numbered records; what arrived of those."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        publisher.publish(score_record(0))
        if list(subscriber.receive(200)):
            break
    for seq in range(1, count + 1):
        publisher.publish(score_record(seq))
    return [m for m in receive_until(subscriber, count) if m.seq > 0]


def test_curve_monitor_to_curve_proxy_to_curve_subscriber_gets_every_record(
        tmp_path: Path, free_endpoint: str) -> None:
    """Encrypted and admitted by key at every hop: 20 of 20 records arrive."""
    _, monitor_secret = make_keys(tmp_path / "monitor")
    monitor_public = tmp_path / "monitor" / "server.key"
    _, proxy_secret = make_keys(tmp_path / "proxy")
    proxy_client, proxy_client_secret = make_keys(tmp_path / "proxy", "proxy-client")
    logger_public, logger_secret = make_keys(tmp_path / "logger", "logger1")
    (tmp_path / "monitor-clients").mkdir()
    proxy_client.rename(tmp_path / "monitor-clients" / proxy_client.name)
    (tmp_path / "proxy-clients").mkdir()
    logger_public.rename(tmp_path / "proxy-clients" / logger_public.name)
    backend = free_port_endpoint()
    publisher = Publisher(free_endpoint, secret_key=monitor_secret,
                          allowed_clients=tmp_path / "monitor-clients")
    proxy = Proxy([Upstream(free_endpoint, monitor_public)], backend,
                  client_key=proxy_client_secret,
                  serving=Serving(proxy_secret, tmp_path / "proxy-clients"))
    subscriber = Subscriber(backend, server_key=tmp_path / "proxy" / "server.key",
                            client_key=logger_secret)
    try:
        got = publish_until_heard(publisher, subscriber, 20)
        assert [m.seq for m in got] == list(range(1, 21))
        assert subscriber.problems() == [] and proxy.said == []
    finally:
        subscriber.close()
        proxy.close()
        publisher.close()


def test_a_subscriber_whose_key_is_not_allowed_gets_nothing_and_is_told(
        tmp_path: Path, free_endpoint: str) -> None:
    public, secret = make_keys(tmp_path / "monitor")
    allowed, _ = make_keys(tmp_path / "clients", "logger1")
    _, stranger = make_keys(tmp_path / "stranger", "logger2")
    publisher = Publisher(free_endpoint, secret_key=secret, allowed_clients=tmp_path / "clients")
    refused = Subscriber(free_endpoint, server_key=public, client_key=stranger)
    fresh_key = Subscriber(free_endpoint, server_key=public)
    try:
        time.sleep(0.5)
        for seq in range(1, 21):
            publisher.publish(score_record(seq))
        assert not list(refused.receive(500)) and not list(fresh_key.receive(300))
        said: list[str] = []
        eventually(lambda: said.extend(refused.problems()) or said)
        assert said == [
            f"{free_endpoint} refuses this subscriber's key: add its public key (.key) to the "
            "publisher's allowed-clients folder, give its .key_secret as --client-key, and "
            "restart this subscriber (a refused connection is not retried)"]
        time.sleep(0.3)
        assert refused.problems() == []  # said once
        assert allowed.exists()
    finally:
        refused.close()
        fresh_key.close()
        publisher.close()


def test_a_proxy_without_the_monitors_server_key_gets_nothing_and_says_why(
        tmp_path: Path, free_endpoint: str) -> None:
    public, secret = make_keys(tmp_path / "monitor")
    _, other = make_keys(tmp_path / "other")
    backend, wrong_backend = free_port_endpoint(), free_port_endpoint()
    publisher = Publisher(free_endpoint, secret_key=secret)
    keyless = Proxy([Upstream(free_endpoint)], backend)
    wrong = Proxy([Upstream(free_endpoint, other.with_suffix(".key"))], wrong_backend)
    subscribers = [Subscriber(backend), Subscriber(wrong_backend)]
    try:
        time.sleep(1.0)
        for seq in range(1, 21):
            publisher.publish(score_record(seq))
        assert [list(s.receive(500)) for s in subscribers] == [[], []]
        eventually(lambda: keyless.said and wrong.said)
    finally:
        for subscriber in subscribers:
            subscriber.close()
        keyless.close()
        wrong.close()
        publisher.close()
    assert keyless.said == [f"{free_endpoint} encrypts (CURVE): give its public server key "
                            "(--server-key, or ENDPOINT=KEYFILE for the proxy)"]
    assert wrong.said == [f"{free_endpoint}: the encrypted handshake failed: the server key "
                          "given is not the one this publisher holds (its server.key from "
                          "`mgs-monitor keys`)"]
    assert public.exists()


def test_a_proxy_joins_an_encrypted_and_a_plain_monitor(tmp_path: Path,
                                                        free_endpoint: str) -> None:
    """Keys are per upstream: one monitor encrypts, the other (on loopback) does not."""
    public, secret = make_keys(tmp_path / "hostA")
    plain, backend = free_port_endpoint(), free_port_endpoint()
    publishers = [Publisher(free_endpoint, secret_key=secret), Publisher(plain)]
    proxy = Proxy([Upstream.parse(f"{free_endpoint}={public}"), Upstream(plain)], backend)
    subscriber = Subscriber(backend)
    try:
        time.sleep(1.0)
        publishers[0].publish(score_record(1, publisher="hostA"))
        publishers[1].publish(score_record(1, publisher="hostB"))
        got = receive_until(subscriber, 2)
    finally:
        subscriber.close()
        proxy.close()
        for publisher in publishers:
            publisher.close()
    assert sorted(m.publisher for m in got) == ["hostA", "hostB"] and proxy.said == []


def test_a_proxy_backend_beyond_this_machine_needs_keys(tmp_path: Path) -> None:
    flags = ("--secret-key", "--allowed-clients", "--insecure")
    with pytest.raises(BusError) as refused:
        run_proxy([], "tcp://0.0.0.0:5999", lambda: True, serving=Serving(names=flags))
    assert str(refused.value) == (
        "tcp://0.0.0.0:5999 reaches beyond this machine: give --secret-key (make one with "
        "`mgs-monitor keys DIR`) or, knowingly, --insecure")
    with pytest.raises(BusError) as refused:
        run_proxy([], "tcp://127.0.0.1:5999", lambda: True,
                  serving=Serving(None, tmp_path, names=flags))
    assert str(refused.value) == (f"--allowed-clients {tmp_path}: clients are known by their "
                                  "CURVE keys, so it needs --secret-key too")


def test_an_allowed_clients_folder_without_keys_is_refused(tmp_path: Path,
                                                           free_endpoint: str) -> None:
    _, secret = make_keys(tmp_path / "monitor")
    (tmp_path / "clients").mkdir()
    with pytest.raises(BusError, match="clients: holds no public keys"):
        Publisher(free_endpoint, secret_key=secret, allowed_clients=tmp_path / "clients")


def test_client_keys_are_made_by_name_and_never_overwritten(tmp_path: Path) -> None:
    public, secret = make_keys(tmp_path, "logger1")
    assert (public.name, secret.name) == ("logger1.key", "logger1.key_secret")
    with pytest.raises(BusError, match=r"logger1\.key: already exists"):
        make_keys(tmp_path, "logger1")


def test_a_key_added_to_the_allowed_folder_counts_from_the_next_connection(
        tmp_path: Path, free_endpoint: str) -> None:
    public, secret = make_keys(tmp_path / "monitor")
    make_keys(tmp_path / "clients", "logger1")
    late_public, late_secret = make_keys(tmp_path / "late", "logger2")
    publisher = Publisher(free_endpoint, secret_key=secret, allowed_clients=tmp_path / "clients")
    refused = Subscriber(free_endpoint, server_key=public, client_key=late_secret)
    try:
        time.sleep(0.5)
        publisher.publish(score_record(1))
        assert not list(refused.receive(300))
        eventually(refused.problems)
        late_public.rename(tmp_path / "clients" / late_public.name)  # no restart of the monitor
        with Subscriber(free_endpoint, server_key=public, client_key=late_secret) as restarted:
            got = publish_until_heard(publisher, restarted, 5)
        assert [m.seq for m in got] == [1, 2, 3, 4, 5]
    finally:
        refused.close()
        publisher.close()


# Load ------------------------------------------------------------------------------------------
BURST = 40_000  # records sent at once: four times the publisher's queue


@pytest.mark.slow
def test_a_burst_through_a_proxy_arrives_complete(free_endpoint: str) -> None:
    """A monitor sends faster than the proxy forwards: the queues hold the burst and every
    record reaches the subscriber, in order (with the queues of 1,000 and 10,000 messages and
    one message moved per poll, a third of such a burst was lost at the publisher)."""
    backend = free_port_endpoint()
    publisher = Publisher(free_endpoint)
    subscriber = Subscriber(backend)
    proxy = Proxy([Upstream(free_endpoint)], backend)
    burst = [score_record(seq) for seq in range(1, BURST + 1)]
    try:
        publish_until_heard(publisher, subscriber, 0)
        while list(subscriber.receive(300)):  # the records sent until one was heard
            pass
        for record in burst:
            publisher.publish(record)
        got = receive_until(subscriber, BURST, seconds=60)
    finally:
        subscriber.close()
        publisher.close()
        proxy.close()
    assert [m.seq for m in got] == list(range(1, BURST + 1))


def test_a_subscriber_gets_its_turn_while_records_keep_coming(free_endpoint: str) -> None:
    """receive(most=N) hands back control after N records even when more are waiting, so the
    logger syncs its file, pings its watchdog and sees a stop under a steady stream."""
    publisher = Publisher(free_endpoint)
    subscriber = Subscriber(free_endpoint)
    try:
        publish_until_heard(publisher, subscriber, 0)
        time.sleep(0.3)  # the records sent until one was heard have all arrived
        list(subscriber.receive(0))
        for seq in range(1, 101):
            publisher.publish(score_record(seq))
        time.sleep(0.5)  # every record is waiting at the subscriber
        first = list(subscriber.receive(1000, most=10))
        rest = receive_until(subscriber, 90)
    finally:
        subscriber.close()
        publisher.close()
    assert len(first) == 10 and len(rest) == 90


@pytest.mark.slow
def test_the_logger_says_missing_records_as_it_finds_them(
        tmp_path: Path, free_endpoint: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Records lost on the way (a queue that overflowed) are said while the logger runs, not
    only in the gaps file and its closing line."""
    monkeypatch.setenv("COLUMNS", "400")  # the console wraps a long path inside its name
    publisher = Publisher(free_endpoint)
    out = tmp_path / "scores.csv"
    logger = threading.Thread(target=run_logger, args=(free_endpoint, None, out, 5.0))
    logger.start()
    try:
        seq = records_until_heard(publisher, logger, out)
        before = capsys.readouterr().err
        heard = seq
        for seq in range(heard + 5, heard + 8):  # four sequence numbers never arrive
            publisher.publish(score_record(seq))
        said = ""
        while logger.is_alive() and "records missing" not in " ".join(said.split()):
            time.sleep(0.05)
            said += capsys.readouterr().err
    finally:
        logger.join(10)
        publisher.close()
    assert "records missing" not in " ".join(before.split())
    assert f"4 records missing from test (written to {side_file(out, 'gaps')})" in \
        " ".join(said.split())


@pytest.mark.slow
def test_a_logger_finds_the_records_lost_at_the_end_of_a_run(
        tmp_path: Path, free_endpoint: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's last two records never arrive and no record follows them; the monitor's
    status report after them makes them a gap, in the file and on the console."""
    monkeypatch.setenv("COLUMNS", "400")
    publisher = Publisher(free_endpoint)
    out = tmp_path / "scores.csv"
    logger = threading.Thread(target=run_logger, args=(free_endpoint, None, out, 3.0))
    logger.start()
    try:
        seq = records_until_heard(publisher, logger, out, instance="run1")
        publisher.publish(StatusReport(publisher="test", seq=1, wall_time=time.time(),
                                       title="t", model_kind="demo", alert_threshold=4.0,
                                       records=seq + 2, instance="run1", last_seq=seq + 2))
    finally:
        logger.join(10)
        publisher.close()
    gaps = read_lines(side_file(out, "gaps"))
    assert [line.split(",")[:3] for line in gaps[1:]] == [["test", str(seq + 1), str(seq + 2)]]
    assert f"2 records missing from test (written to {side_file(out, 'gaps')})" in \
        " ".join(capsys.readouterr().err.split())


def records_until_heard(publisher: Publisher, logger: threading.Thread, out: Path,
                        instance: str = "") -> int:
    """Publish records 1, 2, ... until the logger has written one; the last seq published."""
    seq = 0
    while logger.is_alive() and len(read_lines(out)) < 2:
        seq += 1
        publisher.publish(score_record(seq).model_copy(update={"instance": instance}))
        time.sleep(0.05)
    return seq


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
