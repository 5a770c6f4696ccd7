"""Evidence: the crops and frames the monitor keeps, named in its records and alerts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from demo.build import DemoBuild
from monitor import evidence as evidence_module
from monitor.capture import Frame
from monitor.cli import main
from monitor.config import Camera, Evidence, build_config
from monitor.evidence import PINNED, EvidenceWriter
from monitor.pipeline import Analyzer, Models, Monitor
from monitor.schema import AlertEvent, ScoreRecord, StatusReport
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
    one = writer(tmp_path, int(3.5 * size))  # the next run: the files before count too
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
    one.close()
    one = writer(tmp_path, 10)
    one.pin([first.crop])
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
    assert pin(tmp_path / "ev", [path]) == 1
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


def test_a_frames_index_cut_by_a_crash_goes_on_on_a_line_of_its_own(tmp_path: Path) -> None:
    (tmp_path / "ev").mkdir()
    index = tmp_path / "ev" / "frames.csv"
    index.write_text(",".join(evidence_module.FRAME_COLUMNS) + "\r\n1.0,2.0,cam0,3,fir")
    one = writer(tmp_path, 10**9)
    records = [crop_record(k).model_copy(update={"cubicle": k + 1}) for k in range(4)]
    assert one.keep_frame(Camera(name="cam0", source=0), noise(0), records, "first")
    one.close()
    rows = read_rows(index)
    assert [r["reason"] for r in rows] == ["fir", "first"]  # the torn row stays apart
    assert (tmp_path / "ev" / rows[1]["image"]).is_file()
