"""Tests for the label loader: format errors, raters, boxes, crops, splits and fingerprint."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from monitor.units import UNITS
from synth import write_face_dataset
from train.labels import (
    LabelError,
    LabelledImage,
    data_fingerprint,
    face_crop_for,
    holdout_split,
    kfold_splits,
    load_labels,
    mice_of,
    mouse_kfold_splits,
    mouse_split,
)

HEAD = ",".join(("image", *UNITS))
BOXES = "face_x,face_y,face_w,face_h"
RED_SQUARE = (30, 20, 20, 20)  # x, y, w, h in pixels inside a 100x80 image


def _png(path: Path, width: int = 64, height: int = 48) -> Path:
    image = np.full((height, width, 3), 90, np.uint8)
    assert cv2.imwrite(str(path), image)
    return path


def _csv(folder: Path, header: str, *rows: str) -> Path:
    path = folder / "labels.csv"
    path.write_text("\n".join((header, *rows)) + "\n")
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """a.png and b.png (64x48) and bad.png, which is not an image."""
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    return tmp_path


def _error(csv_path: Path, **kwargs: object) -> str:
    with pytest.raises(LabelError) as info:
        load_labels(csv_path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert str(csv_path) in message or "boxes" in message or ".txt" in message
    return message


ERRORS = {
    "missing column": (
        "image,orbital_tightening,nose_bulge,ear_position,whisker_change",
        ["a.png,0,0,0,0"],
        ["line 1", "missing column 'cheek_bulge'"],
    ),
    "unknown column": (HEAD + ",notes", ["a.png,0,0,0,0,0,hi"], ["line 1", "'notes'"]),
    "level outside 0/1/2": (
        HEAD,
        ["a.png,0,1,2,,1", "b.png,0,0,3,0,0"],
        ["line 3: cheek_bulge='3' is not 0, 1, 2 or blank"],
    ),
    "level not a number": (HEAD, ["a.png,0,x,0,0,0"], ["line 2: nose_bulge='x'"]),
    "image missing": (HEAD, ["a.png,0,0,0,0,0", "nope.png,0,0,0,0,0"],
                      ["line 3", "image='nope.png' does not exist"]),
    "image not decodable": (HEAD, ["a.png,0,0,0,0,0", "bad.png,1,1,1,1,1"],
                            ["line 3", "image='bad.png' cannot be decoded"]),
    "duplicate row": (HEAD, ["a.png,0,0,0,0,0", "b.png,0,0,0,0,0", "a.png,1,1,1,1,1"],
                      ["line 4: duplicate of line 2", "image='a.png'"]),
    "duplicate rater row": (
        HEAD + ",rater",
        ["a.png,0,0,0,0,0,ann", "a.png,1,1,1,1,1,bob", "a.png,2,2,2,2,2,ann"],
        ["line 4: duplicate of line 2", "rater='ann'"],
    ),
    "box not numbers": (HEAD + "," + BOXES, ["a.png,0,0,0,0,0,1,2,abc,4"],
                        ["line 2", "face_w", "'abc'", "not 4 numbers"]),
    "box not positive": (HEAD + "," + BOXES, ["a.png,0,0,0,0,0,10,10,-5,20"],
                         ["line 2", "face_x, face_y, face_w, face_h=[10, 10, -5, 20]",
                          "not 4 positive numbers"]),
    "box outside image": (HEAD + "," + BOXES, ["a.png,0,0,0,0,0,,,,", "b.png,0,0,0,0,0,50,8,30,20"],
                          ["line 3", "[50, 8, 30, 20] lies outside the 64x48 image"]),
    "box columns incomplete": (HEAD + ",face_x,face_y,face_w", ["a.png,0,0,0,0,0,1,1,1"],
                               ["line 1", "missing column 'face_h'"]),
    "wrong value count": (HEAD, ["a.png,0,0,0,0"], ["line 2", "5 values, header has 6"]),
    "mouse differs between raters": (
        HEAD + ",mouse,rater",
        ["a.png,0,0,0,0,0,m1,ann", "a.png,0,0,0,0,0,m2,bob"],
        ["line 3: mouse='m2' differs from 'm1' on line 2"],
    ),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_each_format_error_is_one_line_naming_file_line_and_value(
    folder: Path, case: str
) -> None:
    header, rows, expected = ERRORS[case]
    message = _error(_csv(folder, header, *rows))
    for fragment in expected:
        assert fragment in message


def test_missing_csv_names_the_file(tmp_path: Path) -> None:
    message = _error(tmp_path / "absent.csv")
    assert "absent.csv" in message and "not found" in message


def test_unknown_rater_names_the_raters_that_exist(folder: Path) -> None:
    path = _csv(folder, HEAD + ",rater", "a.png,0,0,0,0,0,ann", "b.png,1,1,1,1,1,bob")
    message = _error(path, rater="cat")
    assert "'cat'" in message and "'ann', 'bob'" in message and "column rater" in message


def test_named_rater_without_rater_column_is_an_error(folder: Path) -> None:
    message = _error(_csv(folder, HEAD, "a.png,0,0,0,0,0"), rater="ann")
    assert "no rater column" in message and "'ann'" in message


def test_box_columns_and_box_file_together_are_an_error(folder: Path) -> None:
    path = _csv(folder, HEAD + "," + BOXES, "a.png,0,0,0,0,0,1,1,10,10")
    (folder / "boxes.json").write_text("{}")
    assert "use one" in _error(path, boxes=folder / "boxes.json")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"a.png": [1, 2, 3]}', "entry 'a.png'=[1, 2, 3] is not 4 numbers"),
        ('{"a.png": [40, 30, 30, 30]}', "entry 'a.png'=[40, 30, 30, 30] lies outside the 64x48"),
        ('{"a.png": [1, 2, 0, 4]}', "is not 4 positive numbers"),
        ('{"a.png": [1, 2', "line 1: not valid JSON"),
    ],
)
def test_bad_json_boxes_name_the_file_and_entry(folder: Path, content: str, expected: str) -> None:
    (folder / "boxes.json").write_text(content)
    message = _error(_csv(folder, HEAD, "a.png,0,0,0,0,0"), boxes=folder / "boxes.json")
    assert "boxes.json" in message and expected in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("0 0.5 0.5 0.2\n", "a.txt line 1: '0 0.5 0.5 0.2' is not 'class cx cy w h'"),
        ("0 0.5 0.5 0.2 x\n", "a.txt line 1: cx, cy, w, h=['0.5', '0.5', '0.2', 'x']"),
        ("0 0.9 0.5 0.4 0.2\n", "a.txt line 1: box in pixels x, y, w, h=[44.8, 19.2, 25.6, 9.6] "
                                "lies outside the 64x48 image"),
    ],
)
def test_bad_yolo_boxes_name_the_file_and_line(folder: Path, content: str, expected: str) -> None:
    (folder / "yolo").mkdir()
    (folder / "yolo" / "a.txt").write_text(content)
    message = _error(_csv(folder, HEAD, "a.png,0,0,0,0,0"), boxes=folder / "yolo")
    assert expected in message


RATED = [
    "a.png,0,1,2,,1,ann",
    "a.png,0,2,2,,0,bob",
    "a.png,1,0,,,2,cat",
    "b.png,0,,,,1,ann",
    "b.png,2,,,,2,bob",
    "c.png,,,,,,ann",
    "c.png,,,,,,bob",
]


@pytest.fixture
def rated(tmp_path: Path) -> Path:
    """Three raters: a.png by all three (one three-way tie), b.png by two with 2-way ties,
    c.png left blank by both of its raters."""
    for name in ("a.png", "b.png", "c.png"):
        _png(tmp_path / name)
    return _csv(tmp_path, HEAD + ",rater", *RATED)


def test_majority_takes_the_most_common_level_and_the_lower_median_on_ties(rated: Path) -> None:
    items, summary = load_labels(rated)
    assert [item.image.name for item in items] == ["a.png", "b.png"]
    a, b = items
    assert a.levels == (0, 1, 2, None, 1)  # nose 1/2/0 tie -> 1; whisker 1/0/2 tie -> 1
    assert b.levels == (0, None, None, None, 1)  # 0 vs 2 -> 0; 1 vs 2 -> 1
    assert a.raters == {"ann": (0, 1, 2, None, 1), "bob": (0, 2, 2, None, 0),
                        "cat": (1, 0, None, None, 2)}
    assert a.box is None and a.mouse == "" and a.condition == ""
    assert a.image.is_absolute()
    assert summary.skipped == {"no scoreable unit": 1}
    assert (summary.rows, summary.images, summary.raters) == (7, 2, ["ann", "bob", "cat"])
    assert summary.levels["orbital_tightening"] == [2, 0, 0]
    assert summary.levels["whisker_change"] == [0, 2, 0]
    assert summary.blank == {"orbital_tightening": 0, "nose_bulge": 1, "cheek_bulge": 1,
                             "ear_position": 2, "whisker_change": 0}


def test_named_rater_is_the_ground_truth_and_unrated_images_are_counted(rated: Path) -> None:
    items, summary = load_labels(rated, rater="cat")
    assert [(item.image.name, item.levels) for item in items] == [
        ("a.png", (1, 0, None, None, 2))
    ]
    assert summary.skipped == {"no rating by cat": 2}
    items, summary = load_labels(rated, rater="ann")
    assert [item.levels for item in items] == [(0, 1, 2, None, 1), (0, None, None, None, 1)]
    assert summary.skipped == {"no scoreable unit": 1}


def test_summary_renders_a_table_and_serialises(rated: Path) -> None:
    _, summary = load_labels(rated)
    text = str(summary).splitlines()
    assert text[0].endswith("2 images used from 7 rows")
    assert text[2].split() == ["orbital_tightening", "2", "0", "0", "0"]
    assert text[-1] == "skipped (no scoreable unit): 1"
    loaded = json.loads(json.dumps(summary.as_dict()))
    assert loaded["levels"]["ear_position"] == [0, 0, 0] and loaded["blank"]["ear_position"] == 2


def test_levels_written_as_floats_and_images_root(tmp_path: Path) -> None:
    (tmp_path / "pics").mkdir()
    _png(tmp_path / "pics" / "a.png")
    path = _csv(tmp_path, HEAD + ",mouse,condition", "a.png,1.0,,2.0,0,,m1,pain")
    (item,), _ = load_labels(path, images_root=tmp_path / "pics")
    assert item.levels == (1, None, 2, 0, None)
    assert (item.mouse, item.condition, item.raters) == ("m1", "pain", {"": item.levels})
    assert item.image == (tmp_path / "pics" / "a.png").resolve()


def _red_square_scene(folder: Path) -> None:
    """face.png: 100x80 black with a red 20x20 square; whole.png: 60x30 blue-green gradient."""
    face = np.zeros((80, 100, 3), np.uint8)
    x, y, w, h = RED_SQUARE
    face[y:y + h, x:x + w] = (0, 0, 255)  # BGR red
    assert cv2.imwrite(str(folder / "face.png"), face)
    whole = np.zeros((30, 60, 3), np.uint8)
    whole[:, :, 0] = np.linspace(0, 255, 60, dtype=np.uint8)
    assert cv2.imwrite(str(folder / "whole.png"), whole)


def _write_boxes(folder: Path, source: str) -> tuple[Path, Path | None]:
    """The CSV and the boxes argument giving face.png the red square's box and whole.png none."""
    if source == "csv":
        box = ",".join(map(str, RED_SQUARE))
        return _csv(folder, HEAD + "," + BOXES, f"face.png,1,1,1,1,1,{box}",
                    "whole.png,0,0,0,0,0,,,,"), None
    path = _csv(folder, HEAD, "face.png,1,1,1,1,1", "whole.png,0,0,0,0,0")
    if source == "json":
        (folder / "boxes.json").write_text(json.dumps({"./face.png": list(RED_SQUARE)}))
        return path, folder / "boxes.json"
    (folder / "yolo").mkdir()
    (folder / "yolo" / "face.txt").write_text("0 0.4 0.375 0.2 0.25\n0 0.1 0.1 0.1 0.1\n")
    return path, folder / "yolo"


