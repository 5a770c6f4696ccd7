"""`mgs-train-localizer`: train the face localizer from the face boxes of a label set.

Each labelled image with a box gives several training views: windows of the image that hold
the whole face (scale and position vary, as cubicle regions do) and, where the image has room,
a window beside the face with no face in it (so the localizer learns to say `no face`). Metrics
are those of a detector with one box per image: visibility accuracy, mean IoU, recall at
IoU >= 0.5. Writes `localizer.pth` (model, args, metrics) for mgs-export.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from monitor.scoring.faces import localizer_view
from train import strict_json
from train.command import CommandError, run_command
from train.fit import LocalizerData, fit_localizer
from train.image_hashes import image_hashes
from train.labels import (
    LabelError,
    LabelledImage,
    data_fingerprint,
    holdout_split,
    load_labels,
    read_rgb,
)

Box = tuple[float, float, float, float]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgs-train-localizer", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train the face localizer (one box and a visibility score per cubicle).")
    parser.add_argument("--labels", type=Path, required=True, help="label CSV with face boxes")
    parser.add_argument("--images-root", type=Path)
    parser.add_argument("--boxes", type=Path, help="face boxes: a JSON file or a YOLO folder")
    parser.add_argument("--input-size", type=int, default=96)
    parser.add_argument("--views", type=int, default=4, help="face windows per image")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/localizer"))
    return parser


def face_window(width: int, height: int, box: Box, rng: np.random.Generator
                ) -> tuple[tuple[int, int, int, int], Box]:
    """A random window (x0, y0, x1, y1) holding the whole face, and the box inside it."""
    cx, cy, bw, bh = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    scale = rng.uniform(0.6, 1.0)
    ww = max(bw, scale * width)
    wh = max(bh, scale * height)
    x0 = rng.uniform(max(0.0, cx + bw / 2 - ww), min(cx - bw / 2, width - ww) + 1e-6)
    y0 = rng.uniform(max(0.0, cy + bh / 2 - wh), min(cy - bh / 2, height - wh) + 1e-6)
    window = (int(x0), int(y0), int(min(width, x0 + ww)), int(min(height, y0 + wh)))
    w, h = window[2] - window[0], window[3] - window[1]
    return window, ((cx - window[0]) / w, (cy - window[1]) / h, bw / w, bh / h)


def empty_window(width: int, height: int, box: Box) -> tuple[int, int, int, int] | None:
    """The largest full-height or full-width strip beside the face, if it is big enough."""
    left = int((box[0] - box[2] / 2) * width)
    right = int((box[0] + box[2] / 2) * width)
    top = int((box[1] - box[3] / 2) * height)
    bottom = int((box[1] + box[3] / 2) * height)
    strips = [(0, 0, left, height), (right, 0, width, height), (0, 0, width, top),
              (0, bottom, width, height)]
    best = max(strips, key=lambda s: (s[2] - s[0]) * (s[3] - s[1]))
    if (best[2] - best[0]) < 0.25 * width and (best[3] - best[1]) < 0.25 * height:
        return None
    return best


def localizer_views(items: list[LabelledImage], size: int, views: int,
                    rng: np.random.Generator) -> LocalizerData:
    """Training views of every image with a box, resized as the monitor resizes cubicles."""
    images, boxes, present = [], [], []
    for item in items:
        if item.box is None:
            continue
        image = read_rgb(item.image)
        height, width = image.shape[:2]
        for _ in range(views):
            (x0, y0, x1, y1), box = face_window(width, height, item.box, rng)
            images.append(localizer_view(image[y0:y1, x0:x1], size))
            boxes.append(box)
            present.append(1.0)
        empty = empty_window(width, height, item.box)
        if empty is not None:
            x0, y0, x1, y1 = empty
            images.append(localizer_view(image[y0:y1, x0:x1], size))
            boxes.append((0.0, 0.0, 0.0, 0.0))
            present.append(0.0)
    if not images:
        raise LabelError("no labelled image has a face box: give boxes in the CSV, "
                         "--boxes JSON or a YOLO folder")
    return LocalizerData(np.stack(images), np.asarray(boxes, np.float32),
                         np.asarray(present, np.float32))


def main(args: argparse.Namespace) -> dict[str, float]:
    items, _ = load_labels(args.labels, images_root=args.images_root, boxes=args.boxes,
                           need_levels=False)
    train_idx, val_idx, _test = holdout_split(items, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    train = localizer_views([items[i] for i in train_idx], args.input_size, args.views, rng)
    val = localizer_views([items[i] for i in val_idx], args.input_size, 1, rng)
    with Progress() as progress:
        task = progress.add_task("localizer", total=args.epochs)
        model, metrics = fit_localizer(train, val, epochs=args.epochs, seed=args.seed,
                                       batch=args.batch_size, lr=args.lr,
                                       progress=lambda *_: progress.advance(task))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "input_size": args.input_size,
                "args": {k: str(v) for k, v in vars(args).items()}, "metrics": metrics,
                "fingerprint": data_fingerprint(items), "check_images": val.images[:8],
                # what mgs-export writes into the metadata, so --frames can refuse seen images
                "training_images": image_hashes(items[i].image for i in (*train_idx, *val_idx)
                                                if items[i].box is not None)},
               args.output_dir / "localizer.pth")
    (args.output_dir / "localizer_metrics.json").write_text(
        strict_json.dumps(metrics, indent=2))
    print(f"localizer: {metrics} -> {args.output_dir / 'localizer.pth'}")
    return metrics


def cli(argv: Sequence[str] | None = None) -> int:
    return run_command(get_args_parser(), main, (LabelError, CommandError), argv)


if __name__ == "__main__":
    sys.exit(cli())
