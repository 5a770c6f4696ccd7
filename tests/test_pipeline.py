"""The whole chain on real files: videos -> faces -> scores -> CSV, ZeroMQ and dashboard."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from rich.console import Console

import synth
from demo.build import DemoBuild
from export.half import halve_scorer
from monitor.capture.workers import Frame, open_capture
from monitor.cli import main
from monitor.config import build_config, load_config
from monitor.outputs.bus import BusError, Publisher
from monitor.pipeline import Monitor
from monitor.schema import (
    CSV_COLUMNS,
    AlertEvent,
    CameraReport,
    Message,
    ScoreRecord,
    StatusReport,
)
from monitor.scoring.analyzer import Analyzer, Models
from monitor.units import UNITS
from monitor.views.dashboard import DashboardState, render
from tests.fakes import FakeCamera, HeldCamera, MjpegCamera
from tests.monitor_util import View, run_to_end, run_until


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def replay_args(demo: DemoBuild, out: Path, *extra: str) -> list[str]:
    return ["replay", *map(str, demo.videos), "--models", str(demo.folder), "--every",
            str(demo.spec.every_s), "--burst", "1", "--out", str(out), "--no-publish",
            "--no-dashboard", *extra]


def expected_samples(demo: DemoBuild) -> int:
    return int(np.ceil(demo.spec.seconds / demo.spec.every_s))


def test_replay_writes_a_row_for_every_mouse_and_sample(demo_small: DemoBuild,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    assert main(replay_args(demo_small, out)) == 0
    rows = read_rows(out)
    samples = expected_samples(demo_small)
    mice = {f"cam{c}-c{k}" for c in range(demo_small.spec.cameras) for k in range(1, 5)}
    assert len(rows) == len(mice) * samples
    assert {r["mouse"] for r in rows} == mice
    assert [int(r["seq"]) for r in rows] == list(range(1, len(rows) + 1))
    for mouse in mice:
        times = sorted(float(r["source_time"]) for r in rows if r["mouse"] == mouse)
        assert times == pytest.approx([i * demo_small.spec.every_s for i in range(samples)])
    scored = [r for r in rows if r["status"] == "scored"]
    assert len(scored) >= len(rows) // 2
    for row in scored:
        levels = [int(row[u]) for u in UNITS]
        assert int(row["total"]) == sum(levels)
        probs = [float(row[f"p_{u}_{lv}"]) for u in UNITS for lv in range(3)]
        assert sum(probs) == pytest.approx(5.0, abs=1e-3)
        assert float(row["expected_total"]) == pytest.approx(
            sum(lv * float(row[f"p_{u}_{lv}"]) for u in UNITS for lv in range(3)), abs=1e-2)
    assert {r["model_kind"] for r in rows} == {"demo"}
    assert {r["status"] for r in rows} <= {"scored", "no_face", "low_quality"}


def test_fp16_scorer_on_the_cpu_runs_and_says_it_is_the_slow_choice(
        demo_small: DemoBuild, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = tmp_path / "models"
    size = demo_small.spec.scorer_size
    halve_scorer(demo_small.folder / "scorer.onnx", models / "scorer.onnx",
                 np.zeros((2, size, size, 3), np.uint8), min_agreement=0.0)
    shutil.copy(demo_small.folder / "localizer.onnx", models / "localizer.onnx")
    out = tmp_path / "scores.csv"
    args = replay_args(demo_small, out)
    args[args.index("--models") + 1] = str(models)
    assert main(args) == 0
    assert "fp16 scorer running on the CPU" in capsys.readouterr().err
    assert any(r["status"] == "scored" for r in read_rows(out))


def test_unreadable_video_is_one_line_error(tmp_path: Path, demo_small: DemoBuild,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.mp4"
    args = replay_args(demo_small, tmp_path / "s.csv")
    args[1] = str(missing)
    assert main(args) == 2
    assert f"{missing}: no such video file" in capsys.readouterr().err


@pytest.mark.parametrize(("content", "problem"), [
    (b"\x00" * 4096, "not a video OpenCV can read"),
    (b"", "empty file, not a video"),
])
def test_a_recording_that_is_not_a_video_is_refused_before_start(
        tmp_path: Path, demo_small: DemoBuild, capsys: pytest.CaptureFixture[str],
        content: bytes, problem: str) -> None:
    """Before, such a file was replayed as a camera that is down: camera_down rows, exit 0."""
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(content)
    out = tmp_path / "s.csv"
    args = replay_args(demo_small, out)
    args[2] = str(broken)  # the second video: the first one is not even started
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"mgs-monitor: error: {broken}: {problem}"
    assert not out.exists()


def test_an_empty_image_folder_is_refused_before_start(tmp_path: Path, demo_small: DemoBuild,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "frames").mkdir()
    args = replay_args(demo_small, tmp_path / "s.csv")
    args[1] = str(tmp_path / "frames")
    assert main(args) == 2
    assert f"{tmp_path / 'frames'}: no images here" in capsys.readouterr().err


def test_missing_models_name_the_file(tmp_path: Path, demo_small: DemoBuild,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    args = replay_args(demo_small, tmp_path / "s.csv")
    args[args.index("--models") + 1] = str(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'scorer.onnx'}: model file not found" in err and err.count("\n") == 1


def cubicle_frame(levels: list[synth.Levels | None], seed: int) -> np.ndarray:
    frame, _ = synth.draw_array_frame(levels, np.random.default_rng(seed), 640, 360)
    return cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)


def small_monitor(demo: DemoBuild, camera: FakeCamera | list[FakeCamera], csv: Path | None,
                  every_s: float = 0.05) -> Monitor:
    config = build_config({**demo.config(), "cameras": [{"name": "cam0", "source": 0}],
                           "sampling": {"every_s": every_s, "burst": 1}})
    sessions = iter(camera if isinstance(camera, list) else [camera])
    return Monitor(config, Models.load(config), csv, opener=lambda _s: next(sessions))


def test_faceless_frame_is_no_face(demo_small: DemoBuild, tmp_path: Path) -> None:
    faces = cubicle_frame([(0, 0, 0, 0, 0), (2, 2, 2, 2, 2), (1, 1, 1, 1, 1), (0, 1, 2, 1, 0)], 1)
    empty = cubicle_frame([None] * 4, 1)  # every mouse turned away
    out = tmp_path / "s.csv"
    monitor = small_monitor(demo_small, FakeCamera([faces, empty]), out)
    run_until(monitor, 8)
    rows = read_rows(out)
    assert [r["status"] for r in rows[4:8]] == ["no_face"] * 4
    assert all(r["total"] == "" and r["orbital_tightening"] == "" for r in rows[4:8])
    assert sum(r["status"] == "scored" for r in rows[:4]) >= 3


def test_each_mouse_gets_the_scores_of_its_own_face(demo_small: DemoBuild,
                                                    tmp_path: Path) -> None:
    """Four different faces in one frame: each mouse's record carries exactly what its own
    cubicle, scored alone, gives; a mix-up inside the batch would hand it a neighbour's."""
    frame = cubicle_frame([(0, 0, 0, 0, 0), (2, 2, 2, 2, 2), (1, 1, 1, 1, 1), (0, 1, 2, 1, 0)], 1)
    monitor = small_monitor(demo_small, FakeCamera([frame]), None)
    records = run_until(monitor, 4).of(ScoreRecord)[:4]
    assert [r.mouse for r in records] == [f"cam0-c{k}" for k in range(1, 5)]
    alone = []
    for cubicle in monitor.config.cameras[0].cubicle_list():
        config = build_config({**demo_small.config(), "cameras": [
            {"name": "cam0", "source": 0, "cubicles": [cubicle.model_dump()]}]})
        (record,) = Analyzer(config, Models.load(config)).process(
            [Frame("cam0", frame, 0.0, 0.0, 0.0, 0)])
        alone.append(record)
    assert [r.status for r in alone] == ["scored"] * 4
    assert len({r.levels for r in alone}) == 4  # four different answers, so a mix-up shows
    for together, single in zip(records, alone, strict=True):
        assert together.levels == single.levels
        np.testing.assert_allclose(together.probs, single.probs, atol=1e-4)


