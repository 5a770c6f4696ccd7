"""`mgs-train`: train the five unit classifiers the DeepMGS way on a lab's own labelled images.

The paper's recipe is the default and every choice is a flag: one ResNet18 per unit, cross-
entropy, SGD with momentum, lr 1e-4 multiplied by 0.8 every `--lr-step` epochs, 25 epochs,
batch 25, early stop after 4 epochs without validation-loss improvement, rotation ±20° and
horizontal flip 50%, 224x224 bilinear crops, oversampling of rare levels. Splits: k folds of
whole mice balanced by condition (`--split mouse-cv`, the default when every image names its
mouse: the honest test for a new animal), 75/5/20 of images keeping the condition ratio (`--split
holdout`, the paper's, the default otherwise), k folds of images (`--split cv`), or one 75/5/20
split of mice (`--split mouse`).

Written as the torchvision references are: `get_args_parser()`, `main(args)`,
`train_one_epoch`, `evaluate`; args are stored in every checkpoint and `--resume` continues.

Output folder (per fold `fold<k>/`): `unit_<name>.pth` checkpoints, `scorer.pth` (the five best
units as one model), `split.json`, `metrics.json`, `predictions.csv` for the test part and
`predictions-val.csv` for the validation part.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler
from torchvision.transforms import v2

from monitor.scoring.scorer import summarize
from monitor.units import LEVELS, UNITS
from train import strict_json
from train.command import CommandError, run_command
from train.labels import (
    LabelError,
    LabelledImage,
    data_fingerprint,
    face_crop_for,
    holdout_split,
    kfold_splits,
    load_labels,
    mice_of,
    mouse_kfold_splits,
    mouse_split,
)
from train.models import ARCHS, Preprocess, UnitScorer, load_imagenet_weights, unit_classifier

console = Console(stderr=True)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgs-train", add_help=add_help,
        description="Train the five MGS unit classifiers (DeepMGS recipe by default).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--labels", type=Path, required=True, help="label CSV (see README)")
    data.add_argument("--images-root", type=Path, help="folder image paths are relative to "
                      "(default: the CSV's folder)")
    data.add_argument("--boxes", type=Path, help="face boxes: a JSON file or a YOLO txt folder")
    data.add_argument("--rater", default="majority",
                      help="ground truth: 'majority' of raters or one rater's name")
    data.add_argument("--split", choices=("auto", "mouse-cv", "holdout", "cv", "mouse"),
                      default="auto",
                      help="mouse-cv: k folds of whole mice balanced by condition (no mouse in "
                      "training and test); holdout: 75/5/20 of images by condition (the "
                      "paper's); cv: k folds of images; mouse: one 75/5/20 split of mice. "
                      "auto: mouse-cv when every image names its mouse, else holdout")
    data.add_argument("--folds", type=int, default=5, help="folds for --split cv and mouse-cv")
    data.add_argument("--fold", default="all", help="which fold(s) to train: 'all' or a number")
    model = parser.add_argument_group("model")
    model.add_argument("--arch", choices=ARCHS, default="resnet18")
    model.add_argument("--input-size", type=int, default=224)
    model.add_argument("--weights", default="imagenet",
                       help="ResNet18 start: 'imagenet' (torchvision cache), a local state-dict "
                       "file, or 'none' (random init)")
    model.add_argument("--units", default="all", help="comma-separated units, or 'all'")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=25)
    opt.add_argument("--batch-size", type=int, default=25)
    opt.add_argument("--lr", type=float, default=1e-4)
    opt.add_argument("--momentum", type=float, default=0.9)
    opt.add_argument("--lr-gamma", type=float, default=0.8, help="lr multiplier per step")
    opt.add_argument("--lr-step", type=int, default=5, help="epochs between lr steps")
    opt.add_argument("--patience", type=int, default=4,
                     help="stop after this many epochs without validation improvement")
    opt.add_argument("--no-oversample", action="store_true", help="no oversampling of rare levels")
    opt.add_argument("--rotate", type=float, default=20.0, help="random rotation ± degrees")
    opt.add_argument("--flip", type=float, default=0.5, help="horizontal flip probability")
    data.add_argument("--no-final-fit", action="store_true",
                      help="after k folds, do not train the one model to deploy on all images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/mgs"))
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --output-dir where it stopped")
    return parser


@dataclass
class Crops:
    """Face crops at the model's input size with their ground-truth levels (-1 = blank)."""

    images: np.ndarray  # uint8 [N, S, S, 3]
    levels: np.ndarray  # int64 [N, 5]


