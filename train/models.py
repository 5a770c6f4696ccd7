"""Model definitions shared by training and export.

`UnitScorer` holds the five unit classifiers (ResNet18 each, as in DeepMGS) behind one uint8 RGB
input, with the cast, normalisation and layout change inside the model, so the exported ONNX
graph takes exactly what the monitor has (no train/serve skew). `FaceLocalizer` regresses the one
face box of a cubicle and says whether a scoreable face is visible.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18

from monitor.units import LEVELS, UNITS
from train.command import CommandError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ARCHS = ("resnet18", "tiny")


class Preprocess(nn.Module):
    """uint8 NHWC RGB -> normalised float NCHW, the one place images are prepared."""

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN,
                 std: tuple[float, ...] = IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float()
        return (x - self.get_buffer("mean")) / self.get_buffer("std")


def tiny_features(width: int = 16) -> nn.Sequential:
    """Four stride-2 conv blocks: a small CNN for tests and demo models."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(*block(3, width), *block(width, width * 2),
                         *block(width * 2, width * 4), *block(width * 4, width * 4))


def tiny_classifier(outputs: int, width: int = 16) -> nn.Module:
    """Tiny features, global pooling, linear head: same interface as ResNet18, far cheaper."""
    return nn.Sequential(tiny_features(width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width * 4, outputs))


def unit_classifier(arch: str, weights: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """One unit's 3-level classifier; ResNet18 may start from ImageNet weights."""
    if arch == "tiny":
        return tiny_classifier(len(LEVELS))
    if arch != "resnet18":
        raise CommandError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    model = resnet18()
    if weights is not None:
        model.load_state_dict(weights)
    model.fc = nn.Linear(model.fc.in_features, len(LEVELS))
    return model


class UnitScorer(nn.Module):
    """Five unit classifiers over one uint8 batch; returns logits [N, 5, 3]."""

    def __init__(self, arch: str = "resnet18", input_size: int = 224,
                 weights: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.arch = arch
        self.input_size = input_size
        self.preprocess = Preprocess()
        self.units = nn.ModuleList(unit_classifier(arch, weights) for _ in UNITS)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images)
        return torch.stack([unit(x) for unit in self.units], dim=1)


class ScorerProbs(nn.Module):
    """The exported form: softmax per unit, the contract's `probs` output."""

    def __init__(self, scorer: UnitScorer) -> None:
        super().__init__()
        self.scorer = scorer

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.scorer(images), dim=-1)


class FaceLocalizer(nn.Module):
    """One box (cx, cy, w, h in 0-1) and a visibility logit per cubicle image.

    The head reads a 4x4 grid of features rather than a global average, so where the face is
    survives until the box is regressed.
    """

    def __init__(self, input_size: int = 96, width: int = 16) -> None:
        super().__init__()
        self.arch = "tiny-grid"
        self.input_size = input_size
        self.preprocess = Preprocess()
        self.body = nn.Sequential(
            tiny_features(width), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(width * 4 * 16, 64), nn.ReLU(inplace=True), nn.Linear(64, 5),
        )

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.body(self.preprocess(images))
        return out[:, :4], out[:, 4]


class LocalizerOutputs(nn.Module):
    """The exported form: sigmoid box and score, the contract's `box` and `score` outputs."""

    def __init__(self, localizer: FaceLocalizer) -> None:
        super().__init__()
        self.localizer = localizer

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        box, score = self.localizer(images)
        return torch.sigmoid(box), torch.sigmoid(score)


def load_imagenet_weights(spec: str) -> dict[str, torch.Tensor] | None:
    """`--weights` for ResNet18: 'imagenet' (torchvision cache/download), a local file, or 'none'.

    Raises ValueError with one line naming what to do when the weights cannot be had.
    """
    if spec == "none":
        return None
    if spec == "imagenet":
        from torchvision.models import ResNet18_Weights

        try:
            return ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
        except Exception as exc:  # urllib raises many kinds when offline
            raise CommandError(
                "cannot download ImageNet ResNet18 weights (offline?): pass --weights FILE with "
                "a local resnet18 state dict, or --weights none to start from random init"
            ) from exc
    path = Path(spec)
    if not path.is_file():
        raise CommandError(f"{path}: weights file not found (use 'imagenet', 'none' or a file)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "conv1.weight" not in state:
        raise CommandError(f"{path}: not a torchvision ResNet18 state dict")
    return state
