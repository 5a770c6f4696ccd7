"""mgs-train -> mgs-eval -> mgs-export on synthetic labelled faces, with tiny models."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from export.cli import cli as export_cli
from monitor.cli import main as monitor_main
from monitor.models import LOCALIZER, SCORER, OnnxModel
from monitor.units import UNITS
from train import synth
from train.evaluate import cli as eval_cli
from train.labels import data_fingerprint, load_labels
from train.localizer import cli as localizer_cli
from train.train import cli as train_cli
from train.train import get_args_parser
from train.train import main as train_main

TINY = ["--arch", "tiny", "--input-size", "32", "--weights", "none", "--batch-size", "16",
        "--lr", "0.05"]


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
                       str(tmp_path), "--kind", "demo"]) == 0
    model = OnnxModel(tmp_path / "scorer.onnx", SCORER, ["CPUExecutionProvider"])
    assert model.info.pain_cutoff == pytest.approx(results["pain_cutoff"])
    assert model.info.kind == "demo" and model.info.input_size == 32
    items, _ = load_labels(labels)
    assert model.info.extra["data_fingerprint"] == data_fingerprint(items)


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


def cubicle_labels(folder: Path, count: int) -> Path:
    """Cubicle pictures with face boxes in pixels, in the label CSV format."""
    rng = np.random.default_rng(3)
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


def test_localizer_trains_from_boxes_and_exports(tmp_path: Path, run: Path) -> None:
    labels_csv = cubicle_labels(tmp_path / "cubicles", 80)
    out = tmp_path / "loc"
    assert localizer_cli(["--labels", str(labels_csv), "--input-size", "48", "--epochs", "15",
                          "--views", "3", "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "localizer_metrics.json").read_text())
    assert metrics["mean_iou"] > 0.4 and metrics["visibility_accuracy"] > 0.7
    models = tmp_path / "models"
    assert export_cli(["--run", str(run), "--localizer", str(out), "--out", str(models)]) == 0
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
    base = ["--run", str(run), "--out", str(tmp_path), f"--{precision}"]
    assert export_cli([*base, f"--{precision}-min-agreement", "1.01"]) == 2  # cannot be met
    assert "not written" in capsys.readouterr().err
    assert not (tmp_path / f"scorer-{precision}.onnx").exists()
    assert export_cli([*base, f"--{precision}-min-agreement", "0"]) == 0
    reduced = OnnxModel(tmp_path / f"scorer-{precision}.onnx", SCORER, ["CPUExecutionProvider"])
    fp32 = OnnxModel(tmp_path / "scorer.onnx", SCORER, ["CPUExecutionProvider"])
    assert reduced.info.extra["precision"] == precision
    assert reduced.info.model_id != fp32.info.model_id and reduced.info.units == fp32.info.units
    agreement = float(reduced.info.extra[f"{precision}_agreement"])
    assert 0.0 <= agreement <= 1.0
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
