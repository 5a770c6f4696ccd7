"""Grad-CAM heatmaps: which part of a face each unit classifier looked at (as DeepMGS shows).

For a ResNet18 unit the heatmap comes from `layer4`; for the tiny demo network from its last
convolution block. Overlays are written as PNGs for the evaluation report.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from monitor.units import UNITS
from train.models import UnitScorer


def target_layer(classifier: nn.Module) -> nn.Module:
    """The last convolutional stage of a unit classifier."""
    layer4 = getattr(classifier, "layer4", None)
    if isinstance(layer4, nn.Module):
        return layer4
    if isinstance(classifier, nn.Sequential):
        return classifier[0]  # tiny_classifier: features, pool, flatten, linear
    raise ValueError(f"no Grad-CAM layer known for {type(classifier).__name__}")


def gradcam(scorer: UnitScorer, unit: int, crop: np.ndarray,
            level: int | None = None) -> tuple[np.ndarray, int]:
    """Heatmap in 0-1 at the crop's size for `level` (default: the predicted level)."""
    classifier = scorer.units[unit]
    captured: dict[str, torch.Tensor] = {}

    def keep(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        output.retain_grad()
        captured["activation"] = output

    handle = target_layer(classifier).register_forward_hook(keep)
    try:
        scorer.eval()
        x = scorer.preprocess(torch.from_numpy(crop[None].copy()))
        logits = classifier(x)
        chosen = int(logits.argmax(1)) if level is None else level
        scorer.zero_grad()
        logits[0, chosen].backward()
    finally:
        handle.remove()
    activation = captured["activation"]
    assert activation.grad is not None
    weights = activation.grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation).sum(1))[0].detach().numpy()
    cam = cv2.resize(cam, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cam / cam.max() if cam.max() > 0 else cam, chosen


def overlay(crop: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The heatmap in the JET palette blended over the RGB crop."""
    colours = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    colours = cv2.cvtColor(colours, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(crop, 1 - alpha, colours, alpha, 0)


def write_gradcam(folder: Path, scorer: UnitScorer, crops: np.ndarray, names: list[str],
                  per_unit: int = 4, display: int = 160) -> dict[str, list[Path]]:
    """Per unit, overlays for the first `per_unit` crops; returns PNG paths by section title."""
    folder.mkdir(parents=True, exist_ok=True)
    sections: dict[str, list[Path]] = {}
    for index, unit in enumerate(UNITS):
        paths = []
        for crop, name in list(zip(crops, names, strict=True))[:per_unit]:
            heat, level = gradcam(scorer, index, crop)
            picture = cv2.resize(overlay(crop, heat), (display, display),
                                 interpolation=cv2.INTER_LINEAR)
            path = folder / f"gradcam_{unit}_{Path(name).stem}_level{level}.png"
            cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
            paths.append(path)
        sections[f"Grad-CAM: {unit.replace('_', ' ')}"] = paths
    return sections
