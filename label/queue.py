"""`mgs-label queue`: makes a project from monitor evidence or from any folder of images."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from . import blind, project
from .errors import UserError
from .evidence import Crop, FrameCubicle, pin, read_frames, read_scores, record_pins
from .project import BOX, FACE, IMAGE_SUFFIXES, RANDOM, UNCERTAIN, Item, new_id
from .selection import Candidate, pick_random, pick_repeats, pick_uncertain

Copy = tuple[str, str, int, int]  # id, name in the project, width, height


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
    _pin_first(folder, picked, cubicles, report)  # before copying: the budget waits
    again = _repeats(len(picked), repeat, rng, report)
    jobs: list[Callable[[], Copy]] = [
        *(partial(project.copy_image, crop.path, folder, False) for crop, _ in picked),
        *(partial(project.copy_image, picked[i][0].path, folder, False) for i in again),
        *(partial(_cut_cubicle, folder, cubicle) for cubicle in cubicles)]
    copies = blind.shuffled(jobs)
    seconds = dict(zip(again, copies[len(picked):len(picked) + len(again)], strict=True))
    faces = [_face_item(copy, crop, selection, seconds.get(i))
             for i, (copy, (crop, selection)) in enumerate(zip(copies, picked, strict=False))]
    boxes = [_cubicle_item(copy, cubicle)
             for copy, cubicle in zip(copies[len(picked) + len(again):], cubicles, strict=True)]
    blind.disguise(folder, [[i.image for i in faces] + [i.repeat_image for i in faces
                                                         if i.repeat_image],
                            [i.image for i in boxes]])
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
    again = _repeats(len(files), repeat, rng, report)
    copies = blind.shuffled([partial(project.copy_image, path, folder, True)
                             for path in [*files, *(files[i] for i in again)]])
    seconds = dict(zip(again, copies[len(files):], strict=True))
    items = [_image_item(copy, path, seconds.get(i))
             for i, (copy, path) in enumerate(zip(copies, files, strict=False))]
    blind.disguise(folder, [[i.image for i in items] + [i.repeat_image for i in items
                                                         if i.repeat_image]])
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


def _face_item(copy: Copy, crop: Crop, selection: str, second: Copy | None) -> Item:
    item_id, name, width, height = copy
    entropy = "" if np.isnan(crop.entropy) else f"{crop.entropy:.4f}"
    return Item(item_id, FACE, name, selection, width, height, "",
                second[0] if second else "", second[1] if second else "", crop.mouse,
                crop.camera, str(crop.cubicle), repr(crop.wall_time), repr(crop.source_time),
                entropy, str(crop.path.resolve()))


def _image_item(copy: Copy, path: Path, second: Copy | None) -> Item:
    item_id, name, width, height = copy
    return Item(item_id, FACE, name, RANDOM, width, height, "", second[0] if second else "",
                second[1] if second else "", "", "", "", "", "", "", str(path.resolve()))


def _cut_cubicle(folder: Path, cubicle: FrameCubicle) -> Copy:
    """The cubicle's pixels as an image of their own under a fresh id."""
    frame = cv2.imread(str(cubicle.frame), cv2.IMREAD_COLOR)
    if frame is None:
        raise UserError(f"{cubicle.frame}: cannot be decoded as an image ({cubicle.where})")
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = _clipped(cubicle.region, width, height)
    if x1 <= x0 or y1 <= y0:
        raise UserError(f"{cubicle.where}: cubicle {cubicle.cubicle} region "
                        f"{list(cubicle.region)} lies outside the {width}x{height} frame")
    item_id = new_id()
    name = f"cubicles/{item_id}.jpg"
    if not cv2.imwrite(str(folder / name), frame[y0:y1, x0:x1], [cv2.IMWRITE_JPEG_QUALITY, 95]):
        raise UserError(f"{folder / name}: cannot write")
    return item_id, name, x1 - x0, y1 - y0


def _cubicle_item(copy: Copy, cubicle: FrameCubicle) -> Item:
    """A cubicle image with the localizer's suggestion moved into its pixels."""
    item_id, name, width, height = copy
    x0, y0 = max(0, cubicle.region[0]), max(0, cubicle.region[1])
    return Item(item_id, BOX, name, RANDOM, width, height,
                _suggestion(cubicle.box, x0, y0, x0 + width, y0 + height), "", "", cubicle.mouse,
                cubicle.camera, str(cubicle.cubicle), repr(cubicle.wall_time),
                repr(cubicle.source_time), "", str(cubicle.frame.resolve()))


def _clipped(region: tuple[int, int, int, int], width: int, height: int
             ) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = region
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)


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


def _repeats(count: int, fraction: float, rng: np.random.Generator,
             report: QueueReport) -> list[int]:
    """Which faces come back once more; each gets a copy of its own."""
    again = pick_repeats(count, fraction, rng)
    report.repeats = len(again)
    return again
