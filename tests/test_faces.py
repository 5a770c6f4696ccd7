"""From cubicle regions to face crops: the localizer's cheap resize and the colour order."""

from pathlib import Path

import cv2
import numpy as np

from monitor.config import Faces
from monitor.scoring.faces import FaceFinder, localizer_view
from monitor.scoring.models import LOCALIZER, OnnxModel


def test_localizer_view_averages_like_area() -> None:
    """Fine texture (noise at a lens's sharpness, ~1 px) shrunk ~10x: pixel averaging gives a
    smooth grey; bilinear alone picks single pixels and keeps the noise."""
    noise = np.random.default_rng(0).integers(0, 255, (1080, 480, 3), dtype=np.uint8)
    region = cv2.GaussianBlur(noise, (0, 0), 1.0)
    area = cv2.resize(region, (96, 96), interpolation=cv2.INTER_AREA).astype(float)
    bilinear = cv2.resize(region, (96, 96), interpolation=cv2.INTER_LINEAR).astype(float)
    view = localizer_view(region, 96).astype(float)
    assert view.shape == (96, 96, 3)
    assert np.abs(view - area).mean() < 2.0
    assert np.abs(bilinear - area).mean() > 8.0


def test_localizer_view_of_a_small_region_is_plain_area() -> None:
    region = np.random.default_rng(0).integers(0, 255, (100, 90, 3), dtype=np.uint8)
    expected = cv2.resize(region, (32, 32), interpolation=cv2.INTER_AREA)
    assert np.array_equal(localizer_view(region, 32), expected)


def test_face_crops_are_rgb_from_bgr_regions(random_models: Path) -> None:
    localizer = OnnxModel(random_models / "localizer.onnx", LOCALIZER, ["CPUExecutionProvider"])
    finder = FaceFinder(localizer, Faces(min_score=0.0, min_sharpness=0.0), crop_size=32)
    blue_bgr = np.zeros((120, 100, 3), np.uint8)
    blue_bgr[..., 0] = 255  # OpenCV's channel order: blue first
    blue_bgr[::2, :, 1] = 40  # some texture, so the crop is not perfectly flat
    (face,) = finder.find([blue_bgr])
    assert face.status == "scored" and face.crop is not None
    assert face.crop.shape == (32, 32, 3)
    assert face.crop[..., 2].min() == 255 and face.crop[..., 0].max() == 0  # blue is last in RGB
