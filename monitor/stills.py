"""`mgs-monitor score`: still images (cubicle-array frames or face crops) into a score CSV.

Frames go through the same Analyzer as live video (four side-by-side cubicles, face localizer,
quality gate); `--crops` sends each image straight to the scorer. Each record's camera column is
the image path, so every row can be traced back to its file.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.progress import track

from monitor.capture.workers import IMAGE_SUFFIXES, Frame
from monitor.config import build_config
from monitor.outputs.csvlog import CsvLogger
from monitor.schema import ScoreRecord
from monitor.scoring.analyzer import Analyzer, Models

BATCH = 16


class StillsError(ValueError):
    """Images that cannot be scored as asked; one line for the user."""
STILLS_CAMERA = "image"


def find_images(paths: list[Path]) -> list[Path]:
    """Image files named directly or found (recursively, sorted) in named folders."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            raise StillsError(f"{path}: no such image file or folder")
    return found


def score_stills(paths: list[Path], out: Path, models_dir: Path, *, crops: bool,
                 cpu: bool = False) -> int:
    images = find_images(paths)
    if not images:
        raise StillsError(f"{', '.join(map(str, paths))}: no images "
                          f"({', '.join(IMAGE_SUFFIXES)}) found")
    config = build_config({
        "cameras": [{"name": STILLS_CAMERA, "source": ""}],
        "models": {"scorer": str(models_dir / "scorer.onnx"),
                   "localizer": str(models_dir / "localizer.onnx"),
                   **({"providers": ["CPUExecutionProvider"]} if cpu else {})},
        "bus": {"enabled": False},
    }, origin="command line")
    analyzer = Analyzer(config, Models.load(config))
    logger = CsvLogger(out)
    console = Console(stderr=True)
    skipped = 0
    try:
        for batch in _batches(track(images, description="scoring", console=console)):
            loaded = [(p, _read(p)) for p in batch]
            skipped += sum(image is None for _, image in loaded)
            good = [(p, image) for p, image in loaded if image is not None]
            records = (_score_crops(analyzer, good) if crops else _score_frames(analyzer, good))
            for record in records:
                logger.write(record)
            logger.sync()
    finally:
        logger.close()
    if skipped == len(images):  # nothing was scored: not a success
        raise StillsError(f"none of the {len(images)} images could be read "
                          f"({', '.join(map(str, paths))}); nothing written to {out}")
    note = f", {skipped} unreadable images skipped" if skipped else ""
    console.print(f"{logger.rows} records from {len(images)} images written to {out}{note}")
    return 0


def _batches(items: Iterable[Path]) -> Iterator[list[Path]]:
    batch: list[Path] = []
    for item in items:
        batch.append(item)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _read(path: Path) -> np.ndarray | None:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        # one line whatever the path's length: a wrapped path cannot be copied or grepped
        Console(stderr=True).print(f"[yellow]{path}: not a readable image, skipped[/]",
                                   soft_wrap=True)
    return image


def _score_frames(analyzer: Analyzer, images: list[tuple[Path, np.ndarray]]) -> list[ScoreRecord]:
    now = time.time()
    frames = [Frame(STILLS_CAMERA, image, now, time.monotonic(), 0.0, i)
              for i, (_, image) in enumerate(images)]
    return [record.model_copy(update={
        "camera": str(images[record.frame_index][0]),
        "mouse": f"{images[record.frame_index][0].stem}-c{record.cubicle}", "frame_index": 0})
        for record in analyzer.process(frames)]


def _score_crops(analyzer: Analyzer, images: list[tuple[Path, np.ndarray]]) -> list[ScoreRecord]:
    size = (analyzer.scorer.input_size, analyzer.scorer.input_size)
    crops = [cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), size,
                        interpolation=cv2.INTER_LINEAR) for _, image in images]
    now = time.time()
    records = []
    for (path, _), scores in zip(images, analyzer.scorer.score(crops) if crops else [],
                                 strict=True):
        frame = Frame(str(path), None, now, time.monotonic(), 0.0, 0)
        records.append(analyzer.record_for(frame, 1, path.stem, None, scores))
    return records
