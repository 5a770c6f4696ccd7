"""mgs-label queue: random and uncertain selection, spread over mice, repeats, pinning, and
every bad input as one line naming the file."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from label import project
from label.cli import main
from label.selection import REPEAT_GAP, Candidate, pick_uncertain, rater_order
from monitor.schema import side_file
from tests.label_util import Run, unpadded, write_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return write_run(tmp_path_factory.mktemp("evidence"), samples=5)


@pytest.fixture(scope="module")
def queued(run: Run, tmp_path_factory: pytest.TempPathFactory) -> project.Project:
    folder = tmp_path_factory.mktemp("queued") / "study"
    assert main(["queue", str(run.csv), "--project", str(folder), "--random", "12",
                 "--uncertain", "8", "--frames", "1", "--repeat", "0.1"]) == 0
    return project.load(folder)


def test_random_sample_first_then_the_least_certain(run: Run,
                                                     queued: project.Project) -> None:
    faces = [i for i in queued.items if i.task == "face"]
    kinds = Counter(i.selection for i in faces)
    assert kinds == {"random": 12, "uncertain": 8}
    assert len({i.source for i in faces}) == 20  # no crop twice
    drawn = {Path(i.source) for i in faces if i.selection == "random"}
    rest = sorted((e for e, path in _entropies(run) if path not in drawn), reverse=True)
    uncertain = [i for i in faces if i.selection == "uncertain"]
    # from the 2 x 8 least certain crops the random draw left, as many mice as possible
    assert min(float(i.entropy) for i in uncertain) >= rest[15] - 1e-4
    assert len({i.mouse for i in uncertain}) >= 6
    for item in faces:  # the crop's own bytes, after the padding that hides its size
        assert unpadded(queued.folder / item.image) == Path(item.source).read_bytes()



def _entropies(run: Run) -> list[tuple[float, Path]]:
    from label.evidence import read_scores
    crops, _ = read_scores(run.csv)
    return [(c.entropy, c.path.resolve()) for c in crops]


def test_frames_become_one_image_per_cubicle_with_the_suggestion_moved(
        queued: project.Project) -> None:
    boxes = [i for i in queued.items if i.task == "box"]
    assert len(boxes) == 4 and all(i.width == 160 and i.height == 240 for i in boxes)
    assert sum(i.suggestion == "" for i in boxes) == 1  # the mouse facing away
    for item in boxes:
        image = cv2.imread(str(queued.folder / item.image))
        assert image.shape[:2] == (240, 160)
        box = item.suggested_box()
        if box:
            assert box[0] >= 0 and box[1] >= 0 and box[0] + box[2] <= 160.01


def test_uncertain_ones_go_round_robin_over_mice_and_apart_in_time() -> None:
    unsure_mouse = [Candidate("A", float(t), 5.0 - t / 100) for t in range(10)]
    others = [Candidate("B", 0.0, 3.0), Candidate("B", 1000.0, 2.9), Candidate("C", 0.0, 2.0)]
    picked = pick_uncertain(3, unsure_mouse + others, set(), min_gap=600)
    assert sorted((unsure_mouse + others)[i].mouse for i in picked) == ["A", "B", "C"]
    picked = pick_uncertain(5, unsure_mouse + others, set(), min_gap=600)
    chosen = [(unsure_mouse + others)[i] for i in picked]
    assert Counter(c.mouse for c in chosen) == {"A": 2, "B": 2, "C": 1}
    a_times = [c.time for c in chosen if c.mouse == "A"]
    assert a_times[0] == 0.0  # its most uncertain; the second only as the gap is dropped
    assert len(pick_uncertain(4, unsure_mouse, {0, 1}, min_gap=0)) == 4
    assert 0 not in pick_uncertain(4, unsure_mouse, {0}, min_gap=0)


def test_about_a_tenth_come_back_later_to_the_same_rater(queued: project.Project) -> None:
    faces = [i for i in queued.items if i.task == "face"]
    repeated = [i for i in faces if i.repeat_id]
    assert len(repeated) == 2  # 10% of 20
    order = queued.order("ann", "face")
    assert len(order) == 22
    for item in repeated:
        positions = [p for p, (it, _) in enumerate(order) if it.id == item.id]
        first, again = positions
        assert not order[first][1] and order[again][1]
        assert again - first >= min(REPEAT_GAP, len(order) - first - 1)
    assert [i.id for i, _ in queued.order("ann", "face")] == [i.id for i, _ in order]
    assert [i.id for i, _ in queued.order("bob", "face")] != [i.id for i, _ in order]


def test_repeat_positions_leave_a_gap_in_long_queues() -> None:
    ids = [f"i{n}" for n in range(200)]
    order = rater_order(ids, set(ids[:20]), seed=1, rater="ann", queue="face")
    seen: dict[str, int] = {}
    for pos, (item, again) in enumerate(order):
        if again:
            assert pos - seen[item] >= REPEAT_GAP or pos >= 200 - REPEAT_GAP
        else:
            seen[item] = pos


def test_queued_evidence_is_pinned_by_appending(run: Run, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run.csv.parent, copy)
    pinned = copy / "scores.evidence" / "pinned.txt"
    pinned.write_text("crops/kept-by-hand.jpg\n")
    assert main(["queue", str(copy / "scores.csv"), "--project", str(tmp_path / "p"),
                 "--random", "3", "--uncertain", "2", "--frames", "1"]) == 0
    lines = pinned.read_text().splitlines()
    assert lines[0] == "crops/kept-by-hand.jpg"
    sources = {Path(i.source) for i in project.load(tmp_path / "p").items}
    assert {(copy / "scores.evidence" / line).resolve() for line in lines[1:]} == sources
    assert all(line.startswith(("crops/", "frames/")) for line in lines)


def test_evidence_that_cannot_be_pinned_is_one_line(run: Run, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run.csv.parent, copy)
    (copy / "scores.evidence" / "pinned.txt").unlink(missing_ok=True)
    (copy / "scores.evidence" / "pinned.txt").mkdir()  # cannot be appended to
    err = _error(capsys, ["queue", str(copy / "scores.csv"), "--project", str(tmp_path / "p"),
                          "--random", "3"])
    assert f"cannot pin the queued evidence: {copy / 'scores.evidence' / 'pinned.txt'}" in err


def _queue(copy: Path, project_dir: Path, seed: int) -> set[str]:
    """Queue from a copied run; the evidence names (relative to its folder) it took."""
    assert main(["queue", str(copy / "scores.csv"), "--project", str(project_dir), "--random",
                 "6", "--uncertain", "0", "--frames", "1", "--seed", str(seed)]) == 0
    evidence = (copy / "scores.evidence").resolve()
    return {Path(i.source).relative_to(evidence).as_posix()
            for i in project.load(project_dir).items}


def test_release_unpins_what_the_project_pinned_and_only_that(
        run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Pins were never released, so over several studies the budget filled with pinned files
    and evidence stopped."""
    from monitor.outputs.pinned import append_pinned, read_pinned

    copy = tmp_path / "copy"
    shutil.copytree(run.csv.parent, copy)
    evidence = copy / "scores.evidence"
    (evidence / "pinned.txt").write_text("crops/kept-by-hand.jpg\n")
    first = _queue(copy, tmp_path / "p1", seed=1)
    alert = sorted(first)[0]
    append_pinned(evidence, [alert])  # an alert raised later names one of the same files
    second = _queue(copy, tmp_path / "p2", seed=2)
    assert first & second and first - second - {alert}  # shared files, and some not
    capsys.readouterr()
    assert main(["release", str(tmp_path / "p1")]) == 0
    assert "pins of this project released" in capsys.readouterr().out
    assert read_pinned(evidence) == {"crops/kept-by-hand.jpg", alert} | second
    assert main(["release", str(tmp_path / "p1")]) == 0  # again: nothing more goes
    assert "released before" in capsys.readouterr().out
    assert read_pinned(evidence) == {"crops/kept-by-hand.jpg", alert} | second
    assert main(["export", str(tmp_path / "p2"), "--release"]) == 0
    assert (tmp_path / "p2" / "labels.csv").is_file()
    assert read_pinned(evidence) == {"crops/kept-by-hand.jpg", alert}


