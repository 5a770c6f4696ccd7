"""Evidence: the crops and frames the monitor keeps, named in its records and alerts."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from demo.build import DemoBuild
from monitor.capture.workers import Frame
from monitor.cli import main
from monitor.config import Camera, Evidence, build_config
from monitor.outputs import evidence as evidence_module
from monitor.outputs.evidence import PINNED, EvidenceWriter, append_pinned, read_pinned
from monitor.pipeline import Monitor
from monitor.schema import AlertEvent, ScoreRecord, StatusReport
from monitor.scoring.analyzer import Analyzer, Models
from tests.fakes import FakeCamera
from tests.monitor_util import View, run_until
from tests.test_pipeline import cubicle_frame, read_rows, replay_args


def camera_monitor(demo: DemoBuild, frames: list[np.ndarray | None], out: Path,
                   **raw: object) -> Monitor:
    config = build_config({**demo.config(), "cameras": [{"name": "cam0", "source": 0}],
                           "sampling": {"every_s": 0.05, "burst": 1},
                           "bus": {"enabled": False}, **raw})
    camera = FakeCamera(frames)
    return Monitor(config, Models.load(config), out, opener=lambda _s: camera)


def test_replay_keeps_the_crop_it_scored_for_every_scored_row(demo_small: DemoBuild,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "runs" / "s.csv"
    assert main(replay_args(demo_small, out)) == 0
    rows = read_rows(out)
    scored = [r for r in rows if r["status"] == "scored"]
    assert scored and all(r["crop"] for r in scored)
    assert not any(r["crop"] for r in rows if r["status"] != "scored")
    size = Models.load(build_config(demo_small.config())).scorer.info.input_size
    for row in scored:
        path = out.parent / row["crop"]
        assert path.parts[-4:-2][0] == "crops" and path.parent.name == row["mouse"]
        image = cv2.imread(str(path))
        assert image is not None and image.shape == (size, size, 3)
    kept = [p.name for p in (out.parent / "evidence").rglob("*") if p.is_file()]
    assert not [name for name in kept if name.endswith(".tmp")]  # no half-written file left
    assert len([name for name in kept if name.endswith(".jpg")]) == len(scored) + 2  # + frames


def test_the_crop_kept_is_the_one_scored(demo_small: DemoBuild, tmp_path: Path) -> None:
    frame = cubicle_frame([(0, 0, 0, 0, 0), (2, 2, 2, 2, 2), (1, 1, 1, 1, 1), (0, 1, 2, 1, 0)], 1)
    out = tmp_path / "s.csv"
    records = run_until(camera_monitor(demo_small, [frame], out), 4).of(ScoreRecord)
    config = build_config({**demo_small.config(), "cameras": [{"name": "cam0", "source": 0}]})
    analyzer = Analyzer(config, Models.load(config))
    crops = [crop for _, crop in analyzer.analyze([Frame("cam0", frame, 0.0, 0.0, 0.0, 0)])]
    assert [r.mouse for r in records[:4]] == [f"cam0-c{k}" for k in range(1, 5)]
    for record, crop in zip(records[:4], crops, strict=True):
        assert crop is not None and record.crop
        kept = cv2.cvtColor(cv2.imread(str(out.parent / record.crop)), cv2.COLOR_BGR2RGB)
        # JPEG at quality 90 moves pixels a little; another mouse's face moves them a lot
        assert np.abs(kept.astype(int) - crop.astype(int)).mean() < 4
        others = [c for c in crops if c is not crop and c is not None]
        assert all(np.abs(kept.astype(int) - c.astype(int)).mean() > 8 for c in others)


def test_whole_frames_are_kept_with_their_cubicles(demo_small: DemoBuild, tmp_path: Path) -> None:
    frame = cubicle_frame([(1, 1, 1, 1, 1), None, (1, 1, 1, 1, 1), (1, 1, 1, 1, 1)], 4)
    out = tmp_path / "s.csv"
    view = run_until(camera_monitor(demo_small, [frame] * 3, out), 12)
    records = view.of(ScoreRecord)
    index = read_rows(tmp_path / "evidence" / "frames.csv")
    assert [row["reason"] for row in index] == ["first"]  # then hourly: not within this run
    (row,) = index
    image = cv2.imread(str(tmp_path / "evidence" / row["image"]))
    assert image.shape[:2] == frame.shape[:2] == (int(row["height"]), int(row["width"]))
    cubicles = json.loads(row["cubicles"])
    assert [c["mouse"] for c in cubicles] == [r.mouse for r in records[:4]]
    assert cubicles[1]["box"] is None  # the empty cubicle: no face suggested
    for cubicle in (cubicles[0], cubicles[2], cubicles[3]):
        x0, y0, x1, y1 = cubicle["region"]
        x, y, w, h = cubicle["box"]
        assert x0 <= x < x + w <= x1 + 1 and y0 <= y < y + h <= y1 + 1  # inside its cubicle
    status = view.of(StatusReport)[-1]
    assert status.evidence_folder == str(tmp_path / "evidence")
    assert status.evidence_files == 3 * 3 + 1 and status.evidence_error == ""
    assert status.evidence_bytes == sum(
        p.stat().st_size for p in (tmp_path / "evidence").rglob("*.jpg"))


def test_alerts_name_their_evidence_and_it_is_pinned(demo_small: DemoBuild,
                                                     tmp_path: Path) -> None:
    faces = cubicle_frame([(2, 2, 2, 2, 2)] * 4, 3)
    empty = cubicle_frame([None] * 4, 3)
    out = tmp_path / "s.csv"
    alerts = {"defaults": {"threshold": 0, "window": 2, "min_valid": 2, "no_face_after_s": 0.1}}
    monitor = camera_monitor(demo_small, [faces] * 3 + [empty] * 6, out, alerts=alerts)
    view = run_until(monitor, 36, also=lambda v: len(
        [e for e in v.of(AlertEvent) if e.rule == "no_face" and e.event == "raised"]) == 4)
    raised = [e for e in view.of(AlertEvent) if e.event == "raised"]
    pain = [e for e in raised if e.rule == "pain"]
    no_face = [e for e in raised if e.rule == "no_face"]
    assert len(pain) == 4 and len(no_face) == 4
    crops = {r.seq: r.crop for r in view.of(ScoreRecord)}
    for event in pain:  # the two crops of the window it was raised on
        own = [r.crop for r in view.of(ScoreRecord) if r.mouse == event.mouse and r.crop]
        assert event.evidence == tuple(own[:2]) and set(event.evidence) <= set(crops.values())
    frames = {e.evidence for e in no_face}
    assert len(frames) == 1  # one frame, kept once, named by the alert of each mouse in it
    (frame_path,) = next(iter(frames))
    assert cv2.imread(str(tmp_path / frame_path)) is not None
    index = read_rows(tmp_path / "evidence" / "frames.csv")
    assert [r["reason"] for r in index] == ["first", "no_face"]
    pinned = set((tmp_path / "evidence" / PINNED).read_text().split())
    named = {str(Path(p).relative_to("evidence").as_posix())
             for e in raised for p in e.evidence}
    assert named and pinned == named
    rows = read_rows(out.with_suffix(".alerts.csv"))
    assert {r["evidence"] for r in rows if r["event"] == "raised"} == {
        ";".join(e.evidence) for e in raised}


def writer(tmp_path: Path, budget_bytes: int) -> EvidenceWriter:
    return EvidenceWriter(tmp_path / "ev", tmp_path, Evidence(budget_gb=budget_bytes / 1e9))


def counted(one: EvidenceWriter) -> EvidenceWriter:
    """The writer once it has counted the files kept before (a scan of its own thread)."""
    assert one.wait_counted(10)
    return one


def crop_record(seq: int) -> ScoreRecord:
    return ScoreRecord(publisher="p", seq=seq, wall_time=time.time(), mono_time=0.0,
                       source_time=float(seq), frame_index=seq, camera="cam0", cubicle=1,
                       mouse="M1", status="scored", instance="run1")


def noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)


def test_the_budget_removes_the_oldest_but_never_a_pinned_file(tmp_path: Path) -> None:
    one = writer(tmp_path, 10**9)
    records = [one.keep_crop(crop_record(seq), noise(seq)) for seq in range(1, 4)]
    one.close()
    size = max(p.stat().st_size for p in (tmp_path / "ev").rglob("*.jpg"))
    one = counted(writer(tmp_path, int(3.5 * size)))  # the next run: the files before count
    assert one.counts().files == 3
    one.pin([records[0].crop])  # the oldest is what an alert named
    later = [one.keep_crop(crop_record(seq), noise(seq)) for seq in range(4, 6)]
    one.close()
    left = {p.name for p in (tmp_path / "ev").rglob("*.jpg")}
    assert left == {Path(r.crop).name for r in (records[0], later[0], later[1])}
    assert one.counts().files == 3 and one.counts().error == ""


def test_a_budget_full_of_pinned_files_says_so(tmp_path: Path) -> None:
    one = writer(tmp_path, 10**9)
    first = one.keep_crop(crop_record(1), noise(1))
    one.pin([first.crop])  # an alert named it; pinned before the next run trims at its start
    one.close()
    one = writer(tmp_path, 10)
    one.keep_crop(crop_record(2), noise(2))
    one.close()
    assert "full of files alerts or labels refer to" in one.counts().error
    assert one.counts().dropped == 1 and (tmp_path / first.crop).exists()


def test_a_refusing_disk_stops_evidence_not_scoring(demo_small: DemoBuild, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evidence_module, "RETRY_S", 0.3)
    frame = cubicle_frame([(1, 1, 1, 1, 1)] * 4, 2)
    out = tmp_path / "s.csv"
    (tmp_path / "evidence").mkdir()
    (tmp_path / "evidence" / "crops").write_text("a file where a folder must go")
    monitor = camera_monitor(demo_small, [frame] * 2000, out)
    view = View(monitor)
    monitor.start()

    def status() -> StatusReport:
        return view.of(StatusReport)[-1]

    def refused(v: View) -> bool:  # paused, and a scored record went out without a crop
        return bool(v.of(StatusReport)) and "evidence paused, scoring goes on" in \
            status().notice and any(r.status == "scored" and not r.crop
                                    for r in v.of(ScoreRecord))

    view.wait_for(refused)
    assert "evidence paused" in view.of(StatusReport)[-1].evidence_error
    (tmp_path / "evidence" / "crops").unlink()  # room again
    view.wait_for(lambda v: "evidence kept again" in status().notice)
    monitor.request_stop()
    assert monitor.wait(10) and monitor.error is None
    view.close()
    rows = read_rows(out)
    assert len(rows) == monitor.records  # every record reached the CSV all the same
    kept = [r for r in rows if r["crop"]]
    assert kept and len(kept) < len(rows)
    assert all((tmp_path / r["crop"]).exists() for r in kept[-4:])
    assert status().evidence_dropped > 0 and status().evidence_error == ""


def test_no_evidence_when_turned_off(demo_small: DemoBuild, tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    frame = cubicle_frame([(1, 1, 1, 1, 1)] * 4, 2)
    view = run_until(camera_monitor(demo_small, [frame], out, evidence={"enabled": False}), 4)
    assert not (tmp_path / "evidence").exists()
    assert all(r["crop"] == "" for r in read_rows(out))
    assert view.of(StatusReport)[-1].evidence_folder == ""


def test_an_evidence_folder_that_cannot_be_made_is_one_line(demo_small: DemoBuild,
                                                            tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    out = tmp_path / "s.csv"
    blocker = tmp_path / "blocked"
    blocker.write_text("")
    config = tmp_path / "lab.yaml"
    config.write_text(f"evidence: {{folder: {blocker / 'ev'}}}\n")
    assert main(replay_args(demo_small, out, "--config", str(config))) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (f"mgs-monitor: error: {blocker / 'ev'}: cannot keep evidence here: Not a "
                    "directory; set evidence.folder, or evidence.enabled: false")
    assert read_rows(out) == []  # the CSV was opened (header only) and closed again


@pytest.mark.parametrize(("value", "message"), [
    ("{budget_gb: 0}", "evidence.budget_gb"),
    ("{frame_every: 60}", "evidence.frame_every"),
])
def test_bad_evidence_settings_name_the_key(demo_small: DemoBuild, tmp_path: Path, value: str,
                                            message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "lab.yaml"
    config.write_text(f"evidence: {value}\n")
    assert main(replay_args(demo_small, tmp_path / "s.csv", "--config", str(config))) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_no_evidence_flag(demo_small: DemoBuild, tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    assert main(replay_args(demo_small, out, "--no-evidence")) == 0
    rows = read_rows(out)
    assert rows and all(r["crop"] == "" for r in rows)
    assert not (tmp_path / "evidence").exists()


def test_frames_are_due_by_the_session_clock(tmp_path: Path) -> None:
    """Video time in replay, as alerts use: a fast replay of a day keeps a frame each hour."""
    one = writer(tmp_path, 10**9)
    camera = Camera(name="cam0", source=0)
    records = [crop_record(k).model_copy(update={"cubicle": k + 1, "source_time": 7200.0})
               for k in range(4)]
    assert one.frame_due("cam0", 7200.0) == "first"
    assert one.keep_frame(camera, noise(0), records, "first")
    assert one.frame_due("cam0", 7200.0 + 3599) == ""
    assert one.frame_due("cam0", 7200.0 + 3600) == "hourly"
    one.close()
    (row,) = read_rows(tmp_path / "ev" / "frames.csv")
    assert row["reason"] == "first" and float(row["source_time"]) == 7200.0


def test_a_file_mgs_label_pins_is_kept_from_the_budget(tmp_path: Path) -> None:
    """Both write pinned.txt: the monitor must read mgs-label's lines as its own."""
    from label.evidence import pin

    one = writer(tmp_path, 10**9)
    first = one.keep_crop(crop_record(1).model_copy(update={"mouse": "cage 3/ü"}), noise(1))
    one.close()
    path = tmp_path / first.crop
    assert path.is_file() and path.parent.name == "cage_3_ü"  # one folder, inside evidence
    assert pin(tmp_path / "ev", [path]) == ([path.relative_to(tmp_path / "ev").as_posix()], 1)
    one = writer(tmp_path, 10)
    one.keep_crop(crop_record(2), noise(2))
    one.close()
    assert path.is_file()
    assert "full of files alerts or labels refer to" in one.counts().error


