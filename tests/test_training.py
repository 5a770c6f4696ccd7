"""mgs-train -> mgs-eval -> mgs-export on synthetic labelled faces, with tiny models."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest
import torch

import synth
from demo.build import DemoBuild
from export.cli import cli as export_cli
from export.onnx_export import write_variant
from monitor.capture.workers import Frame
from monitor.cli import main as monitor_main
from monitor.config import build_config
from monitor.scoring.analyzer import Analyzer, Models
from monitor.scoring.models import LOCALIZER, SCORER, OnnxModel
from monitor.units import UNITS
from train.evaluate import IMAGE_FOLDS, chosen, rater_totals
from train.evaluate import cli as eval_cli
from train.frames import box_iou, summary_html
from train.image_hashes import hashes_in, image_hash, image_hashes
from train.labels import (
    LabelError,
    LabelledImage,
    data_fingerprint,
    holdout_split,
    load_labels,
    mice_of,
    mouse_kfold_splits,
)
from train.localizer import cli as localizer_cli
from train.run import Run, RunError
from train.statistics import EvalInput, evaluate, validation_cutoff
from train.train import (
    OPTIMISTIC,
    best_epoch,
    get_args_parser,
    median_epoch,
    split_kind,
    splits,
    train_fold,
    train_one_epoch,
)
from train.train import cli as train_cli
from train.train import main as train_main

# Training, evaluation and export end to end: most tests here train models with PyTorch.
pytestmark = pytest.mark.slow

# The paper's 75/5/20 image split: these tests are about training, export and the report.
TINY = ["--arch", "tiny", "--input-size", "32", "--weights", "none", "--batch-size", "16",
        "--lr", "0.05", "--split", "holdout"]


@pytest.fixture(scope="module")
def labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("faces")
    return synth.write_face_dataset(folder, 80, np.random.default_rng(0), size=64)


@pytest.fixture(scope="module")
def run(labels: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert train_cli(["--labels", str(labels), *TINY, "--epochs", "2", "--output-dir",
                      str(out)]) == 0
    return out


def test_run_folder_holds_checkpoints_split_and_predictions(run: Path, labels: Path) -> None:
    fold = run / "fold0"
    for name in ("scorer.pth", "split.json", "metrics.json", "predictions.csv",
                 "unit_orbital_tightening.pth", "unit_whisker_change.pth"):
        assert (fold / name).is_file(), name
    split = json.loads((fold / "split.json").read_text())
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (60, 4, 16)
    assert not set(split["train"]) & set(split["test"])
    with (fold / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["image"] for r in rows] == split["test"]
    assert all(int(r["pred_total"]) == sum(int(r[f"pred_{u}"]) for u in UNITS)
               for r in rows)
    meta = json.loads((run / "run.json").read_text())
    assert meta["args"]["arch"] == "tiny" and meta["summary"]


def test_resume_continues_where_it_stopped(run: Path, labels: Path) -> None:
    before = torch.load(run / "fold0" / "unit_nose_bulge.pth", weights_only=False)
    assert before["state"]["epoch"] == 2 and before["args"]["epochs"] == 2
    args = get_args_parser().parse_args(["--labels", str(labels), *TINY, "--epochs", "3",
                                         "--output-dir", str(run), "--resume",
                                         "--units", "nose_bulge"])
    train_main(args)
    after = torch.load(run / "fold0" / "unit_nose_bulge.pth", weights_only=False)
    assert after["state"]["epoch"] == 3
    assert after["state"]["history"][:2] == before["state"]["history"]


def test_eval_then_export(run: Path, labels: Path, tmp_path: Path) -> None:
    assert eval_cli(["--run", str(run), "--pain-conditions", "pain", "--bootstrap", "100",
                     "--gradcam", "2"]) == 0
    report = run / "report"
    results = json.loads((report / "report.json").read_text())
    assert results["pain_cutoff"] is not None
    assert (report / "report.html").read_text().count("Grad-CAM") >= 1
    assert len(list((report / "gradcam").glob("*.png"))) == 10
    assert export_cli(["--run", str(run), "--report", str(report / "report.json"), "--out",
                       str(tmp_path), "--kind", "demo", "--accept-weak"]) == 0
    model = OnnxModel(tmp_path / "scorer.onnx", SCORER, ["CPUExecutionProvider"])
    assert model.info.pain_cutoff == pytest.approx(results["pain_cutoff"])
    assert model.info.kind == "demo" and model.info.input_size == 32
    assert model.info.extra["trained_on"] == "trained on the training part of fold0"
    items, _ = load_labels(labels)
    assert model.info.extra["data_fingerprint"] == data_fingerprint(items)
    # the images it learnt from (training and validation parts), never its test images
    trained, fold = Run.open(run), run / "fold0"
    learnt = hashes_in(model.info.path, model.info.extra)
    assert learnt == set(image_hashes(item.image for item in trained.items_of(fold, "train")
                                      + trained.items_of(fold, "val")))
    assert len(learnt) == 64 and not learnt & set(
        image_hashes(item.image for item in trained.test_items(fold)))


def test_a_unit_learns_its_feature(labels: Path, tmp_path: Path) -> None:
    """Ear position is drawn boldly: a tiny model must beat chance clearly on held-out faces."""
    args = get_args_parser().parse_args(["--labels", str(labels), *TINY, "--epochs", "12",
                                         "--units", "ear_position", "--patience", "12",
                                         "--output-dir", str(tmp_path)])
    train_main(args)
    with (tmp_path / "fold0" / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    accuracy = np.mean([r["pred_ear_position"] == r["truth_ear_position"] for r in rows])
    assert accuracy >= 0.6


def test_bad_labels_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "labels.csv"
    bad.write_text("image,orbital_tightening\n")
    assert train_cli(["--labels", str(bad), *TINY, "--output-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "labels.csv" in err and err.count("\n") == 1


def test_unknown_unit_is_refused(labels: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert train_cli(["--labels", str(labels), *TINY, "--units", "tail",
                      "--output-dir", str(tmp_path)]) == 2
    assert "--units: unknown tail" in capsys.readouterr().err


def cubicle_labels(folder: Path, count: int, seed: int = 3) -> Path:
    """Cubicle pictures with face boxes in pixels, in the label CSV format (the same seed
    draws the same pictures, byte for byte)."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    lines = ["image," + ",".join(UNITS) + ",face_x,face_y,face_w,face_h"]
    for i in range(count):
        levels = synth.random_levels(rng)
        image, box = synth.draw_cubicle(levels, rng, 160, 360)
        assert box is not None
        cx, cy, w, h = box
        cv2.imwrite(str(folder / "images" / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        pixels = ((cx - w / 2) * 160, (cy - h / 2) * 360, w * 160, h * 360)
        lines.append(f"images/{i}.png," + ",".join(map(str, levels)) + ","
                     + ",".join(f"{v:.1f}" for v in pixels))
    path = folder / "labels.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_localizer_trains_from_boxes_and_exports(tmp_path: Path, run: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    labels_csv = cubicle_labels(tmp_path / "cubicles", 80)
    out = tmp_path / "loc"
    assert localizer_cli(["--labels", str(labels_csv), "--input-size", "48", "--epochs", "15",
                          "--views", "3", "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "localizer_metrics.json").read_text())
    assert metrics["mean_iou"] > 0.4 and metrics["visibility_accuracy"] > 0.7
    models = tmp_path / "models"
    assert export_cli(["--run", str(run), "--localizer", str(out), "--out", str(models),
                       "--accept-weak"]) == 0
    localizer = OnnxModel(models / "localizer.onnx", LOCALIZER, ["CPUExecutionProvider"])
    assert localizer.info.kind == "trained" and localizer.info.input_size == 48
    frames = tmp_path / "frames"
    frames.mkdir()
    frame, _ = synth.draw_array_frame([(1, 1, 1, 1, 1)] * 4, np.random.default_rng(4), 640, 360)
    cv2.imwrite(str(frames / "f.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    scores = tmp_path / "scores.csv"
    assert monitor_main(["score", str(frames), "--models", str(models), "--out",
                         str(scores)]) == 0
    with scores.open() as handle:
        assert {r["model_kind"] for r in csv.DictReader(handle)} == {"trained"}
    capsys.readouterr()
    _frames_the_localizer_trained_on_are_refused(tmp_path, labels_csv, models, capsys)


def _frames_the_localizer_trained_on_are_refused(tmp_path: Path, trained_on: Path, models: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The localizer learnt from the training and validation parts of `trained_on`: the same
    pictures as frames, even copied elsewhere, are refused in one line, or with
    --allow-in-sample measured and marked IN-SAMPLE; pictures it never saw pass."""
    items, _ = load_labels(trained_on)
    train_idx, val_idx, test_idx = holdout_split(items, seed=0)
    localizer = OnnxModel(models / "localizer.onnx", LOCALIZER, ["CPUExecutionProvider"])
    learnt = hashes_in(localizer.info.path, localizer.info.extra)
    assert learnt == set(image_hashes(items[i].image for i in (*train_idx, *val_idx)))
    assert not learnt & set(image_hashes(items[i].image for i in test_idx))
    copied = cubicle_labels(tmp_path / "copied", 24)  # seed 3: the first 24 pictures again
    seen = sum(image_hash(items[i].image) in learnt for i in range(24))
    assert eval_cli(["--frames", str(copied), "--models", str(models),
                     "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{copied}: {seen} of 24 frames are images the exported " \
        "models trained on (e.g. " in err and "--allow-in-sample" in err
    assert not (tmp_path / "refused" / "frames.json").exists()
    assert eval_cli(["--frames", str(copied), "--models", str(models), "--allow-in-sample",
                     "--out", str(tmp_path / "marked")]) == 0
    found = json.loads((tmp_path / "marked" / "frames.json").read_text())
    assert found["in_sample"]["frames"] == found["in_sample"]["localizer"] == seen > 0
    assert found["in_sample"]["scorer"] == 0  # the scorer learnt from other faces
    assert f"IN-SAMPLE: {seen} of 24 frames are images the models trained on" in " ".join(
        capsys.readouterr().out.split())
    unseen = cubicle_labels(tmp_path / "unseen", 8, seed=11)
    assert eval_cli(["--frames", str(unseen), "--models", str(models),
                     "--out", str(tmp_path / "unseen-out")]) == 0
    found = json.loads((tmp_path / "unseen-out" / "frames.json").read_text())
    assert found["in_sample"] == {"frames": 0, "example": None, "scorer": 0, "localizer": 0}
    assert "IN-SAMPLE" not in capsys.readouterr().out


def test_localizer_needs_boxes(labels: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert localizer_cli(["--labels", str(labels), "--output-dir", str(tmp_path)]) == 2
    assert "no labelled image has a face box" in capsys.readouterr().err


def test_same_seed_same_model(labels: Path, run: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert train_cli(["--labels", str(labels), *TINY, "--epochs", "2", "--units",
                      "orbital_tightening", "--output-dir", str(again)]) == 0
    first = torch.load(run / "fold0" / "unit_orbital_tightening.pth", weights_only=False)
    second = torch.load(again / "fold0" / "unit_orbital_tightening.pth", weights_only=False)
    assert first["state"]["history"] == second["state"]["history"]
    assert all(torch.equal(first["model"][k], second["model"][k]) for k in first["model"])


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_reduced_scorer_is_gated_on_agreement(precision: str, run: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--run", str(run), "--out", str(tmp_path), f"--{precision}", "--accept-weak"]
    assert export_cli([*base, f"--{precision}-min-agreement", "1.01"]) == 2  # cannot be met
    assert "not written" in capsys.readouterr().err
    assert not (tmp_path / f"scorer-{precision}.onnx").exists()
    assert export_cli([*base, f"--{precision}-min-agreement", "0"]) == 0
    reduced = OnnxModel(tmp_path / f"scorer-{precision}.onnx", SCORER, ["CPUExecutionProvider"])
    fp32 = OnnxModel(tmp_path / "scorer.onnx", SCORER, ["CPUExecutionProvider"])
    assert reduced.info.extra["precision"] == precision
    assert reduced.info.model_id != fp32.info.model_id and reduced.info.units == fp32.info.units
    agreement = float(reduced.info.extra[f"{precision}_agreement"])
    assert agreement >= 0.95  # measured: int8 0.99, fp16 1.0 of the fp32 scorer's levels
    assert f"{agreement:.1%}" in capsys.readouterr().out


@pytest.mark.parametrize(("text", "why"), [("not json", "JSONDecodeError"),
                                           ("[1, 2]", "AttributeError"),
                                           ('{"pain_cutoff": "high"}', "ValueError")])
def test_a_malformed_report_is_one_line(run: Path, tmp_path: Path, text: str, why: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Before, each of these ended in a traceback."""
    report = tmp_path / "report.json"
    report.write_text(text)
    assert export_cli(["--run", str(run), "--report", str(report),
                       "--out", str(tmp_path / "models")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{report}: not an mgs-eval report.json with a numeric pain_cutoff ({why}" in err


def test_a_bug_keeps_its_traceback(labels: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the commands' own error types become one line; any other ValueError is a bug."""
    def broken(_args: object) -> None:
        raise ValueError("index out of step")

    monkeypatch.setattr("train.train.main", broken)
    with pytest.raises(ValueError, match="index out of step"):
        train_cli(["--labels", str(labels), "--output-dir", str(tmp_path / "r")])


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _youden_by_hand(totals: list[int], pain: list[bool]) -> float:
    """The highest total t whose rule `total >= t` has the largest sens + spec - 1."""
    best, best_j = None, -2.0
    for t in sorted(set(totals), reverse=True):
        sens = sum(s >= t for s, p in zip(totals, pain, strict=True) if p) / sum(pain)
        spec = sum(s < t for s, p in zip(totals, pain, strict=True) if not p) / (
            len(pain) - sum(pain))
        if sens + spec - 1 > best_j + 1e-12:
            best, best_j = t, sens + spec - 1
    assert best is not None
    return float(best)


def test_the_exported_cutoff_is_chosen_on_validation_and_reported_on_test(
        run: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert eval_cli(["--run", str(run), "--pain-conditions", "pain", "--bootstrap", "50",
                     "--gradcam", "0", "--out", str(out)]) == 0
    results = json.loads((out / "report.json").read_text())
    val = [r for r in _rows(run / "fold0" / "predictions-val.csv")
           if all(r[f"truth_{u}"] != "" for u in UNITS)]
    want = _youden_by_hand([int(r["pred_total"]) for r in val],
                           [r["condition"] == "pain" for r in val])
    assert results["pain_cutoff"] == want and results["pain_cutoff_from"] == "validation"
    test = [r for r in _rows(run / "fold0" / "predictions.csv")
            if all(r[f"truth_{u}"] != "" for u in UNITS)]
    pain = [int(r["pred_total"]) for r in test if r["condition"] == "pain"]
    calm = [int(r["pred_total"]) for r in test if r["condition"] != "pain"]
    on_test = results["pain_cutoff_on_test"]
    assert on_test["sensitivity"]["value"] == sum(t >= want for t in pain) / len(pain)
    assert on_test["specificity"]["value"] == sum(t < want for t in calm) / len(calm)
    page = " ".join((out / "report.html").read_text().split())
    assert "chosen on the validation part" in page and "out of sample" in page
    assert export_cli(["--run", str(run), "--report", str(out / "report.json"), "--out",
                       str(tmp_path / "models"), "--kind", "demo", "--accept-weak"]) == 0
    meta = OnnxModel(tmp_path / "models" / "scorer.onnx", SCORER, ["CPUExecutionProvider"]).info
    assert meta.pain_cutoff == want and meta.extra["pain_cutoff_from"] == "validation"


def test_an_in_sample_cutoff_is_refused_by_export(run: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A report whose cut-off was chosen on the test predictions (as mgs-eval did before)."""
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"pain_cutoff": 5.0}))
    assert export_cli(["--run", str(run), "--report", str(report),
                       "--out", str(tmp_path / "models")]) == 2
    err = capsys.readouterr().err
    assert err == (f"mgs-export: error: {report}: its pain cut-off was chosen on the test "
                   "predictions it is "
                   "reported on (in-sample); run mgs-eval again, which chooses it on the "
                   "validation part\n")
    assert not (tmp_path / "models" / "scorer.onnx").exists()


def test_a_validation_part_of_one_class_gives_no_cutoff() -> None:
    one_class = EvalInput(image=["a", "b"], truth_levels=np.ones((2, 5), np.int64),
                          model_levels=np.ones((2, 5), np.int64),
                          model_expected_total=np.full(2, 5.0), condition=["pain", "pain"],
                          pain_conditions={"pain"})
    found = validation_cutoff(one_class)
    assert found["cutoff"] is None and "only pain images among its 2" in found["note"]
    results = evaluate(one_class, n_boot=10, cutoff=found)
    assert results["pain_cutoff"] is None and results["pain_cutoff_from"] is None


def mice(count: int, images_each: int, pain_every: int = 2) -> list[LabelledImage]:
    """Labelled images of `count` mice, each mouse of one condition (no pixels needed)."""
    return [LabelledImage(Path(f"m{m}-{k}.png"), (1,) * 5, f"m{m}",
                          "pain" if m % pain_every == 0 else "saline", None, {})
            for m in range(count) for k in range(images_each)]


def test_mouse_folds_keep_each_mouse_in_one_part_and_each_condition_in_every_test() -> None:
    items = mice(12, 5)
    folds = mouse_kfold_splits(items, k=3, seed=1)
    tested = np.concatenate([test for _, _, test in folds])
    assert sorted(tested.tolist()) == list(range(len(items)))  # each image tested once
    for train, val, test in folds:
        parts = [set(mice_of(items, part)) for part in (train, val, test)]
        assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2]
                                   or parts[1] & parts[2])
        for part in (val, test):
            assert {items[i].condition for i in part} == {"pain", "saline"}


def test_a_mouse_split_that_cannot_test_every_condition_is_refused() -> None:
    items = mice(9, 3, pain_every=9)  # one pain mouse among nine
    with pytest.raises(LabelError, match=r"mouse-cv: fold \d's test mice \(.*\) have no image "
                                         r"of condition pain"):
        mouse_kfold_splits(items, k=3)
    with pytest.raises(LabelError, match=r"5 folds need at least 10 mice .* the labels have 9"):
        mouse_kfold_splits(items, k=5)


def test_the_default_split_is_by_mouse_when_images_name_mice(
        capsys: pytest.CaptureFixture[str]) -> None:
    named = mice(12, 10)
    assert split_kind(named, "auto") == "mouse-cv"
    unnamed = [replace(item, mouse="") for item in named]
    assert split_kind(unnamed, "auto") == "holdout"
    args = get_args_parser().parse_args(["--labels", "x.csv", "--split", "holdout"])
    splits(named, args)
    assert " ".join(capsys.readouterr().err.split()) == OPTIMISTIC
    splits(unnamed, args)
    assert capsys.readouterr().err == ""  # nothing to warn of without mice


def test_training_by_mouse_names_the_mice_of_each_fold(labels: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert train_cli(["--labels", str(labels), *TINY[:-2], "--epochs", "1", "--folds", "2",
                      "--fold", "0", "--units", "ear_position", "--output-dir", str(out)]) == 0
    split = json.loads((out / "fold0" / "split.json").read_text())
    assert not set(split["mice"]["test"]) & set(split["mice"]["train"] + split["mice"]["val"])
    err = " ".join(capsys.readouterr().err.split())
    assert f"test mice {', '.join(split['mice']['test'])}" in err
    assert (out / "fold0" / "predictions-val.csv").is_file()


def test_the_papers_resnet18_at_224_goes_from_training_to_the_monitor(
        labels: Path, tmp_path: Path, demo_small: DemoBuild) -> None:
    """The paper's set-up end to end, at the smallest scale: mgs-train (ResNet18, 224 px, one
    epoch, random init) -> mgs-export -> a monitor that loads the scorer and scores a frame."""
    run = tmp_path / "run"
    assert train_cli(["--labels", str(labels), "--arch", "resnet18", "--input-size", "224",
                      "--weights", "none", "--epochs", "1", "--split", "holdout",
                      "--output-dir", str(run)]) == 0
    assert export_cli(["--run", str(run), "--out", str(tmp_path / "models"),
                       "--kind", "demo", "--accept-weak"]) == 0
    config = build_config({**demo_small.config(), "models": {
        "scorer": str(tmp_path / "models" / "scorer.onnx"),
        "localizer": str(demo_small.folder / "localizer.onnx")}})
    models = Models.load(config)
    assert models.scorer.info.input_size == 224 and models.scorer.info.extra["arch"] == "resnet18"
    frame = cv2.cvtColor(synth.draw_array_frame([(1, 1, 1, 1, 1)] * 4,
                                                np.random.default_rng(5), 640, 360)[0],
                         cv2.COLOR_RGB2BGR)
    records = Analyzer(config, models).process([Frame("cam0", frame, 0.0, 0.0, 0.0, 0)])
    scored = [r for r in records if r.status == "scored"]
    assert scored
    for record in scored:  # each unit's level is its most likely one, and they add up
        assert record.probs is not None and record.levels is not None
        assert list(record.levels) == [int(np.argmax(p)) for p in record.probs]
        assert record.total == sum(record.levels)


def test_a_condition_both_pain_and_control_is_one_line(run: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert eval_cli(["--run", str(run), "--pain-conditions", "pain", "--control-conditions",
                     "pain,saline", "--out", str(run / "r2")]) == 2
    assert capsys.readouterr().err == ("mgs-eval: error: --pain-conditions and "
                                       "--control-conditions both name pain\n")


class _Labelled:
    """What rater_totals reads of a run: its reference setting and its labelled images."""

    def __init__(self, reference: str, items: list[LabelledImage]) -> None:
        self.args = {"rater": reference}
        self.items = items

    def labels(self) -> list[LabelledImage]:
        return self.items


def test_raters_are_compared_with_the_others_not_with_themselves() -> None:
    ann, ben, cat = (1, 1, 1, 1, 1), (2, 2, 2, 2, 2), (2, 2, 2, 2, 0)
    item = LabelledImage(Path("a.png"), (2, 2, 2, 2, 1), "m1", "pain", None,
                         {"ann": ann, "ben": ben, "cat": cat})
    run = _Labelled("majority", [item])
    totals, references = rater_totals(run, ["a.png"])
    assert {n: t[0] for n, t in totals.items()} == {"ann": 5, "ben": 10, "cat": 8}
    # two who differ tie: the unit counts their mean. ann against ben + cat: 2, 2, 2, 2,
    # (2 vs 0) 1 -> 9; ben against ann + cat: 1.5 x 4, (1 vs 0) 0.5 -> 6.5; cat against
    # ann + ben: 1.5 x 5 -> 7.5
    assert {n: r[0] for n, r in references.items()} == {"ann": 9, "ben": 6.5, "cat": 7.5}
    named = rater_totals(_Labelled("ben", [item]), ["a.png"])
    assert set(named[0]) == {"ann", "cat"} and all(r[0] == 10 for r in named[1].values())


def test_raters_who_agree_on_average_show_no_bias_against_a_tied_reference() -> None:
    """Three raters giving every unit 0, 1 and 2 in each of the six orders: on average they
    agree, and each one's two others always tie. Their tie must not lean the reference to one
    side (the lower level made it the others' minimum: every rater biased upwards)."""
    orders = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    items = [LabelledImage(Path(f"i{k}.png"), (1,) * 5, f"m{k}", "pain", None,
                           {name: (level,) * 5 for name, level in zip("abc", order, strict=True)})
             for k, order in enumerate(orders)]
    images = [str(item.image) for item in items]
    totals, references = rater_totals(_Labelled("majority", items), images)
    for name in "abc":
        assert float(np.mean(totals[name] - references[name])) == pytest.approx(0.0), name
    assert references["a"][0] == 7.5  # a gave 0; b and c gave 1 and 2: 1.5 per unit


def test_a_run_without_validation_predictions_is_evaluated_without_a_cutoff(
        run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run trained before validation predictions were written: the report says why there is
    no cut-off for the monitor, instead of failing."""
    old = tmp_path / "old-run"
    shutil.copytree(run, old)
    (old / "fold0" / "predictions-val.csv").unlink()
    assert eval_cli(["--run", str(old), "--pain-conditions", "pain", "--bootstrap", "20",
                     "--gradcam", "0"]) == 0
    results = json.loads((old / "report" / "report.json").read_text())
    assert results["pain_cutoff"] is None and "no validation predictions" in results[
        "pain_cutoff_note"]
    assert "no pain cut-off: the run has no validation predictions" in capsys.readouterr().out


def test_cross_validation_deploys_a_final_fit_that_says_what_it_is(
        labels: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """k folds by mouse, then one model on all images for the folds' median best epoch; the
    page and the exported metadata say it is that model, and the folds give its figures."""
    out = tmp_path / "cv"
    assert train_cli(["--labels", str(labels), *TINY[:-2], "--epochs", "3", "--folds", "2",
                      "--output-dir", str(out)]) == 0
    best = {unit: sorted(min(torch.load(out / f"fold{k}" / f"unit_{unit}.pth",
                                        weights_only=False)["state"]["history"],
                             key=lambda h: h["loss"])["epoch"] for k in range(2))
            for unit in UNITS}
    final = torch.load(out / "final" / "unit_nose_bulge.pth", weights_only=False)
    assert final["state"]["epoch"] == median_epoch(best["nose_bulge"])
    assert json.loads((out / "final" / "split.json").read_text())["test"] == []
    assert "final fit on all 80 images, epochs per unit:" in " ".join(
        capsys.readouterr().err.split())
    assert eval_cli(["--run", str(out), "--gradcam", "0", "--bootstrap", "20"]) == 0
    page = " ".join((out / "report" / "report.html").read_text().split())
    assert "The model to deploy is the final fit on all images (final/)" in page
    assert export_cli(["--run", str(out), "--out", str(tmp_path / "models"),
                       "--accept-weak"]) == 0
    meta = OnnxModel(tmp_path / "models" / "scorer.onnx", SCORER, ["CPUExecutionProvider"]).info
    assert meta.extra["trained_on"] == ("final fit on all 80 images; its expected performance "
                                        "is the 2 folds' (mouse-cv)")
    assert hashes_in(meta.path, meta.extra) == set(image_hashes(i.image for i in
                                                                load_labels(labels)[0]))
    # the final fit has no validation part, so some metrics are unknown: null, never NaN,
    # which other languages' JSON parsers (and Python's, told to be strict) refuse
    for written in [*(path.read_text() for path in out.rglob("*.json")), meta.extra["val_metrics"]]:
        json.loads(written, parse_constant=_not_json)


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def test_box_iou_by_hand() -> None:
    # a 0.2 x 0.2 box and the same box moved right by 0.1: overlap 0.1 x 0.2 = 0.02,
    # union 0.04 + 0.04 - 0.02 = 0.06
    assert box_iou((0.5, 0.5, 0.2, 0.2), (0.6, 0.5, 0.2, 0.2)) == pytest.approx(1 / 3)
    assert box_iou((0.2, 0.2, 0.1, 0.1), (0.8, 0.8, 0.1, 0.1)) == 0.0


def test_labelled_frames_go_through_the_monitors_localizer(
        tmp_path: Path, demo_accurate: DemoBuild, capsys: pytest.CaptureFixture[str]) -> None:
    frames = 48  # each frame moves an accuracy by 2%: floors below hold across rebuilds
    labels_csv = cubicle_labels(tmp_path / "frames", frames)
    assert eval_cli(["--frames", str(labels_csv), "--models", str(demo_accurate.folder),
                     "--out", str(tmp_path / "out")]) == 0
    found = json.loads((tmp_path / "out" / "frames.json").read_text())
    assert found["images"] == frames and found["face_recall"] >= 0.75
    assert found["mean_iou"] > 0.5
    for unit in UNITS:
        accuracy = found["unit_accuracy"][unit]
        assert accuracy["n"] == round(found["scored_fraction"] * frames)
        # measured on 24 frames of two builds (the demo models differ with the cores that
        # trained them): localizer crops 0.50-0.96, hand-cut crops 0.79-1.0; chance is 1/3
        assert accuracy["localizer_crops"] >= 0.4 and accuracy["hand_crops"] >= 0.7, unit
    assert np.mean([found["unit_accuracy"][u]["localizer_crops"] for u in UNITS]) >= 0.65
    # recall at IoU >= 0.5 counts only the boxes that overlap the labelled face
    found_at = round(found["face_recall"] * frames)
    assert found["face_recall_iou_0.5"] * frames == pytest.approx(
        found["iou_at_least_0.5"] * found_at)
    printed = " ".join(capsys.readouterr().out.split())
    assert (f"{frames} labelled frames: face found in {found['face_recall']:.0%} (any box), "
            f"{found['face_recall_iou_0.5']:.0%} with box IoU >= 0.5;") in printed
    # the demo models learnt from drawn faces, not image files: nothing to check against
    assert found["in_sample"] == {"frames": 0, "example": None, "scorer": None,
                                  "localizer": None}
    for role in ("scorer", "localizer"):
        assert f"the {role} carries no training-image hashes (a demo model or an older " \
            "export): whether it saw these frames is not checked" in printed
    assert eval_cli(["--frames", str(labels_csv)]) == 2  # no --models


def test_in_sample_frames_are_marked_in_red_on_the_page() -> None:
    found = {"images": 8, "face_recall": 1.0, "face_recall_iou_0.5": 0.75,
             "scored_fraction": 1.0, "mean_iou": 0.7, "unit_accuracy": {},
             "in_sample": {"frames": 3, "example": "images/1.png", "scorer": 3, "localizer": 0}}
    page = summary_html(found)
    assert page.startswith("<p style='color:#c00;font-weight:bold'>IN-SAMPLE: 3 of 8 frames "
                           "are images the models trained on (scorer 3, localizer 0; e.g. "
                           "images/1.png)")
    assert page.count("color:#c00") == 1


def test_unreadable_training_hashes_are_one_line(tmp_path: Path, demo_small: DemoBuild,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    models = tmp_path / "models"
    scorer = demo_small.folder / "scorer.onnx"
    write_variant(onnx.load(str(scorer)), scorer, models / "scorer.onnx",
                  training_image_hashes="not a list")
    shutil.copy(demo_small.folder / "localizer.onnx", models / "localizer.onnx")
    assert eval_cli(["--frames", str(cubicle_labels(tmp_path / "frames", 2)), "--models",
                     str(models), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (f"mgs-eval: error: {models / 'scorer.onnx'}: metadata "
                                       "training_image_hashes is not a JSON list of hashes\n")


def test_frames_join_the_runs_report_page(run: Path, tmp_path: Path,
                                          demo_small: DemoBuild) -> None:
    labels_csv = cubicle_labels(tmp_path / "frames", 8)
    out = tmp_path / "report"
    assert eval_cli(["--run", str(run), "--frames", str(labels_csv), "--models",
                     str(demo_small.folder), "--gradcam", "0", "--bootstrap", "20",
                     "--out", str(out)]) == 0
    page = " ".join((out / "report.html").read_text().split())
    assert "The localizer in the loop" in page and "8 labelled frames: face found in" in page
    assert json.loads((out / "report.json").read_text())["frames"]["images"] == 8


def test_evaluation_can_keep_the_images_labelled_at_random(tmp_path: Path) -> None:
    run = Run(tmp_path, {})
    rows = [{"image": "a", "selection": "random"}, {"image": "b", "selection": "uncertain"},
            {"image": "c", "selection": "random"}]
    assert chosen(run, rows, None) == rows
    assert [r["image"] for r in chosen(run, rows, "random")] == ["a", "c"]
    with pytest.raises(RunError, match=r"no test image was chosen 'random' for labelling "
                                       r"\(selections in its predictions: \(none\)\)"):
        chosen(run, [{"image": "a"}], "random")  # a run whose labels had no selection




def _report(run: Path) -> dict[str, Any]:
    return dict(json.loads((run / "report" / "report.json").read_text()))


def _complete_rows(path: Path) -> list[dict[str, str]]:
    return [r for r in _rows(path) if all(r[f"truth_{u}"] != "" for u in UNITS)]


def _model_total(row: dict[str, str]) -> int:
    return sum(int(row[f"pred_{u}"]) for u in UNITS)


def test_no_test_mouse_helps_choose_a_cutoff_reported_on_it(cv_run: Path,
                                                            tmp_path: Path) -> None:
    """By mouse, each fold's validation mice are another fold's test mice: before, every
    fold's validation part was pooled to choose the one cut-off reported on every fold."""
    report = _report(cv_run)
    folds = report["pain_cutoff_folds"]
    assert sorted(folds) == ["fold0", "fold1"]
    tp = fn = tn = fp = 0
    for name, found in folds.items():
        split = json.loads((cv_run / name / "split.json").read_text())
        assert found["validation_mice"] == split["mice"]["val"]
        assert found["test_mice"] == split["mice"]["test"]
        assert not set(found["validation_mice"]) & set(found["test_mice"])
        val = _complete_rows(cv_run / name / "predictions-val.csv")
        want = _youden_by_hand([_model_total(r) for r in val], [r["condition"] == "pain"
                                                                 for r in val])
        assert found["cutoff"] == want
        for row in _complete_rows(cv_run / name / "predictions.csv"):
            called, pain = _model_total(row) >= want, row["condition"] == "pain"
            tp, fn = tp + (called and pain), fn + (not called and pain)
            fp, tn = fp + (called and not pain), tn + (not called and not pain)
    assert report["pain_cutoff_on_test"]["sensitivity"]["value"] == tp / (tp + fn)
    assert report["pain_cutoff_on_test"]["specificity"]["value"] == tn / (tn + fp)
    assert report["pain_cutoff"] == float(np.median([f["cutoff"] for f in folds.values()]))
    assert report["pain_cutoff_how"].startswith("the median of 2 of the 2 folds' cut-offs")
    # whatever the test parts predict, no cut-off moves: no test prediction reaches one
    scrambled = tmp_path / "scrambled"
    shutil.copytree(cv_run, scrambled, ignore=shutil.ignore_patterns("report"))
    rng = np.random.default_rng(1)
    for name in folds:
        rows = _rows(scrambled / name / "predictions.csv")
        for row in rows:
            row.update({f"pred_{u}": str(rng.integers(0, 3)) for u in UNITS})
        with (scrambled / name / "predictions.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    assert eval_cli(["--run", str(scrambled), "--pain-conditions", "pain", "--bootstrap", "20",
                     "--gradcam", "0"]) == 0
    again = _report(scrambled)
    assert again["pain_cutoff"] == report["pain_cutoff"]
    assert {k: f["cutoff"] for k, f in again["pain_cutoff_folds"].items()} == {
        k: f["cutoff"] for k, f in folds.items()}
    assert again["pain_cutoff_on_test"] != report["pain_cutoff_on_test"]


def test_export_of_a_fold_writes_that_folds_own_cutoff(cv_run: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    report = _report(cv_run)
    path = cv_run / "report" / "report.json"
    assert export_cli(["--run", str(cv_run), "--fold", "1", "--report", str(path),
                       "--out", str(tmp_path / "fold1"), "--accept-weak"]) == 0
    meta = OnnxModel(tmp_path / "fold1" / "scorer.onnx", SCORER, ["CPUExecutionProvider"]).info
    own = report["pain_cutoff_folds"]["fold1"]
    assert meta.pain_cutoff == own["cutoff"]
    assert meta.extra["pain_cutoff_how"] == f"fold1's own, {own['how']}"
    assert export_cli(["--run", str(cv_run), "--report", str(path),
                       "--out", str(tmp_path / "final"), "--accept-weak"]) == 0
    meta = OnnxModel(tmp_path / "final" / "scorer.onnx", SCORER, ["CPUExecutionProvider"]).info
    assert meta.pain_cutoff == report["pain_cutoff"]
    assert meta.extra["pain_cutoff_how"] == report["pain_cutoff_how"]
    pooled = tmp_path / "pooled.json"  # as mgs-eval wrote it before: one cut-off, no folds
    pooled.write_text(json.dumps({"pain_cutoff": 5.0, "pain_cutoff_from": "validation"}))
    capsys.readouterr()
    assert export_cli(["--run", str(cv_run), "--fold", "1", "--report", str(pooled),
                       "--out", str(tmp_path / "pooled"), "--accept-weak"]) == 2
    assert capsys.readouterr().err == (
        f"mgs-export: error: {pooled}: no pain_cutoff_folds: its cut-off pools every fold's "
        "validation part, whose mice are other folds' test mice (an older mgs-eval); run "
        "mgs-eval again\n")


def test_folds_of_images_give_no_cutoff_and_say_why(cv_run: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """With --split cv every validation image is another fold's test image."""
    by_image = tmp_path / "cv"
    shutil.copytree(cv_run, by_image, ignore=shutil.ignore_patterns("report"))
    written = json.loads((by_image / "run.json").read_text())
    (by_image / "run.json").write_text(json.dumps(written | {"split": "cv"}))
    assert eval_cli(["--run", str(by_image), "--pain-conditions", "pain", "--bootstrap", "20",
                     "--gradcam", "0"]) == 0
    report = _report(by_image)
    assert report["pain_cutoff"] is None and report["pain_cutoff_note"] == IMAGE_FOLDS
    assert all(f["cutoff"] is None for f in report["pain_cutoff_folds"].values())
    assert f"no pain cut-off: {IMAGE_FOLDS}" in " ".join(capsys.readouterr().out.split())


def test_validation_predictions_are_the_validation_images_and_no_test_image(
        run: Path, cv_run: Path) -> None:
    for fold in (run / "fold0", cv_run / "fold0", cv_run / "fold1"):
        split = json.loads((fold / "split.json").read_text())
        images = [r["image"] for r in _rows(fold / "predictions-val.csv")]
        assert images and images == split["val"]
        assert not set(images) & set(split["test"])


def test_fold_folders_of_an_earlier_run_are_refused(run: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A holdout run written into a folder where a 4-fold run left fold3/: before, mgs-eval
    pooled its predictions with this run's."""
    stale = tmp_path / "stale"
    shutil.copytree(run, stale, ignore=shutil.ignore_patterns("report", "r2"))
    shutil.copytree(stale / "fold0", stale / "fold3")
    capsys.readouterr()
    assert eval_cli(["--run", str(stale), "--gradcam", "0", "--bootstrap", "20"]) == 2
    err = capsys.readouterr().err
    assert err == (f"mgs-eval: error: {stale / 'fold3'}: not a fold of this run (holdout with 1 "
                   "fold, run.json); it is left from an earlier run: remove it or train into a "
                   "new --output-dir\n")
    # past the weak-model gate, so that only the stale fold can refuse it
    assert export_cli(["--run", str(stale), "--out", str(tmp_path / "models"),
                       "--accept-weak"]) == 2
    assert "fold3: not a fold of this run" in capsys.readouterr().err


def test_without_validation_the_last_epoch_is_kept(labels: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The final fit has no validation part: before, it kept the epoch of lowest training
    loss (here the second of three), not the epochs the folds chose."""
    real = train_one_epoch
    losses = iter([1.0, 0.5, 2.0])

    def scripted(*args: Any, **kwargs: Any) -> float:
        real(*args, **kwargs)
        return next(losses)

    monkeypatch.setattr("train.train.train_one_epoch", scripted)
    args = get_args_parser().parse_args(["--labels", str(labels), *TINY, "--units", "nose_bulge",
                                         "--output-dir", str(tmp_path)])
    items, _ = load_labels(labels)
    everything = (np.arange(len(items)), np.arange(0), np.arange(0))
    train_fold(items, everything, tmp_path / "final", args, None, {"nose_bulge": 3})
    checkpoint = torch.load(tmp_path / "final" / "unit_nose_bulge.pth", weights_only=False)
    assert checkpoint["state"]["epoch"] == 3
    assert all(torch.equal(checkpoint["state"]["best"][key], value)
               for key, value in checkpoint["model"].items())
    assert best_epoch(tmp_path / "final", "nose_bulge") == 3


def test_the_folds_median_epoch_rounds_to_the_nearest() -> None:
    """Before, int(median) rounded 2.5 down to 2."""
    assert median_epoch([2, 3]) == 3 and median_epoch([1, 2, 4, 5]) == 3
    assert median_epoch([4, 6, 9]) == 6 and median_epoch([1, 1]) == 1


def test_the_final_fit_ignores_fold_folders_of_an_earlier_run(labels: Path,
                                                              tmp_path: Path) -> None:
    """Two folds left by an earlier run, best at epoch 9: before, the final fit took them into
    the median and trained for 5 epochs, more than this run's folds ever ran."""
    out = tmp_path / "run"
    for stale in ("fold5", "fold6"):
        (out / stale).mkdir(parents=True)
        torch.save({"state": {"history": [{"epoch": 9, "loss": 0.1, "n": 4}]}},
                   out / stale / "unit_ear_position.pth")
    assert train_cli(["--labels", str(labels), *TINY[:-2], "--epochs", "2", "--folds", "2",
                      "--units", "ear_position", "--output-dir", str(out)]) == 0
    final = torch.load(out / "final" / "unit_ear_position.pth", weights_only=False)
    assert final["state"]["epoch"] == median_epoch([best_epoch(out / f"fold{k}", "ear_position")
                                                    for k in range(2)]) <= 2


@pytest.mark.parametrize(("folds", "why"), [
    ({"fold0": {"cutoff": 4.0}}, "pain_cutoff_folds has no fold1 (it has fold0)"),
    ({"fold1": {"cutoff": "high"}}, "pain_cutoff_folds.fold1.cutoff='high' is not a number")])
def test_a_report_without_the_folds_own_cutoff_is_one_line(
        cv_run: Path, tmp_path: Path, folds: dict[str, Any], why: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.json"
    report.write_text(json.dumps(_report(cv_run) | {"pain_cutoff_folds": folds}))
    capsys.readouterr()
    assert export_cli(["--run", str(cv_run), "--fold", "1", "--report", str(report),
                       "--out", str(tmp_path / "models"), "--accept-weak"]) == 2
    assert capsys.readouterr().err == f"mgs-export: error: {report}: {why}\n"
    assert not (tmp_path / "models" / "scorer.onnx").exists()