def test_camera_drops_mid_run_and_comes_back(demo_small: DemoBuild, tmp_path: Path) -> None:
    frame = cubicle_frame([(0, 0, 0, 0, 0)] * 4, 2)
    out = tmp_path / "s.csv"
    cameras = [FakeCamera([frame, None]), FakeCamera([], opened=False), FakeCamera([frame])]
    monitor = small_monitor(demo_small, cameras, out, every_s=0.3)

    def back(view: View) -> bool:
        states = [r.state for r in view.of(CameraReport)]
        return "down" in states and "ok" in states[states.index("down"):]

    reports = run_until(monitor, 16, also=back).of(CameraReport)
    statuses = [r["status"] for r in read_rows(out)][:16]
    assert statuses[4:12] == ["camera_down"] * 8
    assert "camera_down" not in statuses[:4] + statuses[12:16]
    states = [r.state for r in reports]
    assert "down" in states and states.index("down") < len(states) - 1 - states[::-1].index("ok")
    assert reports[-1].reconnects == 1 and reports[-1].frames_read == 2


def test_an_ip_camera_is_scored_as_it_sends_and_is_down_once_it_dies(
        demo_small: DemoBuild, tmp_path: Path) -> None:
    """A real MJPEG stream on loopback, held open between samples: each record is timed by
    its frame's arrival (one of the camera's send times), made within moments of it, and the
    camera's death is a camera_down record within a second, not many seconds of old frames."""
    frame = cubicle_frame([(0, 0, 0, 0, 0)] * 4, 2)
    camera = MjpegCamera(fps=10, picture=lambda _n: frame)
    out = tmp_path / "s.csv"
    config = build_config({**demo_small.config(),
                           "cameras": [{"name": "cam0", "source": camera.url}],
                           "sampling": {"every_s": 0.3, "burst": 2}})
    monitor = Monitor(config, Models.load(config), out)
    view = View(monitor)
    monitor.start()
    try:
        view.wait_for(lambda v: len(v.of(ScoreRecord)) >= 16)
        camera.kill()
        killed = time.time()
        view.wait_for(lambda v: any(r.status == "camera_down" for r in v.of(ScoreRecord)))
    finally:
        monitor.request_stop()
        assert monitor.wait(10)
        view.close()
    assert monitor.error is None
    records = view.of(ScoreRecord)
    live = [r for r in records if r.status != "camera_down"]
    assert sum(r.status == "scored" for r in live) >= 12
    sent = np.array(sorted(camera.sent.values()))
    for record in live:
        assert np.abs(sent - record.source_time).min() < 0.05  # a frame's arrival
        assert record.wall_time - record.source_time < 1.0  # the record followed it closely
    down = next(r for r in records if r.status == "camera_down")
    assert down.wall_time - killed < 1.0
    reports = view.of(CameraReport)
    assert reports[-1].state == "down" and reports[-1].frames_dropped == 0


