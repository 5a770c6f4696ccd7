"""Monitor evidence for the mgs-label tests, written to the evidence contract directly: a score
CSV (score schema 3, `crop` column) with synthetic face crops, and RUN.evidence/frames.csv with
synthetic four-cubicle frames."""

from __future__ import annotations

import csv
import json
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import cv2
import numpy as np

import synth
from monitor.config import Camera
from monitor.schema import CSV_COLUMNS, SCORE_COLUMNS, ScoreRecord, csv_row
from monitor.scoring.faces import cubicle_pixels

START = 1_718_000_000.0  # 2024-06-10


@dataclass
class Run:
    csv: Path
    truth: dict[str, list[int]] = field(default_factory=dict)  # crop (CSV-relative) -> levels
    mice: set[str] = field(default_factory=set)
    cameras: set[str] = field(default_factory=set)
    times: list[float] = field(default_factory=list)


def probs_for(levels: list[int], rng: np.random.Generator, sure: float) -> list[list[float]]:
    """A 5x3 distribution peaked at `levels`: `sure` near 1 is confident, near 1/3 is not."""
    rows = []
    for level in levels:
        p = rng.dirichlet([1.0, 1.0, 1.0]) * (1 - sure)
        p[level] += sure
        rows.append([float(v) for v in p / p.sum()])
    return rows


def write_run(folder: Path, name: str = "scores", cameras: int = 2, samples: int = 5,
              every: float = 300.0, frames: int = 2, seed: int = 0) -> Run:
    """`cameras` four-cubicle cameras sampled `samples` times; every crop kept; `frames` full
    frames kept per camera. Crops of camera 0 are unsure, camera 1 sure."""
    rng = np.random.default_rng(seed)
    run = Run(folder / f"{name}.csv")
    evidence = folder / f"{name}.evidence"
    rows, frame_rows = [], []
    seq = 0
    for k in range(cameras):
        camera = Camera(name=f"cam{k}", source=k)
        run.cameras.add(camera.name)
        for s in range(samples):
            t = START + s * every + k
            run.times.append(t)
            day = time.strftime("%Y-%m-%d", time.gmtime(t))
            levels = [[int(v) for v in rng.integers(0, 3, 5)] for _ in camera.cubicle_list()]
            for c, cubicle in enumerate(camera.cubicle_list(), 1):
                seq += 1
                run.mice.add(cubicle.mouse)
                crop = f"{name}.evidence/crops/{day}/{cubicle.mouse}/run1-{seq}.jpg"
                (folder / crop).parent.mkdir(parents=True, exist_ok=True)
                face = synth.draw_face(levels[c - 1], rng, 64)
                cv2.imwrite(str(folder / crop), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
                run.truth[crop] = levels[c - 1]
                sure = 0.4 + 0.1 * s if k == 0 else 0.97
                rows.append(_record(seq, t, camera.name, c, cubicle.mouse, levels[c - 1],
                                    probs_for(levels[c - 1], rng, sure), crop))
            if s < frames:
                frame_rows.append(_frame(evidence, camera, t, s, levels, rng))
    with run.csv.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(csv_row(SCORE_COLUMNS, r) for r in rows)
    with (evidence / "frames.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["wall_time", "source_time", "camera", "frame_index", "reason", "image",
                         "width", "height", "cubicles"])
        writer.writerows(frame_rows)
    return run


def _record(seq: int, t: float, camera: str, cubicle: int, mouse: str, levels: list[int],
            probs: list[list[float]], crop: str) -> ScoreRecord:
    return ScoreRecord(
        publisher="test", seq=seq, wall_time=t, mono_time=t, source_time=t, frame_index=seq,
        camera=camera, cubicle=cubicle, mouse=mouse, status="scored",
        face_box=(0.5, 0.5, 0.3, 0.3), face_score=0.9, sharpness=100.0,
        probs=tuple(tuple(p) for p in probs), levels=tuple(levels), total=sum(levels),
        expected_total=float(sum(levels)), pain=False, model_kind="demo", instance="run1",
        crop=crop)


def _frame(evidence: Path, camera: Camera, t: float, s: int, levels: list[list[int]],
           rng: np.random.Generator) -> list[object]:
    """Writes one frame (the second cubicle's mouse turned away) and returns its index row."""
    shown: list[list[int] | None] = [list(v) for v in levels]
    shown[1] = None
    image, boxes = synth.draw_array_frame(shown, rng, 640, 240)
    day = time.strftime("%Y-%m-%d", time.gmtime(t))
    name = f"frames/{day}/{camera.name}/f{s:04d}.jpg"
    (evidence / name).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(evidence / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    cubicles = []
    for c, (cubicle, box) in enumerate(zip(camera.cubicle_list(), boxes, strict=True), 1):
        x0, y0, x1, y1 = cubicle_pixels(image.shape, cubicle)
        pixels = None
        if box is not None:
            w, h = box[2] * (x1 - x0), box[3] * (y1 - y0)
            pixels = [round(x0 + box[0] * (x1 - x0) - w / 2, 1),
                      round(y0 + box[1] * (y1 - y0) - h / 2, 1), round(w, 1), round(h, 1)]
        cubicles.append({"cubicle": c, "mouse": cubicle.mouse, "region": [x0, y0, x1, y1],
                         "box": pixels, "score": 0.9 if box else 0.1})
    return [t, t, camera.name, s, "first" if s == 0 else "hourly", name, 640, 240,
            json.dumps(cubicles)]


def write_conditions(path: Path, mice: set[str]) -> Path:
    """Half the mice (sorted) `pain`, the rest `control`."""
    ordered = sorted(mice)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["mouse", "condition"])
        writer.writerows([m, "pain" if i % 2 else "control"] for i, m in enumerate(ordered))
    return path


