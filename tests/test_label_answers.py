"""The answers log: whole lines appended and fsynced, undo as a record, two raters at once,
and a torn last line after a crash ignored with a warning."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from label.answers import AnswerLog, in_force, read_log


def test_answers_skips_and_undos_are_appended_never_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    log = AnswerLog(path)
    first = log.answer("ann", "face", 0, "a", levels=[0, 1, 2, None, 1])
    log.skip("ann", "face", 1, "b")
    log.answer("ann", "face", 2, "c", levels=[1, 1, 1, 1, 1])
    before = path.read_bytes()
    undone = log.undo("ann", "face")
    assert undone is not None and undone["slot"] == 2
    assert path.read_bytes().startswith(before)  # an undo appends
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["kind"] for r in lines] == ["answer", "skip", "answer", "undo"]
    assert lines[3]["undoes"] == lines[2]["id"]
    assert [r["slot"] for r in log.stack("ann", "face")] == [0, 1]
    assert [r["id"] for r in in_force(read_log(path)[0])] == [first["id"], lines[1]["id"]]
    again = AnswerLog(path)  # a restart sees the same state
    assert [r["slot"] for r in again.stack("ann", "face")] == [0, 1]
    assert again.undo("ann", "face")["kind"] == "skip"
    assert again.undo("ann", "face")["id"] == first["id"]
    assert again.undo("ann", "face") is None
    assert again.stack("bob", "face") == []


def test_a_slot_is_answered_once_and_a_second_answer_to_an_image_is_a_repeat(
        tmp_path: Path) -> None:
    log = AnswerLog(tmp_path / "answers.jsonl")
    assert not log.answer("ann", "face", 0, "a", levels=[0] * 5)["repeat"]
    with pytest.raises(ValueError, match="already answered"):
        log.answer("ann", "face", 0, "a", levels=[1] * 5)
    assert log.answer("ann", "face", 7, "a", levels=[1] * 5)["repeat"]
    assert not log.answer("bob", "face", 3, "a", levels=[1] * 5)["repeat"]


def test_two_raters_answering_at_once_corrupt_nothing(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    log = AnswerLog(path)
    start = threading.Barrier(2)

    def rate(rater: str) -> None:
        start.wait()
        for slot in range(150):
            log.answer(rater, "face", slot, f"{rater}{slot}", levels=[slot % 3] * 5)
            if slot % 50 == 49:
                log.undo(rater, "face")

    threads = [threading.Thread(target=rate, args=(r,)) for r in ("ann", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records, warnings = read_log(path)
    assert warnings == [] and len(records) == 2 * 153
    for rater in ("ann", "bob"):
        kept = [r for r in in_force(records) if r["rater"] == rater]
        assert len(kept) == 147 and {r["slot"] for r in kept} == set(range(150)) - {49, 99, 149}
        assert len(log.stack(rater, "face")) == 147


def test_a_torn_last_line_is_ignored_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    log = AnswerLog(path)
    log.answer("ann", "face", 0, "a", levels=[0] * 5)
    with path.open("ab") as fh:  # a crash in the middle of writing the second answer
        fh.write(b'{"id":"x","time":1,"rater":"ann","task":"face","slot":1,"item":"b","ki')
    after = AnswerLog(path)
    assert len(after.warnings) == 1 and "line 2: incomplete last line" in after.warnings[0]
    assert [r["slot"] for r in after.stack("ann", "face")] == [0]
    after.answer("ann", "face", 1, "b", levels=[2] * 5)  # starts on a line of its own
    records, warnings = read_log(path)
    assert [r["slot"] for r in records] == [0, 1]
    assert len(warnings) == 1 and "line 2" in warnings[0]
