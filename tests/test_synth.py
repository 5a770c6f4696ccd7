"""Tests for the synthetic mouse generator: determinism, geometry, labels and files."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest

from monitor.units import UNITS
from synth import (
    draw_array_frame,
    draw_cubicle,
    draw_face,
    random_levels,
    write_array_video,
    write_face_dataset,
    write_study_dataset,
)
from train.labels import load_labels

Box = tuple[float, float, float, float]


def _rng(seed: int) -> np.random.Generator:
    """Fresh generator, so two calls with one seed share all nuisance draws."""
    return np.random.default_rng(seed)


def _change(unit: int, seed: int, size: int = 128) -> np.ndarray:
    """Per-pixel change when one unit goes from 0 to 2 and everything else is held."""
    low, high = [0] * len(UNITS), [0] * len(UNITS)
    high[unit] = 2
    a = draw_face(low, _rng(seed), size).astype(np.int32)
    b = draw_face(high, _rng(seed), size).astype(np.int32)
    return np.asarray(np.abs(a - b).sum(axis=2))


def _assert_box(box: Box | None) -> None:
    """A face box is normalised and lies fully inside its cubicle."""
    assert box is not None
    cx, cy, w, h = box
    assert cx - w / 2 >= 0.0 and cx + w / 2 <= 1.0
    assert cy - h / 2 >= 0.0 and cy + h / 2 <= 1.0
    assert 0.25 <= w <= 0.55 + 1e-9


def test_random_levels_range_and_pain_correlation() -> None:
    rng = _rng(0)
    uniform = np.array([random_levels(rng) for _ in range(300)])
    assert uniform.shape == (300, len(UNITS))
    assert set(np.unique(uniform)) == {0, 1, 2}
    calm = np.mean([random_levels(rng, 0.0) for _ in range(200)])
    sore = np.mean([random_levels(rng, 1.0) for _ in range(200)])
    assert calm < 0.3 and sore > 1.7
    assert all(isinstance(v, int) for v in random_levels(rng, 0.5))
    with pytest.raises(ValueError):
        random_levels(rng, 1.5)


def test_draw_face_deterministic_shape_and_dtype() -> None:
    levels = (2, 1, 0, 1, 2)
    a = draw_face(levels, _rng(3), 96)
    assert a.shape == (96, 96, 3) and a.dtype == np.uint8
    assert np.array_equal(a, draw_face(levels, _rng(3), 96))
    assert not np.array_equal(a, draw_face(levels, _rng(4), 96))
    assert draw_face(levels, _rng(3)).shape == (224, 224, 3)


@pytest.mark.parametrize("levels", [(0, 1, 2, 1), (0, 1, 3, 1, 0), (0, 1, -1, 1, 0)])
def test_bad_levels_rejected(levels: Sequence[int]) -> None:
    with pytest.raises(ValueError):
        draw_face(levels, _rng(0), 64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_unit_changes_its_own_region(seed: int) -> None:
    size = 128
    rows = np.arange(size)[:, None] / size
    offsets = np.abs(np.arange(size)[None, :] / size - 0.5)
    centre_y, spread_x = [], []
    for unit in range(len(UNITS)):
        change = _change(unit, seed, size)
        mask = change > 30
        assert change.mean() / 3 > 0.5, UNITS[unit]
        assert 0.01 < mask.mean() < 0.25, UNITS[unit]
        centre_y.append(float((rows * mask).sum() / mask.sum()))
        spread_x.append(float((offsets * mask).sum() / mask.sum()))
    eyes, nose, cheeks, ears, whiskers = centre_y
    assert ears < eyes < nose < whiskers
    assert eyes < cheeks < whiskers
    assert spread_x[1] < spread_x[2]  # the nose bridge is central, the cheeks lateral


def test_draw_cubicle_box_and_hidden_face() -> None:
    img, box = draw_cubicle((1, 1, 1, 1, 1), _rng(5), 320, 240)
    assert img.shape == (240, 320, 3) and img.dtype == np.uint8
    _assert_box(box)
    again, same = draw_cubicle((1, 1, 1, 1, 1), _rng(5), 320, 240)
    assert np.array_equal(img, again) and box == same
    for seed in range(6):
        hidden, none_box = draw_cubicle(None, _rng(seed), 200, 300)
        assert hidden.shape == (300, 200, 3) and none_box is None


def test_cubicle_box_locates_the_face() -> None:
    for seed in range(4):
        low, box = draw_cubicle([0] * 5, _rng(seed), 320, 240)
        high, _ = draw_cubicle([2] * 5, _rng(seed), 320, 240)
        ys, xs = np.nonzero(np.abs(low.astype(np.int32) - high).sum(axis=2) > 30)
        assert box is not None
        cx, cy, w, h = box
        assert abs(xs.mean() / 320 - cx) < w / 2 and abs(ys.mean() / 240 - cy) < h / 2


def test_draw_array_frame_regions_and_boxes() -> None:
    cubicles = [(0, 0, 0, 0, 0), None, (2, 2, 2, 2, 2), (1, 0, 1, 0, 1)]
    frame, boxes = draw_array_frame(cubicles, _rng(8), 640, 360)
    assert frame.shape == (360, 640, 3) and frame.dtype == np.uint8
    assert len(boxes) == 4 and boxes[1] is None
    for box in (boxes[0], boxes[2], boxes[3]):
        _assert_box(box)
    again, _ = draw_array_frame(cubicles, _rng(8), 640, 360)
    assert np.array_equal(frame, again)
    with pytest.raises(ValueError):
        draw_array_frame([], _rng(8), 640, 360)


def test_draw_array_frame_full_hd() -> None:
    cubicles = [(0, 0, 0, 0, 0), (1, 1, 1, 1, 1), None, (2, 2, 2, 2, 2)]
    frame, boxes = draw_array_frame(cubicles, _rng(9))
    assert frame.shape == (1080, 1920, 3) and frame.dtype == np.uint8
    assert boxes[2] is None and all(b is not None for i, b in enumerate(boxes) if i != 2)


def test_write_face_dataset(tmp_path: Path) -> None:
    path = write_face_dataset(tmp_path / "faces", 6, _rng(10), size=64)
    assert path == tmp_path / "faces" / "labels.csv"
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["image", *UNITS, "mouse", "condition", "rater"]
    assert len(rows) == 7
    for name, *levels, mouse, condition, rater in rows[1:]:
        img = cv2.imread(str(path.parent / name))
        assert img is not None and img.shape == (64, 64, 3)
        assert all(v in {"0", "1", "2"} for v in levels)
        assert mouse in {f"m{i:02d}" for i in range(1, 9)}
        assert condition in {"pain", "control"} and rater == "synthetic"


def _read_video(path: Path) -> list[np.ndarray]:
    """Decodes every frame, since container frame counts can be estimates."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    ok, frame = cap.read()
    while ok:
        frames.append(frame)
        ok, frame = cap.read()
    cap.release()
    return frames


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_write_array_video_reads_back(tmp_path: Path, suffix: str) -> None:
    schedule = [[(i % 3,) * 5, None if i % 2 else (1, 1, 1, 1, 1)] for i in range(6)]
    path = tmp_path / f"array{suffix}"
    write_array_video(path, schedule, _rng(11), fps=5.0, width=320, height=180)
    frames = _read_video(path)
    assert len(frames) == 6
    assert all(f.shape == (180, 320, 3) for f in frames)


