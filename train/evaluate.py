"""`mgs-eval`: the paper's statistics for a trained run, written as a report folder.

Reads every fold's held-out predictions (so k-fold CV scores each image once), compares the
model and every human rater with the ground truth, measures pain vs no pain discrimination for
the conditions the user names, and adds Grad-CAM overlays.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monitor.units import UNITS
from train.command import run_command
from train.frames import evaluate_frames, summary_lines, write_frames_report
from train.gradcam import write_gradcam
from train.labels import MAJORITY, LabelError, LabelledImage, even_vote
from train.report import write_report
from train.run import Run, RunError, crops_of, load_scorer
from train.statistics import EvalInput, FoldPredictions, evaluate, fold_cutoffs


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgs-eval", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Evaluate a trained run: per-unit metrics with Clopper-Pearson CIs, "
        "agreement with raters (Pearson r, Bland-Altman), AUROC/AUPRC, Grad-CAM. "
        "Alerts against truth (mice caught, delay, false alerts per mouse-day) are "
        "`mgs-eval --alerts SCORES.csv --mice MICE.csv`: see `mgs-eval --alerts --help`.")
    parser.add_argument("--run", type=Path, help="mgs-train --output-dir")
    parser.add_argument("--frames", type=Path, metavar="CSV",
                        help="labelled frames with face boxes (a label CSV): run through the "
                        "monitor's own localizer and scorer (--models), as live")
    parser.add_argument("--models", type=Path, metavar="DIR",
                        help="scorer.onnx and localizer.onnx for --frames (mgs-export --out)")
    parser.add_argument("--allow-in-sample", action="store_true",
                        help="--frames: measure frames whose images the models trained on "
                        "(refused otherwise), marked IN-SAMPLE in the printout and the page")
    parser.add_argument("--pain-conditions", default="",
                        help="comma-separated condition names that mean pain (e.g. NTG)")
    parser.add_argument("--control-conditions", default="",
                        help="comma-separated condition names that mean no pain (e.g. saline); "
                        "images of neither are left out of the pain analysis and counted. "
                        "Default: every condition not named pain")
    parser.add_argument("--out", type=Path,
                        help="report folder (default: RUN/report, or frames-report/)")
    parser.add_argument("--selection", metavar="NAME",
                        help="evaluate only the test images chosen this way for labelling "
                        "(mgs-label's `selection` column): `random` gives figures free of the "
                        "bias of choosing hard (`uncertain`) images")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--gradcam", type=int, default=4, help="Grad-CAM images per unit")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def read_predictions(run: Run, name: str = "predictions.csv") -> list[dict[str, str]]:
    """Every fold's predictions of one part: the test part (`predictions.csv`), or the
    validation part (`predictions-val.csv`; none from runs trained before it was written)."""
    rows = [row for fold in run.folds for row in fold_rows(fold, name)]
    if not rows and name == "predictions.csv":
        raise RunError(f"{run.folder}: no held-out predictions (no trained fold has a test part)")
    return rows


def fold_rows(fold: Path, name: str) -> list[dict[str, str]]:
    """One fold's predictions of one part; none when the file is not there."""
    if not (fold / name).is_file():
        return []
    with (fold / name).open(newline="") as handle:
        return list(csv.DictReader(handle))


IMAGE_FOLDS = ("folds of images (--split cv): every validation image is another fold's test "
               "image, and frames of one mouse may sit in both, so no cut-off is chosen; train "
               "with --split mouse-cv (or holdout) for one")


def cutoffs(run: Run, selection: str | None, pain: set[str], control: set[str]
            ) -> dict[str, Any]:
    """Every fold's cut-offs, each chosen on the fold's own validation predictions and
    reported on its own test predictions (those chosen `selection`), and the deployed model's."""
    folds = []
    for fold in run.folds:
        test = [row for row in fold_rows(fold, "predictions.csv")
                if not selection or row.get("selection") == selection]
        folds.append(FoldPredictions(
            fold.name, eval_input(run, fold_rows(fold, "predictions-val.csv"), pain, control),
            eval_input(run, test, pain, control)))
    deployed = "final" if run.final is not None else "fold0"
    return fold_cutoffs(folds, deployed, IMAGE_FOLDS if run.split == "cv" else "")


