"""mgs-label export: label CSVs that train/labels.py loads as they are, mouse ids and
conditions joined back, repeats kept out of the label rows, boxes for the localizer."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from label import project
from label.answers import AnswerLog
from label.cli import main
from label.errors import UserError
from label.export import export_folder, read_conditions
from monitor.units import UNITS
from tests.label_util import Run, write_conditions, write_run
from train.labels import NO_UNIT, load_labels


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return write_run(tmp_path_factory.mktemp("evidence"), samples=5, frames=2)


def truth_of(run: Run) -> dict[Path, list[int]]:
    return {(run.csv.parent / crop).resolve(): levels for crop, levels in run.truth.items()}


@pytest.fixture(scope="module")
def answered(run: Run, tmp_path_factory: pytest.TempPathFactory) -> project.Project:
    """ann scores every face (one unit blank on her first), bob the first ten of his order;
    ann boxes every cubicle, one by the suggestion, one as `no face`; conditions known for
    all mice but one."""
    folder = tmp_path_factory.mktemp("export") / "study"
    assert main(["queue", str(run.csv), "--project", str(folder), "--random", "12",
                 "--uncertain", "8", "--frames", "2", "--repeat", "0.1"]) == 0
    proj = project.load(folder)
    log = AnswerLog(proj.answers_path)
    truth = truth_of(run)
    for slot, (item, again) in enumerate(proj.order("ann", "face")):
        levels: list[int | None] = list(truth[Path(item.source)])
        if slot == 0:
            levels[3] = None
        if again:
            levels = [2, 2, 2, 2, 2]  # ann is inconsistent on repeats
        log.answer("ann", "face", slot, item.id, levels=levels)
        if slot == 5:  # a slip, taken back and answered again
            log.undo("ann", "face")
            log.answer("ann", "face", slot, item.id, levels=[0, 0, 0, 0, 0])
    for slot, (item, _) in enumerate(proj.order("bob", "face")[:10]):
        log.answer("bob", "face", slot, item.id, levels=list(truth[Path(item.source)]))
    for slot, (item, _) in enumerate(proj.order("ann", "box")):
        box = item.suggested_box()
        if box is None:
            log.answer("ann", "box", slot, item.id, how="no_face", box=None)
        else:
            log.answer("ann", "box", slot, item.id, how="drawn" if slot else "suggested",
                       box=[box[0] + 1, box[1], box[2], box[3]] if slot else box)
    mice = set(run.mice) - {"cam1-c4"}
    write_conditions(folder.parent / "mice.csv", mice)
    assert main(["export", str(folder), "--conditions", str(folder.parent / "mice.csv")]) == 0
    return proj


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_labels_load_with_train_labels_as_they_are(answered: project.Project, run: Run) -> None:
    items, summary = load_labels(answered.folder / "labels.csv")
    faces = [i for i in answered.items if i.task == "face"]
    assert len(items) == len(faces) == 20 and summary.raters == ["ann", "bob"]
    ann, _ = load_labels(answered.folder / "labels.csv", rater="ann")
    by_image = {item.image: item for item in ann}
    truth = truth_of(run)
    order = answered.order("ann", "face")
    for slot, (item, again) in enumerate(order):
        if again:
            continue
        got = by_image[(answered.folder / item.image).resolve()]
        want: list[int | None] = list(truth[Path(item.source)])
        if slot == 0:
            want[3] = None
        if slot == 5:
            want = [0, 0, 0, 0, 0]
        assert list(got.raters["ann"]) == want  # first answers only: repeats said 2 2 2 2 2
        assert got.mouse == item.mouse
        assert got.condition == ("" if item.mouse == "cam1-c4" else
                                 "pain" if sorted(run.mice).index(item.mouse) % 2 else "control")


def test_one_row_per_image_and_rater_and_repeats_stay_in_the_log(
        answered: project.Project) -> None:
    labels = rows(answered.folder / "labels.csv")
    assert len(labels) == 20 + 10
    assert len({(r["image"], r["rater"]) for r in labels}) == len(labels)
    assert {r["mouse"] for r in labels} >= {"cam0-c1", "cam1-c1"}
    assert list(labels[0])[:len(UNITS) + 1] == ["image", *UNITS]
    log = (answered.folder / "answers.jsonl").read_text()
    assert log.count('"repeat":true') == 2


def test_selection_says_how_each_image_was_chosen(answered: project.Project) -> None:
    provenance = {r["image"]: r for r in rows(answered.folder / "provenance.csv")}
    assert {r["selection"] for r in provenance.values()} == {"random", "uncertain"}
    random_rows = rows(answered.folder / "labels-random.csv")
    assert random_rows and all(provenance[r["image"]]["selection"] == "random"
                               for r in random_rows)
    labels = rows(answered.folder / "labels.csv")
    assert len(random_rows) == sum(provenance[r["image"]]["selection"] == "random"
                                   for r in labels)
    assert all(r["selection"] == provenance[r["image"]]["selection"] for r in labels)
    assert provenance[labels[0]["image"]]["source"].endswith(".jpg")
    items, _ = load_labels(answered.folder / "labels.csv")
    assert {item.selection for item in items} == {"random", "uncertain"}
    items, _ = load_labels(answered.folder / "labels-random.csv")
    assert {item.selection for item in items} == {"random"}


def test_boxes_are_in_each_cubicle_image_pixels(answered: project.Project) -> None:
    boxes = rows(answered.folder / "boxes.csv")
    cubicles = {i.image: i for i in answered.items if i.task == "box"}
    assert len(cubicles) == 8 and len(boxes) == 6  # two mice turned away: no face
    for row in boxes:
        item = cubicles[row["image"]]
        x, y, w, h = (float(row[c]) for c in ("face_x", "face_y", "face_w", "face_h"))
        sx, sy, sw, sh = item.suggested_box() or (0, 0, 0, 0)
        assert abs(x - sx) <= 1.05 and (y, w, h) == pytest.approx((sy, sw, sh), abs=0.05)
        assert x + w <= item.width + 1 and y + h <= item.height + 1
        assert all(row[unit] == "" for unit in UNITS) and row["mouse"] == item.mouse
    _, summary = load_labels(answered.folder / "boxes.csv")
    assert summary.rows == 6 and summary.skipped == {NO_UNIT: 6}  # no unit scored on them
    items, summary = load_labels(answered.folder / "boxes.csv", need_levels=False)
    assert summary.images == 6 and all(item.box is not None for item in items)


def test_the_localizer_trains_on_boxes_csv(answered: project.Project, tmp_path: Path) -> None:
    from train.localizer import get_args_parser
    from train.localizer import main as train_localizer

    args = get_args_parser().parse_args([
        "--labels", str(answered.folder / "boxes.csv"), "--input-size", "32", "--views", "1",
        "--epochs", "1", "--batch-size", "8", "--output-dir", str(tmp_path)])
    train_localizer(args)
    assert (tmp_path / "localizer.pth").is_file()


def test_conditions_file_errors_are_one_line(tmp_path: Path, answered: project.Project,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "mice.csv"
    bad.write_text("mouse,group\ncam0-c1,pain\n")
    with pytest.raises(UserError, match=r"mice.csv line 1: missing column 'condition'"):
        read_conditions(bad)
    assert main(["export", str(answered.folder), "--conditions", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mice.csv line 1: missing column 'condition'" in err
    bad.write_text("mouse,condition\ncam0-c1,pain\ncam0-c1,control\n")
    with pytest.raises(UserError, match="line 3: mouse 'cam0-c1' has condition 'control'"):
        read_conditions(bad)
    with pytest.raises(UserError, match="conditions file not found"):
        read_conditions(tmp_path / "none.csv")
    assert main(["export", str(tmp_path)]) == 2
    assert "not a mgs-label project" in capsys.readouterr().err


def test_export_writes_whole_files_and_reports_mice_without_a_condition(
        answered: project.Project, tmp_path: Path) -> None:
    mice = tmp_path / "mice.csv"
    mice.write_text("mouse,condition\ncam0-c1,pain\n")
    report = export_folder(answered.folder, mice)
    assert "cam1-c2" in str(report)  # the command line names them
    assert "cam1-c2" not in str(report.as_dict())  # the page gets a count only
    assert not list(answered.folder.glob("*.tmp"))