def test_dashboard_shows_what_the_csv_has(demo_small: DemoBuild, tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    config = build_config({**demo_small.config(), "bus": {"enabled": False}})
    monitor = Monitor(config, Models.load(config), out, realtime=False, replay=True)
    state = dashboard_of(run_to_end(monitor).messages)
    lines = draw(state, width=400).splitlines()
    assert f"records {len(read_rows(out))}" in lines[0] and str(out) in lines[0]
    last: dict[str, dict[str, str]] = {}
    for row in read_rows(out):
        if row["status"] == "scored":
            last[row["mouse"]] = row
    assert len(last) == 4 * demo_small.spec.cameras
    for mouse, row in last.items():
        where = f" {row['camera']}/{row['cubicle']} "  # the mice table, not the alerts table
        (line,) = [ln for ln in lines if f" {mouse} " in f" {ln} " and where in ln]
        cells = line.replace("│", " ").split()
        levels = [row[u] for u in UNITS]
        assert row["total"] in cells and " ".join(levels) in " ".join(cells)


def test_status_reports_name_the_run_and_its_last_published_record(demo_small: DemoBuild,
                                                                   tmp_path: Path) -> None:
    """What lets a logger find the records lost at the end of a run: each status report follows
    the records it counts, and the last one names the run's last record."""
    config = build_config({**demo_small.config(), "bus": {"enabled": False}})
    monitor = Monitor(config, Models.load(config), tmp_path / "s.csv", realtime=False,
                      replay=True)
    messages = run_to_end(monitor).messages
    seen = 0  # the seq of the last record published before each report
    for message in messages:
        if isinstance(message, ScoreRecord):
            seen = message.seq
        elif isinstance(message, StatusReport):
            assert message.last_seq == seen
    records = [m for m in messages if isinstance(m, ScoreRecord)]
    final = [m for m in messages if isinstance(m, StatusReport)][-1]
    assert final.last_seq == records[-1].seq == len(read_rows(tmp_path / "s.csv")) > 0
    assert final.instance == records[-1].instance != ""


def dashboard_of(messages: list[Message]) -> DashboardState:
    state = DashboardState()
    for message in messages:
        state.apply(message)
    return state


def draw(state: DashboardState, width: int = 160) -> str:
    console = Console(width=width, file=io.StringIO(), record=True)
    console.print(render(state, time.time()))
    return console.export_text()


def start_logger(endpoint: str, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "monitor", "log", "--endpoint", endpoint,
                             "--out", str(out)], stderr=subprocess.PIPE, text=True)


