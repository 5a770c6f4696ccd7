"""`mgs-label queue`: makes a project from monitor evidence or from any folder of images."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from . import project
from .errors import UserError
from .evidence import Crop, FrameCubicle, pin, read_frames, read_scores, record_pins
from .project import BOX, FACE, IMAGE_SUFFIXES, RANDOM, UNCERTAIN, Item, new_id
from .selection import Candidate, pick_random, pick_repeats, pick_uncertain


@dataclass
class QueueReport:
    faces: dict[str, int] = field(default_factory=dict)  # selection -> images
    repeats: int = 0
    frames: int = 0
    cubicles: int = 0
    pinned: int = 0  # not pinned before (by an alert or another project)
    queued_files: int = 0  # evidence files the queue took (alerts may have pinned some already)
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        faces = ", ".join(f"{n} {kind}" for kind, n in self.faces.items()) or "none"
        lines = [*(f"warning: {w}" for w in self.warnings),
                 f"faces to score: {faces}; {self.repeats} of them come back once more",
                 f"face boxes to draw: {self.cubicles} cubicles of {self.frames} frames"]
        if self.queued_files:
            lines.append(f"the {self.queued_files} evidence files queued are pinned against "
                         f"the disk budget ({self.pinned} not pinned before); `mgs-label "
                         "release` lets them go when the project is done")
        return "\n".join(lines)


def from_evidence(scores: list[Path], folder: Path, *, random: int, uncertain: int,
                  frames: int, repeat: float, seed: int, min_gap: float) -> QueueReport:
    report = QueueReport()
    crops: list[Crop] = []
    for path in scores:
        found, warnings = read_scores(path)
        crops += found
        report.warnings += warnings
    rng = np.random.default_rng(seed)
    chosen_random = pick_random(random, len(crops), rng)
    candidates = [Candidate(c.mouse, c.wall_time, c.entropy) for c in crops]
    chosen_uncertain = pick_uncertain(uncertain, candidates, set(chosen_random), min_gap)
    cubicles = _pick_frames(sorted({c.evidence for c in crops}), frames, rng, report)
    if not chosen_random and not chosen_uncertain and not cubicles:
        names = ", ".join(map(str, scores))
        raise UserError(f"{names}: no scored row with a kept face crop and no kept frame to "
                        "label (the monitor keeps evidence only with score schema 3 or later)")
    project.start(folder)
    picked = [(crops[i], RANDOM) for i in chosen_random]
    picked += [(crops[i], UNCERTAIN) for i in chosen_uncertain]
    _pin_first(folder, picked, cubicles, report)  # before copying: a running monitor's budget waits
    faces = [_face_item(folder, crop, selection) for crop, selection in picked]
    faces = _with_repeats(faces, repeat, rng, report)
    boxes = [_cubicle_item(folder, cubicle) for cubicle in cubicles]
    project.save(folder, seed, repeat, map(str, scores), faces + boxes)
    report.faces = {kind: sum(s == kind for _, s in picked) for kind in (RANDOM, UNCERTAIN)}
    report.frames = len({c.frame for c in cubicles})
    report.cubicles = len(boxes)
    return report


def _pin_first(folder: Path, picked: list[tuple[Crop, str]], cubicles: list[FrameCubicle],
               report: QueueReport) -> None:
    """Pin every queued evidence file, so the monitor's budget cannot remove it meanwhile, and
    note the lines added in the project, for `release`."""
    by_evidence: dict[Path, list[Path]] = defaultdict(list)
    for crop, _ in picked:
        by_evidence[crop.evidence].append(crop.path)
    for cubicle in cubicles:
        by_evidence[cubicle.evidence].append(cubicle.frame)
    added: dict[str, list[str]] = {}
    try:
        for evidence, files in by_evidence.items():
            names, new = pin(evidence, files)
            added[str(evidence.resolve())] = names
            report.pinned += new
    except OSError as exc:
        raise UserError(f"cannot pin the queued evidence: {exc.filename}: "
                        f"{exc.strerror or exc}") from exc
    finally:
        record_pins(folder, added)  # what was appended, even when a later folder failed
    report.queued_files = sum(len(set(files)) for files in by_evidence.values())


def from_images(source: Path, folder: Path, *, random: int | None, repeat: float,
                seed: int) -> QueueReport:
    """Every image under `source` (or `random` of them) as a face to score, all `random`."""
    if not source.is_dir():
        raise UserError(f"{source}: image folder not found")
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    rng = np.random.default_rng(seed)
    if random is not None:
        files = [files[i] for i in pick_random(random, len(files), rng)]
    project.start(folder)
    report = QueueReport(faces={RANDOM: len(files)})
    items = []
    for path in files:
        item_id = new_id()
        name, width, height = project.copy_image(path, folder, item_id, reencode=True)
        items.append(Item(item_id, FACE, name, RANDOM, width, height, "", "", "", "", "", "",
                          "", "", str(path.resolve())))
    items = _with_repeats(items, repeat, rng, report)
    project.save(folder, seed, repeat, [str(source)], items)
    return report


def _pick_frames(evidence: list[Path], count: int, rng: np.random.Generator,
                 report: QueueReport) -> list[FrameCubicle]:
    """Every cubicle of `count` frames drawn at random from the evidence folders' indexes."""
    if count <= 0:
        return []
    cubicles: list[FrameCubicle] = []
    for folder in evidence:
        found, warnings = read_frames(folder)
        cubicles += found
        report.warnings += warnings
    frames = sorted({c.frame for c in cubicles})
    if not frames:
        names = ", ".join(str(folder / "frames.csv") for folder in evidence) or "evidence"
        raise UserError(f"{names}: no kept full frame to draw face boxes on (use --frames 0)")
    keep = {frames[i] for i in pick_random(count, len(frames), rng)}
    return [c for c in cubicles if c.frame in keep]


