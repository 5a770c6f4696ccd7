"""`mgs-monitor snapshot`: one annotated picture per camera, made with the real models.

Only the camera device is faked (FakeCamera); videos and images are real files written and
read by OpenCV.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import synth
from demo.build import DemoBuild
from monitor.capture.workers import Frame
from monitor.cli import main
from monitor.config import MonitorConfig, build_config
from monitor.schema import ScoreRecord
from monitor.scoring.analyzer import Analyzer, Models
from monitor.scoring.faces import cubicle_pixels
from monitor.views.snapshot import run_snapshot, take_snapshots
from tests.fakes import FakeCamera

FOUR_FACES: list[synth.Levels | None] = [
    (0, 0, 0, 0, 0), (2, 2, 2, 2, 2), (1, 1, 1, 1, 1), (0, 1, 2, 1, 0)]


def cubicle_frame(levels: list[synth.Levels | None], seed: int) -> np.ndarray:
    frame, _ = synth.draw_array_frame(levels, np.random.default_rng(seed), 640, 360)
    return cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)


def config_for(demo: DemoBuild, sources: list[int | str], burst: int = 1) -> MonitorConfig:
    return build_config({**demo.config(), "bus": {"enabled": False},
                         "sampling": {"every_s": 120, "burst": burst},
                         "cameras": [{"name": f"cam{i}", "source": s}
                                     for i, s in enumerate(sources)]})


def analyzed(config: MonitorConfig, camera: str, image: np.ndarray) -> list[ScoreRecord]:
    """What the monitor's own Analyzer makes of the frame, for comparison."""
    analyzer = Analyzer(config, Models.load(config))
    now = time.time()
    return analyzer.process([Frame(camera, image, now, time.monotonic(), 0.0, 0)])


def assert_drawn_in_every_cubicle(picture: np.ndarray, frame: np.ndarray,
                                  config: MonitorConfig) -> None:
    assert picture.shape == frame.shape
    for cubicle in config.cameras[0].cubicle_list():
        x0, y0, x1, y1 = cubicle_pixels(frame.shape, cubicle)
        changed = np.any(picture[y0:y1, x0:x1] != frame[y0:y1, x0:x1], axis=2)
        assert changed.mean() > 0.02, cubicle.mouse  # outline, labels, status panel
        assert changed[:, 0].mean() > 0.5 and changed[:, -1].mean() > 0.5  # the outline


def test_snapshot_of_four_faces_matches_the_analyzer(
        demo_small: DemoBuild, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = cubicle_frame(FOUR_FACES, 1)
    config = config_for(demo_small, [0])
    assert run_snapshot(config, tmp_path / "shots",
                        opener=lambda _s: FakeCamera([frame])) == 0
    picture = cv2.imread(str(tmp_path / "shots" / "cam0.png"))
    assert picture is not None
    assert_drawn_in_every_cubicle(picture, frame, config)

    expected = analyzed(config, "cam0", frame)
    assert sum(r.status == "scored" for r in expected) >= 3
    shots = take_snapshots(config, tmp_path / "again", opener=lambda _s: FakeCamera([frame]))
    assert [(r.mouse, r.status, r.levels, r.total) for r in shots[0].records] == [
        (r.mouse, r.status, r.levels, r.total) for r in expected]
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith(f"cam0: {tmp_path / 'shots' / 'cam0.png'}")
    found = sum(r.status != "no_face" for r in expected)
    assert f"faces {found}/4" in out[0]
    for record in expected:
        total = f" {record.total}" if record.total is not None else ""
        assert f"{record.mouse} {record.status}{total}" in out[0]


def test_a_cubicle_without_a_face_is_no_face(demo_small: DemoBuild, tmp_path: Path) -> None:
    frame = cubicle_frame([FOUR_FACES[0], None, FOUR_FACES[2], FOUR_FACES[3]], 2)
    config = config_for(demo_small, [0])
    shot, = take_snapshots(config, tmp_path, fmt="jpg", opener=lambda _s: FakeCamera([frame]))
    statuses = {r.mouse: r.status for r in shot.records}
    assert statuses["cam0-c2"] == "no_face"
    assert statuses == {r.mouse: r.status for r in analyzed(config, "cam0", frame)}
    assert "cam0-c2 no_face" in shot.line() and shot.faces == sum(
        s != "no_face" for s in statuses.values())
    assert shot.path == tmp_path / "cam0.jpg"
    picture = cv2.imread(str(shot.path))
    assert picture is not None and picture.shape == frame.shape


def test_the_sharpest_frame_of_the_burst_is_kept(demo_small: DemoBuild, tmp_path: Path) -> None:
    sharp = cubicle_frame(FOUR_FACES, 3)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 4)
    config = config_for(demo_small, [0], burst=3)
    shot, = take_snapshots(config, tmp_path,
                           opener=lambda _s: FakeCamera([blurred, sharp, blurred]))
    expected = analyzed(config, "cam0", sharp)
    assert [(r.status, r.levels) for r in shot.records] == [
        (r.status, r.levels) for r in expected]