def test_a_fault_on_the_writer_thread_is_counted_and_writing_goes_on(tmp_path: Path) -> None:
    one = writer(tmp_path, 10**9)
    bad = one.keep_crop(crop_record(1), np.zeros((0, 0, 3), np.uint8))  # cv2 refuses it
    good = one.keep_crop(crop_record(2), noise(2))
    one.close()
    assert not (tmp_path / bad.crop).exists() and (tmp_path / good.crop).is_file()
    counts = one.counts()
    assert counts.dropped == 1 and counts.files == 1 and counts.error == ""


def test_the_hook_gets_the_evidence_as_absolute_paths(demo_small: DemoBuild,
                                                      tmp_path: Path) -> None:
    said = tmp_path / "paged.txt"
    hook = tmp_path / "page.sh"
    hook.write_text(f'#!/bin/sh\necho "$MGS_RULE $MGS_EVENT $MGS_EVIDENCE" >> {said}\n')
    hook.chmod(0o755)
    faces = cubicle_frame([(2, 2, 2, 2, 2)] * 4, 3)
    alerts = {"defaults": {"threshold": 0, "window": 2, "min_valid": 2},
              "on_alert": [str(hook)]}
    out = tmp_path / "runs" / "s.csv"
    monitor = camera_monitor(demo_small, [faces] * 3, out, alerts=alerts)
    run_until(monitor, 8, also=lambda v: said.exists() and said.read_text().count("\n") == 4)
    for line in said.read_text().splitlines():
        rule, event, evidence = line.split(" ", 2)
        paths = evidence.split(";")
        assert (rule, event, len(paths)) == ("pain", "raised", 2)
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in paths)
        assert all(Path(p).is_relative_to(out.parent / "evidence") for p in paths)