def wait_rows(path: Path, count: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and len(read_rows(path)) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {count} rows")


def monitor_with_logger(demo: DemoBuild, endpoint: str, local: Path, logged: Path,
                        realtime: bool) -> tuple[Monitor, subprocess.Popen[str]]:
    """A replay publishing to a `mgs-monitor log` process that was listening before the
    cameras gave their first frame."""
    started = threading.Event()
    config = build_config({**demo.config(), "bus": {"endpoint": endpoint}})
    monitor = Monitor(config, Models.load(config), local, realtime=realtime, replay=True,
                      opener=lambda source: HeldCamera(open_capture(source), started))
    monitor.start()  # the endpoint is bound
    logger = start_logger(endpoint, logged)
    wait_rows(logged, 0)
    time.sleep(1.0)  # the logger's subscription reaches the monitor ...
    started.set()  # ... before the first frame is read
    return monitor, logger


def test_records_reach_a_zeromq_logger(demo_small: DemoBuild, tmp_path: Path,
                                       free_endpoint: str) -> None:
    logged, local = tmp_path / "logged.csv", tmp_path / "local.csv"
    monitor, logger = monitor_with_logger(demo_small, free_endpoint, local, logged,
                                          realtime=False)
    assert monitor.wait(30)
    time.sleep(1.0)
    logger.send_signal(signal.SIGINT)
    _, err = logger.communicate(timeout=20)
    assert logger.returncode == 0, err
    assert read_rows(logged) == read_rows(local)
    assert f"{len(read_rows(local))} records written" in err


def test_sigterm_mid_run_loses_nothing(demo_small: DemoBuild, tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    args = replay_args(demo_small, out, "--realtime")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "monitor", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or len(read_rows(out)) < 8):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    rows = read_rows(out)
    assert 8 <= len(rows) < 4 * demo_small.spec.cameras * expected_samples(demo_small)
    assert f"{len(rows)} records written" in err
    assert [int(r["seq"]) for r in rows] == list(range(1, len(rows) + 1))


def test_score_command_on_frames_and_crops(demo_small: DemoBuild, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    frames, crops = tmp_path / "frames", tmp_path / "crops"
    frames.mkdir()
    crops.mkdir()
    rng = np.random.default_rng(5)
    for i in range(3):
        cv2.imwrite(str(frames / f"f{i}.png"), cubicle_frame([(1, 1, 1, 1, 1)] * 4, i))
        face = synth.draw_face((2, 2, 2, 2, 2), rng, 96)
        cv2.imwrite(str(crops / f"c{i}.png"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    (frames / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "frames.csv"
    base = ["--models", str(demo_small.folder)]
    assert main(["score", str(frames), "--out", str(out), *base]) == 0
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long paths
    assert f"{frames / 'broken.png'}: not a readable image, skipped" in err
    assert "12 records from 4 images" in err and "1 unreadable images skipped" in err
    rows = read_rows(out)
    assert len(rows) == 12 and {r["mouse"] for r in rows} >= {"f0-c1", "f2-c4"}
    assert main(["score", str(crops), "--crops", "--out", str(tmp_path / "c.csv"), *base]) == 0
    crop_rows = read_rows(tmp_path / "c.csv")
    assert [r["status"] for r in crop_rows] == ["scored"] * 3
    assert all(r["camera"].endswith(".png") for r in crop_rows)


def write_config(path: Path, demo: DemoBuild, alerts: str) -> Path:
    cfg = demo.config()
    path.write_text(f"""\
cameras: [{{name: cam0, source: 0}}]
models: {{scorer: {cfg['models']['scorer']}, localizer: {cfg['models']['localizer']}}}
sampling: {{every_s: 0.05, burst: 1}}
bus: {{enabled: false}}
alerts: {alerts}
""")
    return path


def test_alerts_are_logged_and_rules_reload_without_losing_state(demo_small: DemoBuild,
                                                                   tmp_path: Path) -> None:
    frame = cubicle_frame([(2, 2, 2, 2, 2)] * 4, 3)
    config_path = write_config(tmp_path / "lab.yaml", demo_small,
                               "{defaults: {threshold: 0, window: 1, min_valid: 1}}")
    config = load_config(config_path)
    out = tmp_path / "s.csv"
    camera = FakeCamera([frame] * 400)
    monitor = Monitor(config, Models.load(config), out, opener=lambda _s: camera,
                      config_path=config_path)
    view = View(monitor)
    monitor.start()

    def status() -> StatusReport:
        return view.of(StatusReport)[-1]

    view.wait_for(lambda v: len(v.of(StatusReport)) and status().records >= 8)
    config_path.write_text("cameras: [\n")  # a broken edit
    monitor.request_reload()
    view.wait_for(lambda v: "reload refused" in status().notice)
    assert status().alert_threshold == 0
    assert "config reload refused, old alert rules kept" in draw(dashboard_of(view.messages))
    write_config(config_path, demo_small, "{defaults: {threshold: 10, window: 1, min_valid: 1}}")
    monitor.request_reload()
    view.wait_for(lambda v: "alert rules reloaded" in status().notice)
    assert status().alert_threshold == 10
    seen = status().records
    view.wait_for(lambda v: status().records >= seen + 8)
    monitor.request_stop()
    assert monitor.wait(10) and monitor.error is None
    view.close()
    events = read_rows(out.with_suffix(".alerts.csv"))
    scored_mice = {r["mouse"] for r in read_rows(out) if r["status"] == "scored"}
    raised = {e["mouse"] for e in events if e["event"] == "raised"}
    cleared = {e["mouse"] for e in events if e["event"] == "cleared"}
    assert raised == scored_mice and cleared <= raised and cleared
    assert all(e["rule"] == "pain" for e in events)


def test_logger_killed_and_restarted_writes_the_exact_gap(demo_small: DemoBuild, tmp_path: Path,
                                                          free_endpoint: str) -> None:
    logged, local = tmp_path / "logged.csv", tmp_path / "local.csv"
    monitor, logger = monitor_with_logger(demo_small, free_endpoint, local, logged,
                                          realtime=True)
    wait_rows(logged, 8)
    logger.send_signal(signal.SIGKILL)
    logger.wait(10)
    time.sleep(2.5)  # at least one sample goes by unlogged
    logger = start_logger(free_endpoint, logged)
    assert monitor.wait(60) and monitor.error is None
    time.sleep(1.0)
    logger.send_signal(signal.SIGINT)
    assert logger.wait(20) == 0
    everything = [int(r["seq"]) for r in read_rows(local)]
    assert everything == list(range(1, len(everything) + 1))  # in-process: nothing lost
    lines = logged.read_text().splitlines()
    assert all(len(next(csv.reader([line]))) == len(CSV_COLUMNS) for line in lines)
    have = {int(r["seq"]) for r in read_rows(logged)}
    gaps = read_rows(logged.with_suffix(".gaps.csv"))
    in_gaps = {s for g in gaps for s in range(int(g["first_missing"]), int(g["last_missing"]) + 1)}
    assert in_gaps and not in_gaps & have
    assert have | in_gaps == set(everything)


def test_grayscale_and_odd_sized_frames_are_scored(demo_small: DemoBuild, tmp_path: Path) -> None:
    """Infrared cameras give grey frames; odd sizes must still split into four cubicles."""
    folder = tmp_path / "frames"
    folder.mkdir()
    colour = cubicle_frame([(1, 1, 1, 1, 1)] * 4, 7)
    cv2.imwrite(str(folder / "grey.png"), cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "odd.png"), cv2.resize(colour, (641, 357)))
    out = tmp_path / "s.csv"
    assert main(["score", str(folder), "--out", str(out), "--models",
                 str(demo_small.folder)]) == 0
    rows = read_rows(out)
    assert sorted(r["mouse"] for r in rows) == sorted(
        f"{name}-c{k}" for name in ("grey", "odd") for k in range(1, 5))
    assert [r["status"] for r in rows] == ["scored"] * 8


def test_a_sink_that_cannot_open_closes_the_ones_before_it(demo_small: DemoBuild,
                                                           tmp_path: Path,
                                                           free_endpoint: str) -> None:
    """The port is taken: the CSV opened before it is closed again, no camera starts, and the
    port is the error the user sees."""
    blocker = Publisher(free_endpoint)
    out = tmp_path / "s.csv"
    config = build_config({**demo_small.config(), "bus": {"endpoint": free_endpoint}})
    monitor = Monitor(config, Models.load(config), out, realtime=False, replay=True)
    try:
        with pytest.raises(BusError, match=f"{free_endpoint} is already in use"):
            monitor.start()
    finally:
        blocker.close()
    assert out.read_text().splitlines() == [",".join(CSV_COLUMNS)]  # header only: nothing ran
    still_open = {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
    assert str(out.resolve()) not in still_open


def test_a_pager_that_cannot_run_stops_the_monitor_at_start(
        demo_small: DemoBuild, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before, such a replay raised and cleared alerts, paged no one and exited 0."""
    config = write_config(tmp_path / "lab.yaml", demo_small,
                          "{on_alert: [/nonexistent/pager, --urgent]}")
    assert main(["check-config", str(config)]) == 2
    assert main(["replay", str(demo_small.videos[0]), "--config", str(config),
                 "--out", str(tmp_path / "s.csv"), "--no-dashboard"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(
        f"{config}: alerts.on_alert: /nonexistent/pager: no such program" in line for line in err)
    assert not (tmp_path / "s.csv").exists()


def test_a_pager_that_keeps_failing_raises_hook_failing(demo_small: DemoBuild,
                                                       tmp_path: Path) -> None:
    frame = cubicle_frame([(2, 2, 2, 2, 2)] * 4, 3)
    failing = json.dumps([sys.executable, "-c", "import sys; sys.exit('pager refused')"])
    config_path = write_config(tmp_path / "lab.yaml", demo_small,
                               f"{{defaults: {{threshold: 0, window: 1, min_valid: 1}}, "
                               f"on_alert: {failing}}}")
    config = load_config(config_path)
    out = tmp_path / "s.csv"
    camera = FakeCamera([frame] * 400)
    monitor = Monitor(config, Models.load(config), out, opener=lambda _s: camera)
    view = View(monitor)
    monitor.start()
    view.wait_for(lambda v: any(e.rule == "hook_failing" for e in v.of(AlertEvent)))
    monitor.request_stop()
    assert monitor.wait(20) and monitor.error is None
    view.close()
    (event,) = [e for e in view.of(AlertEvent) if e.rule == "hook_failing"]
    assert event.mouse == "*" and event.event == "raised" and event.value >= 3
    assert "exited with 1: pager refused" in event.detail
    rows = [r for r in read_rows(out.with_suffix(".alerts.csv")) if r["rule"] == "hook_failing"]
    assert [(r["mouse"], r["event"]) for r in rows] == [("*", "raised")]
    status = view.of(StatusReport)[-1]
    assert status.hooks.failed >= 3 and status.hooks.ok == 0
    assert "alert hook failing" in status.notice


def test_score_with_nothing_readable_is_an_error(demo_small: DemoBuild, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Before, both wrote an empty CSV and exited 0."""
    folder = tmp_path / "frames"
    folder.mkdir()
    base = ["--models", str(demo_small.folder), "--out", str(tmp_path / "s.csv")]
    assert main(["score", str(folder), *base]) == 2
    assert f"{folder}: no images (.png" in capsys.readouterr().err
    for name in ("a.png", "b.jpg"):
        (folder / name).write_bytes(b"not an image")
    assert main(["score", str(folder), *base]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"none of the 2 images could be read ({folder})" in err
    assert f"{folder / 'a.png'}: not a readable image, skipped" in err
