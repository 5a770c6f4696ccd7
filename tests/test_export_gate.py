"""mgs-export takes a report only from the run it exports, and no weak model goes live silently:
each model's figures are printed and carried in its metadata, a model below its floor is refused
unless --accept-weak, and the monitor shows the figures, in red below the floor."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from rich.console import Console
from rich.text import Text

import synth
from demo.build import DemoBuild
from export.cli import cli as export_cli
from export.gate import LOCALIZER_RECALL_FLOOR, Figures, scorer_figures
from export.onnx_export import export_localizer, export_scorer
from monitor.config import build_config
from monitor.pipeline import Monitor
from monitor.runner import figure_lines
from monitor.schema import StatusReport
from monitor.scoring.analyzer import Models
from monitor.scoring.models import LOCALIZER, SCORER, OnnxModel
from monitor.units import UNITS
from monitor.views.dashboard import DashboardState, render
from tests.fakes import FakeCamera
from tests.monitor_util import run_until
from train.models import FaceLocalizer, UnitScorer
from train.run import Run, fold_fingerprint
from train.train import cli as train_cli

TINY_CV = ["--arch", "tiny", "--input-size", "32", "--weights", "none", "--batch-size", "16",
           "--lr", "0.05", "--folds", "2"]


@pytest.fixture(scope="module")
def labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("faces")
    return synth.write_face_dataset(folder, 80, np.random.default_rng(0), size=64)




def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.removeprefix("mgs-export: error: ").rstrip("\n")


def metadata(path: Path) -> dict[str, str]:
    return OnnxModel(path, SCORER if path.stem == "scorer" else LOCALIZER,
                     ["CPUExecutionProvider"]).info.extra


def test_the_report_carries_each_folds_fingerprint(cv_run: Path) -> None:
    written = json.loads((cv_run / "report" / "report.json").read_text())["run_fingerprint"]
    assert written == {name: fold_fingerprint(cv_run / name)
                       for name in ("fold0", "fold1", "final")}
    assert len(set(written.values())) == 3


def test_a_report_of_another_run_is_refused(cv_run: Path, labels: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Before, any report.json marked pain_cutoff_from=validation was taken."""
    other = tmp_path / "other"
    assert train_cli(["--labels", str(labels), *TINY_CV, "--epochs", "1", "--seed", "1",
                      "--no-final-fit", "--output-dir", str(other)]) == 0
    report = cv_run / "report" / "report.json"
    capsys.readouterr()
    assert export_cli(["--run", str(other), "--report", str(report), "--out",
                       str(tmp_path / "models"), "--accept-weak"]) == 2
    assert one_line_error(capsys) == (
        f"{report}: made from another run, not {other} (no fold's fingerprint matches); "
        f"run mgs-eval --run {other} again before exporting fold0")
    assert not (tmp_path / "models").exists()


