"""The README's "Your own model" section, run at tiny scale on the demo scene.

One lab's whole loop, each step through its real command line (`main([...])` / `cli([...])`
in-process, the labelling server as its own process on a loopback port):

  1. mgs-monitor replay       the demo videos with the DEMO models; evidence is kept (crops,
                              first frames) beside the score CSV
  2. mgs-label queue          a project of random and uncertain crops and cubicles to box
  3. mgs-label serve          two raters answer through the page's own HTTP API, from the
                              scene's ground truth; the API stays blind (the test alone reads
                              the project's items.csv to know which crop an opaque id is);
                              the agreement page shows their figures
  4. mgs-label export         labels.csv and boxes.csv, with the demo's pain/control mice
  5. mgs-train                tiny scorer, 2 folds of whole mice and the final fit;
     mgs-train-localizer      tiny localizer on the drawn boxes
  6. mgs-eval                 the report, with a pain cut-off chosen on validation mice
  7. mgs-export               refused, in one line, for models below their floors; with
                              --accept-weak scorer.onnx + localizer.onnx, metadata kind=trained,
                              the report's cut-off and figures, marked below the floor
  8. mgs-monitor replay       with --models of the export: rows carry the new model ids and
                              model_kind=trained; the start line shows the figures, that the
                              models are below the floor, and alerts at the report's cut-off

The models are far too small and briefly trained to score anything well: this checks that the
steps fit together and that what a rater posts is what training reads, not model quality; the
export gate says so.
"""

from __future__ import annotations

import csv
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import onnx
import pytest

from demo.build import DemoBuild
from export.cli import cli as export_cli
from export.gate import LOCALIZER_RECALL_FLOOR
from label.cli import main as label_main
from monitor.cli import main as monitor_main
from monitor.scoring.models import LOCALIZER, SCORER, OnnxModel
from monitor.units import UNITS
from tests.label_util import Browser, served, unpadded
from train.evaluate import cli as eval_cli
from train.labels import data_fingerprint, load_labels
from train.localizer import cli as localizer_cli
from train.train import cli as train_cli

RATERS = ("ann", "bob")
RANDOM, UNCERTAIN, FRAMES = 24, 8, 2
# What the page's JSON may carry (label/server.py, _task): nothing about mouse, camera or time.
TASK_KEYS = {"task", "done", "total", "skipped", "finished", "slot", "width", "height", "image",
             "suggestion"}
TINY_SCORER = ["--arch", "tiny", "--input-size", "32", "--weights", "none", "--epochs", "1",
               "--batch-size", "16", "--lr", "0.05", "--folds", "2"]
TINY_LOCALIZER = ["--input-size", "32", "--views", "2", "--epochs", "2", "--batch-size", "8"]

Levels = list[int | None]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def truth_of(demo: DemoBuild) -> dict[tuple[str, float], dict[str, str]]:
    """The scene's ground truth: (mouse, seconds into the video) -> that frame's row, whose
    units hold the levels the mouse's face was drawn with (`visible` 0: face hidden)."""
    return {(r["mouse"], round(float(r["source_time"]), 3)): r
            for r in read_csv(demo.folder / "truth.csv")}


def truth_levels(row: dict[str, str]) -> Levels:
    """What a rater who sees the true face answers: its levels, or all 'not scoreable' (x)
    when the face was hidden in that frame."""
    if row["visible"] != "1":
        return [None] * len(UNITS)
    return [int(row[unit]) for unit in UNITS]


def answer_faces(base: str, rater: Browser, items: dict[str, dict[str, str]],
                 source_truth: dict[Path, Levels], hidden: list[str]) -> dict[str, Levels]:
    """Every face in the rater's order, answered with the truth; item id -> first answer."""
    given: dict[str, Levels] = {}
    task = rater.json(base + "/api/task?task=face")
    seen = 0
    while not task["finished"]:
        assert set(task) <= TASK_KEYS, task
        text = json.dumps(task)
        assert not any(word in text for word in hidden), f"the page was told {text}"
        served = re.fullmatch(r"/image/([0-9a-f]{12})", task["image"])
        assert served, task["image"]
        item = items[served.group(1)]  # the test's own look-up in the project's items.csv
        source = Path(item["source"])
        image = rater.request(base + task["image"])[2]
        assert unpadded(image) == source.read_bytes()  # the crop, copied unchanged
        levels = source_truth[source]
        assert task["done"] == seen
        task = rater.json(base + "/api/answer", {"task": "face", "slot": task["slot"],
                                                 "levels": levels})
        given.setdefault(item["id"], levels)  # a repeat showing: the same answer again
        seen += 1
    return given


