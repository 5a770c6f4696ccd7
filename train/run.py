"""Reading back a training run folder written by `mgs-train` (for mgs-eval and mgs-export)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
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

    @classmethod
    def open(cls, folder: Path) -> Run:
        path = folder / "run.json"
        if not path.is_file():
            raise RunError(f"{path}: not found; is {folder} an mgs-train --output-dir?")
        return cls(folder, json.loads(path.read_text())["args"])

    @property
    def folds(self) -> list[Path]:
        return sorted(p for p in self.folder.glob("fold*") if (p / "scorer.pth").is_file())

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
        """The run's labelled images, resolved with the run's rater (or another one)."""
        items, _ = load_labels(Path(self.args["labels"]),
                               images_root=_path(self.args.get("images_root")),
                               rater=rater or self.args["rater"],
                               boxes=_path(self.args.get("boxes")))
        return items

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


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
