import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytest

from monitor.units import UNITS
from train.report import write_report
from train.statistics import (
    RANDOM_ARRANGEMENTS,
    EvalInput,
    agreement_by_mouse,
    auroc_p_by_mouse,
    clopper_pearson,
    evaluate,
    level_metrics,
    pain_discrimination,
    rater_comparison,
    total_agreement,
    williams_test,
)

N_BOOT = 200
Evaluated = tuple[EvalInput, dict[str, Any]]


def from_confusion(matrix: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Truth and prediction arrays whose confusion (rows truth, cols predicted) is `matrix`."""
    pairs = [(t, p) for t, row in enumerate(matrix) for p, count in enumerate(row)
             for _ in range(count)]
    truth, predicted = zip(*pairs, strict=True)
    return np.array(truth), np.array(predicted)


def test_clopper_pearson_matches_textbook_values() -> None:
    assert clopper_pearson(7, 20) == pytest.approx((0.1539, 0.5922), abs=5e-5)
    assert clopper_pearson(0, 10) == pytest.approx((0.0, 0.3085), abs=5e-5)
    assert clopper_pearson(10, 10)[1] == 1.0
    with pytest.raises(ValueError):
        clopper_pearson(0, 0)


def test_level_metrics_on_a_hand_made_confusion() -> None:
    matrix = [[5, 1, 0], [2, 3, 1], [0, 1, 2]]
    result = level_metrics(*from_confusion(matrix))
    assert result["confusion"] == matrix and result["n"] == 15
    assert result["accuracy"]["value"] == pytest.approx(10 / 15)
    expected = {  # level: sensitivity, specificity, precision, F1, one-vs-rest accuracy
        "0": (5 / 6, 7 / 9, 5 / 7, 10 / 13, 12 / 15),
        "1": (3 / 6, 7 / 9, 3 / 5, 6 / 11, 10 / 15),
        "2": (2 / 3, 11 / 12, 2 / 3, 4 / 6, 13 / 15),
    }
    for level, values in expected.items():
        got = result["levels"][level]
        names = ("sensitivity", "specificity", "precision", "f1", "accuracy")
        assert tuple(got[name]["value"] for name in names) == pytest.approx(values)
    sensitivity = result["levels"]["0"]["sensitivity"]
    assert (sensitivity["k"], sensitivity["n"]) == (5, 6)
    assert (sensitivity["ci_low"], sensitivity["ci_high"]) == pytest.approx(clopper_pearson(5, 6))
    assert result["levels"]["0"]["f1"]["ci_low"] is None


def test_perfect_prediction_gives_accuracy_one_and_none_for_undefined() -> None:
    truth = np.array([0, 0, 0, 1, 1])
    result = level_metrics(truth, truth.copy())
    assert result["accuracy"]["value"] == 1.0
    level2 = result["levels"]["2"]
    assert level2["sensitivity"]["value"] is None and level2["precision"]["value"] is None
    assert level2["f1"]["value"] is None
    assert level2["specificity"]["value"] == 1.0
    json.dumps(result, allow_nan=False)


def test_level_metrics_rejects_unscored_levels() -> None:
    with pytest.raises(ValueError):
        level_metrics(np.array([0, -1]), np.array([0, 1]))


def test_total_agreement_identical_and_shifted() -> None:
    reference = np.array([0, 2, 3, 5, 7, 8, 10], float)
    same = total_agreement(reference, reference.copy())
    assert same["r"] == pytest.approx(1.0) and same["bias"] == 0.0 and same["sd"] == 0.0
    shifted = total_agreement(reference, reference + 1)
    assert shifted["bias"] == 1.0 and shifted["sd"] == 0.0
    assert shifted["loa_low"] == 1.0 and shifted["loa_high"] == 1.0 and shifted["n"] == 7


def test_total_agreement_hand_computed_and_nan_dropped() -> None:
    result = total_agreement(np.array([1, 2, 3, 4, 9.0]), np.array([2, 2, 5, 4, np.nan]))
    sd = np.sqrt(2.75 / 3)
    assert result["n"] == 4
    assert result["bias"] == pytest.approx(0.75) and result["sd"] == pytest.approx(sd)
    assert result["loa_high"] == pytest.approx(0.75 + 1.96 * sd)
    assert result["r_ci_low"] < result["r"] < result["r_ci_high"]
    assert 0 < result["p_value"] < 1


def test_pain_discrimination_perfect_separation() -> None:
    scores = np.array([0, 1, 1, 2, 3, 3, 6, 7, 8, 8, 9, 10])
    is_pain = scores >= 5
    result = pain_discrimination(scores, is_pain, n_boot=N_BOOT)
    auroc = result["auroc"]
    assert (auroc["value"], auroc["ci_low"], auroc["ci_high"]) == pytest.approx((1, 1, 1))
    assert result["auprc"]["value"] == 1.0
    assert 3 < result["cutoff"] <= 6
    assert result["sensitivity"]["value"] == 1.0 and result["specificity"]["value"] == 1.0
    assert result["roc"]["thresholds"][0] is None  # sklearn's +inf, kept JSON-safe
    json.dumps(result, allow_nan=False)


def test_pain_discrimination_random_scores() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 11, 300).astype(float)
    is_pain = rng.random(300) < 0.4
    result = pain_discrimination(scores, is_pain, n_boot=N_BOOT)
    auroc = result["auroc"]
    assert abs(auroc["value"] - 0.5) < 0.1
    assert auroc["ci_low"] < 0.5 < auroc["ci_high"]
    assert result["auprc"]["ci_low"] < result["prevalence"] < result["auprc"]["ci_high"]


def test_pain_discrimination_drops_nan_and_one_class_is_none() -> None:
    result = pain_discrimination(np.array([1.0, np.nan, 5.0]), np.array([False, True, True]),
                                 n_boot=N_BOOT)
    assert result["n"] == 2 and result["n_pain"] == 1
    single = pain_discrimination(np.array([1.0, 2.0]), np.array([True, True]), n_boot=N_BOOT)
    assert single["auroc"] is None and single["cutoff"] is None


def make_input(n: int = 60, pain: bool = True) -> EvalInput:
    rng = np.random.default_rng(3)
    condition = ["baseline" if i % 2 else "post-op" for i in range(n)]
    is_pain = np.array([c == "post-op" for c in condition])
    truth = np.clip(rng.integers(0, 2, (n, 5)) + is_pain[:, None], 0, 2)
    model = np.where(rng.random((n, 5)) < 0.8, truth, rng.integers(0, 3, (n, 5)))
    truth[[0, 5, 9], [1, 3, 3]] = -1
    reference = truth.sum(1).astype(float)
    raters = {name: reference + rng.normal(0, 1.0, n) for name in ("alice", "bob <b>")}
    raters["alice"][[2, 4, 6]] = np.nan
    return EvalInput(image=[f"img{i}.png" for i in range(n)], truth_levels=truth,
                     model_levels=model, model_expected_total=model.sum(1) + rng.normal(0, 0.3, n),
                     condition=condition, pain_conditions={"post-op"} if pain else set(),
                     raters=raters, reference_name="majority", title="Test <run> & co")


@pytest.fixture(scope="module")
def evaluated() -> Evaluated:
    data = make_input()
    return data, evaluate(data, n_boot=N_BOOT)


def test_evaluate_counts_exclusions_and_compares_everyone(evaluated: Evaluated) -> None:
    results = evaluated[1]
    assert results["n_images"] == 60 and results["n_complete"] == 57
    assert results["unit_metrics"]["nose_bulge"]["n"] == 59
    assert results["unit_metrics"]["ear_position"]["n"] == 58
    assert list(results["agreement"]) == ["model", "model_expected"]
    assert results["agreement"]["model"]["n"] == 57
    # raters, and the model beside them, on the 54 complete images both raters scored
    raters = results["rater_comparison"]
    assert raters["n_common"] == 54 and list(raters["raters"]) == ["alice", "bob <b>"]
    assert raters["raters"]["alice"]["rater"]["n"] == raters["raters"]["alice"]["model"]["n"] == 54
    assert raters["raters"]["bob <b>"]["rater"]["r"] > 0.5
    assert {d["n"] for d in raters["discrimination"].values()} == {54}
    discrimination = results["discrimination"]
    assert list(discrimination) == ["reference", "model", "model_expected"]
    assert discrimination["reference"]["auroc"]["value"] > 0.8
    # The test images' own best cut-off is shown, never exported: without a cut-off chosen on
    # a validation part there is none for the monitor.
    assert discrimination["model"]["cutoff"] is not None and results["pain_cutoff"] is None
    json.dumps(results, allow_nan=False)


def test_evaluate_without_pain_conditions() -> None:
    results = evaluate(make_input(pain=False), n_boot=N_BOOT)
    assert results["discrimination"] is None and results["pain_cutoff"] is None


def test_eval_input_checks_shapes_and_reserved_names() -> None:
    data = make_input()
    with pytest.raises(ValueError, match="model_levels"):
        EvalInput(data.image, data.truth_levels, data.model_levels[:-1],
                  data.model_expected_total, data.condition)
    with pytest.raises(ValueError, match="reserved"):
        EvalInput(data.image, data.truth_levels, data.model_levels, data.model_expected_total,
                  data.condition, raters={"model": data.model_expected_total})


def test_write_report_writes_json_html_and_plots(tmp_path: Path,
                                                 evaluated: Evaluated) -> None:
    data, results = evaluated
    cam = tmp_path / "gradcam" / "orbital.png"
    cam.parent.mkdir()
    plt.imsave(cam, np.zeros((8, 8)))
    folder = tmp_path / "report"
    page = write_report(folder, data, results, {"Grad-CAM": [cam]})
    assert page == folder / "report.html"
    text = (folder / "report.json").read_text()
    assert "NaN" not in text and json.loads(text)["n_complete"] == 57
    body = page.read_text()
    assert all(unit in body for unit in UNITS) and "AUROC" in body
    assert "Test &lt;run&gt; &amp; co" in body and "<run>" not in body
    assert "bob &lt;b&gt;" in body and 'src="../gradcam/orbital.png"' in body
    pngs = {p.name for p in folder.glob("*.png")}
    assert {"confusion.png", "scatter_totals.png", "roc.png", "pr.png"} <= pngs
    assert len([p for p in pngs if p.startswith("bland_altman_")]) == 4
    assert all((folder / p).stat().st_size > 1000 and f'src="{p}"' in body for p in pngs)


def test_write_report_without_pain_conditions_skips_curves(tmp_path: Path) -> None:
    page = write_report(tmp_path, make_input(pain=False))
    assert not (tmp_path / "roc.png").exists() and "AUROC" not in page.read_text()


def test_auroc_p_value_against_chance_is_the_exact_rank_test() -> None:
    """Pain 3, 4, 5 against 1, 2: every pain image ranks above, AUROC 1; of the C(5, 2) = 10
    equally likely rank sets, one is this extreme in each direction: p = 2/10."""
    result = pain_discrimination(np.array([1.0, 2, 3, 4, 5]),
                                 np.array([False, False, True, True, True]), n_boot=N_BOOT)
    assert result["auroc"]["value"] == 1.0 and result["auroc_p_value"] == pytest.approx(0.2)


def test_bland_altman_proportional_bias_and_share_outside() -> None:
    reference = np.array([1.0, 2, 3, 4, 5])
    grows = total_agreement(reference, 1.5 * reference)  # difference 0.4 x the pair's mean
    assert grows["proportional_slope"] == pytest.approx(0.4) and grows["proportional_p"] < 1e-6
    assert total_agreement(reference, reference + 1)["proportional_slope"] == pytest.approx(0)
    # nine differences of 0 and one of 10: bias 1, SD sqrt(90 / 9), limits 1 +- 6.2
    other = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 10.0]) + np.arange(10.0)
    one_off = total_agreement(np.arange(10.0), other)
    assert one_off["sd"] == pytest.approx(np.sqrt(10)) and one_off["outside"] == pytest.approx(0.1)


def analysed(conditions: list[str], totals: list[int], control: set[str]) -> EvalInput:
    """Images whose reference and model totals are `totals` (levels spread over the units)."""
    levels = np.array([[min(2, max(0, t - 2 * u)) for u in range(5)] for t in totals])
    return EvalInput(image=[f"i{k}" for k in range(len(totals))], truth_levels=levels,
                     model_levels=levels, model_expected_total=levels.sum(1).astype(float),
                     condition=conditions, pain_conditions={"NTG"}, control_conditions=control)


def test_control_conditions_leave_the_others_out_and_count_them() -> None:
    conditions = ["NTG", "NTG", "saline", "saline", "pre", "pre"]
    totals = [6, 5, 1, 2, 0, 7]
    named = evaluate(analysed(conditions, totals, {"saline"}), n_boot=N_BOOT)
    assert named["discrimination"]["model"]["n"] == 4
    assert named["left_out_of_pain_analysis"] == {"pre": 2}
    assert named["discrimination"]["model"]["auroc"]["value"] == 1.0
    everyone = evaluate(analysed(conditions, totals, set()), n_boot=N_BOOT)
    assert everyone["discrimination"]["model"]["n"] == 6 and not everyone[
        "left_out_of_pain_analysis"]
    # NTG 6 and 5 against 1, 2, 0, 7: each is above three of the four, AUROC 6/8
    assert everyone["discrimination"]["model"]["auroc"]["value"] == pytest.approx(6 / 8)


def test_figures_at_the_exported_cutoff_are_counted_on_test() -> None:
    """total >= 4 on: pain 6, 5, 3 and control 1, 4, 0, 2 -> TP 2, FN 1, FP 1, TN 3."""
    data = analysed(["NTG"] * 3 + ["saline"] * 4, [6, 5, 3, 1, 4, 0, 2], set())
    at = evaluate(data, n_boot=N_BOOT, cutoff={"cutoff": 4.0, "n": 9, "n_pain": 4,
                                               "note": ""})["pain_cutoff_on_test"]
    assert at["sensitivity"]["value"] == pytest.approx(2 / 3)
    assert at["specificity"]["value"] == pytest.approx(3 / 4)
    assert at["accuracy"]["value"] == pytest.approx(5 / 7)
    assert at["precision"]["value"] == pytest.approx(2 / 3)
    assert at["f1"]["value"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert at["accuracy"]["ci_low"] < 5 / 7 < at["accuracy"]["ci_high"]


def clustered(copies: int) -> EvalInput:
    """12 mice (6 NTG, 6 saline), each shown in `copies` identical images."""
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 3, (12, 5))
    model = np.where(rng.random((12, 5)) < 0.7, truth, (truth + 1) % 3)
    conditions = ["NTG" if m < 6 else "saline" for m in range(12)]
    return EvalInput(image=[f"m{m}-{k}" for m in range(12) for k in range(copies)],
                     truth_levels=np.repeat(truth, copies, 0),
                     model_levels=np.repeat(model, copies, 0),
                     model_expected_total=np.repeat(model.sum(1), copies).astype(float),
                     condition=[c for c in conditions for _ in range(copies)],
                     pain_conditions={"NTG"},
                     mouse=[f"m{m}" for m in range(12) for _ in range(copies)])


def test_intervals_by_mouse_do_not_narrow_with_copies_of_a_mouse() -> None:
    """Ten identical images per mouse carry no more information than one: the interval by
    mouse stays exactly as it was, while the per-image Clopper-Pearson interval narrows."""
    once, tenfold = (evaluate(clustered(copies), n_boot=N_BOOT, seed=3) for copies in (1, 10))
    for key in ("accuracy orbital_tightening", "r", "auroc", "auprc"):
        assert once["by_mouse"][key] == pytest.approx(tenfold["by_mouse"][key]), key
    assert once["by_mouse"]["n_mice"] == 12
    assert once["by_mouse"]["mice_per_condition"] == {"NTG": 6, "saline": 6}
    unit = "orbital_tightening"
    assert once["by_mouse"][f"accuracy {unit}"]["value"] == once["unit_metrics"][unit][
        "accuracy"]["value"]
    per_image = [r["unit_metrics"][unit]["accuracy"] for r in (once, tenfold)]
    width = [a["ci_high"] - a["ci_low"] for a in per_image]
    assert width[1] < width[0] / 2
    by_mouse = tenfold["by_mouse"][f"accuracy {unit}"]
    assert by_mouse["ci_high"] - by_mouse["ci_low"] > width[1]


def test_without_mouse_ids_there_are_no_intervals_by_mouse() -> None:
    data = clustered(1)
    data.mouse = []
    assert evaluate(data, n_boot=N_BOOT)["by_mouse"] is None


def test_williams_test_hand_computed() -> None:
    """n = 103, r12 = .4, r13 = .5, r23 = .1: t = -0.89 with 100 df (Steiger 1980, eq. 7, by
    hand: |R| = 1 - .16 - .25 - .01 + 2 * .4 * .5 * .1 = 0.62, mean r = .45,
    t = -0.1 * sqrt(102 * 1.1 / (2 * 102/100 * 0.62 + 0.2025 * 0.729)))."""
    found = williams_test(103, 0.4, 0.5, 0.1)
    assert found["t"] == pytest.approx(-0.1 * np.sqrt(102 * 1.1 / (2.04 * 0.62 + 0.2025 * 0.729)))
    assert found["t"] == pytest.approx(-0.891, abs=5e-4) and found["df"] == 100
    assert found["p_value"] == pytest.approx(0.375, abs=5e-3)
    assert williams_test(50, 0.6, 0.6, 0.3)["t"] == 0.0


def test_a_rater_is_never_part_of_their_own_reference() -> None:
    """Two raters who agree perfectly with each other and the model: each compared with the
    other (their leave-one-out reference) gives r = 1, and Williams's t is 0."""
    totals = np.array([0.0, 2, 3, 5, 6, 8, 9, 10])
    levels = np.array([[min(2, max(0, int(t) - 2 * u)) for u in range(5)] for t in totals])
    data = EvalInput(image=[f"i{k}" for k in range(8)], truth_levels=levels, model_levels=levels,
                     model_expected_total=totals, condition=["c"] * 8,
                     raters={"ann": totals.copy(), "ben": totals + 1},
                     rater_references={"ann": totals + 1, "ben": totals.copy()})
    found = rater_comparison(data, n_boot=N_BOOT, seed=0)
    assert found is not None
    ann, ben = found["raters"]["ann"], found["raters"]["ben"]
    assert ann["rater"]["bias"] == -1.0 and ben["rater"]["bias"] == 1.0  # each against the other
    assert ann["rater"]["r"] == pytest.approx(1.0) and ann["williams"]["t"] is None  # |R| = 0


def mice_study(n_pain: int, n_control: int, per_mouse: int, seed: int = 5) -> EvalInput:
    """Mice whose model total is their reference total, each shown in `per_mouse` images that
    differ a little; pain mice score higher. Two raters: one the model's copy, one noisy."""
    rng = np.random.default_rng(seed)
    mice = [f"m{m}" for m in range(n_pain + n_control) for _ in range(per_mouse)]
    condition = ["NTG" if int(m[1:]) < n_pain else "saline" for m in mice]
    look = {m: rng.integers(0, 2, 5) for m in sorted(set(mice))}
    truth = np.array([np.clip(look[m] + (c == "NTG") + (rng.random(5) < 0.2), 0, 2)
                      for m, c in zip(mice, condition, strict=True)])
    total = truth.sum(1).astype(float)
    return EvalInput(image=[f"img{i}" for i in range(len(mice))], truth_levels=truth,
                     model_levels=truth.copy(), model_expected_total=total.copy(),
                     condition=condition, pain_conditions={"NTG"}, mouse=mice,
                     raters={"copy": total.copy(), "noisy": total + rng.normal(0, 2, total.size)})


def test_the_bootstraps_fast_auroc_and_auprc_are_sklearns() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    from train.statistics import _auprc, _auroc

    rng = np.random.default_rng(7)
    for _ in range(20):
        score = rng.integers(0, 6, 40).astype(float)  # many ties
        pain = rng.random(40) < 0.3
        pain[:2] = True, False
        assert _auroc(pain, score) == pytest.approx(roc_auc_score(pain, score))
        assert _auprc(pain, score) == pytest.approx(average_precision_score(pain, score))


def test_auroc_p_by_mouse_enumerates_every_arrangement_of_few_mice() -> None:
    """4 pain and 4 control mice, 10 images each, fully separated: per image the rank test says
    p ~ 1e-14, but only 2 of the C(8, 4) = 70 ways to name 4 of the 8 mice pain are this far
    from chance: p = 2/70."""
    score = np.repeat(np.arange(8.0), 10) + np.tile(np.linspace(0, 0.5, 10), 8)
    pain = np.repeat(np.arange(8) >= 4, 10)
    mice = np.repeat(np.arange(8), 10).astype(str)
    found = pain_discrimination(score, pain, n_boot=N_BOOT, mice=mice)
    assert found["auroc_p_value"] < 1e-10
    assert found["auroc_p_value_by_mouse"] == pytest.approx(2 / 70)
    # AUROC exactly 0.5 (mouse 0 and 7 pain, the rest control, ranks mirrored): every arrangement
    # is as far from chance, p = 1
    middle = pain_discrimination(score, np.repeat(np.isin(np.arange(8), [0, 7, 3, 4]), 10),
                                 n_boot=N_BOOT, mice=mice)
    assert middle["auroc"]["value"] == pytest.approx(0.5)
    assert middle["auroc_p_value_by_mouse"] == 1.0
    assert pain_discrimination(score, pain, n_boot=N_BOOT)["auroc_p_value_by_mouse"] is None


def test_auroc_p_by_mouse_draws_arrangements_when_there_are_many() -> None:
    """12 + 12 mice give C(24, 12) = 2.7 million arrangements: a random sample is drawn, and a
    full separation (reached by 2 of them) gives p = (1 + 0) / (1 + n)."""
    score = np.arange(24.0)
    mice = np.arange(24).astype(str)
    assert auroc_p_by_mouse(score, score >= 12, mice) == pytest.approx(
        1 / (1 + RANDOM_ARRANGEMENTS))
    assert auroc_p_by_mouse(score, np.ones(24, bool), mice) is None


def test_the_report_gives_the_models_auroc_p_by_mouse(tmp_path: Path) -> None:
    data = mice_study(4, 4, 6)
    results = evaluate(data, n_boot=N_BOOT)
    model = results["discrimination"]["model"]
    assert results["by_mouse"]["auroc_p_value"] == model["auroc_p_value_by_mouse"]
    assert all(d["auroc_p_value_by_mouse"] >= 2 / 70 for d in results["discrimination"].values())
    assert model["auroc_p_value"] < model["auroc_p_value_by_mouse"]
    body = write_report(tmp_path, data, results).read_text()
    assert "p (AUROC = 0.5), by mouse" in body and "p (AUROC = 0.5), per image" in body
    assert "Pain discrimination (95% bootstrap CIs per image" in body
    assert "Pearson r [95% CI], per image" in body and "Williams t, p (per image)" in body
    # the columns beside the test images' own cut-off are marked as chosen on them
    assert "sensitivity at it, in-sample" in body and "specificity at it, in-sample" in body


def test_r_and_proportional_bias_by_mouse_do_not_grow_with_copies_of_a_mouse() -> None:
    """Per image, ten copies of each mouse make r's p tiny and its CI narrow; from mouse means
    they change nothing: twelve mice are twelve mice."""
    once, tenfold = (evaluate(clustered(copies), n_boot=N_BOOT)["agreement"]["model"]
                     for copies in (1, 10))
    assert tenfold["p_value"] < once["p_value"] / 100
    for key in ("r", "r_ci_low", "r_ci_high", "p_value", "proportional_slope",
                "proportional_p"):
        assert tenfold["by_mouse"][key] == pytest.approx(once[key]), key
        assert once["by_mouse"][key] == pytest.approx(once[key]), key
    assert tenfold["by_mouse"]["n_mice"] == 12


def test_agreement_by_mouse_is_taken_on_mouse_means() -> None:
    """Mouse a: reference 1, 3 (mean 2), other 2, 4 (3); b: 4 -> 4; c: 6, 8 (7) -> 9, 9 (9);
    d: NaN dropped, 10 -> 12. Means (2, 3), (4, 4), (7, 9), (10, 12)."""
    reference = np.array([1, 3, 4, 6, 8, 5, 10.0])
    other = np.array([2, 4, 4, 9, 9, np.nan, 12.0])
    found = agreement_by_mouse(reference, other, np.array(list("aabccdd")))
    x, y = np.array([2, 4, 7, 10.0]), np.array([3, 4, 9, 12.0])
    assert found["n_mice"] == 4 and found["r"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    slope = np.polyfit((x + y) / 2, y - x, 1)[0]
    assert found["proportional_slope"] == pytest.approx(slope)


def test_model_and_rater_differences_by_a_paired_mouse_bootstrap() -> None:
    """A rater who copies the model differs from it by exactly 0 in every resample (the same
    mice on both sides); a noisy rater correlates less with the reference than the model."""
    results = evaluate(mice_study(4, 4, 5), n_boot=N_BOOT)
    raters = results["rater_comparison"]["raters"]
    copy = raters["copy"]["by_mouse"]
    for key in ("r_difference", "auroc_difference"):
        assert (copy[key]["value"], copy[key]["ci_low"], copy[key]["ci_high"]) == (0, 0, 0)
        assert copy[key]["defined"] == N_BOOT
    noisy = raters["noisy"]["by_mouse"]["r_difference"]
    assert noisy["value"] > 0 and noisy["ci_low"] <= noisy["value"] <= noisy["ci_high"]
    assert raters["noisy"]["williams"]["p_value"] is not None  # Williams's test stays
    data = mice_study(4, 4, 5)
    data.mouse = []
    assert evaluate(data, n_boot=N_BOOT)["rater_comparison"]["raters"]["copy"]["by_mouse"] is None


def test_intervals_by_mouse_widen_with_few_mice() -> None:
    """The plain percentile bootstrap is too narrow with few mice: with 4 + 4 the expanded
    interval cuts sqrt(4/3) t(6) = 2.83 SDs off each side (0.24%), with many mice 1.96 (2.5%)."""
    from scipy.stats import norm
    from scipy.stats import t as student_t

    from train.statistics import _expanded_tail

    few = {"NTG": [np.array([k]) for k in range(4)], "saline": [np.array([k]) for k in range(4)]}
    want = 100 * norm.cdf(-np.sqrt(4 / 3) * student_t.ppf(0.975, 6))
    assert _expanded_tail(few) == pytest.approx(want) and 0.2 < want < 0.3
    many = {c: [np.array([k]) for k in range(5000)] for c in ("NTG", "saline")}
    assert _expanded_tail(many) == pytest.approx(2.5, abs=0.01)
    found = evaluate(mice_study(4, 4, 5), n_boot=N_BOOT)["by_mouse"]
    assert found["ci_tail_percent"] == pytest.approx(want)
    # the paired differences: value +- t(6) sqrt(4/3) SD of the resamples
    from train.statistics import _t_interval

    samples = np.array([-1.0, 1.0, -1.0, 1.0, np.nan])
    half = student_t.ppf(0.975, 6) * np.sqrt(4 / 3) * np.std(samples[:4], ddof=1)
    got = _t_interval(0.5, samples, few)
    assert (got["ci_low"], got["ci_high"], got["defined"]) == pytest.approx(
        (0.5 - half, 0.5 + half, 4))


def test_one_mouse_in_a_condition_gives_no_interval_and_says_why(tmp_path: Path) -> None:
    """1 NTG and 3 saline mice: resampling the NTG mouse always draws it again, so an interval
    would leave out how NTG mice differ. The figures stand, the intervals are n/a, the page
    says why (not that there are no mouse ids)."""
    data = mice_study(1, 3, 5)
    results = evaluate(data, n_boot=N_BOOT)
    found = results["by_mouse"]
    assert "NTG has 1 mouse" in found["note"] and found["n_boot"] == 0
    assert found["auroc"]["value"] == results["discrimination"]["model"]["auroc"]["value"] > 0.9
    assert found["auroc"]["ci_low"] is None and found["auroc"]["defined"] == 0
    # the p by mouse stays honest: with 1 of 4 mice pain there are 4 arrangements, so however
    # well the images separate, p is at least 1/4 (per image it is tiny)
    assert found["auroc_p_value"] >= 1 / 4
    assert results["discrimination"]["model"]["auroc_p_value"] < 0.01
    paired = results["rater_comparison"]["raters"]["noisy"]["by_mouse"]
    assert "NTG has 1 mouse" in paired["note"] and paired["r_difference"]["ci_low"] is None
    body = write_report(tmp_path, data, results).read_text()
    assert "No interval by mouse: NTG has 1 mouse" in body and "No mouse ids" not in body


@pytest.mark.slow
def test_too_few_mice_and_missing_ids_each_get_their_own_message(tmp_path: Path) -> None:
    two = mice_study(1, 1, 5)
    found = evaluate(two, n_boot=N_BOOT)["by_mouse"]
    assert found["note"].startswith("only 2 mice") and found["r"]["ci_low"] is None
    body = write_report(tmp_path / "two", two).read_text()
    assert "only 2 mice" in body and "No mouse ids" not in body
    partial = mice_study(4, 4, 5)
    partial.mouse[3] = ""
    found = evaluate(partial, n_boot=N_BOOT)["by_mouse"]
    assert found["note"] == "1 of 40 images name no mouse" and found["auroc"]["ci_low"] is None
    assert found["auroc_p_value"] is None
    none = mice_study(4, 4, 5)
    none.mouse = [""] * 40
    assert evaluate(none, n_boot=N_BOOT)["by_mouse"] is None
    assert "No mouse ids in the labels" in write_report(tmp_path / "none", none).read_text()


def test_model_kappa_and_icc_against_the_reference_as_mgs_label_measures_raters() -> None:
    import pandas as pd
    import pingouin
    from sklearn.metrics import cohen_kappa_score

    data = make_input()
    results = evaluate(data, n_boot=N_BOOT)
    truth, model = data.truth_levels, data.model_levels
    for j, unit in enumerate(UNITS):
        scored = truth[:, j] >= 0
        want = cohen_kappa_score(truth[scored, j], model[scored, j], weights="quadratic")
        assert results["unit_metrics"][unit]["kappa"] == pytest.approx(want), unit
    complete = (truth >= 0).all(1)
    x, y = truth[complete].sum(1), model[complete].sum(1)
    long = pd.DataFrame({"image": np.tile(np.arange(x.size), 2), "rater": [0] * x.size
                         + [1] * x.size, "total": np.concatenate([x, y]).astype(float)})
    table = pingouin.intraclass_corr(long, targets="image", raters="rater", ratings="total")
    icc2 = float(table[table["Type"].isin(("ICC2", "ICC(A,1)"))]["ICC"].iloc[0])
    assert results["agreement"]["model"]["icc"] == pytest.approx(icc2)
    alice = results["rater_comparison"]["raters"]["alice"]
    assert 0 < alice["rater"]["icc"] <= 1 and alice["model"]["icc"] is not None


def test_raters_kappa_per_unit_beside_the_models(tmp_path: Path) -> None:
    """Each rater's and the model's quadratic kappa with the rater's reference, per unit; a unit
    whose reference is a half level (two others tied) has no category and is left out."""
    from sklearn.metrics import cohen_kappa_score

    data = make_input()
    rng = np.random.default_rng(8)
    n = len(data.image)
    reference = rng.integers(0, 3, (n, 5)).astype(float)
    rater = np.where(rng.random((n, 5)) < 0.7, reference, rng.integers(0, 3, (n, 5)))
    reference[:4, 0] = 0.5
    data.raters = {"alice": rater.sum(1)}
    data.rater_references = {"alice": reference.sum(1)}
    data.rater_levels, data.rater_reference_levels = {"alice": rater}, {"alice": reference}
    results = evaluate(data, n_boot=N_BOOT)
    found = results["rater_comparison"]["raters"]["alice"]["kappa"]
    common = (data.truth_levels >= 0).all(1)
    whole = common & (reference[:, 0] % 1 == 0)
    assert found[UNITS[0]]["n"] == whole.sum() == common.sum() - (common[:4]).sum()
    want = cohen_kappa_score(reference[whole, 0].astype(int), rater[whole, 0].astype(int),
                             weights="quadratic")
    assert found[UNITS[0]]["rater"] == pytest.approx(want)
    model = cohen_kappa_score(reference[whole, 0].astype(int), data.model_levels[whole, 0],
                              weights="quadratic")
    assert found[UNITS[0]]["model"] == pytest.approx(model)
    body = write_report(tmp_path, data, results).read_text()
    assert "Quadratic-weighted kappa per unit with the rater" in body
    with pytest.raises(ValueError, match="levels of rater alice"):
        EvalInput(data.image, data.truth_levels, data.model_levels, data.model_expected_total,
                  data.condition, rater_levels={"alice": rater[:, :4]})