def test_video_faces_drift_smoothly(tmp_path: Path) -> None:
    path = tmp_path / "still.avi"
    write_array_video(path, [[(0,) * 5, (2,) * 5]] * 4, _rng(12), width=320, height=180)
    frames = [f.astype(np.int32) for f in _read_video(path)]
    steps = [np.abs(a - b).mean() for a, b in pairwise(frames)]
    independent, _ = draw_array_frame([(0,) * 5, (2,) * 5], _rng(13), 320, 180)
    jump = np.abs(frames[0] - independent[..., ::-1].astype(np.int32)).mean()
    assert max(steps) < jump / 3


def test_video_rejects_bad_requests(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="extension"):
        write_array_video(tmp_path / "a.gif", [[None]], _rng(0), width=64, height=64)
    with pytest.raises(ValueError, match="cannot open"):
        write_array_video(tmp_path / "missing" / "a.avi", [[None]], _rng(0), width=64, height=64)
    with pytest.raises(ValueError):
        write_array_video(tmp_path / "b.avi", [], _rng(0), width=64, height=64)


def test_a_study_has_whole_mice_of_one_condition_each(tmp_path: Path) -> None:
    labels = write_study_dataset(tmp_path, mice=4, per_mouse=3, rng=np.random.default_rng(0),
                                 size=32)
    items, _ = load_labels(labels)
    assert len(items) == 12
    by_mouse: dict[str, set[str]] = {}
    for item in items:
        by_mouse.setdefault(item.mouse, set()).add(item.condition)
        assert all(level in (0, 1, 2) for level in item.levels)
    assert by_mouse == {"m000": {"pain"}, "m001": {"control"}, "m002": {"pain"},
                        "m003": {"control"}}