def test_a_camera_that_cannot_be_opened_is_one_line_and_the_others_go_on(
        demo_small: DemoBuild, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = cubicle_frame(FOUR_FACES, 1)
    cameras = {3: FakeCamera([], opened=False), 5: FakeCamera([frame]), 6: FakeCamera([None])}
    config = config_for(demo_small, [3, 5, 6])
    assert run_snapshot(config, tmp_path, opener=lambda s: cameras[int(s)]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "cam0 (source 3): no snapshot: cannot open the source",
        "cam2 (source 6): no snapshot: opened, but gave no frame"]
    assert captured.out.startswith(f"cam1: {tmp_path / 'cam1.png'}  faces ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam1.png"]
    assert all(camera.released for camera in cameras.values())


def write_video(path: Path, frame: np.ndarray, count: int = 3) -> None:
    height, width = frame.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 2.0, (width, height))
    assert writer.isOpened()
    for _ in range(count):
        writer.write(frame)
    writer.release()


def test_command_on_a_video_and_an_image_with_a_missing_one(
        demo_small: DemoBuild, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Real files through the real opener: each source one camera, as `replay` takes them."""
    video, image = tmp_path / "rack.mp4", tmp_path / "rack2.png"
    write_video(video, cubicle_frame(FOUR_FACES, 4))
    still = cubicle_frame([FOUR_FACES[1], FOUR_FACES[0], None, FOUR_FACES[2]], 5)
    assert cv2.imwrite(str(image), still)
    missing = tmp_path / "gone.mp4"
    out = tmp_path / "shots"
    code = main(["snapshot", str(video), str(missing), str(image), "--burst", "1",
                 "--models", str(demo_small.folder), "--out", str(out)])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"cam1 (source {missing}): no snapshot: no such video file"]
    lines = captured.out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["cam0", "cam2"]
    assert sorted(p.name for p in out.iterdir()) == ["cam0.png", "cam2.png"]

    decoded = cv2.VideoCapture(str(video)).read()[1]
    config = config_for(demo_small, [str(video), str(missing), str(image)])
    for line, camera, raw in ((lines[0], "cam0", decoded), (lines[1], "cam2", still)):
        picture = cv2.imread(str(out / f"{camera}.png"))
        assert picture is not None and picture.shape == raw.shape
        for record in analyzed(config, camera, raw):
            assert f"{record.mouse} {record.status}" in line
    assert "cam2-c3 no_face" in lines[1]


def test_command_with_a_config_names_its_cameras(demo_small: DemoBuild, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    video = tmp_path / "rack.mp4"
    write_video(video, cubicle_frame(FOUR_FACES, 6))
    lab = tmp_path / "lab.yaml"
    lab.write_text(
        "cameras:\n"
        "  - name: rack1\n"
        "    source: rack.mp4\n"
        "    cubicles:\n"
        "      - {mouse: M101, roi: [0.0, 0.0, 0.25, 1.0]}\n"
        "      - {mouse: M102, roi: [0.25, 0.0, 0.25, 1.0]}\n"
        "      - {mouse: M103, roi: [0.5, 0.0, 0.25, 1.0]}\n"
        "      - {mouse: M104, roi: [0.75, 0.0, 0.25, 1.0]}\n"
        f"models: {{scorer: {demo_small.folder / 'scorer.onnx'}, "
        f"localizer: {demo_small.folder / 'localizer.onnx'}}}\n")
    assert main(["snapshot", "--config", str(lab), "--out", str(tmp_path / "s")]) == 0
    line, = capsys.readouterr().out.splitlines()
    assert line.startswith(f"rack1: {tmp_path / 's' / 'rack1.png'}")
    assert all(f"M10{k} " in line for k in range(1, 5))


def test_bad_input_is_one_line(demo_small: DemoBuild, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["snapshot", "--config", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.yaml" in err
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["snapshot", "0", "--models", str(demo_small.folder),
                 "--out", str(blocker / "shots")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{blocker / 'shots'}: cannot make the snapshot folder" in err
    assert main(["snapshot", "--cameras", "0"]) == 2
    assert "--cameras 0: need at least one camera" in capsys.readouterr().err


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["snapshot", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "mgs-monitor snapshot --config lab.yaml" in out
    for option in ("--config", "--cameras", "--out", "--models", "--burst"):
        assert option in out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "mgs-monitor snapshot" in capsys.readouterr().out


def test_a_stream_password_is_not_printed(demo_small: DemoBuild, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = config_for(demo_small, ["rtsp://admin:s3cret@127.0.0.1:9/stream"])
    assert run_snapshot(config, tmp_path,
                        opener=lambda _s: FakeCamera([], opened=False)) == 2
    assert capsys.readouterr().err.splitlines() == [
        "cam0 (source rtsp://admin:***@127.0.0.1:9/stream): no snapshot: cannot open the source"]
