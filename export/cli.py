"""`mgs-export`: turn trained models into the ONNX files the monitor runs.

`--run` (mgs-train) gives `scorer.onnx`: the fused five-unit graph with its metadata (units,
input size, normalisation, data fingerprint, per-unit validation metrics, kind, and the pain
cut-off from an mgs-eval report of the same run), after a parity check against PyTorch on the
run's own held-out crops. `--localizer` (mgs-train-localizer) gives `localizer.onnx` the same
way. Each model's figures are printed and written into its metadata; a model below its floor
(export/gate.py) is refused, before anything is written, unless `--accept-weak`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.gate import (
    Figures,
    check_report_run,
    gate,
    localizer_figures,
    read_report,
    scorer_figures,
)
from export.half import halve_scorer
from export.onnx_export import ExportError, export_localizer, export_scorer
from export.quantize import MIN_AGREEMENT, quantize_scorer
from monitor.units import UNITS
from train.command import run_command
from train.image_hashes import image_hashes
from train.labels import LabelError
from train.models import FaceLocalizer
from train.run import Run, RunError, crops_of, load_scorer

PARITY_CROPS = 16
CALIBRATION_CROPS = 200


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgs-export", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Export a trained run (mgs-train) as the monitor's scorer ONNX file.")
    parser.add_argument("--run", type=Path, help="mgs-train --output-dir (the scorer)")
    parser.add_argument("--localizer", type=Path,
                        help="mgs-train-localizer --output-dir (the face localizer)")
    parser.add_argument("--fold", type=int,
                        help="which fold's models to export (default: the final fit after "
                        "cross-validation when there is one, else fold 0)")
    parser.add_argument("--report", type=Path,
                        help="mgs-eval report.json: its pain cut-off goes into the metadata")
    parser.add_argument("--out", type=Path, default=Path("models"),
                        help="folder for scorer.onnx / localizer.onnx (mgs-monitor --models)")
    parser.add_argument("--int8", action="store_true",
                        help="also write scorer-int8.onnx (static quantisation calibrated on "
                        "training crops)")
    parser.add_argument("--int8-min-agreement", type=float, default=MIN_AGREEMENT,
                        help="refuse the int8 scorer below this level agreement with fp32")
    parser.add_argument("--fp16", action="store_true",
                        help="also write scorer-fp16.onnx, for GPUs (CUDA tensor cores); on the "
                        "CPU fp16 is not faster than fp32")
    parser.add_argument("--fp16-min-agreement", type=float, default=MIN_AGREEMENT,
                        help="refuse the fp16 scorer below this level agreement with fp32")
    parser.add_argument("--kind", choices=("trained", "demo"), default="trained",
                        help="'demo' for models trained on synthetic faces")
    parser.add_argument("--accept-weak", action="store_true",
                        help="export a model below its floor (a scorer no better than chance "
                        "by mouse, or without --report; a localizer with held-out recall at "
                        "IoU>=0.5 under 0.8), marked so in its metadata and on the monitor")
    return parser


def main(args: argparse.Namespace) -> list[Path]:
    if args.run is None and args.localizer is None:
        raise RunError("nothing to export: give --run and/or --localizer")
    written = []
    # the localizer is judged first, so that nothing is written when either model is refused
    localizer = judged_localizer(args) if args.localizer is not None else None
    if args.run is not None:
        written.append(export_run(args))
    if localizer is not None:
        written.append(export_trained_localizer(args, *localizer))
    return written


def export_run(args: argparse.Namespace) -> Path:
    run = Run.open(args.run)
    fold = run.final if args.fold is None and run.final else run.fold(args.fold or 0)
    scorer, checkpoint = load_scorer(fold)
    missing = [u for u in UNITS if u not in checkpoint["units"]]
    if missing:
        raise RunError(f"{fold / 'scorer.pth'}: units not trained: {', '.join(missing)}")
    held_out = run.test_items(fold)[:PARITY_CROPS]  # a final fit has none: it saw them all
    crops = crops_of(held_out or run.labels()[:PARITY_CROPS], scorer.input_size)
    cutoff, how = pain_cutoff(args.report, args.fold) if args.report else (None, "")
    figures = judged_scorer(args, run, fold)
    metrics = checkpoint["metrics"]
    trained_on = metrics.get("trained_on") or _fold_text(run, fold)
    path = export_scorer(scorer, args.out / "scorer.onnx", crops, kind=args.kind,
                         fingerprint=metrics["fingerprint"], metrics=metrics["units"],
                         pain_cutoff=cutoff, trained_on=trained_on, pain_cutoff_how=how,
                         training_images=training_image_hashes(run, fold), figures=figures,
                         accepted_weak=args.accept_weak)
    print(f"{path}: {trained_on}")
    print(f"{path}: five-unit scorer ({scorer.arch}, {scorer.input_size}px, kind={args.kind}"
          f"{f', pain cut-off {cutoff:g}' if cutoff is not None else ''}); parity checked on "
          f"{len(crops)} {'held-out' if held_out else 'labelled'} crops")
    if args.int8:
        export_int8(run, fold, path, scorer.input_size, args.int8_min_agreement)
    if args.fp16:
        export_fp16(run, fold, path, scorer.input_size, args.fp16_min_agreement)
    return path


def report_of_run(report: Path, run: Run, fold: Path) -> dict[str, Any]:
    """The report's content, once it is shown to be made from this run's models as they are."""
    content = read_report(report)
    check_report_run(report, content, run, fold)
    return content


def judged_scorer(args: argparse.Namespace, run: Run, fold: Path) -> Figures:
    """The scorer's figures by mouse, printed; refused below the floor unless --accept-weak."""
    content = report_of_run(args.report, run, fold) if args.report else None
    figures = scorer_figures(args.report, content, run)
    print(f"{fold}: scorer {figures.text}")
    gate(args.report or fold, "scorer", figures, args.accept_weak)
    if figures.below_floor:
        print(f"{fold}: scorer below the floor, exported as asked (--accept-weak): "
              f"{figures.below_floor}")
    return figures


