"""`mgs-eval --frames`: the localizer in the loop, measured on a lab's labelled frames.

`mgs-eval --run` scores hand-cut face crops; the monitor scores crops cut at the localizer's
boxes. Here each labelled image with a face box is one cubicle, and it goes through the
monitor's own FaceFinder (localizer view, visibility score, crop, quality gate) and Scorer
exactly as live. Reported: how often a face is found (recall) and how well its box overlaps
the labelled one (IoU), and unit accuracy on the localizer's crops beside the hand-cut crops
of the same images, so the cost of the localizer to the scores is one number per unit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from monitor.config import Faces
from monitor.faces import FaceFinder
from monitor.models import LOCALIZER, SCORER, OnnxModel
from monitor.scoring import Scorer
from monitor.units import UNITS
from train import strict_json
from train.labels import LabelError, LabelledImage, face_crop_for, load_labels

CPU = ["CPUExecutionProvider"]
Box = tuple[float, float, float, float]


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (cx, cy, w, h) boxes."""
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def evaluate_frames(labels: Path, models: Path, faces: Faces | None = None,
                    **label_options: Any) -> dict[str, Any]:
    """Face recall, box IoU and unit accuracy (localizer crops beside hand crops)."""
    items = [item for item in load_labels(labels, **label_options)[0] if item.box is not None]
    if not items:
        raise LabelError(f"{labels}: no image has a face box; --frames needs labelled frames "
                         "with face boxes (box columns or --boxes)")
    scorer = Scorer(OnnxModel(models / "scorer.onnx", SCORER, CPU))
    finder = FaceFinder(OnnxModel(models / "localizer.onnx", LOCALIZER, CPU), faces or Faces(),
                        scorer.input_size)
    found = [finder.find([_bgr(item)])[0] for item in items]
    ious = [box_iou(result.box, item.box) for result, item in zip(found, items, strict=True)
            if result.status != "no_face" and item.box is not None]
    scored = [(item, result.crop) for item, result in zip(items, found, strict=True)
              if result.crop is not None]
    return {"images": len(items),
            "face_recall": sum(r.status != "no_face" for r in found) / len(items),
            "scored_fraction": len(scored) / len(items),
            "mean_iou": float(np.mean(ious)) if ious else None,
            "iou_at_least_0.5": float(np.mean([v >= 0.5 for v in ious])) if ious else None,
            "unit_accuracy": _unit_accuracy(scorer, scored)}


def _unit_accuracy(scorer: Scorer, scored: list[tuple[LabelledImage, np.ndarray]]
                   ) -> dict[str, dict[str, float | int | None]]:
    """Per unit, on the images the localizer let through: accuracy of the scores of its crops
    and of the hand-cut crops of the same images."""
    if not scored:
        return {unit: {"n": 0, "localizer_crops": None, "hand_crops": None} for unit in UNITS}
    items = [item for item, _ in scored]
    live = scorer.score([crop for _, crop in scored])
    hand = scorer.score([face_crop_for(item, scorer.input_size) for item in items])
    accuracy: dict[str, dict[str, float | int | None]] = {}
    for j, unit in enumerate(UNITS):
        rows = [(item.levels[j], a.levels[j], b.levels[j])
                for item, a, b in zip(items, live, hand, strict=True)
                if item.levels[j] is not None]
        accuracy[unit] = {"n": len(rows),
                          "localizer_crops": _share(t == a for t, a, _ in rows),
                          "hand_crops": _share(t == b for t, _, b in rows)}
    return accuracy


def _share(hits: Any) -> float | None:
    values = list(hits)
    return sum(values) / len(values) if values else None


def _bgr(item: LabelledImage) -> np.ndarray:
    image = cv2.imread(str(item.image), cv2.IMREAD_COLOR)
    if image is None:
        raise LabelError(f"{item.image}: cannot read the image")
    return image


def write_frames_report(out: Path, results: dict[str, Any]) -> Path:
    """frames.json beside the run's report; returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "frames.json"
    path.write_text(strict_json.dumps(results, indent=1))
    return path


def summary_lines(results: dict[str, Any]) -> list[str]:
    """What a person reads first: recall, IoU, and per unit the two accuracies."""
    iou = results["mean_iou"]
    lines = [f"{results['images']} labelled frames: face found in {results['face_recall']:.0%}, "
             f"scored in {results['scored_fraction']:.0%}; mean box IoU "
             f"{'n/a' if iou is None else f'{iou:.2f}'}",
             "unit accuracy, localizer crops vs hand-cut crops of the same images:"]
    for unit, found in results["unit_accuracy"].items():
        live, hand = found["localizer_crops"], found["hand_crops"]
        lines.append(f"  {unit:20} {'n/a' if live is None else f'{live:.1%}':>7} "
                     f"{'n/a' if hand is None else f'{hand:.1%}':>7}  (n {found['n']})")
    return lines