def load_crops(items: list[LabelledImage], size: int) -> Crops:
    images = np.stack([face_crop_for(item, size) for item in items])
    levels = np.array([[-1 if v is None else v for v in item.levels] for item in items], np.int64)
    return Crops(images, levels)


def augmentation(rotate: float, flip: float) -> v2.Transform:
    return v2.Compose([v2.RandomHorizontalFlip(flip), v2.RandomRotation(rotate)])


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    augment: v2.Transform) -> float:
    model.train()
    total, count = 0.0, 0
    for images, targets in loader:
        chw = torch.stack([augment(image.permute(2, 0, 1)) for image in images])
        loss = F.cross_entropy(model(chw.permute(0, 2, 3, 1)), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(targets)
        count += len(targets)
    return total / max(1, count)


@torch.no_grad()
def evaluate(model: nn.Module, images: np.ndarray, targets: np.ndarray,
             batch: int = 64) -> dict[str, float]:
    """Loss and accuracy on one unit's scoreable crops."""
    model.eval()
    if len(targets) == 0:
        return {"loss": float("nan"), "accuracy": float("nan"), "n": 0}
    logits = torch.cat([model(torch.from_numpy(images[i:i + batch]))
                        for i in range(0, len(images), batch)])
    target = torch.from_numpy(targets)
    return {"loss": float(F.cross_entropy(logits, target)),
            "accuracy": float((logits.argmax(1) == target).float().mean()), "n": len(targets)}


def _loader(images: np.ndarray, targets: np.ndarray, args: argparse.Namespace,
            generator: torch.Generator) -> DataLoader:
    dataset = TensorDataset(torch.from_numpy(images), torch.from_numpy(targets))
    if args.no_oversample:
        return DataLoader(dataset, batch_size=args.batch_size, shuffle=True, generator=generator)
    counts = np.bincount(targets, minlength=len(LEVELS)).astype(np.float64)
    weights = 1.0 / counts[targets]
    sampler = WeightedRandomSampler(weights.tolist(), len(targets), replacement=True,
                                    generator=generator)
    return DataLoader(dataset, batch_size=args.batch_size, sampler=sampler)


def train_unit(unit: str, train: Crops, val: Crops, args: argparse.Namespace, folder: Path,
               weights: dict[str, torch.Tensor] | None, progress: Progress) -> None:
    """Train one unit with early stopping, checkpointing every epoch (with the best state)."""
    index = UNITS.index(unit)
    keep, keep_val = train.levels[:, index] >= 0, val.levels[:, index] >= 0
    images, targets = train.images[keep], train.levels[keep, index]
    val_images, val_targets = val.images[keep_val], val.levels[keep_val, index]
    torch.manual_seed(args.seed + index)
    generator = torch.Generator().manual_seed(args.seed + index)
    model = nn.Sequential(Preprocess(), unit_classifier(args.arch, weights))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, args.lr_step, args.lr_gamma)
    path = folder / f"unit_{unit}.pth"
    state = UnitState()
    if args.resume and path.exists():
        state = _restore(path, model, optimizer, schedule)
    task = progress.add_task(unit, total=args.epochs, completed=state.epoch)
    augment = augmentation(args.rotate, args.flip)
    while state.epoch < args.epochs and state.bad_epochs < args.patience:
        loss = train_one_epoch(model, _loader(images, targets, args, generator), optimizer,
                               augment)
        schedule.step()
        metrics = evaluate(model, val_images, val_targets)
        state.epoch += 1
        state.history.append({"epoch": state.epoch, "train_loss": loss, **metrics})
        # no validation crops (the final fit): the last epoch is kept, since the lowest
        # training loss says nothing of new mice and would stop short of the folds' epochs
        if not metrics["n"] or metrics["loss"] < state.best_loss:
            state.best_loss, state.bad_epochs = metrics["loss"] if metrics["n"] else loss, 0
            state.best = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            state.bad_epochs += 1
        _save(path, model, optimizer, schedule, state, args)
        progress.update(task, completed=state.epoch)
    progress.update(task, total=state.epoch)