def export_int8(run: Run, fold: Path, fp32: Path, size: int, min_agreement: float) -> Path:
    calibration = crops_of(run.items_of(fold, "train")[:CALIBRATION_CROPS], size)
    held_out = held_out_crops(run, fold, size)
    out = fp32.with_name("scorer-int8.onnx")
    agreement = quantize_scorer(fp32, out, calibration, held_out, min_agreement)
    print(f"{out}: int8 scorer, unit levels agree with fp32 on {agreement:.1%} of "
          f"{len(held_out)} held-out crops")
    return out


def export_fp16(run: Run, fold: Path, fp32: Path, size: int, min_agreement: float) -> Path:
    held_out = held_out_crops(run, fold, size)
    out = fp32.with_name("scorer-fp16.onnx")
    agreement = halve_scorer(fp32, out, held_out, min_agreement)
    print(f"{out}: fp16 scorer (for GPUs), unit levels agree with fp32 on {agreement:.1%} of "
          f"{len(held_out)} held-out crops")
    return out


def _fold_text(run: Run, fold: Path) -> str:
    folds = len(run.folds)
    if folds == 1:
        return f"trained on the training part of {fold.name}"
    return f"trained on the training part of {fold.name}, one of {folds} folds (no final fit)"


def pain_cutoff(report: Path, fold: int | None = None) -> tuple[float | None, str]:
    """The total-score cut-off an mgs-eval report.json chose for one model, and how: with
    `fold`, that fold's own (chosen on its validation part only), else the deployed model's
    (`pain_cutoff`: the final fit's, or the only fold's); None when it chose none. Refused: a
    cut-off chosen on the test predictions it is reported on (in-sample), and one chosen on
    every fold's validation parts pooled (other folds' test mice), as older reports did: it
    would become the live alert threshold."""
    try:
        content = json.loads(report.read_text(encoding="utf-8"))
        found = content.get("pain_cutoff")
        cutoff = None if found is None else float(found)
    except (ValueError, AttributeError, TypeError) as exc:
        raise RunError(f"{report}: not an mgs-eval report.json with a numeric pain_cutoff "
                       f"({type(exc).__name__}: {exc})") from None
    if cutoff is not None and content.get("pain_cutoff_from") != "validation":
        raise RunError(f"{report}: its pain cut-off was chosen on the test predictions it is "
                       "reported on (in-sample); run mgs-eval again, which chooses it on the "
                       "validation part")
    folds = content.get("pain_cutoff_folds")
    if not isinstance(folds, dict):
        if cutoff is None and fold is None:
            return None, ""
        raise RunError(f"{report}: no pain_cutoff_folds: its cut-off pools every fold's "
                       "validation part, whose mice are other folds' test mice (an older "
                       "mgs-eval); run mgs-eval again")
    if fold is None:
        return cutoff, str(content.get("pain_cutoff_how") or "")
    return _fold_cutoff(report, folds, fold)