def test_a_report_older_than_a_retrained_fold_is_refused(
        cv_run: Path, labels: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(cv_run, run)
    report = run / "report" / "report.json"
    assert export_cli(["--run", str(run), "--report", str(report), "--out",
                       str(tmp_path / "models"), "--accept-weak"]) == 0  # the same files
    assert train_cli(["--labels", str(labels), *TINY_CV, "--epochs", "2", "--fold", "1",
                      "--output-dir", str(run)]) == 0
    capsys.readouterr()
    assert export_cli(["--run", str(run), "--report", str(report), "--out",
                       str(tmp_path / "models"), "--accept-weak"]) == 2
    assert one_line_error(capsys) == (
        f"{report}: stale, fold1 of {run} changed since it was written (retrained?); "
        f"run mgs-eval --run {run} again before exporting final")


def test_a_report_without_a_fingerprint_is_refused(cv_run: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    content = json.loads((cv_run / "report" / "report.json").read_text())
    del content["run_fingerprint"]  # as mgs-eval wrote reports before
    older = tmp_path / "report.json"
    older.write_text(json.dumps(content))
    assert export_cli(["--run", str(cv_run), "--report", str(older), "--fold", "1",
                       "--out", str(tmp_path / "models"), "--accept-weak"]) == 2
    assert one_line_error(capsys) == (
        f"{older}: no run_fingerprint (written by an older mgs-eval), so nothing ties it to "
        f"{cv_run}; run mgs-eval --run {cv_run} again before exporting fold1")


def with_auroc(cv_run: Path, folder: Path, low: float | None) -> Path:
    """The run's own report (fingerprint kept), its by-mouse AUROC interval set to [low, 0.9]."""
    content = json.loads((cv_run / "report" / "report.json").read_text())
    content["by_mouse"]["auroc"] = {"value": 0.7, "ci_low": low, "ci_high": 0.9, "defined": 20}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report.json"
    path.write_text(json.dumps(content))
    return path


@pytest.mark.slow
def test_a_scorer_no_better_than_chance_by_mouse_is_refused_unless_accepted(
        cv_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before, a model of unit accuracies 0.21-0.71 went live without a word."""
    models = tmp_path / "models"
    chance = with_auroc(cv_run, tmp_path / "chance", 0.5)
    base = ["--run", str(cv_run), "--report", str(chance), "--out", str(models)]
    capsys.readouterr()
    assert export_cli(base) == 2
    said = capsys.readouterr()
    assert said.err == (
        f"mgs-export: error: {chance}: scorer not exported, below the floor: no better than "
        "chance by mouse: AUROC 0.70 [0.50, 0.90], whose 95% CI reaches 0.5; pass "
        "--accept-weak to export it anyway, marked below the floor\n")
    by_mouse = json.loads(chance.read_text())["by_mouse"]
    assert (f"{cv_run / 'final'}: scorer by mouse ({by_mouse['n_mice']} mice): AUROC 0.70 "
            "[0.50, 0.90], r ") in said.out
    assert not models.exists()
    assert export_cli([*base, "--accept-weak"]) == 0
    meta = metadata(models / "scorer.onnx")
    assert meta["below_floor"].startswith("no better than chance by mouse: AUROC 0.70")
    assert meta["accepted_weak"] == "yes"
    assert meta["figures"].startswith(f"by mouse ({by_mouse['n_mice']} mice): AUROC 0.70 "
                                      "[0.50, 0.90], r ")
    values = json.loads(meta["figures_values"])
    assert values["auroc"] == {"value": 0.7, "ci_low": 0.5, "ci_high": 0.9}
    assert set(values["unit_accuracy"]) == set(UNITS)

    better = with_auroc(cv_run, tmp_path / "better", 0.62)
    assert export_cli(["--run", str(cv_run), "--report", str(better), "--out",
                       str(models)]) == 0
    meta = metadata(models / "scorer.onnx")
    assert meta["below_floor"] == meta["accepted_weak"] == ""
    assert "AUROC 0.70 [0.62, 0.90]" in meta["figures"]


def test_a_scorer_without_a_report_is_refused_saying_what_to_run(
        cv_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert export_cli(["--run", str(cv_run), "--out", str(tmp_path / "models")]) == 2
    assert one_line_error(capsys) == (
        f"{cv_run / 'final'}: scorer not exported, below the floor: no figures by mouse: run "
        f"mgs-eval --run {cv_run} --pain-conditions ... and pass --report "
        f"{cv_run / 'report' / 'report.json'}; pass --accept-weak to export it anyway, marked "
        "below the floor")


@pytest.mark.parametrize(("by_mouse", "why"), [
    (None, "has no figures by mouse (labels without mouse ids, or too few mice to resample)"),
    ({"n_mice": 6}, "has no AUROC by mouse (mgs-eval without --pain-conditions)"),
    ({"n_mice": 6, "auroc": {"value": None, "ci_low": None, "ci_high": None, "defined": 0}},
     "its AUROC by mouse is undefined (no resample held both pain and control mice)"),
    ({"n_mice": 6, "auroc": {"value": 0.6, "ci_low": 0.49, "ci_high": 0.7, "defined": 9}},
     "no better than chance by mouse: AUROC 0.60 [0.49, 0.70], whose 95% CI reaches 0.5"),
    ({"n_mice": 6, "auroc": {"value": 0.6, "ci_low": 0.51, "ci_high": 0.7, "defined": 9}}, ""),
])
def test_the_scorer_floor_is_a_by_mouse_auroc_above_chance(by_mouse: dict[str, Any] | None,
                                                           why: str) -> None:
    report = Path("r/report.json")
    figures = scorer_figures(report, {"by_mouse": by_mouse}, Run(Path("r"), {}))
    assert figures.below_floor.removeprefix(f"{report} ") == why


def weak_localizer(folder: Path, recall: float) -> Path:
    """A localizer run as mgs-train-localizer writes it, with the held-out recall given."""
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    images = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    torch.save({"model": FaceLocalizer(32).state_dict(), "input_size": 32, "args": {},
                "metrics": {"visibility_accuracy": 0.5, "mean_iou": 0.3,
                            "recall_iou50": recall},
                "fingerprint": "f", "check_images": images}, folder / "localizer.pth")
    return folder


@pytest.mark.slow
def test_a_localizer_below_the_recall_floor_is_refused_and_nothing_is_written(
        cv_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before, a localizer of held-out recall 0.0 was exported without a word."""
    assert LOCALIZER_RECALL_FLOOR == 0.8
    weak = weak_localizer(tmp_path / "weak", 0.75)
    models = tmp_path / "models"
    base = ["--run", str(cv_run), "--localizer", str(weak), "--out", str(models)]
    capsys.readouterr()
    assert export_cli(base) == 2
    said = capsys.readouterr()
    assert said.err == (
        f"mgs-export: error: {weak / 'localizer.pth'}: localizer not exported, below the "
        "floor: held-out recall at IoU>=0.5 0.75 is below the floor 0.8; pass --accept-weak "
        "to export it anyway, marked below the floor\n")
    assert (f"{weak}: localizer held-out recall at IoU>=0.5 0.75, mean IoU 0.30, visibility "
            "accuracy 0.50") in said.out
    assert not models.exists()  # the scorer was not written either
    assert export_cli([*base, "--accept-weak"]) == 0
    meta = metadata(models / "localizer.onnx")
    assert meta["below_floor"] == "held-out recall at IoU>=0.5 0.75 is below the floor 0.8"
    assert meta["accepted_weak"] == "yes"
    assert json.loads(meta["figures_values"])["recall_iou50"] == 0.75
    good = weak_localizer(tmp_path / "good", 0.8)
    assert export_cli(["--localizer", str(good), "--out", str(models)]) == 0
    assert metadata(models / "localizer.onnx")["below_floor"] == ""


@pytest.fixture(scope="module")
def weak_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scorer exported below its floor with --accept-weak, beside a localizer above it."""
    folder = tmp_path_factory.mktemp("weak-models")
    torch.manual_seed(0)
    images = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    export_scorer(UnitScorer("tiny", 32).eval(), folder / "scorer.onnx", images,
                  kind="trained", figures=Figures(
                      "by mouse (8 mice): AUROC 0.50 [0.41, 0.62]", {},
                      "no better than chance by mouse"), accepted_weak=True)
    export_localizer(FaceLocalizer(32).eval(), folder / "localizer.onnx", images,
                     kind="trained", figures=Figures("held-out recall at IoU>=0.5 0.90"))
    return folder


def test_the_monitor_shows_the_figures_in_red_below_the_floor(
        weak_models: Path, demo_small: DemoBuild, tmp_path: Path) -> None:
    """Before, a replay on such models said model_kind=trained and nothing else."""
    config = build_config({**demo_small.config(), "cameras": [{"name": "cam0", "source": 0}],
                           "sampling": {"every_s": 0.05, "burst": 1},
                           "models": {"scorer": str(weak_models / "scorer.onnx"),
                                      "localizer": str(weak_models / "localizer.onnx")}})
    models = Models.load(config)
    figures = ("scorer by mouse (8 mice): AUROC 0.50 [0.41, 0.62]; localizer held-out recall "
               "at IoU>=0.5 0.90")
    assert models.figures() == figures
    assert models.below_floor() == "scorer no better than chance by mouse"
    # the start line
    start = [(line.plain, str(line.style)) for line in figure_lines(models.figures(),
                                                                    models.below_floor())]
    assert start == [(f"model figures: {figures}", "bold red"),
                     ("MODEL BELOW THE FLOOR (exported with --accept-weak): scorer no better "
                      "than chance by mouse", "bold red")]
    # the status reports, and the dashboard drawn from them
    frame = np.zeros((360, 640, 3), np.uint8)
    monitor = Monitor(config, models, None, opener=lambda _s: FakeCamera([frame] * 400))
    status = run_until(monitor, 4, also=lambda v: v.of(StatusReport)).of(StatusReport)[-1]
    assert status.model_figures == figures
    assert status.model_below_floor == "scorer no better than chance by mouse"
    state = DashboardState()
    state.apply(status)
    header, line = render(state, status.wall_time).renderables[:2]
    assert isinstance(header, Text) and isinstance(line, Text)
    assert "  [BELOW THE FLOOR]   records " in header.plain
    assert [str(span.style) for span in header.spans if "BELOW" in header.plain[span.start:
                                                                               span.end]] == [
        "bold red"]
    assert line.plain == (f"models: {figures} — below the floor (exported with --accept-weak): "
                          "scorer no better than chance by mouse")
    assert str(line.style) == "bold red"


def test_figures_above_the_floor_are_shown_plainly() -> None:
    assert [(line.plain, str(line.style)) for line in figure_lines("scorer x", "")] == [
        ("model figures: scorer x", "")]
    assert figure_lines("", "") == []  # the demo's models carry none: DEMO says it all
    state = DashboardState()
    state.apply(StatusReport(publisher="p", seq=1, wall_time=1.0, title="t",
                             model_kind="trained", alert_threshold=4.0, records=0,
                             model_figures="scorer x"))
    console = Console(width=120, record=True, file=io.StringIO(), color_system=None)
    console.print(render(state, 1.0))
    lines = console.export_text().splitlines()
    assert lines[1] == "models: scorer x" and "BELOW" not in lines[0]
