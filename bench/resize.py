"""Benchmark: the cost of decoding and resizing, and what the cheap resize paths change.

On frames of the demo scene (1920x1080, four cubicles), times per frame:
- decoding: read() (decode + convert) against grab() (what skipped frames cost);
- the localizer's input: four cubicle regions resized to its input size, by the monitor's
  path (monitor.scoring.faces.localizer_view: bilinear to 4x the size, then pixel averaging), by
  INTER_AREA alone (exact pixel averaging, slow at non-integer factors) and by INTER_LINEAR
  alone (cheapest; aliases when shrinking ~10x);
- the burst's sharpness measure: a 320-wide AREA copy against a strided (every 6th pixel) view.
Quality: the localizer's decisions on each input against the monitor's path, which is how the
demo localizer was trained (visibility decisions that agree, box IoU), and whether each
sharpness measure still ranks a frame above its blurred copies.

    .venv/bin/python bench/resize.py [--frames 60]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from functools import partial

import cv2
import numpy as np
from figures import publish
from monitor_speed import cpu_name, seconds_for

from demo.build import CUBICLES, build_demo
from monitor.config import Cubicle
from monitor.scoring.faces import cubicle_pixels, localizer_view
from monitor.scoring.models import LOCALIZER, OnnxModel

Resize = Callable[[np.ndarray, int], np.ndarray]


def area(region: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA)


def linear(region: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(region, (size, size), interpolation=cv2.INTER_LINEAR)


MONITOR = "monitor: LINEAR to 4x, then AREA"
RESIZES: dict[str, Resize] = {MONITOR: localizer_view, "AREA": area, "LINEAR": linear}


def sharpness_area(image: np.ndarray) -> float:
    small = cv2.resize(image, (320, 180), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), cv2.CV_32F).var())


def sharpness_strided(image: np.ndarray) -> float:
    grey = cv2.cvtColor(np.ascontiguousarray(image[::6, ::6]), cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def resize_all(resize: Resize, regions: list[np.ndarray], size: int) -> list[np.ndarray]:
    return [resize(r, size) for r in regions]


def ms_per_call(call: Callable[[], object], repeats: int = 30) -> float:
    return round(seconds_for(call, repeats) / repeats * 1000.0, 3)


def demo_frames(videos: list, count: int) -> list[np.ndarray]:
    """`count` frames spread over the demo videos."""
    frames = []
    for video in videos:
        capture = cv2.VideoCapture(str(video))
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        for index in np.linspace(0, total - 1, count // len(videos)).astype(int):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, image = capture.read()
            if ok:
                frames.append(image)
        capture.release()
    return frames


def decode_ms(video: str, frames: int = 60) -> dict[str, float]:
    capture = cv2.VideoCapture(video)
    timings = {}
    for name, step in (("read (decode + convert)", capture.read),
                       ("grab (skipped frame)", capture.grab)):
        start = time.perf_counter()
        for _ in range(frames):
            step()
        timings[name] = round((time.perf_counter() - start) / frames * 1000.0, 2)
    capture.release()
    return timings


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two normalised (cx, cy, w, h) boxes."""
    lo = np.maximum(a[:2] - a[2:] / 2, b[:2] - b[2:] / 2)
    hi = np.minimum(a[:2] + a[2:] / 2, b[:2] + b[2:] / 2)
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter + 1e-9)


def localizer_quality(localizer: OnnxModel, regions: list[np.ndarray]) -> dict[str, dict]:
    size = localizer.info.input_size
    outputs = {name: localizer.run(np.stack([resize(r, size) for r in regions]))
               for name, resize in RESIZES.items()}
    reference = outputs[MONITOR]
    seen = reference["score"] >= 0.5
    quality = {}
    for name, out in outputs.items():
        both = seen & (out["score"] >= 0.5)
        quality[name] = {
            "visibility_agreement": round(float(((out["score"] >= 0.5) == seen).mean()), 4),
            "mean_box_iou": round(float(np.mean(
                [iou(a, b) for a, b in zip(reference["box"][both], out["box"][both],
                                           strict=True)])), 4)}
    return quality


def sharpness_ranking(frames: list[np.ndarray]) -> dict[str, float]:
    """Fraction of (frame, blur) pairs where the measure scores the sharp frame higher."""
    ranks = {}
    for name, measure in (("AREA 320 wide", sharpness_area), ("strided 1/6", sharpness_strided)):
        wins = [measure(f) > measure(cv2.GaussianBlur(f, (0, 0), sigma))
                for f in frames for sigma in (1.0, 2.0, 4.0)]
        ranks[name] = round(float(np.mean(wins)), 4)
    return ranks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args()
    demo = build_demo()
    localizer = OnnxModel(demo.models / "localizer.onnx", LOCALIZER, ["CPUExecutionProvider"])
    size = localizer.info.input_size
    frames = demo_frames(demo.videos, args.frames)
    cubicles = [Cubicle(mouse=f"m{i}", roi=(i / CUBICLES, 0.0, 1 / CUBICLES, 1.0))
                for i in range(CUBICLES)]
    boxes = [cubicle_pixels(frames[0].shape, c) for c in cubicles]
    regions = [f[y0:y1, x0:x1] for f in frames for x0, y0, x1, y1 in boxes]
    four = regions[:CUBICLES]
    results = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
        "frame": f"{frames[0].shape[1]}x{frames[0].shape[0]}, localizer input {size}",
        "decode_ms_per_frame": decode_ms(str(demo.videos[0])),
        "localizer_input_ms_per_frame": {
            name: ms_per_call(partial(resize_all, resize, four, size))
            for name, resize in RESIZES.items()},
        "sharpness_ms_per_frame": {"AREA 320 wide": ms_per_call(lambda: sharpness_area(frames[0])),
                                   "strided 1/6": ms_per_call(
                                       lambda: sharpness_strided(frames[0]))},
        "localizer_vs_monitor_path": localizer_quality(localizer, regions),
        "sharp_ranked_above_blurred": sharpness_ranking(frames[:20]),
    }
    publish("resize", results)


if __name__ == "__main__":
    main()
