"""From a camera frame to face crops: cubicle regions, the face localizer, the quality gate.

One mouse per cubicle, so the localizer gives exactly one box and a visibility score per cubicle.
A face below the score threshold is `no_face`; a visible but blurred one is `low_quality`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from monitor.config import Cubicle, Faces
from monitor.scoring.models import OnnxModel

QUALITY_SIZE = 96  # face crops are judged for blur at one fixed size, whatever the camera
PRESHRINK = 4  # cubicles are shrunk bilinearly to this many times the localizer's input first


@dataclass
class FaceResult:
    """What the localizer saw in one cubicle; `crop` is set only for a scoreable face."""

    status: str
    box: tuple[float, float, float, float]
    score: float
    sharpness: float
    crop: np.ndarray | None = None


def cubicle_pixels(shape: tuple[int, ...], cubicle: Cubicle) -> tuple[int, int, int, int]:
    """The cubicle's fractional ROI as integer pixels (x0, y0, x1, y1) of a frame of `shape`."""
    height, width = shape[:2]
    x, y, w, h = cubicle.roi
    x0, y0 = round(x * width), round(y * height)
    x1, y1 = min(width, round((x + w) * width)), min(height, round((y + h) * height))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def localizer_view(region: np.ndarray, size: int) -> np.ndarray:
    """A cubicle region as the localizer sees it, in training and in the monitor alike.

    Shrinking ~10x by pixel averaging (INTER_AREA) at a non-integer factor is slow; a bilinear
    step to 4x the size first and then averaging is 3-4x cheaper and keeps the localizer's
    decisions (bench/resize.py: the same visibility decisions as AREA alone, box IoU 0.98),
    while bilinear alone aliases (2% of decisions change, box IoU 0.69)."""
    height, width = region.shape[:2]
    if min(height, width) > PRESHRINK * size:
        region = cv2.resize(region, (PRESHRINK * size, PRESHRINK * size),
                            interpolation=cv2.INTER_LINEAR)
    return cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA)


def face_crop(region: np.ndarray, box: np.ndarray, margin: float, size: int) -> np.ndarray:
    """A square crop around a normalised (cx, cy, w, h) box, enlarged by `margin`, bilinear."""
    height, width = region.shape[:2]
    cx, cy = box[0] * width, box[1] * height
    side = max(box[2] * width, box[3] * height) * (1.0 + margin)
    half = max(side / 2.0, 1.0)
    # An affine warp crops, pads with edge pixels where the square leaves the region, and
    # resizes in one pass.
    scale = size / (2.0 * half)
    matrix = np.array([[scale, 0.0, (half - cx) * scale], [0.0, scale, (half - cy) * scale]])
    return cv2.warpAffine(region, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def crop_sharpness(crop: np.ndarray) -> float:
    small = cv2.resize(crop, (QUALITY_SIZE, QUALITY_SIZE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var())


class FaceFinder:
    """Runs the localizer over every cubicle of a batch of frames in one call."""

    def __init__(self, localizer: OnnxModel, faces: Faces, crop_size: int) -> None:
        self.localizer = localizer
        self.faces = faces
        self.crop_size = crop_size
        self.input_size = localizer.info.input_size

    def find(self, regions: list[np.ndarray]) -> list[FaceResult]:
        """One result per BGR cubicle region (as OpenCV decodes it), in order; crops are RGB.

        Only the small localizer inputs and face crops are turned to RGB, never whole frames:
        a batch of many 1080p frames would otherwise hold a converted copy of each."""
        if not regions:
            return []
        batch = np.stack([_rgb(localizer_view(r, self.input_size)) for r in regions])
        out = self.localizer.run(batch)
        return [self._judge(region, box, float(score))
                for region, box, score in zip(regions, out["box"], out["score"], strict=True)]

    def _judge(self, region: np.ndarray, box: np.ndarray, score: float) -> FaceResult:
        box_t = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
        if score < self.faces.min_score:
            return FaceResult("no_face", box_t, score, float("nan"))
        crop = _rgb(face_crop(region, box, self.faces.margin, self.crop_size))
        sharpness = crop_sharpness(crop)
        if sharpness < self.faces.min_sharpness:
            return FaceResult("low_quality", box_t, score, sharpness)
        return FaceResult("scored", box_t, score, sharpness, crop)


def _rgb(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