@pytest.mark.parametrize("source", ["csv", "json", "yolo"])
def test_boxes_are_normalised_and_crop_the_face(tmp_path: Path, source: str) -> None:
    _red_square_scene(tmp_path)
    path, boxes = _write_boxes(tmp_path, source)
    (face, whole), _ = load_labels(path, boxes=boxes)
    assert face.box == pytest.approx((0.4, 0.375, 0.2, 0.25))
    assert whole.box is None
    crop = face_crop_for(face, 40)
    assert crop.shape == (40, 40, 3) and crop.dtype == np.uint8
    # a 10% margin around the 20 px square leaves about 2 of 40 px of black on each side
    assert (crop[4:36, 4:36] == (255, 0, 0)).all()
    assert crop[0, 20, 0] < 200 and crop[20, 39, 0] < 200


def test_image_without_box_is_resized_whole(tmp_path: Path) -> None:
    _red_square_scene(tmp_path)
    path, _ = _write_boxes(tmp_path, "csv")
    (_, whole), _ = load_labels(path)
    crop = face_crop_for(whole, 32)
    assert crop.shape == (32, 32, 3)
    assert crop[:, :, 0].max() == 0  # BGR blue became the RGB blue channel
    blue = crop[5, :, 2].astype(int)
    assert blue[0] < 10 and blue[-1] > 245 and (np.diff(blue) >= 0).all()
    bgr = cv2.imread(str(whole.image))
    assert bgr is not None
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    assert (crop == cv2.resize(rgb, (32, 32), interpolation=cv2.INTER_LINEAR)).all()


