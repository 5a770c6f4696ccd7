"""Small, fast training loops for the face localizer and the five-unit scorer.

These train the demo and test models on arrays already in memory (uint8 NHWC RGB, the models'
own input format). They follow the torchvision-reference shape (`train_one_epoch`, `evaluate`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from monitor.units import UNITS
from train.models import FaceLocalizer, UnitScorer

Progress = Callable[[int, float], None]  # (epoch, validation metric)
BatchLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (indices, flip mask) -> loss


@dataclass
class LocalizerData:
    images: np.ndarray  # uint8 [N, S, S, 3]
    boxes: np.ndarray  # float32 [N, 4] normalised cx, cy, w, h (zeros where no face)
    present: np.ndarray  # float32 [N] 1 = scoreable face visible


@dataclass
class UnitData:
    crops: np.ndarray  # uint8 [N, S, S, 3]
    levels: np.ndarray  # int64 [N, 5]


def _batches(count: int, size: int, generator: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(count, generator=generator).split(size))


def _flip(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(2), images)


def localizer_loss(model: FaceLocalizer, images: torch.Tensor, boxes: torch.Tensor,
                   present: torch.Tensor) -> torch.Tensor:
    box_logits, score_logits = model(images)
    visibility = F.binary_cross_entropy_with_logits(score_logits, present)
    box_error = F.smooth_l1_loss(torch.sigmoid(box_logits), boxes, reduction="none", beta=0.05)
    weight = present.sum().clamp(min=1.0)
    return visibility + 4.0 * (box_error.sum(1) * present).sum() / weight


def train_epoch(model: nn.Module, count: int, batch_loss: BatchLoss,
                optimizer: torch.optim.Optimizer, batch: int, generator: torch.Generator) -> float:
    """One pass in random batches, each half flipped left-right; returns the mean loss."""
    model.train()
    total = 0.0
    for idx in _batches(count, batch, generator):
        flip = torch.rand(len(idx), generator=generator) < 0.5
        loss = batch_loss(idx, flip)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(idx)
    return total / count


def _localizer_batch_loss(model: FaceLocalizer, data: LocalizerData) -> BatchLoss:
    images, boxes = torch.from_numpy(data.images), torch.from_numpy(data.boxes)
    present = torch.from_numpy(data.present)

    def batch_loss(idx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        flipped_boxes = boxes[idx].clone()
        flipped_boxes[flip, 0] = 1.0 - flipped_boxes[flip, 0]
        return localizer_loss(model, _flip(images[idx], flip), flipped_boxes, present[idx])

    return batch_loss


def _units_batch_loss(model: UnitScorer, data: UnitData) -> BatchLoss:
    """Cross-entropy per unit, summed: the five classifiers share no weights, so each trains
    exactly as it would alone."""
    crops, levels = torch.from_numpy(data.crops), torch.from_numpy(data.levels)

    def batch_loss(idx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        logits = model(_flip(crops[idx], flip))
        return F.cross_entropy(logits.flatten(0, 1), levels[idx].flatten())

    return batch_loss


def _fit(model: nn.Module, count: int, batch_loss: BatchLoss,
         evaluate: Callable[[], dict[str, float]], headline: Callable[[dict[str, float]], float],
         *, epochs: int, seed: int, batch: int, lr: float,
         progress: Progress | None) -> dict[str, float]:
    """AdamW with a cosine schedule; evaluates after every epoch and returns the last metrics."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    metrics: dict[str, float] = {}
    for epoch in range(epochs):
        train_epoch(model, count, batch_loss, optimizer, batch, generator)
        schedule.step()
        metrics = evaluate()
        if progress:
            progress(epoch, headline(metrics))
    model.eval()
    return metrics


@torch.no_grad()
def evaluate_localizer(model: FaceLocalizer, data: LocalizerData) -> dict[str, float]:
    """Visibility accuracy and mean IoU of boxes where a face is present."""
    model.eval()
    box_logits, score_logits = model(torch.from_numpy(data.images))
    visible = (score_logits > 0).numpy()
    present = data.present > 0.5
    ious = box_iou(torch.sigmoid(box_logits).numpy()[present], data.boxes[present])
    return {"visibility_accuracy": float((visible == present).mean()),
            "mean_iou": float(ious.mean()) if len(ious) else 0.0,
            "recall_iou50": float((ious >= 0.5).mean()) if len(ious) else 0.0}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of matching rows of two [N, 4] arrays of (cx, cy, w, h)."""
    a0, a1 = a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2
    b0, b1 = b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2
    inter = np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0, None).prod(1)
    union = a[:, 2:].prod(1) + b[:, 2:].prod(1) - inter
    return inter / np.maximum(union, 1e-9)


def fit_localizer(train: LocalizerData, val: LocalizerData, *, epochs: int, seed: int = 0,
                  batch: int = 32, lr: float = 2e-3,
                  progress: Progress | None = None) -> tuple[FaceLocalizer, dict[str, float]]:
    torch.manual_seed(seed)
    model = FaceLocalizer(input_size=train.images.shape[1])
    metrics = _fit(model, len(train.images), _localizer_batch_loss(model, train),
                   lambda: evaluate_localizer(model, val), lambda m: m["mean_iou"],
                   epochs=epochs, seed=seed, batch=batch, lr=lr, progress=progress)
    return model, metrics


@torch.no_grad()
def evaluate_units(model: UnitScorer, data: UnitData) -> dict[str, float]:
    """Per-unit accuracy and Pearson r of the total score."""
    model.eval()
    predicted = torch.cat([model(torch.from_numpy(chunk)).argmax(-1)
                           for chunk in np.array_split(data.crops, max(1, len(data.crops) // 64))])
    pred = predicted.numpy()
    metrics = {f"accuracy_{unit}": float((pred[:, i] == data.levels[:, i]).mean())
               for i, unit in enumerate(UNITS)}
    totals, truth = pred.sum(1), data.levels.sum(1)
    if totals.std() > 0 and truth.std() > 0:
        metrics["total_r"] = float(np.corrcoef(totals, truth)[0, 1])
    else:
        metrics["total_r"] = 0.0
    return metrics


def fit_units(train: UnitData, val: UnitData, *, epochs: int, arch: str = "tiny", seed: int = 0,
              batch: int = 32, lr: float = 2e-3,
              progress: Progress | None = None) -> tuple[UnitScorer, dict[str, float]]:
    torch.manual_seed(seed)
    model = UnitScorer(arch, input_size=train.crops.shape[1])
    metrics = _fit(model, len(train.crops), _units_batch_loss(model, train),
                   lambda: evaluate_units(model, val),
                   lambda m: float(np.mean([m[f"accuracy_{u}"] for u in UNITS])),
                   epochs=epochs, seed=seed, batch=batch, lr=lr, progress=progress)
    return model, metrics
