"""Five-unit scoring of face crops with the fused ONNX scorer, and what the numbers mean."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.scoring.models import OnnxModel
from monitor.units import LEVELS

LEVEL_VALUES = np.asarray(LEVELS, dtype=np.float32)


@dataclass
class UnitScores:
    """One face's scores: probabilities [5, 3], levels (argmax), total and expected total."""

    probs: np.ndarray
    levels: list[int]
    total: int
    expected_total: float


def summarize(probs: np.ndarray) -> UnitScores:
    """Levels are the most likely level per unit; the expected total weighs every level."""
    levels = [int(v) for v in probs.argmax(axis=-1)]
    return UnitScores(probs, levels, sum(levels), float((probs * LEVEL_VALUES).sum()))


class Scorer:
    """All face crops due at once (across cameras) go through the scorer as one batch."""

    # Batches of 16 already run at the fused scorer's full rate (bench/monitor_speed.py);
    # larger ones only grow onnxruntime's memory arena (~0.7 GB more at 64 for ResNet18 x5).
    def __init__(self, model: OnnxModel, max_batch: int = 16) -> None:
        self.model = model
        self.max_batch = max_batch

    @property
    def input_size(self) -> int:
        return self.model.info.input_size

    def score(self, crops: list[np.ndarray]) -> list[UnitScores]:
        results: list[UnitScores] = []
        for start in range(0, len(crops), self.max_batch):
            batch = np.stack(crops[start:start + self.max_batch])
            results.extend(summarize(p) for p in self.model.run(batch)["probs"])
        return results