@pytest.fixture
def synth(tmp_path: Path) -> Path:
    return write_face_dataset(tmp_path / "data", 120, np.random.default_rng(0), size=64)


def test_synthetic_dataset_loads_with_its_labels(synth: Path) -> None:
    items, summary = load_labels(synth)
    rows = synth.read_text().splitlines()[1:]
    assert summary.images == len(items) == len(rows) == 120 and summary.skipped == {}
    first = rows[0].split(",")
    assert items[0].levels == tuple(int(v) for v in first[1:6])
    assert (items[0].mouse, items[0].condition) == (first[6], first[7])
    assert items[0].raters == {"synthetic": items[0].levels}
    counts = Counter(item.levels[0] for item in items)
    assert summary.levels["orbital_tightening"] == [counts[0], counts[1], counts[2]]
    assert face_crop_for(items[0], 32).shape == (32, 32, 3)


def _items(n: int, pain: float = 0.3, mice: int = 10) -> list[LabelledImage]:
    """n labelled images, the first `pain` share in the pain condition, mice assigned in turn."""
    return [
        LabelledImage(Path(f"/data/{i:04d}.png"), (i % 3, 0, 0, 0, 0), f"m{i % mice:02d}",
                      "pain" if i < pain * n else "control", None, {})
        for i in range(n)
    ]