def _face_item(folder: Path, crop: Crop, selection: str) -> Item:
    item_id = new_id()
    name, width, height = project.copy_image(crop.path, folder, item_id, reencode=False)
    entropy = "" if np.isnan(crop.entropy) else f"{crop.entropy:.4f}"
    return Item(item_id, FACE, name, selection, width, height, "", "", crop.mouse, crop.camera,
                str(crop.cubicle), repr(crop.wall_time), repr(crop.source_time), entropy,
                str(crop.path.resolve()))


def _cubicle_item(folder: Path, cubicle: FrameCubicle) -> Item:
    """The cubicle's pixels as an image of their own, the suggestion moved into them."""
    frame = cv2.imread(str(cubicle.frame), cv2.IMREAD_COLOR)
    if frame is None:
        raise UserError(f"{cubicle.frame}: cannot be decoded as an image ({cubicle.where})")
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = cubicle.region
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x1 <= x0 or y1 <= y0:
        raise UserError(f"{cubicle.where}: cubicle {cubicle.cubicle} region "
                        f"{list(cubicle.region)} lies outside the {width}x{height} frame")
    item_id = new_id()
    name = f"cubicles/{item_id}.jpg"
    if not cv2.imwrite(str(folder / name), frame[y0:y1, x0:x1], [cv2.IMWRITE_JPEG_QUALITY, 95]):
        raise UserError(f"{folder / name}: cannot write")
    return Item(item_id, BOX, name, RANDOM, x1 - x0, y1 - y0,
                _suggestion(cubicle.box, x0, y0, x1, y1), "", cubicle.mouse, cubicle.camera,
                str(cubicle.cubicle), repr(cubicle.wall_time), repr(cubicle.source_time), "",
                str(cubicle.frame.resolve()))


def _suggestion(box: tuple[float, float, float, float] | None,
                x0: int, y0: int, x1: int, y1: int) -> str:
    """The localizer's frame-pixel box in the cubicle image's pixels, clipped to it."""
    if box is None:
        return ""
    bx0, by0 = max(box[0], x0), max(box[1], y0)
    bx1, by1 = min(box[0] + box[2], x1), min(box[1] + box[3], y1)
    if bx1 - bx0 < 1 or by1 - by0 < 1:
        return ""
    return " ".join(f"{v:.1f}" for v in (bx0 - x0, by0 - y0, bx1 - bx0, by1 - by0))


def _with_repeats(items: list[Item], fraction: float, rng: np.random.Generator,
                  report: QueueReport) -> list[Item]:
    again = set(pick_repeats(len(items), fraction, rng))
    report.repeats = len(again)
    return [replace(item, repeat_id=new_id()) if i in again else item
            for i, item in enumerate(items)]