def answer_boxes(base: str, rater: str, browser: Browser, items: dict[str, dict[str, str]],
                 visible: dict[str, bool]) -> dict[str, list[float] | None]:
    """Every cubicle: ann accepts the localizer's suggestion, bob draws the same box by hand
    (the truth has no face box); no face where the scene hid it or no box was suggested."""
    given: dict[str, list[float] | None] = {}
    task = browser.json(base + "/api/task?task=box")
    while not task["finished"]:
        assert set(task) <= TASK_KEYS, task
        item = items[task["image"].rsplit("/", 1)[1]]
        suggestion = task["suggestion"]
        assert suggestion == ([float(v) for v in item["suggestion"].split()]
                              if item["suggestion"] else None)
        body: dict[str, Any] = {"task": "box", "slot": task["slot"]}
        if not visible[item["id"]] or suggestion is None:
            body["how"] = "no_face"
        elif rater == "ann":
            body["how"] = "suggested"
        else:
            body.update(how="drawn", box=suggestion)
        given[item["id"]] = suggestion if body["how"] != "no_face" else None
        task = browser.json(base + "/api/answer", body)
    return given


def test_own_model_loop(demo_small: DemoBuild, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    demo, started = demo_small, time.monotonic()
    truth = truth_of(demo)
    every = str(demo.spec.every_s)

    # 1. mgs-monitor replay cam0.mp4 cam1.mp4 --models DEMO --every 2 --out records/RUN.csv
    run = tmp_path / "records" / "RUN.csv"
    assert monitor_main(["replay", *map(str, demo.videos), "--models", str(demo.folder),
                         "--every", every, "--out", str(run), "--no-publish",
                         "--no-dashboard"]) == 0
    rows = read_csv(run)
    assert rows and "crop" in rows[0]
    scored = [r for r in rows if r["status"] == "scored"]
    assert len(scored) >= RANDOM + UNCERTAIN
    evidence = run.parent / "evidence"
    for row in rows:
        if row["status"] != "scored":
            assert row["crop"] == ""
            continue
        assert row["crop"].startswith("evidence/crops/")
        crop = cv2.imread(str(run.parent / row["crop"]))
        size = demo.spec.scorer_size  # kept as the scorer saw it
        assert crop is not None and crop.shape == (size, size, 3)
        assert (row["mouse"], round(float(row["source_time"]), 3)) in truth
    by_crop = {(run.parent / r["crop"]).resolve(): r for r in scored}
    frames = read_csv(evidence / "frames.csv")
    assert sorted(f["camera"] for f in frames) == [v.stem for v in demo.videos]
    for frame in frames:
        assert frame["reason"] == "first" and (evidence / frame["image"]).is_file()
        assert len(json.loads(frame["cubicles"])) == 4

    # 2. mgs-label queue records/RUN.csv --project study --random 24 --uncertain 8 --frames 2
    project = tmp_path / "study"
    assert label_main(["queue", str(run), "--project", str(project), "--random", str(RANDOM),
                       "--uncertain", str(UNCERTAIN), "--frames", str(FRAMES)]) == 0
    queued = read_csv(project / "items.csv")
    faces = [i for i in queued if i["task"] == "face"]
    boxes = [i for i in queued if i["task"] == "box"]
    assert Counter(i["selection"] for i in faces) == {"random": RANDOM, "uncertain": UNCERTAIN}
    assert len(boxes) == 4 * FRAMES
    repeats = sum(bool(i["repeat_id"]) for i in faces)
    assert repeats == round(0.1 * len(faces))
    pinned = set((evidence / "pinned.txt").read_text().split())
    for item in faces:
        source = Path(item["source"])
        assert source in by_crop and (project / item["image"]).is_file()
        assert source.relative_to(evidence.resolve()).as_posix() in pinned
        assert item["image"] == f"images/{item['id']}.jpg"  # named by its opaque id only

    # what a rater who knew the scene would answer, found from the project's files on disk:
    # item -> source crop -> score CSV row -> (mouse, source_time) -> truth
    source_truth: dict[Path, Levels] = {}
    for item in faces:
        row = by_crop[Path(item["source"])]
        assert (row["mouse"], row["camera"]) == (item["mouse"], item["camera"])
        source_truth[Path(item["source"])] = truth_levels(
            truth[(row["mouse"], round(float(row["source_time"]), 3))])
    by_id = {i["id"]: i for i in queued} | {i["repeat_id"]: i for i in faces if i["repeat_id"]}
    visible = {i["id"]: truth[(i["mouse"], round(float(i["source_time"]), 3))]["visible"] == "1"
               for i in boxes}
    mice = sorted({r["mouse"] for r in truth.values()})
    hidden = [*mice, *(v.stem for v in demo.videos), "uncertain", "random"]

    # 3. mgs-label serve study   (two raters, through the page's HTTP API)
    with served(project) as server:  # stopped by SIGTERM, as systemd does: exits 0
        browsers = {rater: server.rater(rater) for rater in RATERS}
        page = browsers["ann"].request(server.base + "/")[2].decode()
        assert not any(word in page for word in mice)
        posted = {rater: answer_faces(server.base, browsers[rater], by_id, source_truth, hidden)
                  for rater in RATERS}
        drawn = {rater: answer_boxes(server.base, rater, browsers[rater], by_id, visible)
                 for rater in RATERS}
        agreement = server.coordinator().request(server.base + "/agreement")[2].decode()
    for rater in RATERS:
        assert posted[rater] == {i["id"]: source_truth[Path(i["source"])] for i in faces}
        assert (f"<tr><td>{rater}</td><td>{len(faces) + repeats}</td><td>{len(boxes)}</td></tr>"
                in agreement)
    pair = re.search(r"<tr><td>ann &ndash; bob</td><td>(\d+)</td>(.*?)</tr>", agreement, re.S)
    assert pair, agreement
    figures = re.findall(r"<td>(\S+) <small>n=(\d+)</small></td>", pair.group(2))
    assert int(pair.group(1)) == len(faces) and len(figures) == len(UNITS) + 1
    complete = sum(all(v is not None for v in lv) for lv in posted["ann"].values())
    assert figures[-1] == ("1.00", str(complete))  # ICC of totals: the same truth twice
    assert all(value in ("1.00", "\u2013") for value, _ in figures)
    assert any(value == "1.00" for value, _ in figures[:-1])
    for rater in RATERS:  # each rater's repeats: the same answer both times
        assert re.search(rf"<tr><td>{rater}</td><td>{repeats}</td>\s*<td>100%", agreement)

    # 4. mgs-label export study --conditions mice.csv
    conditions = {r["mouse"]: "pain" if r["pain_mouse"] == "1" else "control"
                  for r in truth.values()}
    table = tmp_path / "mice.csv"
    table.write_text("mouse,condition\n" + "".join(f"{m},{c}\n" for m, c in conditions.items()))
    assert label_main(["export", str(project), "--conditions", str(table)]) == 0
    labels, box_csv = project / "labels.csv", project / "boxes.csv"
    by_image = {i["image"]: i for i in queued}
    label_rows = read_csv(labels)
    assert len(label_rows) == len(RATERS) * len(faces)  # repeats are not rows
    assert len(read_csv(project / "labels-random.csv")) == len(RATERS) * RANDOM
    for row in label_rows:
        item = by_image[row["image"]]
        assert [None if row[u] == "" else int(row[u]) for u in UNITS] == \
            posted[row["rater"]][item["id"]]
        assert row["mouse"] == item["mouse"] and row["condition"] == conditions[item["mouse"]]
    items, summary = load_labels(labels)
    assert summary.raters == list(RATERS)
    scoreable = {i["id"] for i in faces if any(v is not None for v in posted["ann"][i["id"]])}
    assert summary.images == len(scoreable)
    for image in items:
        item = by_image[image.image.relative_to(project.resolve()).as_posix()]
        levels = source_truth[Path(item["source"])]
        assert list(image.levels) == levels and image.box is None
        assert image.raters == {r: tuple(levels) for r in RATERS}
        assert (image.mouse, image.condition) == (item["mouse"], conditions[item["mouse"]])
    box_rows = read_csv(box_csv)
    kept = {i: box for i, box in drawn["ann"].items() if box is not None}
    assert drawn["bob"] == drawn["ann"] and len(box_rows) == len(kept) >= 3
    for row in box_rows:
        item = by_image[row["image"]]
        assert [float(row[c]) for c in ("face_x", "face_y", "face_w", "face_h")] == \
            pytest.approx(kept[item["id"]], abs=0.051)
        assert row["rater"] == "ann+bob" and row["mouse"] == item["mouse"]
    cubicles, _ = load_labels(box_csv, need_levels=False)
    assert len(cubicles) == len(kept) and all(c.box is not None for c in cubicles)

    # 5. mgs-train --labels study/labels.csv --output-dir runs/scorer (tiny, 2 folds of mice)
    #    mgs-train-localizer --labels study/boxes.csv --output-dir runs/faces
    scorer_run, faces_run = tmp_path / "runs" / "scorer", tmp_path / "runs" / "faces"
    assert train_cli(["--labels", str(labels), *TINY_SCORER,
                      "--output-dir", str(scorer_run)]) == 0
    tested: list[str] = []
    for fold in ("fold0", "fold1"):
        split = json.loads((scorer_run / fold / "split.json").read_text())["mice"]
        assert not set(split["test"]) & (set(split["train"]) | set(split["val"]))
        assert {conditions[m] for m in split["test"]} == {"pain", "control"}
        tested += split["test"]
    assert sorted(tested) == sorted({i.mouse for i in items})  # every mouse tested once
    assert (scorer_run / "final" / "scorer.pth").is_file()
    assert localizer_cli(["--labels", str(box_csv), *TINY_LOCALIZER,
                          "--output-dir", str(faces_run)]) == 0
    assert set(json.loads((faces_run / "localizer_metrics.json").read_text())) == \
        {"visibility_accuracy", "mean_iou", "recall_iou50"}

    # 6. mgs-eval --run runs/scorer --pain-conditions pain
    assert eval_cli(["--run", str(scorer_run), "--pain-conditions", "pain", "--bootstrap",
                     "50", "--gradcam", "1"]) == 0
    report_json = scorer_run / "report" / "report.json"
    report = json.loads(report_json.read_text())
    assert (scorer_run / "report" / "report.html").is_file()
    assert report["n_images"] == len(items)  # pooled over both folds' test mice: each once
    assert set(report["unit_metrics"]) == set(UNITS)
    # the tiny models score every validation face alike: the cut-off is that one total
    # (Youden J 0), but it exists, and it is what the monitor must alert at
    assert report["pain_cutoff"] is not None and report["pain_cutoff_from"] == "validation"
    cutoff = report["pain_cutoff"]

    # 7. mgs-export --run runs/scorer --report runs/scorer/report/report.json
    #               --localizer runs/faces --out models
    #    refused first: no model this weak goes live without being told to
    models = tmp_path / "models"
    export = ["--run", str(scorer_run), "--report", str(report_json), "--localizer",
              str(faces_run), "--out", str(models)]
    # the localizer's held-out recall rests on the one or two boxed faces the split holds out:
    # 0 or 1 by the luck of that split, so either model may be the first refused
    recall = json.loads((faces_run / "localizer_metrics.json").read_text())["recall_iou50"]
    weak_localizer = recall < LOCALIZER_RECALL_FLOOR
    auroc = report["by_mouse"]["auroc"]
    assert auroc["ci_low"] <= 0.5  # the scorer: no better than chance by mouse
    scorer_refused = (f"{report_json}: scorer not exported, below the floor: no better than "
                      f"chance by mouse: AUROC {auroc['value']:.2f} [{auroc['ci_low']:.2f}, "
                      f"{auroc['ci_high']:.2f}]")
    capsys.readouterr()
    assert export_cli(export) == 2
    said = capsys.readouterr()
    assert said.err.count("\n") == 1 and said.err.startswith("mgs-export: error: " + (
        f"{faces_run / 'localizer.pth'}: localizer not exported, below the floor: held-out "
        f"recall at IoU>=0.5 {recall:.2f} is below the floor 0.8; pass --accept-weak"
        if weak_localizer else scorer_refused))
    assert f"{faces_run}: localizer held-out recall at IoU>=0.5 {recall:.2f}" in said.out
    assert export_cli(export[:4] + export[-2:]) == 2  # the scorer alone
    said = capsys.readouterr()
    assert said.err.count("\n") == 1 and said.err.startswith(
        f"mgs-export: error: {scorer_refused}")
    assert f"{scorer_run / 'final'}: scorer by mouse ({report['by_mouse']['n_mice']} mice): " \
        f"AUROC {auroc['value']:.2f}" in said.out
    assert not models.exists()
    #    then exported as asked, marked below the floor
    assert export_cli([*export, "--accept-weak"]) == 0
    meta = {name: {p.key: p.value for p in onnx.load(str(models / f"{name}.onnx"))
                   .metadata_props} for name in ("scorer", "localizer")}
    assert meta["scorer"]["kind"] == meta["localizer"]["kind"] == "trained"
    assert meta["scorer"]["mgs_role"] == "scorer" and meta["localizer"]["mgs_role"] == "localizer"
    assert (meta["scorer"]["input_size"], meta["localizer"]["input_size"]) == ("32", "32")
    assert meta["scorer"]["data_fingerprint"] == data_fingerprint(items)
    assert meta["localizer"]["data_fingerprint"] == data_fingerprint(cubicles)
    assert meta["scorer"]["trained_on"].startswith(f"final fit on all {len(items)} images")
    assert meta["scorer"]["pain_cutoff"] == f"{cutoff:g}"
    assert meta["scorer"]["below_floor"] and meta["scorer"]["accepted_weak"] == "yes"
    assert bool(meta["localizer"]["below_floor"]) == weak_localizer
    assert meta["scorer"]["figures"].startswith(
        f"by mouse ({report['by_mouse']['n_mice']} mice): AUROC {auroc['value']:.2f}")
    scorer = OnnxModel(models / "scorer.onnx", SCORER, ["CPUExecutionProvider"])
    localizer = OnnxModel(models / "localizer.onnx", LOCALIZER, ["CPUExecutionProvider"])
    assert scorer.info.kind == localizer.info.kind == "trained"  # as the monitor reads them
    assert scorer.info.pain_cutoff == cutoff

    # 8. mgs-monitor replay cam0.mp4 --models models --every 2 --out records/check.csv
    capsys.readouterr()
    check = tmp_path / "records" / "check.csv"
    assert monitor_main(["replay", str(demo.videos[0]), "--models", str(models), "--every",
                         every, "--out", str(check), "--no-publish", "--no-dashboard"]) == 0
    said = capsys.readouterr()
    assert "DEMO" not in said.out + said.err
    started_with = " ".join(said.err.split())
    assert f"pain alerts at a window mean >= {cutoff:g} (the scorer's pain cut-off)" in \
        started_with
    assert f"model figures: scorer {meta['scorer']['figures']}; localizer " in started_with
    assert ("MODEL BELOW THE FLOOR (exported with --accept-weak): scorer no better than chance "
            "by mouse") in started_with
    checked = read_csv(check)
    assert len(checked) >= 4 and {r["mouse"] for r in checked} == {
        m for m in mice if m.startswith(demo.videos[0].stem + "-")}
    for row in checked:
        assert row["model_kind"] == "trained"
        if row["status"] == "scored":  # each sample judged against the report's cut-off
            assert row["pain"] == str(int(int(row["total"]) >= cutoff))
        assert row["scorer_id"] == meta["scorer"]["model_id"] == scorer.info.model_id
        assert row["localizer_id"] == meta["localizer"]["model_id"] == localizer.info.model_id
    print(f"own-model loop: {time.monotonic() - started:.1f} s after the demo build",
          file=sys.stderr)