def _pain_share(items: list[LabelledImage], index: np.ndarray) -> float:
    return float(np.mean([items[i].condition == "pain" for i in index]))


def _assert_partition(parts: tuple[np.ndarray, ...], n: int) -> None:
    joined = np.concatenate(parts)
    assert len(joined) == n and set(joined.tolist()) == set(range(n))


def test_holdout_split_sizes_disjoint_and_condition_ratio(synth: Path) -> None:
    items = _items(400)
    train, val, test = holdout_split(items, seed=3)
    _assert_partition((train, val, test), 400)
    assert abs(len(train) - 300) <= 2 and abs(len(val) - 20) <= 2 and abs(len(test) - 80) <= 2
    for part in (train, val, test):
        assert _pain_share(items, part) == pytest.approx(0.3, abs=0.03)
    again = holdout_split(items, seed=3)
    assert all((a == b).all() for a, b in zip((train, val, test), again, strict=True))
    assert not (holdout_split(items, seed=4)[2] == test).all()
    loaded, _ = load_labels(synth)
    share = _pain_share(loaded, np.arange(len(loaded)))
    train, val, test = holdout_split(loaded, fractions=(0.6, 0.1, 0.3))
    assert (len(train), len(val), len(test)) == (72, 12, 36)
    assert _pain_share(loaded, test) == pytest.approx(share, abs=0.03)


