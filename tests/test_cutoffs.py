"""Pain cut-offs chosen per fold on validation images only, for the model, the reference and
every rater, and reported on that fold's test images (train/statistics.py fold_cutoffs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from train.report import write_report
from train.statistics import EvalInput, FoldPredictions, evaluate, fold_cutoffs

N_BOOT = 20


def part(totals: list[int], pain: list[bool], mice: list[str],
         raters: dict[str, list[float]] | None = None,
         reference: list[int] | None = None) -> EvalInput:
    """Images whose model total is `totals` (reference totals `reference`, default the same)."""
    def levels(values: list[int]) -> np.ndarray:
        return np.array([[min(2, max(0, t - 2 * u)) for u in range(5)] for t in values])

    return EvalInput(image=[f"{m}-{k}" for k, m in enumerate(mice)],
                     truth_levels=levels(reference or totals), model_levels=levels(totals),
                     model_expected_total=np.asarray(totals, float),
                     condition=["NTG" if p else "saline" for p in pain],
                     pain_conditions={"NTG"}, mouse=mice,
                     raters={k: np.asarray(v, float) for k, v in (raters or {}).items()})


PAIN = [True, True, False, False]


def test_each_fold_is_measured_at_the_cutoff_its_own_validation_mice_chose() -> None:
    """Fold 0's validation mice pick 5, fold 1's pick 3: each fold's test images are counted at
    its own, and the final fit gets their median, 4. The test images would pick other ones."""
    fold0 = FoldPredictions("fold0", part([6, 5, 1, 2], PAIN, ["a", "a", "b", "b"]),
                            part([4, 7, 3, 0], PAIN, ["c", "c", "d", "d"]))
    fold1 = FoldPredictions("fold1", part([3, 4, 0, 2], PAIN, ["c", "c", "d", "d"]),
                            part([5, 2, 4, 1], PAIN, ["a", "a", "b", "b"]))
    found = fold_cutoffs([fold0, fold1], deployed="final")
    assert {k: v["cutoff"] for k, v in found["pain_cutoff_folds"].items()} == {"fold0": 5.0,
                                                                              "fold1": 3.0}
    assert found["pain_cutoff_folds"]["fold0"]["validation_mice"] == ["a", "b"]
    assert found["pain_cutoff_folds"]["fold0"]["test_mice"] == ["c", "d"]
    assert found["pain_cutoff"] == 4.0 and found["pain_cutoff_from"] == "validation"
    assert found["pain_cutoff_how"].startswith("the median of 2 of the 2 folds' cut-offs (5, 3)")
    # fold 0 at >= 5: pain 4, 7 -> 1 of 2, saline 3, 0 -> 2 of 2; fold 1 at >= 3: pain 5, 2 ->
    # 1 of 2, saline 4, 1 -> 1 of 2: pooled sensitivity 2/4, specificity 3/4
    on_test = found["pain_cutoff_on_test"]
    assert on_test["sensitivity"]["value"] == 0.5 and on_test["specificity"]["value"] == 0.75
    assert on_test["folds"] == ["fold0", "fold1"]


def test_no_test_prediction_reaches_a_cutoff() -> None:
    """Whatever the test images score, every cut-off stays: only validation images chose it."""
    validation = part([6, 5, 1, 2], PAIN, ["a", "a", "b", "b"])
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        test = part(rng.integers(0, 11, 4).tolist(), PAIN, ["c", "c", "d", "d"])
        found = fold_cutoffs([FoldPredictions("fold0", validation, test)], deployed="fold0")
        seen.add((found["pain_cutoff"], found["pain_cutoff_folds"]["fold0"]["cutoff"]))
    assert seen == {(5.0, 5.0)}


def test_a_fold_whose_validation_part_is_one_class_chooses_none_and_says_why() -> None:
    fold0 = FoldPredictions("fold0", part([6, 5, 1, 2], PAIN, list("aabb")),
                            part([4, 7, 3, 0], PAIN, list("ccdd")))
    fold1 = FoldPredictions("fold1", part([3, 4], [True, True], list("cc")),
                            part([5, 2, 4, 1], PAIN, list("aabb")))
    found = fold_cutoffs([fold0, fold1], deployed="final")
    assert found["pain_cutoff_folds"]["fold1"]["cutoff"] is None
    assert "only pain images among its 2" in found["pain_cutoff_folds"]["fold1"]["note"]
    assert found["pain_cutoff"] == 5.0
    assert found["pain_cutoff_how"].startswith("the median of 1 of the 2 folds' cut-offs (5)")
    assert found["pain_cutoff_on_test"]["folds"] == ["fold0"]
    alone = fold_cutoffs([fold1], deployed="fold1")
    assert alone["pain_cutoff"] is None and "only pain images" in alone["pain_cutoff_note"]


def test_folds_of_images_choose_no_cutoff_and_say_why() -> None:
    fold = FoldPredictions("fold0", part([6, 5, 1, 2], PAIN, list("aabb")),
                           part([4, 7, 3, 0], PAIN, list("ccdd")))
    found = fold_cutoffs([fold], deployed="final", refused="folds of images (--split cv)")
    assert found["pain_cutoff"] is None and found["pain_cutoff_on_test"] is None
    assert found["pain_cutoff_note"] == "folds of images (--split cv)"
    assert found["pain_cutoff_folds"]["fold0"]["note"] == "folds of images (--split cv)"


def test_the_reference_and_every_rater_are_measured_as_the_model_is(tmp_path: Path) -> None:
    """Table 3 for each total at its own cut-off chosen on validation images: the reference
    picks 6 there (its test images would pick 3, in-sample), ann picks 4."""
    validation = part([6, 5, 1, 2], PAIN, list("aabb"), raters={"ann": [4, 5, 3, 0]},
                      reference=[7, 6, 2, 5])
    test = part([4, 7, 3, 0], PAIN, list("ccdd"), raters={"ann": [4, 3, np.nan, 1]},
                reference=[3, 6, 2, 0])
    cutoff = fold_cutoffs([FoldPredictions("fold0", validation, test)], deployed="fold0")
    results = evaluate(test, n_boot=N_BOOT, cutoff=cutoff)
    table = results["cutoff_table"]
    assert table["reference"]["cutoffs"] == {"fold0": 6.0}
    # reference >= 6 on test: pain 3, 6 -> 1 of 2; saline 2, 0 -> 2 of 2
    assert table["reference"]["sensitivity"]["value"] == 0.5
    assert table["reference"]["specificity"]["value"] == 1.0
    assert table["reference"]["accuracy"]["value"] == 0.75
    assert results["discrimination"]["reference"]["cutoff"] == 3.0  # its own, in-sample
    # ann >= 4 on the test images ann scored: pain 4, 3 -> 1 of 2; saline 1 -> 1 of 1
    assert table["ann"]["cutoffs"] == {"fold0": 4.0}
    assert (table["ann"]["sensitivity"]["k"], table["ann"]["sensitivity"]["n"]) == (1, 2)
    assert table["ann"]["precision"]["value"] == 1.0 and table["ann"]["f1"]["value"] == 2 / 3
    assert table["model"]["cutoffs"] == {"fold0": 5.0}
    page = " ".join(write_report(tmp_path, test, results).read_text().split())
    assert "At the cut-offs chosen on validation images (Table 3), out of sample" in page
    assert "<td>ann</td><td>4</td>" in page


def test_one_validation_choice_is_one_fold() -> None:
    """evaluate() with one validation part's choice, its test part the evaluated images."""
    test = part([4, 7, 3, 0], PAIN, list("ccdd"))
    results = evaluate(test, n_boot=N_BOOT, cutoff={"cutoff": 5.0, "n": 4, "n_pain": 2,
                                                    "note": ""})
    assert results["pain_cutoff"] == 5.0 and list(results["pain_cutoff_folds"]) == ["fold0"]
    assert results["pain_cutoff_on_test"]["sensitivity"]["value"] == pytest.approx(0.5)
