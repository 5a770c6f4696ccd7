"""`mgs-label serve` as a lab runs it, over real HTTP(S) against the real server process: what
the files and responses could tell a rater, who may do what, and the server's limits."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.stats import spearmanr

from label import project
from label.cli import build_parser, main
from tests.label_util import Browser, Run, served, write_run

HEADERS = {"content-type", "content-length", "cache-control", "content-security-policy",
           "x-frame-options", "x-content-type-options", "referrer-policy", "date", "server",
           "connection"}
HEX12 = re.compile(r"[0-9a-f]{12}\.(jpg|png)")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return write_run(tmp_path_factory.mktemp("evidence"), samples=8, frames=1)


@pytest.fixture
def study(run: Run, tmp_path: Path) -> project.Project:
    assert main(["queue", str(run.csv), "--project", str(tmp_path / "study"), "--random", "24",
                 "--uncertain", "12", "--frames", "1", "--repeat", "0.25"]) == 0
    return project.load(tmp_path / "study")


def auc(keys: list[float], marked: list[bool]) -> float:
    """How well sorting by `keys` puts the marked files first: 0.5 = not at all, 0 or 1 =
    perfectly."""
    pos = [k for k, m in zip(keys, marked, strict=True) if m]
    neg = [k for k, m in zip(keys, marked, strict=True) if not m]
    wins = sum((p < n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def orderings(folder: Path, names: list[str]) -> dict[str, list[float]]:
    """Every order a listing of the files shows: by name, inode, change time, listing order."""
    listed = {f"{sub}/{n}": i for sub in ("images", "cubicles")
              for i, n in enumerate(os.listdir(folder / sub))}
    stats = [(folder / n).stat() for n in names]
    ranks: dict[str, list[float]] = {"name": [float(sorted(names).index(n)) for n in names],
                                     "inode": [float(s.st_ino) for s in stats],
                                     "ctime": [float(s.st_ctime_ns) for s in stats],
                                     "listing": [float(listed[n]) for n in names]}
    return ranks


def not_linked(ranks: dict[str, list[float]], marked: list[bool], what: str) -> None:
    for key, values in ranks.items():  # a chance shuffle this lopsided: ~1 in 100,000
        assert 0.03 < auc(values, marked) < 0.97, f"sorting by {key} tells {what}"


def test_images_and_their_files_say_nothing_but_pixels(study: project.Project) -> None:
    folder, items = study.folder, study.items
    faces = [i for i in items if i.task == "face"]
    repeated = [i for i in faces if i.repeat_id]
    assert len(repeated) == 9
    names = [i.image for i in items] + [i.repeat_image for i in repeated]
    assert len(set(names)) == len(names)  # a repeat is a copy of its own
    assert all(HEX12.fullmatch(Path(n).name) for n in names)
    on_disk = sorted(p.relative_to(folder).as_posix() for sub in ("images", "cubicles")
                     for p in (folder / sub).iterdir())
    assert on_disk == sorted(names)  # nothing else, no temporary file left
    stats = {n: (folder / n).stat() for n in names}
    assert len({s.st_mtime_ns for s in stats.values()}) == 1  # one time for all
    assert len({s.st_atime_ns for s in stats.values()}) == 1
    face_files = [n for n in names if n.startswith("images/")]
    assert len({stats[n].st_size for n in face_files}) == 1  # one size for all faces
    assert len({stats[n].st_size for n in names if n.startswith("cubicles/")}) == 1
    for item in repeated:  # the same pixels, nothing else in common
        a, b = folder / item.image, folder / item.repeat_image
        assert hashlib.sha256(a.read_bytes()).digest() != hashlib.sha256(b.read_bytes()).digest()
        assert np.array_equal(cv2.imread(str(a)), cv2.imread(str(b)))

    face_names = [i.image for i in faces] + [i.repeat_image for i in repeated]
    ranks = orderings(folder, face_names)
    times = [float(i.wall_time) for i in faces]
    for key, values in ranks.items():
        if len(set(values)) == 1:
            continue  # one value for all (times coarser than the copying) tells nothing
        rho = spearmanr(values[:len(faces)], times).statistic
        assert abs(rho) < 0.9, f"sorting by {key} gives the capture order (rho {rho:.2f})"
    not_linked({k: v[:len(faces)] for k, v in ranks.items()},
               [i.selection == "random" for i in faces], "the selection")
    not_linked(ranks, [False] * len(faces) + [True] * len(repeated), "the repeats")

    with served(folder) as server:
        browser = server.rater("ann")
        page = browser.request(server.base + "/")
        assert "frame-ancestors 'none'" in page[1]["content-security-policy"]
        served_ids = [(i.id, i.image) for i in items]
        served_ids += [(i.repeat_id, i.repeat_image) for i in repeated]
        lengths = set()
        for iid, name in served_ids:
            status, headers, body = browser.request(f"{server.base}/image/{iid}")
            assert status == 200 and set(headers) <= HEADERS, headers
            assert headers["cache-control"] == "no-store"
            assert body == (folder / name).read_bytes()
            if name.startswith("images/"):
                lengths.add(headers["content-length"])
        assert len(lengths) == 1


def test_a_folder_of_images_is_copied_in_no_order_of_its_own(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for condition in ("NTG", "saline"):
        (tmp_path / "photos" / condition).mkdir(parents=True)
        for n in range(20):
            image = rng.integers(0, 255, (24 + n, 32, 3), np.uint8)
            cv2.imwrite(str(tmp_path / "photos" / condition / f"{n:02d}.png"), image)
    assert main(["queue", "--images", str(tmp_path / "photos"), "--project",
                 str(tmp_path / "p"), "--repeat", "0.2"]) == 0
    proj = project.load(tmp_path / "p")
    names = [i.image for i in proj.items]
    assert len({(tmp_path / "p" / n).stat().st_mtime_ns for n in names}) == 1
    not_linked(orderings(tmp_path / "p", names), ["/NTG/" in i.source for i in proj.items],
               "the condition")


def test_the_coordinator_alone_sees_agreement_and_export_and_a_rater_undoes_only_their_own(
        study: project.Project) -> None:
    with served(study.folder) as server:
        base = server.base
        ann, bob, stranger = server.rater("ann"), server.rater("bob"), server.rater(None)
        coordinator = server.coordinator()
        t = ann.json(base + "/api/task?task=face")
        for _ in range(2):
            t = ann.json(base + "/api/answer", {"task": "face", "slot": t["slot"],
                                                "levels": [1, 1, 1, 1, 1]})
        assert t["done"] == 2
        # the name in a body means nothing: bob undoes bob's (none), a stranger nothing
        assert not bob.json(base + "/api/undo", {"rater": "ann", "task": "face"})["undone"]
        status, _, body = stranger.request(base + "/api/undo", {"rater": "ann", "task": "face"})
        assert status == 403
        status, _, body = stranger.request(base + "/api/rater", {"name": "ann"})
        assert status == 409 and b"taken by another browser" in body
        assert ann.json(base + "/api/task?task=face")["done"] == 2
        assert ann.json(base + "/api/undo", {"task": "face"})["undone"]  # her own, she can
        assert ann.json(base + "/api/task?task=face")["done"] == 1
        for rater in (ann, bob, stranger):
            assert rater.request(base + "/agreement")[0] == 403
            assert rater.request(base + "/api/export", {})[0] == 403
            assert b"/agreement" not in rater.request(base + "/")[2]
        status, _, page = coordinator.request(base + "/agreement")
        assert status == 200 and b"images seen twice" in page
        assert b"/agreement" in coordinator.request(base + "/")[2]
        assert coordinator.json(base + "/api/export", {})["labels"] == 1
        assert ann.request(base + "/api/release", {"name": "ann"})[0] == 403
        assert coordinator.json(base + "/api/release", {"name": "ann"}) == {"released": True}
        assert stranger.json(base + "/api/rater", {"name": "ann"}) == {"rater": "ann"}
        assert stranger.json(base + "/api/task?task=face")["done"] == 1  # her answers so far
        assert ann.request(base + "/api/task?task=face")[0] == 403
        # the rater token cannot be turned into the coordinator's
        assert ann.request(f"{base}/agreement?token={server.tokens['rater']}")[0] == 302
        assert ann.request(base + "/agreement")[0] == 403
    owners = json.loads((study.folder / "raters.json").read_text())["raters"]
    assert set(owners) == {"ann", "bob"}
    assert not any(server.tokens["rater"] in v or len(v) != 64 for v in owners.values())


def test_a_rater_keeps_their_name_across_a_restart(study: project.Project) -> None:
    with served(study.folder) as server:
        ann = server.rater("ann")
        t = ann.json(server.base + "/api/task?task=face")
        ann.json(server.base + "/api/answer", {"task": "face", "slot": t["slot"],
                                               "levels": [0, 0, 0, 0, 0]})
    with served(study.folder, port=server.port) as server:  # the same port, the same cookies
        assert ann.json(server.base + "/api/rater") == {"rater": "ann"}
        assert ann.json(server.base + "/api/task?task=face")["done"] == 1


def test_the_number_of_raters_is_bounded(study: project.Project) -> None:
    with served(study.folder, "--max-raters", "2") as server:
        server.rater("ann"), server.rater("bob")
        third = server.rater(None)
        status, _, body = third.request(server.base + "/api/rater", {"name": "cy"})
        assert status == 409 and b"at most 2 raters" in body
        assert third.request(server.base + "/api/task?task=face&rater=cy")[0] == 403
        for n in range(50):  # names in a query make no state
            third.request(f"{server.base}/api/task?task=face&rater=x{n}")
    assert set(json.loads((study.folder / "raters.json").read_text())["raters"]) == \
        {"ann", "bob"}


def test_big_bodies_are_refused_unread(study: project.Project) -> None:
    with served(study.folder) as server:
        ann = server.rater("ann")
        status, _, _ = ann.request(server.base + "/api/answer",
                                   raw=b'{"task": "face", "x": "' + b"a" * 100_000 + b'"}')
        assert status == 413
        cookie = "; ".join(f"{k}={v}" for k, v in ann.cookies.items())
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(f"POST /api/answer HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                         f"Cookie: {cookie}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {50 << 20}\r\n\r\n".encode() + b"{" * 65536)
            assert sock.recv(4096).startswith(b"HTTP/1.1 413")


def test_an_idle_connection_is_closed(study: project.Project) -> None:
    from label import web

    assert web.CHANNEL_TIMEOUT <= 60

    def app(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    server = web.make_server(app, "127.0.0.1", 0, channel_timeout=1, cleanup_interval=1)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", server.effective_port), timeout=15) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
            started = time.monotonic()
            assert sock.recv(100) == b""
            assert time.monotonic() - started < 10
    finally:
        server.close()


def test_tokens_come_from_a_file_or_the_environment_never_the_command_line(
        study: project.Project, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from label import access

    parser = build_parser()
    helps = [parser.format_help()]
    helps += [a.choices["serve"].format_help() for a in parser._actions if a.dest == "command"]
    assert not any("--token" in h for h in helps)
    with served(study.folder) as server:
        pass
    for role in ("rater", "coordinator"):
        path = study.folder / "access" / f"{role}-token"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert access.bits(server.tokens[role]) >= 128
        assert server.tokens[role] not in "".join(server.lines)  # only its first characters
        assert server.tokens[role][:4] + "…" in "".join(server.lines)
    monkeypatch.setenv("MGS_LABEL_TOKEN", "a")
    assert main(["serve", str(study.folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "$MGS_LABEL_TOKEN: the token holds at most 4 bits" in err
    monkeypatch.delenv("MGS_LABEL_TOKEN")
    (study.folder / "access" / "coordinator-token").write_text("0123456789abcdef\n")
    assert main(["serve", str(study.folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "coordinator-token: the token holds at most 64 bits" in err
    with pytest.raises(SystemExit):
        main(["serve", str(study.folder), "--token", "0" * 32])


def test_two_projects_on_one_host_keep_their_own_cookies(run: Run, tmp_path: Path) -> None:
    for name in ("one", "two"):
        assert main(["queue", str(run.csv), "--project", str(tmp_path / name),
                     "--random", "4", "--uncertain", "0"]) == 0
    browser = Browser()  # one browser, one cookie store per host, whatever the port
    with served(tmp_path / "one") as one, served(tmp_path / "two") as two:
        for server in (one, two):
            assert browser.request(f"{server.base}/?token={server.tokens['rater']}")[0] == 302
        for server in (one, two):
            assert browser.request(server.base + "/")[0] == 200


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made by `cryptography`."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mgs-label test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


def test_https_with_a_certificate(study: project.Project, certificate: tuple[Path, Path],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    cert, key = certificate
    trust = ssl.create_default_context(cafile=str(cert))
    with served(study.folder, "--host", "127.0.0.1", "--tls-cert", str(cert), "--tls-key",
                str(key)) as server:
        assert server.base.startswith("https://127.0.0.1:")
        ann = server.rater("ann", tls=trust)
        assert all("Secure" in c for c in ann.set_cookies)
        t = ann.json(server.base + "/api/task?task=face")
        item = study.files()[t["image"].rsplit("/", 1)[1]]
        status, _, body = ann.request(server.base + t["image"])
        assert status == 200 and body == item.read_bytes()
        for _ in range(30):  # each on a TLS connection of its own
            t = ann.json(server.base + "/api/answer", {"task": "face", "slot": t["slot"],
                                                       "levels": [2, 2, 2, 2, 2]})
        assert t["done"] == 30
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # plain HTTP: no page
            try:
                answer = sock.recv(4096)
            except ConnectionResetError:
                answer = b""
            assert b"HTTP/1.1" not in answer
        with pytest.raises(OSError):
            Browser(ssl.create_default_context()).request(server.base + "/")  # not trusted
    assert main(["serve", str(study.folder), "--tls-cert", str(cert)]) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err
    assert main(["serve", str(study.folder), "--tls-cert", str(key), "--tls-key",
                 str(key)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a certificate and its key" in err