def test_a_frames_index_row_cut_by_a_crash_is_cut_back_to_the_last_line_end(
        tmp_path: Path) -> None:
    """A cut row can end inside the quoted cubicles: a line end added after it would make the
    next row part of that field."""
    (tmp_path / "ev").mkdir()
    index = tmp_path / "ev" / "frames.csv"
    index.write_text(",".join(evidence_module.FRAME_COLUMNS) +
                     '\r\n1.0,2.0,cam0,3,first,frames/d/cam0/a.jpg,64,64,"[{""cubicle"": 1, ""mo')
    one = writer(tmp_path, 10**9)
    records = [crop_record(k).model_copy(update={"cubicle": k + 1}) for k in range(4)]
    assert one.keep_frame(Camera(name="cam0", source=0), noise(0), records, "first")
    one.close()
    (row,) = read_rows(index)  # the torn row is gone, the new one whole
    assert row["reason"] == "first" and len(json.loads(row["cubicles"])) == 4
    assert (tmp_path / "ev" / row["image"]).is_file()


def until(condition: Callable[[], object], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition(), f"not within {seconds} s"


def test_pins_that_cannot_be_read_remove_nothing_until_they_can(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EACCES, EIO, a stale NFS handle: the pins read before must not be trusted, and the read
    is tried again (it was recorded as done before it was, and a pinned crop went)."""
    monkeypatch.setattr(evidence_module, "RETRY_S", 0.05)
    one = writer(tmp_path, 10**9)
    first, second = (one.keep_crop(crop_record(seq), noise(seq)) for seq in (1, 2))
    one.close()
    size = max(p.stat().st_size for p in (tmp_path / "ev").rglob("*.jpg"))
    append_pinned(tmp_path / "ev", [Path(first.crop).relative_to("ev").as_posix()])
    one = writer(tmp_path, int(2.5 * size))
    until(lambda: one.counts().files == 2)
    opened = Path.open
    refuse = True

    def open_(path: Path, *args: Any, **kwargs: Any) -> Any:
        if refuse and path.name == PINNED:
            raise PermissionError(13, "Permission denied", str(path))
        return opened(path, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_)
    (tmp_path / "ev" / PINNED).touch()  # changed: read again
    one.keep_crop(crop_record(3), noise(3))
    until(lambda: one.counts().files == 3 or "Permission denied" in one.counts().error)
    time.sleep(0.2)
    assert "cannot read" in one.counts().error and str(tmp_path / "ev" / PINNED) in \
        one.counts().error
    assert (tmp_path / first.crop).exists() and (tmp_path / second.crop).exists()
    refuse = False
    time.sleep(0.1)  # the pause after a refusal
    fourth = one.keep_crop(crop_record(4), noise(4))
    one.close()
    left = {p.name for p in (tmp_path / "ev").rglob("*.jpg")}
    assert Path(first.crop).name in left and Path(fourth.crop).name in left
    assert Path(second.crop).name not in left and one.counts().error == ""


def test_a_pin_after_a_cut_write_is_a_line_of_its_own(tmp_path: Path) -> None:
    folder = tmp_path / "ev"
    (folder / "crops" / "d" / "M1").mkdir(parents=True)
    (folder / PINNED).write_text("crops/d/M1/a-000001.jpg\ncrops/d/M1/a-0000")  # cut mid-line
    append_pinned(folder, ["crops/d/M1/a-000002.jpg"])
    assert (folder / PINNED).read_text() == "crops/d/M1/a-000001.jpg\ncrops/d/M1/a-000002.jpg\n"
    (folder / "crops" / "d" / "M1" / "typed.jpg").write_bytes(b"")
    with (folder / PINNED).open("a") as handle:
        handle.write("crops/d/M1/typed.jpg")  # a whole path, typed without a line end
    append_pinned(folder, ["crops/d/M1/a-000003.jpg"])
    assert read_pinned(folder) == {"crops/d/M1/a-000001.jpg", "crops/d/M1/a-000002.jpg",
                                   "crops/d/M1/typed.jpg", "crops/d/M1/a-000003.jpg"}


def test_pins_are_appended_under_a_lock(tmp_path: Path) -> None:
    """mgs-label and the monitor append at once, and a release rewrites the file: each waits
    for the other."""
    folder = tmp_path / "ev"
    folder.mkdir()
    from monitor.outputs.pinned import LOCK

    with (folder / LOCK).open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        thread = threading.Thread(target=append_pinned, args=(folder, ["crops/a.jpg"]))
        thread.start()
        time.sleep(0.3)
        assert not (folder / PINNED).exists() or (folder / PINNED).read_text() == ""
        fcntl.flock(held, fcntl.LOCK_UN)
        thread.join(5)
    assert read_pinned(folder) == {"crops/a.jpg"}


def test_one_monitor_per_evidence_folder(demo_small: DemoBuild, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A second monitor on one folder deleted the first one's files with its own budget;
    it is refused at start, naming the folder and the monitor holding it."""
    out = tmp_path / "s.csv"
    frame = cubicle_frame([(1, 1, 1, 1, 1)] * 4, 2)
    first = camera_monitor(demo_small, [frame] * 2000, tmp_path / "a.csv", publisher="lab-a")
    first.start()
    try:
        assert main(replay_args(demo_small, out)) == 2
    finally:
        first.request_stop()
        assert first.wait(20) and first.error is None
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (f"mgs-monitor: error: {tmp_path / 'evidence'}: evidence folder in use by "
                    f"another monitor (pid {os.getpid()} on {socket.gethostname()}, publisher "
                    "lab-a); give each monitor its own evidence.folder")
    assert main(replay_args(demo_small, out)) == 0  # let go at close


@pytest.mark.slow
def test_memory_does_not_grow_with_the_files_kept(tmp_path: Path) -> None:
    """The budget's index held ~1.1 KB of RAM per file kept (~0.4 GB at the default 5 GB)."""
    folder = tmp_path / "ev" / "crops" / "2024-06-10" / "M1"
    folder.mkdir(parents=True)
    for k in range(20_000):
        (folder / f"run0-{k:06d}.jpg").write_bytes(b"")
    tracemalloc.start(30)
    try:
        one = writer(tmp_path, 10**9)
        until(lambda: one.counts().files == 20_000, 60)
        ours = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, f"{Path(evidence_module.__file__).parent}/*",
                                all_frames=True)])
    finally:
        tracemalloc.stop()
    one.keep_crop(crop_record(1), noise(1))
    one.close()
    assert one.counts().files == 20_001
    held = sum(stat.size for stat in ours.statistics("filename"))
    assert held < 1_000_000, f"{held / 1e6:.1f} MB held for 20,000 files kept"