def test_holdout_split_without_condition_is_unstratified() -> None:
    items = [dataclasses.replace(item, condition="") for item in _items(100)]
    train, val, test = holdout_split(items)
    _assert_partition((train, val, test), 100)
    assert (len(train), len(val), len(test)) == (75, 5, 20)


def test_tiny_or_lopsided_data_raises_a_clear_value_error() -> None:
    items = _items(20, pain=0.05)  # one pain image cannot be in every part
    with pytest.raises(ValueError, match="by condition"):
        holdout_split(items)
    with pytest.raises(ValueError, match="stratified by condition"):
        kfold_splits(items, k=5)
    with pytest.raises(ValueError, match="fractions"):
        holdout_split(_items(100), fractions=(0.5, 0.1, 0.1))


def test_kfold_splits_cover_everything_once_and_keep_the_ratio() -> None:
    items = _items(400)
    folds = kfold_splits(items, k=5, seed=1)
    assert len(folds) == 5
    tests = np.concatenate([test for _, _, test in folds])
    assert sorted(tests.tolist()) == list(range(400))
    for train, val, test in folds:
        _assert_partition((train, val, test), 400)
        assert (len(train), len(val), len(test)) == (300, 20, 80)
        assert _pain_share(items, test) == pytest.approx(0.3, abs=0.01)
        assert _pain_share(items, val) == pytest.approx(0.3, abs=0.05)
    again = kfold_splits(items, k=5, seed=1)
    assert all((a[2] == b[2]).all() for a, b in zip(folds, again, strict=True))


def test_mouse_split_keeps_each_mouse_in_one_part() -> None:
    items = _items(300, mice=12)
    parts = mouse_split(items, seed=2)
    _assert_partition(parts, 300)
    mice = [{items[i].mouse for i in part} for part in parts]
    assert all(mice)
    assert not (mice[0] & mice[1] or mice[0] & mice[2] or mice[1] & mice[2])
    # fractions are of each condition's mice (here every mouse is mostly control): test 20% of
    # 12 -> 2; validation takes two mice where six or more are left, so 8 / 2 / 2
    assert [len(m) for m in mice] == [8, 2, 2]


def test_mouse_split_needs_mouse_ids_and_three_mice() -> None:
    with pytest.raises(LabelError, match="no mouse"):
        mouse_split([dataclasses.replace(item, mouse="") for item in _items(30)])
    with pytest.raises(LabelError, match="at least 3 mice, the labels have 2"):
        mouse_split(_items(30, mice=2))


def _study(pain_mice: int, saline_mice: int, images_each: int = 4) -> list[LabelledImage]:
    """Images of whole mice, each mouse of one condition."""
    conditions = ["pain"] * pain_mice + ["saline"] * saline_mice
    return [LabelledImage(Path(f"/data/m{m:02d}-{k}.png"), (1, 1, 1, 1, 1), f"m{m:02d}",
                          condition, None, {})
            for m, condition in enumerate(conditions) for k in range(images_each)]