def chosen(run: Run, rows: list[dict[str, str]], selection: str | None
           ) -> list[dict[str, str]]:
    """The predictions of images chosen `selection` for labelling (all without it)."""
    if not selection:
        return rows
    kept = [row for row in rows if row.get("selection") == selection]
    if not kept:
        found = sorted({row.get("selection") or "(none)" for row in rows})
        raise RunError(f"{run.folder}: no test image was chosen {selection!r} for labelling "
                       f"(selections in its predictions: {', '.join(found)})")
    print(f"evaluating the {len(kept)} of {len(rows)} test images chosen {selection!r}")
    return kept


def _levels(levels: Sequence[float | None] | None) -> list[float]:
    """Per unit a level, NaN where it was not scored (or no one scored the image)."""
    if levels is None:
        return [float("nan")] * len(UNITS)
    return [float("nan") if v is None else float(v) for v in levels]


def rater_levels(run: Run, images: list[str]
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each human rater's levels [N, 5] per image, and those of the reference each is compared
    with: the named reference rater (who is never compared with itself), or with a majority
    reference, the majority of the *other* raters, so no rater is part of their own reference;
    a tied unit counts the mean of the tied levels (`even_vote`), so the reference leans to no
    side. NaN where a unit was not scored."""
    by_image: dict[str, LabelledImage] = {str(i.image): i for i in run.labels()}
    reference = str(run.args["rater"])
    names = sorted({name for item in by_image.values() for name in item.raters if name})
    levels, references = {}, {}
    for name in (n for n in names if n != reference):
        own, theirs = [], []
        for image in images:
            item = by_image.get(image)
            raters = item.raters if item else {}
            own.append(_levels(raters.get(name)))
            if reference != MAJORITY:
                theirs.append(_levels(raters.get(reference)))
            else:
                others = [levels for other, levels in raters.items() if other not in ("", name)]
                theirs.append(_levels(even_vote(others) if others else None))
        own_levels = np.asarray(own, float).reshape(-1, len(UNITS))
        their_levels = np.asarray(theirs, float).reshape(-1, len(UNITS))
        # a lone rater has no one to be compared with
        if np.isfinite(their_levels.sum(axis=1)).any():
            levels[name], references[name] = own_levels, their_levels
    return levels, references


def rater_totals(run: Run, images: list[str]
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each rater's total per image and their reference's (`rater_levels`); NaN where a total
    is undefined (a unit not scored)."""
    levels, references = rater_levels(run, images)
    return ({name: found.sum(axis=1) for name, found in levels.items()},
            {name: found.sum(axis=1) for name, found in references.items()})


def _names(text: str) -> set[str]:
    return {c.strip() for c in text.split(",") if c.strip()}


def eval_input(run: Run, rows: list[dict[str, str]], pain: set[str],
               control: set[str] | None = None) -> EvalInput:
    def levels(prefix: str) -> np.ndarray:
        return np.array([[int(r[f"{prefix}_{u}"]) if r[f"{prefix}_{u}"] != "" else -1
                          for u in UNITS] for r in rows], np.int64).reshape(-1, len(UNITS))

    images = [r["image"] for r in rows]
    raters, references = rater_levels(run, images)
    return EvalInput(
        image=images, truth_levels=levels("truth"), model_levels=levels("pred"),
        model_expected_total=np.array([float(r["pred_expected_total"]) for r in rows]),
        condition=[r["condition"] for r in rows], pain_conditions=pain,
        control_conditions=control or set(), mouse=[r["mouse"] for r in rows],
        raters={name: found.sum(axis=1) for name, found in raters.items()},
        rater_references={name: found.sum(axis=1) for name, found in references.items()},
        rater_levels=raters, rater_reference_levels=references,
        reference_name=str(run.args["rater"]),
        title=f"MGS evaluation — {run.folder.name}",
    )


def deployed_model(run: Run) -> str:
    """What mgs-export deploys from this run, and how these figures relate to it."""
    folds = len(run.folds)
    if run.final is not None:
        return (f"The model to deploy is the final fit on all images (final/); these figures, "
                f"from the {folds} folds' test parts, are its expected performance.")
    if folds > 1:
        return (f"The figures are pooled over {folds} folds' test parts; mgs-export deploys "
                "one fold's model (--fold), trained on that fold's training part only.")
    return "The figures are those of the model mgs-export deploys, on its own test part."


def gradcam_images(run: Run, folder: Path, count: int) -> dict[str, list[Path]]:
    if count <= 0 or not run.folds:
        return {}
    fold = run.folds[0]
    scorer, _ = load_scorer(fold)
    items = run.test_items(fold)[:count]
    if not items:
        return {}
    return write_gradcam(folder / "gradcam", scorer, crops_of(items, scorer.input_size),
                         [str(i.image) for i in items], per_unit=count)


def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.run is None and args.frames is None:
        raise RunError("nothing to evaluate: give --run (a trained run) and/or --frames "
                       "(labelled frames, with --models)")
    frames = evaluate_labelled_frames(args) if args.frames is not None else None
    if args.run is None:
        return {"frames": frames}
    return evaluate_run(args, frames)


def evaluate_labelled_frames(args: argparse.Namespace) -> dict[str, Any]:
    """The localizer in the loop: recall, IoU, and unit accuracy on its crops (train/frames)."""
    if args.models is None:
        raise RunError("--frames needs --models DIR (scorer.onnx and localizer.onnx)")
    found = evaluate_frames(args.frames, args.models, allow_in_sample=args.allow_in_sample)
    out = args.out or (args.run / "report" if args.run else Path("frames-report"))
    path = write_frames_report(out, found)
    print("\n".join(summary_lines(found)))
    print(f"written to {path}")
    return found


def evaluate_run(args: argparse.Namespace, frames: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """The run's report; with `frames`, the localizer-in-the-loop figures join its page."""
    run = Run.open(args.run)
    fingerprint = run.fingerprint()  # of the files read below: mgs-export checks it
    out = args.out or run.folder / "report"
    pain, control = _names(args.pain_conditions), _names(args.control_conditions)
    if pain & control:
        raise RunError(f"--pain-conditions and --control-conditions both name "
                       f"{', '.join(sorted(pain & control))}")
    data = eval_input(run, chosen(run, read_predictions(run), args.selection), pain, control)
    results = evaluate(data, n_boot=args.bootstrap, seed=args.seed,
                       cutoff=cutoffs(run, args.selection, pain, control) if pain else None)
    results["deployed_model"] = deployed_model(run)
    results["run_fingerprint"] = fingerprint
    results["selection"] = args.selection or "all test images"
    results["frames"] = frames
    html = write_report(out, data, results, gradcam_images(run, out, args.gradcam))
    print(f"report written to {html}")
    left = results["left_out_of_pain_analysis"]
    if left:
        print("left out of the pain analysis (neither pain nor control): "
              + ", ".join(f"{c or '(no condition)'} {n}" for c, n in left.items()))
    if results.get("pain_cutoff") is not None:
        print(f"pain cut-off on the total: {results['pain_cutoff']:g}, "
              f"{results['pain_cutoff_how']} (pass --report {out / 'report.json'} to "
              "mgs-export to make it the monitor's default)")
    elif pain:
        print(f"no pain cut-off: {results['pain_cutoff_note']}")
    return results


def cli(argv: Sequence[str] | None = None) -> int:
    return run_command(get_args_parser(), main, (RunError, LabelError), argv)


if __name__ == "__main__":
    sys.exit(cli())