def test_a_restart_goes_on_from_the_index_and_a_crash_counts_again(tmp_path: Path) -> None:
    """A monitor restarted (a config change, systemd) does not count a large folder again;
    one that crashed does, since its index may miss what it wrote last."""
    from monitor.outputs.evidence_budget import Budget

    one = writer(tmp_path, 10**9)
    for seq in (1, 2):
        one.keep_crop(crop_record(seq), noise(seq))
    one.close()
    again = Budget(tmp_path / "ev", 10**9)
    assert again.scanned and (again.files, again.total) == (2, one.counts().bytes)
    (tmp_path / "ev" / "crops" / "stray.jpg").write_bytes(b"x")  # never seen by the index
    crashed = Budget(tmp_path / "ev", 10**9)  # the one before was never closed
    assert not crashed.scanned
    while not crashed.scan_step():
        pass
    assert crashed.files == 3
    crashed.close()


def test_parts_of_files_a_crash_left_are_removed_at_start(tmp_path: Path) -> None:
    crops = tmp_path / "ev" / "crops" / "2024-06-10" / "M1"
    frames = tmp_path / "ev" / "frames" / "2024-06-10" / "cam0"
    for folder in (crops, frames):
        folder.mkdir(parents=True)
        (folder / "run0-000001.jpg.tmp").write_bytes(b"half a JPEG")
    (crops / "run0-000002.jpg").write_bytes(b"whole")
    writer(tmp_path, 10**9).close()
    left = sorted(p.relative_to(tmp_path / "ev").as_posix()
                  for p in (tmp_path / "ev").rglob("*") if p.is_file())
    assert "crops/2024-06-10/M1/run0-000002.jpg" in left
    assert not [name for name in left if name.endswith(".tmp")]