def test_release_of_a_project_that_pinned_nothing_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    assert main(["queue", "--images", str(tmp_path / "in"), "--project",
                 str(tmp_path / "p")]) == 0
    capsys.readouterr()
    err = _error(capsys, ["release", str(tmp_path / "p")])
    assert f"{tmp_path / 'p' / 'pins.json'}: not found" in err


def test_unreadable_frames_rows_are_skipped_with_a_count(
        run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A row cut inside its quoted cubicles, then \\r\\n and the next row (what the monitor
    used to make of a torn row), made `queue --frames` refuse the whole index."""
    copy = tmp_path / "copy"
    shutil.copytree(run.csv.parent, copy)
    index = copy / "scores.evidence" / "frames.csv"
    header, *rows = index.read_text().splitlines()
    torn = rows[1][:rows[1].index("[{") + 12]
    index.write_text("\r\n".join([header, rows[0], torn, *rows[1:]]) + "\r\n")
    assert main(["queue", str(copy / "scores.csv"), "--project", str(tmp_path / "p"),
                 "--random", "1", "--uncertain", "0", "--frames", str(len(rows))]) == 0
    out = capsys.readouterr().out
    assert f"{index}: 1 unreadable rows skipped (first: {index} line 3:" in out
    frames = {i.source for i in project.load(tmp_path / "p").items if i.task == "box"}
    assert len(frames) == len(rows)  # every whole row was read


def test_any_folder_of_images(tmp_path: Path) -> None:
    (tmp_path / "in" / "M1").mkdir(parents=True)
    for n in range(6):
        image = np.full((40, 50, 3), n * 40, np.uint8)
        cv2.imwrite(str(tmp_path / "in" / "M1" / f"2024-05-0{n + 1}_M1.jpg"), image)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    assert main(["queue", "--images", str(tmp_path / "in"), "--project",
                 str(tmp_path / "p"), "--repeat", "0"]) == 0
    items = project.load(tmp_path / "p").items
    assert len(items) == 6 and {i.selection for i in items} == {"random"}
    assert all(i.image.endswith(".png") and "M1" not in i.image for i in items)
    assert all(i.mouse == "" and i.entropy == "" for i in items)


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mgs-label: error: ")
    return err


def test_a_missing_score_csv_is_named(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(capsys, ["queue", str(tmp_path / "nope.csv"), "--project", str(tmp_path / "p")])
    assert "nope.csv: score CSV not found" in err
    assert not (tmp_path / "p").exists()


def test_a_score_csv_without_crops_is_named(run: Run, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old.csv"
    with run.csv.open() as src, old.open("w", newline="") as dst:
        rows = list(csv.reader(src))
        csv.writer(dst).writerows(row[:-1] for row in rows)  # schema 2: no crop column
    err = _error(capsys, ["queue", str(old), "--project", str(tmp_path / "p")])
    assert f"{old}: no 'crop' column" in err


def test_other_bad_queue_input(run: Run, queued: project.Project, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(capsys, ["queue", str(run.csv), "--project", str(queued.folder)])
    assert "already holds a queue" in err
    assert "not both" in _error(capsys, ["queue", str(run.csv), "--images", str(tmp_path),
                                         "--project", str(tmp_path / "p")])
    assert "image folder not found" in _error(
        capsys, ["queue", "--images", str(tmp_path / "none"), "--project", str(tmp_path / "p")])
    assert "--repeat 2.0" in _error(capsys, ["queue", str(run.csv), "--repeat", "2",
                                             "--project", str(tmp_path / "p")])
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run.csv, bare / "scores.csv")  # no evidence folder: the crops are gone
    err = _error(capsys, ["queue", str(bare / "scores.csv"), "--project", str(tmp_path / "p")])
    assert "no scored row with a kept face crop" in err


def test_a_loggers_folder_or_glob_is_read_without_its_side_files(
        run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A rotating logger's folder holds score CSVs beside their gaps, markers and alerts files;
    `scores*.csv` as the shell expands it names them all. Only the scores are queued."""
    for kind in ("gaps", "markers", "alerts"):
        side = side_file(run.csv, kind)
        side.write_text("not,a,score,csv\n")
    try:
        for k, named in enumerate([[run.csv.parent], [run.csv.parent / "scores*.csv"],
                                   sorted(run.csv.parent.glob("scores*.csv"))]):
            assert len(named) != 1 or named[0] != run.csv
            folder = tmp_path / f"study{k}"
            assert main(["queue", *map(str, named), "--project", str(folder), "--random", "4",
                         "--uncertain", "0", "--repeat", "0"]) == 0
            sources = json.loads((folder / "project.json").read_text())["sources"]
            assert sources == [str(run.csv)], named
            assert len(project.load(folder).items) == 4
    finally:
        for kind in ("gaps", "markers", "alerts"):
            side_file(run.csv, kind).unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    err = _error(capsys, ["queue", str(empty), "--project", str(tmp_path / "p")])
    assert f"{empty}: no score CSVs in this folder" in err
    err = _error(capsys, ["queue", str(tmp_path / "none-*.csv"), "--project", str(tmp_path / "p")])
    assert "none-*.csv: matches no score CSVs" in err
    assert not (tmp_path / "p").exists()


def test_padding_keeps_the_pixels_and_makes_one_size(tmp_path: Path) -> None:
    from label.blind import disguise

    rng = np.random.default_rng(3)
    for n, suffix in enumerate((".jpg", ".jpg", ".png", ".png")):
        size = 8 if n % 2 else 400  # one small file, one large: the small is padded a lot
        cv2.imwrite(str(tmp_path / f"{n}{suffix}"), rng.integers(0, 255, (size, size, 3),
                                                                 np.uint8))
    before = {n: cv2.imread(str(tmp_path / n)) for n in ("0.jpg", "1.jpg", "2.png", "3.png")}
    disguise(tmp_path, [["0.jpg", "1.jpg"], ["2.png", "3.png"]])
    for group in (("0.jpg", "1.jpg"), ("2.png", "3.png")):
        assert len({(tmp_path / n).stat().st_size for n in group}) == 1
    for name, pixels in before.items():
        assert np.array_equal(cv2.imread(str(tmp_path / name)), pixels)
    assert (tmp_path / "1.jpg").stat().st_size > 2 * 65537  # several comment segments
    assert len(unpadded(tmp_path / "1.jpg")) < 2000
