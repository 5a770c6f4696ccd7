"""Reading back a training run folder written by `mgs-train` (for mgs-eval and mgs-export)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from train.labels import LabelledImage, face_crop_for, load_labels
from train.models import UnitScorer

# What defines a trained fold: its split, its model and the predictions mgs-eval reads from it.
FINGERPRINTED = ("split.json", "predictions.csv", "predictions-val.csv", "scorer.pth")


class RunError(ValueError):
    """A run folder that cannot be used; one line naming the file."""


@dataclass
class Run:
    folder: Path
    args: dict[str, Any]
    written: dict[str, Any] = field(default_factory=dict)  # run.json: split, fold count
    _labels: dict[str, list[LabelledImage]] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, folder: Path) -> Run:
        """The run, refused when a fold folder in it is not one of its folds."""
        path = folder / "run.json"
        if not path.is_file():
            raise RunError(f"{path}: not found; is {folder} an mgs-train --output-dir?")
        content = json.loads(path.read_text())
        run = cls(folder, content["args"], content)
        run.check_folds()
        return run

    @property
    def split(self) -> str:
        """The split the run was trained with (`auto` resolved as mgs-train resolves it)."""
        kind = str(self.written.get("split") or self.args.get("split", "holdout"))
        if kind == "auto":  # a run.json written before the split was kept in it
            items = self.labels()
            kind = "mouse-cv" if items and all(item.mouse for item in items) else "holdout"
        return kind

    @property
    def fold_count(self) -> int:
        """How many folds the run's split has: k for cv and mouse-cv, else one."""
        if "fold_count" in self.written:
            return int(self.written["fold_count"])
        return int(self.args.get("folds", 1)) if self.split in ("cv", "mouse-cv") else 1

    def check_folds(self) -> None:
        """Refuses fold folders left by an earlier run into the same folder (more folds than
        this run's split has): their predictions would be pooled with this run's."""
        count = self.fold_count
        for path in self.folds:
            if _fold_index(path) >= count:
                raise RunError(f"{path}: not a fold of this run ({self.split} with {count} "
                               f"fold{'s' if count > 1 else ''}, run.json); it is left from an "
                               "earlier run: remove it or train into a new --output-dir")

    @property
    def folds(self) -> list[Path]:
        found = [p for p in self.folder.glob("fold*")
                 if _fold_index(p) >= 0 and (p / "scorer.pth").is_file()]
        return sorted(found, key=_fold_index)

    @property
    def final(self) -> Path | None:
        """The one model to deploy after cross-validation (`final/`), when trained."""
        path = self.folder / "final"
        return path if (path / "scorer.pth").is_file() else None

    def fold(self, index: int) -> Path:
        path = self.folder / f"fold{index}"
        if not (path / "scorer.pth").is_file():
            raise RunError(f"{path / 'scorer.pth'}: not found (fold {index} not trained)")
        return path

    def fingerprint(self) -> dict[str, str]:
        """A hash of each trained fold folder (and `final`) over the files that define it, so a
        report can be tied to the models it was made from (mgs-eval writes it, mgs-export checks
        it)."""
        folders = [*self.folds, *([self.final] if self.final else [])]
        return {folder.name: fold_fingerprint(folder) for folder in folders}

    def labels(self, rater: str | None = None) -> list[LabelledImage]:
        """The run's labelled images, resolved with the run's rater (or another one); read
        once per rater, since every image is decoded to check it."""
        chosen = rater or self.args["rater"]
        if chosen not in self._labels:
            self._labels[chosen], _ = load_labels(
                Path(self.args["labels"]), images_root=_path(self.args.get("images_root")),
                rater=chosen, boxes=_path(self.args.get("boxes")))
        return self._labels[chosen]

    def test_items(self, fold: Path) -> list[LabelledImage]:
        return self.items_of(fold, "test")

    def items_of(self, fold: Path, part: str) -> list[LabelledImage]:
        """The labelled images of one part (train, val, test) of a fold's split."""
        names = json.loads((fold / "split.json").read_text())[part]
        by_image = {str(item.image): item for item in self.labels()}
        return [by_image[name] for name in names if name in by_image]


def fold_fingerprint(folder: Path) -> str:
    """sha256 over the files in FINGERPRINTED, each by name and content (a missing one, as in
    runs older than predictions-val.csv, by name alone)."""
    digest = hashlib.sha256()
    for name in FINGERPRINTED:
        path = folder / name
        digest.update(f"{name}:{path.is_file()}\n".encode())
        if path.is_file():
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()[:16]


def load_scorer(fold: Path) -> tuple[UnitScorer, dict[str, Any]]:
    path = fold / "scorer.pth"
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    scorer = UnitScorer(checkpoint["arch"], checkpoint["input_size"])
    scorer.load_state_dict(checkpoint["model"])
    return scorer.eval(), checkpoint


def crops_of(items: list[LabelledImage], size: int) -> np.ndarray:
    return np.stack([face_crop_for(item, size) for item in items])


def _fold_index(path: Path) -> int:
    """k of a `fold<k>` folder, -1 for any other name."""
    digits = path.name.removeprefix("fold")
    return int(digits) if digits.isdigit() else -1


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
