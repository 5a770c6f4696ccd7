"""`mgs-eval --frames`: the localizer in the loop, measured on a lab's labelled frames.

`mgs-eval --run` scores hand-cut face crops; the monitor scores crops cut at the localizer's
boxes. Here each labelled image with a face box is one cubicle, and it goes through the
monitor's own FaceFinder (localizer view, visibility score, crop, quality gate) and Scorer
exactly as live. Reported: how often a face is found (recall, with any box and with a box of
IoU >= 0.5 with the labelled one) and how well its box overlaps the labelled one, and unit
accuracy on the localizer's crops beside the hand-cut crops of the same images, so the cost of
the localizer to the scores is one number per unit.

The figures are only worth something on frames the models never saw: frames whose images
either model trained on (by the content hashes in its metadata, train/image_hashes) are
refused, or with `allow_in_sample` measured and marked in-sample wherever they are shown.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from monitor.config import Faces
from monitor.scoring.faces import FaceFinder
from monitor.scoring.models import LOCALIZER, SCORER, ModelInfo, OnnxModel
from monitor.scoring.scorer import Scorer
from monitor.units import UNITS
from train import strict_json
from train.image_hashes import hashes_in, image_hash
from train.labels import LabelError, LabelledImage, face_crop_for, load_labels

CPU = ["CPUExecutionProvider"]
Box = tuple[float, float, float, float]
MIN_IOU = 0.5  # a face counts as found at this overlap with the labelled box
IN_SAMPLE = "IN-SAMPLE"


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (cx, cy, w, h) boxes."""
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def evaluate_frames(labels: Path, models: Path, faces: Faces | None = None, *,
                    allow_in_sample: bool = False, **label_options: Any) -> dict[str, Any]:
    """Face recall, box IoU and unit accuracy (localizer crops beside hand crops), and which
    frames the models trained on; those are refused unless `allow_in_sample`."""
    items = [item for item in load_labels(labels, **label_options)[0] if item.box is not None]
    if not items:
        raise LabelError(f"{labels}: no image has a face box; --frames needs labelled frames "
                         "with face boxes (box columns or --boxes)")
    scorer = Scorer(OnnxModel(models / "scorer.onnx", SCORER, CPU))
    localizer = OnnxModel(models / "localizer.onnx", LOCALIZER, CPU)
    seen = in_sample(items, {"scorer": scorer.model.info, "localizer": localizer.info})
    if seen["frames"] and not allow_in_sample:
        raise LabelError(f"{labels}: {seen['frames']} of {len(items)} frames are images the "
                         f"exported models trained on (e.g. {seen['example']}); measure on "
                         "frames they never saw, or pass --allow-in-sample to report them "
                         "marked in-sample")
    finder = FaceFinder(localizer, faces or Faces(), scorer.input_size)
    found = [finder.find([_bgr(item)])[0] for item in items]
    ious = [box_iou(result.box, item.box) for result, item in zip(found, items, strict=True)
            if result.status != "no_face" and item.box is not None]
    scored = [(item, result.crop) for item, result in zip(items, found, strict=True)
              if result.crop is not None]
    return {"images": len(items),
            "face_recall": sum(r.status != "no_face" for r in found) / len(items),
            "face_recall_iou_0.5": sum(v >= MIN_IOU for v in ious) / len(items),
            "scored_fraction": len(scored) / len(items),
            "mean_iou": float(np.mean(ious)) if ious else None,
            "iou_at_least_0.5": float(np.mean([v >= MIN_IOU for v in ious])) if ious else None,
            "in_sample": seen,
            "unit_accuracy": _unit_accuracy(scorer, scored)}


def in_sample(items: list[LabelledImage], models: dict[str, ModelInfo]) -> dict[str, Any]:
    """How many frames each model trained on (None: its metadata carries no hashes), how many
    either did, and one such frame."""
    hashes = [image_hash(item.image) for item in items]
    known = {role: hashes_in(info.path, info.extra) for role, info in models.items()}
    seen = [any(h in trained for trained in known.values() if trained is not None)
            for h in hashes]
    example = next((item.image for item, hit in zip(items, seen, strict=True) if hit), None)
    return {"frames": sum(seen), "example": None if example is None else str(example),
            **{role: None if trained is None else sum(h in trained for h in hashes)
               for role, trained in known.items()}}


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
    """What a person reads first: whether the frames are out of sample, recall, IoU, and per
    unit the two accuracies."""
    iou = results["mean_iou"]
    lines = [*_sample_lines(results),
             f"{results['images']} labelled frames: face found in {results['face_recall']:.0%} "
             f"(any box), {results['face_recall_iou_0.5']:.0%} with box IoU >= {MIN_IOU:g}; "
             f"scored in {results['scored_fraction']:.0%}; mean box IoU "
             f"{'n/a' if iou is None else f'{iou:.2f}'}",
             "unit accuracy, localizer crops vs hand-cut crops of the same images:"]
    for unit, found in results["unit_accuracy"].items():
        live, hand = found["localizer_crops"], found["hand_crops"]
        lines.append(f"  {unit:20} {'n/a' if live is None else f'{live:.1%}':>7} "
                     f"{'n/a' if hand is None else f'{hand:.1%}':>7}  (n {found['n']})")
    return lines


def summary_html(results: dict[str, Any]) -> str:
    """The summary lines as paragraphs of the report page, the in-sample warning in red."""
    loud = "<p style='color:#c00;font-weight:bold'>"
    return "".join(f"{loud if line.startswith(IN_SAMPLE) else '<p>'}{html.escape(line)}</p>"
                   for line in summary_lines(results))


def _sample_lines(results: dict[str, Any]) -> list[str]:
    """In-sample frames first and in capitals; a model whose training images are unknown."""
    seen = results["in_sample"]
    lines = []
    if seen["frames"]:
        lines.append(f"{IN_SAMPLE}: {seen['frames']} of {results['images']} frames are images the "
                     f"models trained on (scorer {seen['scorer'] or 0}, localizer "
                     f"{seen['localizer'] or 0}; e.g. {seen['example']}): these figures are "
                     "not out of sample")
    for role in ("scorer", "localizer"):
        if seen[role] is None:
            lines.append(f"the {role} carries no training-image hashes (a demo model or an "
                         "older export): whether it saw these frames is not checked")
    return lines