def test_the_monitor_starts_while_the_evidence_kept_before_is_counted(
        demo_small: DemoBuild, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The count of a large folder (~47 s at 4 million files) ran before the publisher opened
    and before READY: no status meanwhile, and systemd's start timeout could kill it."""
    from monitor.outputs import evidence_budget

    old = tmp_path / "evidence" / "crops" / "2024-06-10" / "M9"
    old.mkdir(parents=True)
    for k in range(3):
        (old / f"run0-{k:06d}.jpg").write_bytes(b"x" * 4000)
        os.utime(old / f"run0-{k:06d}.jpg", (1_718_000_000 + k, 1_718_000_000 + k))
    gate = threading.Event()
    walk = evidence_budget._files

    def slow(folders: list[Path]) -> Iterator[os.DirEntry[str]]:
        for n, entry in enumerate(walk(folders)):
            if n == 1:
                gate.wait(30)  # a large, slow disk
            yield entry

    monkeypatch.setattr(evidence_budget, "SCAN_STEP", 1)
    monkeypatch.setattr(evidence_budget, "_files", slow)
    frame = cubicle_frame([(1, 1, 1, 1, 1)] * 4, 2)
    monitor = camera_monitor(demo_small, [frame] * 2000, tmp_path / "s.csv",
                             evidence={"budget_gb": 20e-6})
    view = View(monitor)
    starting = threading.Thread(target=monitor.start)
    starting.start()
    starting.join(10)
    assert not starting.is_alive()  # started (READY follows) while the count goes on

    def said(v: View, text: str) -> bool:
        return any(text in s.notice for s in v.of(StatusReport))

    try:
        view.wait_for(lambda v: said(v, "scanning the evidence kept before") and
                      len(v.of(ScoreRecord)) >= 8)
        assert all((old / f"run0-{k:06d}.jpg").exists() for k in range(3))  # none goes yet
        gate.set()
        view.wait_for(lambda v: said(v, "evidence kept before counted"))
    finally:
        gate.set()
        monitor.request_stop()
        assert monitor.wait(20)
        view.close()
    assert not any((old / f"run0-{k:06d}.jpg").exists() for k in range(3))  # the oldest went
    kept = sum(p.stat().st_size for p in (tmp_path / "evidence").rglob("*.jpg"))
    assert 0 < kept <= 20_000