@dataclass
class UnitState:
    """Where one unit's training stands; saved in its checkpoint so a run can resume."""

    epoch: int = 0
    best_loss: float = float("inf")
    bad_epochs: int = 0
    best: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def _save(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any,
          state: UnitState, args: argparse.Namespace) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "state": asdict(state),
                "args": _args_dict(args)}, tmp)
    tmp.replace(path)  # a crash mid-save never leaves a broken checkpoint


def _restore(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
             schedule: Any) -> UnitState:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    schedule.load_state_dict(checkpoint["schedule"])
    return UnitState(**checkpoint["state"])


def _args_dict(args: argparse.Namespace) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


OPTIMISTIC = ("splitting by image although the labels name mice: frames of one mouse sit in "
              "training and test, so test figures will be optimistic (--split mouse-cv keeps "
              "each mouse in one part)")


def split_kind(items: list[LabelledImage], split: str) -> str:
    """The split `auto` stands for: by mouse whenever every image names its mouse."""
    if split != "auto":
        return split
    return "mouse-cv" if items and all(item.mouse for item in items) else "holdout"


def splits(items: list[LabelledImage], args: argparse.Namespace
           ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    kind = split_kind(items, args.split)
    if kind in ("holdout", "cv") and any(item.mouse for item in items):
        console.print(f"[yellow]{OPTIMISTIC}[/]")
    if kind == "mouse-cv":
        return mouse_kfold_splits(items, k=args.folds, seed=args.seed)
    if kind == "cv":
        return kfold_splits(items, k=args.folds, seed=args.seed)
    if kind == "mouse":
        return [mouse_split(items, seed=args.seed)]
    return [holdout_split(items, seed=args.seed)]


def _mice_line(items: list[LabelledImage], val: np.ndarray, test: np.ndarray) -> str:
    """The validation and test mice of a fold, when the labels name mice."""
    if not any(item.mouse for item in items):
        return ""
    return (f"; validation mice {', '.join(mice_of(items, val)) or '-'}; test mice "
            f"{', '.join(mice_of(items, test)) or '-'}")


def chosen_units(spec: str) -> list[str]:
    if spec == "all":
        return list(UNITS)
    units = [u.strip() for u in spec.split(",") if u.strip()]
    unknown = [u for u in units if u not in UNITS]
    if unknown:
        raise CommandError(f"--units: unknown {', '.join(unknown)}; choose from {', '.join(UNITS)}")
    return units


def train_fold(items: list[LabelledImage], parts: tuple[np.ndarray, np.ndarray, np.ndarray],
               folder: Path, args: argparse.Namespace,
               weights: dict[str, torch.Tensor] | None,
               epochs: dict[str, int] | None = None) -> dict[str, Any]:
    """Train every chosen unit on one split; write scorer.pth, metrics and test predictions.
    `epochs`: a fixed epoch count per unit, without early stopping (the final fit)."""
    folder.mkdir(parents=True, exist_ok=True)
    train_idx, val_idx, test_idx = parts
    parts_named = (("train", train_idx), ("val", val_idx), ("test", test_idx))
    (folder / "split.json").write_text(json.dumps(
        {**{name: [str(items[i].image) for i in idx] for name, idx in parts_named},
         "mice": {name: mice_of(items, idx) for name, idx in parts_named}}))
    crops = [load_crops([items[i] for i in idx], args.input_size) if len(idx) else None
             for idx in (train_idx, val_idx, test_idx)]
    train, val, test = (c or Crops(np.zeros((0, args.input_size, args.input_size, 3), np.uint8),
                                   np.zeros((0, len(UNITS)), np.int64)) for c in crops)
    with _progress() as progress:
        for unit in chosen_units(args.units):
            fixed = {} if epochs is None else {"epochs": epochs[unit],
                                               "patience": epochs[unit] + 1}
            train_unit(unit, train, val, argparse.Namespace(**{**vars(args), **fixed}), folder,
                       weights, progress)
    scorer, trained = assemble_scorer(folder, args)
    metrics: dict[str, Any] = {"fingerprint": data_fingerprint(items), "units": {}}
    for unit in trained:
        index = UNITS.index(unit)
        keep = val.levels[:, index] >= 0
        model = nn.Sequential(scorer.preprocess, scorer.units[index])
        metrics["units"][unit] = evaluate(model, val.images[keep], val.levels[keep, index])
    torch.save({"model": scorer.state_dict(), "arch": args.arch, "input_size": args.input_size,
                "units": trained, "args": _args_dict(args), "metrics": metrics},
               folder / "scorer.pth")
    (folder / "metrics.json").write_text(strict_json.dumps(metrics, indent=2))
    write_predictions(folder / "predictions.csv", scorer, [items[i] for i in test_idx], test)
    # the validation part's own: mgs-eval chooses the pain cut-off there, out of the test set
    write_predictions(folder / "predictions-val.csv", scorer, [items[i] for i in val_idx], val)
    return metrics


def best_epoch(folder: Path, unit: str) -> int:
    """The epoch at which one fold's unit did best on its validation part."""
    history = torch.load(folder / f"unit_{unit}.pth", map_location="cpu",
                         weights_only=False)["state"]["history"]
    if not all(h.get("n") for h in history):  # no validation part: the last epoch was kept
        return int(history[-1]["epoch"])
    return int(min(history, key=lambda h: h["loss"])["epoch"])


def median_epoch(epochs: list[int]) -> int:
    """The folds' median best epoch, rounded to the nearest (halves up), at least 1."""
    return max(1, int(np.floor(np.median(epochs) + 0.5)))


def final_fit(items: list[LabelledImage], args: argparse.Namespace,
              weights: dict[str, torch.Tensor] | None, folds: int) -> dict[str, Any]:
    """The one model to deploy after cross-validation: every unit trained on all images for
    the median number of epochs at which this run's `folds` models did best (a fold folder of
    an earlier run in the same folder is not one of them). The folds' test figures (mgs-eval)
    are its expected performance; it has no test part of its own."""
    trained = [args.output_dir / f"fold{k}" for k in range(folds)]
    epochs = {unit: median_epoch([best_epoch(f, unit) for f in trained])
              for unit in chosen_units(args.units)}
    console.print(f"final fit on all {len(items)} images, epochs per unit: "
                  + ", ".join(f"{unit} {n}" for unit, n in epochs.items()))
    everything = (np.arange(len(items)), np.arange(0), np.arange(0))
    metrics = train_fold(items, everything, args.output_dir / "final", args, weights, epochs)
    metrics["trained_on"] = (f"final fit on all {len(items)} images; its expected performance "
                             f"is the {folds} folds' ({split_kind(items, args.split)})")
    _rewrite_metrics(args.output_dir / "final", metrics)
    return metrics


def _rewrite_metrics(folder: Path, metrics: dict[str, Any]) -> None:
    checkpoint = torch.load(folder / "scorer.pth", map_location="cpu", weights_only=False)
    torch.save({**checkpoint, "metrics": metrics}, folder / "scorer.pth")
    (folder / "metrics.json").write_text(strict_json.dumps(metrics, indent=2))


def assemble_scorer(folder: Path, args: argparse.Namespace) -> tuple[UnitScorer, list[str]]:
    """The five-unit model from the best epoch of every unit trained in this fold so far."""
    scorer = UnitScorer(args.arch, args.input_size)
    trained = []
    for index, unit in enumerate(UNITS):
        path = folder / f"unit_{unit}.pth"
        if not path.exists():
            continue
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        best = checkpoint["state"]["best"] or checkpoint["model"]
        unit_model = nn.Sequential(Preprocess(), scorer.units[index])
        unit_model.load_state_dict(best)
        trained.append(unit)
    return scorer.eval(), trained


PREDICTION_COLUMNS = ("image", "mouse", "condition", *(f"truth_{u}" for u in UNITS),
                      *(f"pred_{u}" for u in UNITS), "pred_total", "pred_expected_total",
                      *(f"p_{u}_{lv}" for u in UNITS for lv in LEVELS), "selection")


@torch.no_grad()
def write_predictions(path: Path, scorer: UnitScorer, items: list[LabelledImage],
                      crops: Crops) -> None:
    """The model's scores for the held-out images, beside their ground truth."""
    scorer.eval()
    probs = (torch.cat([torch.softmax(scorer(torch.from_numpy(crops.images[i:i + 64])), -1)
                        for i in range(0, len(crops.images), 64)]).numpy()
             if len(crops.images) else np.zeros((0, len(UNITS), len(LEVELS))))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PREDICTION_COLUMNS)
        for item, unit_probs in zip(items, probs, strict=True):
            scores = summarize(unit_probs)
            writer.writerow([str(item.image), item.mouse, item.condition,
                             *("" if v is None else v for v in item.levels), *scores.levels,
                             scores.total, f"{scores.expected_total:.4f}",
                             *(f"{p:.5f}" for p in unit_probs.flatten()), item.selection])


