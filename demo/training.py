"""The demo's recipe: its localizer and scorer trained on synthetic faces with PyTorch.

The demo ships the models this recipe made from DemoSpec() and its fixed seed (demo/models/,
written by `python -m demo.build --ship`); the demo itself runs them without PyTorch. This module
is imported only to make models: `mgs-monitor demo --rebuild`, the ship command and the tests.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from rich.progress import Progress

import synth
from demo.build import CUBICLES, DemoSpec
from export.onnx_export import export_localizer, export_scorer
from monitor.config import Faces
from monitor.scoring.faces import face_crop, localizer_view
from train.fit import LocalizerData, UnitData, fit_localizer, fit_units
from train.models import FaceLocalizer

# The spec's fields that decide the models (the rest decide the scene).
RECIPE_FIELDS = ("localizer_size", "scorer_size", "localizer_images", "localizer_epochs",
                 "unit_faces", "unit_epochs", "width", "height", "seed", "build")


def recipe(spec: DemoSpec) -> str:
    """What the models were made from, kept in their metadata: the spec's model fields (seed
    included) and the command that makes the shipped ones."""
    fields = {k: v for k, v in asdict(spec).items() if k in RECIPE_FIELDS}
    return json.dumps({"command": "python -m demo.build --ship", **fields})


def train_models(folder: Path, spec: DemoSpec, progress: Progress) -> dict[str, Any]:
    """Localizer first: the scorer then learns from crops cut at the localizer's own boxes,
    so it sees faces framed the way the monitor will frame them."""
    rng = np.random.default_rng(spec.seed)
    task = progress.add_task("demo cubicles", total=spec.localizer_images)
    loc_train, loc_val = _split(localizer_data(rng, spec.localizer_images, spec,
                                               lambda: progress.advance(task)))
    task = progress.add_task("train localizer", total=spec.localizer_epochs)
    localizer, loc_metrics = fit_localizer(loc_train, loc_val, epochs=spec.localizer_epochs,
                                           seed=spec.seed,
                                           progress=lambda *_: progress.advance(task))
    task = progress.add_task("demo faces", total=spec.unit_faces)
    unit_train, unit_val = _split(unit_data(rng, spec.unit_faces, spec, localizer,
                                            lambda: progress.advance(task)))
    task = progress.add_task("train unit scorer", total=spec.unit_epochs)
    scorer, unit_metrics = fit_units(unit_train, unit_val, epochs=spec.unit_epochs,
                                     seed=spec.seed,
                                     progress=lambda *_: progress.advance(task))
    fingerprint = f"synthetic-seed{spec.seed}"
    export_localizer(localizer, folder / "localizer.onnx", loc_val.images[:8], kind="demo",
                     fingerprint=fingerprint, metrics=loc_metrics, recipe=recipe(spec))
    export_scorer(scorer, folder / "scorer.onnx", unit_val.crops[:8], kind="demo",
                  fingerprint=fingerprint, metrics=unit_metrics, recipe=recipe(spec))
    return {"localizer": loc_metrics, "scorer": unit_metrics}


def camera_view(levels: synth.Levels | None, rng: np.random.Generator, spec: DemoSpec
                ) -> tuple[np.ndarray, tuple[float, float, float, float] | None]:
    """A cubicle as the camera delivers it: drawn, then lossy-compressed like a video frame."""
    image, box = synth.draw_cubicle(levels, rng, spec.width // CUBICLES, spec.height)
    quality = int(rng.integers(40, 95))
    _, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    assert decoded is not None
    return decoded, box


def localizer_data(rng: np.random.Generator, count: int, spec: DemoSpec,
                   tick: Any = None) -> LocalizerData:
    """Cubicle views resized exactly as the monitor resizes them; 35% show no face, as
    turned-away mice are the negatives the localizer most easily gets wrong."""
    images, boxes, present = [], [], []
    for _ in range(count):
        image, box = camera_view(synth.random_levels(rng) if rng.random() < 0.65 else None,
                                 rng, spec)
        images.append(localizer_view(image, spec.localizer_size))
        boxes.append(box or (0.0, 0.0, 0.0, 0.0))
        present.append(1.0 if box else 0.0)
        if tick:
            tick()
    return LocalizerData(np.stack(images), np.asarray(boxes, np.float32),
                         np.asarray(present, np.float32))


def unit_data(rng: np.random.Generator, count: int, spec: DemoSpec,
              localizer: FaceLocalizer | None = None, tick: Any = None) -> UnitData:
    """Face crops cut with the monitor's own crop at the localizer's box (else the true box)."""
    margin = Faces().margin
    crops: list[np.ndarray] = []
    levels: list[synth.Levels] = []
    while len(crops) < count:
        views = [(lv, *camera_view(lv, rng, spec))
                 for lv in (synth.random_levels(rng) for _ in range(min(64, count - len(crops))))]
        boxes = [np.asarray(box) for _, _, box in views]
        if localizer is not None:
            boxes = list(_predicted_boxes(localizer, [image for _, image, _ in views]))
        for (unit_levels, image, _), box in zip(views, boxes, strict=True):
            crops.append(face_crop(image, box, margin, spec.scorer_size))
            levels.append(unit_levels)
            if tick:
                tick()
    return UnitData(np.stack(crops), np.asarray(levels, np.int64))


@torch.no_grad()
def _predicted_boxes(localizer: FaceLocalizer, images: list[np.ndarray]) -> np.ndarray:
    batch = np.stack([localizer_view(i, localizer.input_size) for i in images])
    box_logits, _ = localizer.eval()(torch.from_numpy(batch))
    return torch.sigmoid(box_logits).numpy()


def _split(data: Any, val_fraction: float = 0.15) -> tuple[Any, Any]:
    arrays = asdict(data)
    cut = int(len(next(iter(arrays.values()))) * (1 - val_fraction))
    cls = type(data)
    return (cls(**{k: v[:cut] for k, v in arrays.items()}),
            cls(**{k: v[cut:] for k, v in arrays.items()}))