def api(base: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One request as the page's JS makes it: JSON in, JSON out."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


class Browser:
    """A browser as far as the server can tell: it keeps the cookies it is given by name, for
    the host alone, whatever the port (as browsers do), and sends them back."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.cookies: dict[str, str] = {}
        self.set_cookies: list[str] = []  # every Set-Cookie header, as sent
        self.tls = tls

    def request(self, url: str, body: Any = None, raw: bytes | None = None
                ) -> tuple[int, dict[str, str], bytes]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        request = urllib.request.Request(url, data=data, headers=headers)
        opener = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(
            context=self.tls))
        try:
            with opener.open(request, timeout=20) as response:
                status, got, content = response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            status, got, content = exc.code, exc.headers, exc.read()
        for header in got.get_all("Set-Cookie") or []:
            self.set_cookies.append(header)
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return status, {k.lower(): v for k, v in got.items()}, content

    def json(self, url: str, body: Any = None) -> Any:
        status, _, content = self.request(url, body)
        assert status == 200, (url, status, content[:300])
        return json.loads(content)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect comes back as it is, with its Set-Cookie


@dataclass
class Served:
    base: str
    port: int
    tokens: dict[str, str]
    lines: list[str]
    process: subprocess.Popen[str]

    def rater(self, name: str | None, tls: ssl.SSLContext | None = None) -> Browser:
        """A new browser that opened the raters' address and, given a name, took it."""
        browser = Browser(tls)
        assert browser.request(f"{self.base}/?token={self.tokens['rater']}")[0] == 302
        assert browser.request(self.base + "/")[0] == 200
        if name is not None:
            assert browser.json(self.base + "/api/rater", {"name": name}) == {"rater": name}
        return browser

    def coordinator(self, tls: ssl.SSLContext | None = None) -> Browser:
        browser = Browser(tls)
        assert browser.request(f"{self.base}/agreement?token={self.tokens['coordinator']}"
                               )[0] == 302
        return browser


@contextmanager
def served(project: Path, *options: str, env: dict[str, str] | None = None, port: int = 0
           ) -> Iterator[Served]:
    """`mgs-label serve PROJECT --port PORT OPTIONS` in a process of its own (port 0: any free
    one); stopped by SIGTERM, as systemd stops it, and made to exit cleanly."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MGS_LABEL_")}
    environ.update(env or {}, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    process = subprocess.Popen(
        [sys.executable, "-m", "label.cli", "serve", str(project), "--port", str(port),
         *options],
        stderr=subprocess.PIPE, text=True, env=environ)
    lines: list[str] = []
    said: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_drain, args=(process, lines, said), daemon=True).start()
    deadline = time.monotonic() + 60
    while not any("the coordinator opens" in line for line in lines):
        try:
            said.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            process.kill()
            process.wait()
            raise AssertionError("mgs-label serve did not start:\n" + "".join(lines)) from None
    base = next(m for line in lines if (m := re.search(r"serving .* on (https?://\S+?)/ ", line)))
    url = base.group(1).replace(f"//{socket.gethostname()}:", "//127.0.0.1:")
    names = {"rater": "MGS_LABEL_TOKEN", "coordinator": "MGS_LABEL_COORDINATOR_TOKEN"}
    tokens = {role: (env or {}).get(name) or
              (project / "access" / f"{role}-token").read_text().strip()
              for role, name in names.items()}
    try:
        yield Served(url, int(url.rsplit(":", 1)[1]), tokens, lines, process)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0, "".join(lines)


def _drain(process: subprocess.Popen[str], lines: list[str], said: queue.Queue[str]) -> None:
    """Keeps the server's stderr pipe from filling; every line is kept for messages."""
    for line in process.stderr or []:
        lines.append(line)
        said.put(line)


def unpadded(data: bytes | Path) -> bytes:
    """A JPEG without the comment segments label.blind put after its start (and JFIF header)."""
    data = data.read_bytes() if isinstance(data, Path) else data
    assert data[:2] == b"\xff\xd8"
    start = 2 + (2 + int.from_bytes(data[4:6], "big") if data[2:4] == b"\xff\xe0" else 0)
    at = start
    while data[at:at + 2] == b"\xff\xfe":
        at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
    assert at > start  # padded
    return data[:start] + data[at:]