def _progress() -> Progress:
    return Progress(TextColumn("{task.description:20}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("epochs"), TimeElapsedColumn(), console=console)


def main(args: argparse.Namespace) -> dict[str, Any]:
    items, summary = load_labels(args.labels, images_root=args.images_root, rater=args.rater,
                                 boxes=args.boxes)
    console.print(str(summary))
    weights = load_imagenet_weights(args.weights) if args.arch == "resnet18" else None
    if args.arch == "resnet18" and weights is None:
        console.print("[yellow]ResNet18 from random init (--weights none)[/]")
    all_parts = splits(items, args)
    folds = range(len(all_parts)) if args.fold == "all" else [int(args.fold)]
    results = {}
    for fold in folds:
        train_idx, val_idx, test_idx = all_parts[fold]
        console.print(f"fold {fold}: train {len(train_idx)}, val {len(val_idx)}, test "
                      f"{len(test_idx)} images" + _mice_line(items, val_idx, test_idx))
        results[f"fold{fold}"] = train_fold(items, all_parts[fold],
                                            args.output_dir / f"fold{fold}", args, weights)
    if len(all_parts) > 1 and args.fold == "all" and not args.no_final_fit:
        results["final"] = final_fit(items, args, weights, len(all_parts))
    # the split and its fold count say which fold folders are this run's (mgs-eval, mgs-export)
    (args.output_dir / "run.json").write_text(strict_json.dumps(
        {"args": _args_dict(args), "split": split_kind(items, args.split),
         "fold_count": len(all_parts), "summary": summary.as_dict(), "folds": results},
        indent=2))
    console.print(f"run written to {args.output_dir}")
    return results


def cli(argv: Sequence[str] | None = None) -> int:
    return run_command(get_args_parser(), main, (LabelError, CommandError), argv)


if __name__ == "__main__":
    sys.exit(cli())