def _fold_cutoff(report: Path, folds: dict[str, Any], fold: int) -> tuple[float | None, str]:
    """Fold `fold`'s own cut-off from a report's pain_cutoff_folds, and how it was chosen."""
    found = folds.get(f"fold{fold}")
    if not isinstance(found, dict):
        raise RunError(f"{report}: pain_cutoff_folds has no fold{fold} (it has "
                       f"{', '.join(folds) or 'none'})")
    try:
        cutoff = None if found.get("cutoff") is None else float(found["cutoff"])
    except (TypeError, ValueError):
        raise RunError(f"{report}: pain_cutoff_folds.fold{fold}.cutoff="
                       f"{found.get('cutoff')!r} is not a number") from None
    return cutoff, f"fold{fold}'s own, {found.get('how') or ''}" if cutoff is not None else ""


def training_image_hashes(run: Run, fold: Path) -> list[str]:
    """Content hashes of the images the fold's scorer learnt from: its training part, and its
    validation part, which chose each unit's epoch (the final fit: every labelled image)."""
    items = run.items_of(fold, "train") + run.items_of(fold, "val")
    return image_hashes(item.image for item in items)


def held_out_crops(run: Run, fold: Path, size: int) -> np.ndarray:
    """The fold's test crops (all labelled crops when it has none) that reduced scorers are
    checked on against fp32."""
    return crops_of((run.test_items(fold) or run.labels())[:CALIBRATION_CROPS], size)


def judged_localizer(args: argparse.Namespace) -> tuple[dict[str, Any], Figures]:
    """The localizer's checkpoint and its held-out figures, printed; refused below the floor
    unless --accept-weak."""
    source = args.localizer / "localizer.pth"
    if not source.is_file():
        raise RunError(f"{source}: not found; is {args.localizer} an mgs-train-localizer run?")
    checkpoint = torch.load(source, map_location="cpu", weights_only=False)
    figures = localizer_figures(source, checkpoint["metrics"])
    print(f"{args.localizer}: localizer {figures.text}")
    gate(source, "localizer", figures, args.accept_weak)
    if figures.below_floor:
        print(f"{args.localizer}: localizer below the floor, exported as asked "
              f"(--accept-weak): {figures.below_floor}")
    return checkpoint, figures


def export_trained_localizer(args: argparse.Namespace, checkpoint: dict[str, Any],
                             figures: Figures) -> Path:
    localizer = FaceLocalizer(checkpoint["input_size"])
    localizer.load_state_dict(checkpoint["model"])
    path = export_localizer(localizer.eval(), args.out / "localizer.onnx",
                            checkpoint["check_images"], kind=args.kind,
                            fingerprint=checkpoint["fingerprint"], metrics=checkpoint["metrics"],
                            training_images=checkpoint.get("training_images"),
                            figures=figures, accepted_weak=args.accept_weak)
    print(f"{path}: face localizer ({localizer.input_size}px, kind={args.kind}); parity checked "
          f"on {len(checkpoint['check_images'])} held-out views")
    return path


def cli(argv: Sequence[str] | None = None) -> int:
    return run_command(get_args_parser(), main, (RunError, LabelError, ExportError, OSError), argv)


if __name__ == "__main__":
    sys.exit(cli())