def _conditions_of(items: list[LabelledImage], part: np.ndarray) -> Counter[str]:
    """Mice per condition in one part."""
    return Counter({items[i].mouse: items[i].condition for i in part}.values())


def test_a_mouse_split_holds_every_condition_in_every_part_whatever_the_seed() -> None:
    """12 mice: unstratified, 21 of 50 seeds gave a test part of one condition."""
    items = _study(6, 6)
    for seed in range(50):
        train, val, test = mouse_split(items, seed=seed)
        _assert_partition((train, val, test), len(items))
        parts = [set(mice_of(items, part)) for part in (train, val, test)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert _conditions_of(items, test) == {"pain": 1, "saline": 1}, seed
        assert _conditions_of(items, val) == {"pain": 2, "saline": 2}, seed  # two per condition
        assert _conditions_of(items, train) == {"pain": 3, "saline": 3}, seed


def test_a_mouse_split_that_cannot_validate_every_condition_is_refused() -> None:
    """Three mice per condition at least: one to train on, one to validate, one to test."""
    items = _study(3, 3)
    assert _conditions_of(items, mouse_split(items)[1]) == {"pain": 1, "saline": 1}
    with pytest.raises(LabelError, match=r"^mouse split: the validation mice \(m\d\d, m\d\d\) "
                                         r"have no image of condition pain; label more mice"):
        mouse_split(_study(2, 6))


def test_mouse_folds_validate_every_condition_whatever_the_seed() -> None:
    """10 mice in 5 folds: the inner fold left fold 3 of seed 0 one saline mouse to validate."""
    items = _study(5, 5)
    for seed in range(50):
        for train, val, test in mouse_kfold_splits(items, k=5, seed=seed):
            assert _conditions_of(items, val) == {"pain": 1, "saline": 1}, seed
            assert set(_conditions_of(items, train)) == {"pain", "saline"}, seed
            assert not set(mice_of(items, val)) & set(mice_of(items, np.r_[train, test]))
    with pytest.raises(LabelError, match=r"^mouse-cv: fold 0's validation mice \(m\d\d\) have no "
                                         r"image of condition pain; label more mice of it \(each "
                                         r"fold's training mice need two of each condition"):
        mouse_kfold_splits(_study(3, 3), k=2)  # a fold's test takes two of three pain mice
    big = _study(10, 10)
    for train, val, _ in mouse_kfold_splits(big, k=5, seed=0):  # 8 left: two to validate
        assert _conditions_of(big, val) == {"pain": 2, "saline": 2}
        assert _conditions_of(big, train) == {"pain": 6, "saline": 6}


def test_an_image_split_whose_validation_misses_a_condition_is_refused() -> None:
    """Stratifying 5 validation images by rounding leaves two conditions of 5% out."""
    items = [dataclasses.replace(item, condition="a" if i < 90 else "b" if i < 95 else "c")
             for i, item in enumerate(_items(100))]
    with pytest.raises(LabelError, match=r"^holdout split: the validation part \(\d+ images\) "
                                         r"has no image of condition b, c"):
        holdout_split(items)
    tiny = _items(10, pain=0.5)  # five images per condition: one of each validates
    _, val, _ = holdout_split(tiny)
    assert {tiny[i].condition for i in val} == {"pain", "control"}


def test_fingerprint_is_stable_and_follows_the_levels(synth: Path, tmp_path: Path) -> None:
    items, _ = load_labels(synth)
    print_ = data_fingerprint(items)
    assert len(print_) == 16 and set(print_) <= set("0123456789abcdef")
    assert data_fingerprint(items[::-1]) == print_
    moved = shutil.copytree(synth.parent, tmp_path / "elsewhere" / "copy")
    assert data_fingerprint(load_labels(moved / "labels.csv")[0]) == print_
    changed = dataclasses.replace(items[5], levels=(*items[5].levels[:4], None))
    assert data_fingerprint([*items[:5], changed, *items[6:]]) != print_
    assert data_fingerprint(items[1:]) != print_
