"""Agreement figures against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from label.agreement import consistency, face_ratings, icc, kappa, pairs
from monitor.units import UNITS


def test_quadratic_kappa_by_hand() -> None:
    # a and b each use 0, 1, 2 twice (6 images); they differ only by one step twice.
    # Weights (i-j)^2/4; observed weighted disagreement 2 x 1/4 = 0.5; expected: every cell
    # 2*2/6 = 2/3, times the weights' sum 3 = 2. Kappa = 1 - 0.5/2 = 0.75.
    a, b = [0, 1, 2, 2, 1, 0], [0, 2, 2, 1, 1, 0]
    figure = kappa(list(zip(a, b, strict=True)))
    assert figure.value == pytest.approx(0.75) and figure.n == 6
    assert kappa([(1, 1)]).value is None  # too few
    assert kappa([(1, 1), (1, 1), (1, 1)]).value is None  # no variation: undefined, not 1


def test_icc_2_1_by_hand() -> None:
    # Totals of 5 images by 2 raters. Two-way ANOVA: MSR (images) = 9.35, MSC (raters) = 0.1,
    # MSE = 0.35; ICC(2,1) = (MSR - MSE) / (MSR + (k-1) MSE + k (MSC - MSE) / n)
    #                      = 9 / (9.35 + 0.35 - 0.1) = 0.9375
    totals = [(2, 3), (4, 4), (6, 7), (8, 8), (5, 4)]
    x = np.array(totals, float)
    n, k = x.shape
    grand = x.mean()
    msr = k * ((x.mean(1) - grand) ** 2).sum() / (n - 1)
    msc = n * ((x.mean(0) - grand) ** 2).sum() / (k - 1)
    mse = ((x - x.mean(1, keepdims=True) - x.mean(0) + grand) ** 2).sum() / ((n - 1) * (k - 1))
    assert (msr, msc, mse) == pytest.approx((9.35, 0.1, 0.35))
    assert icc(totals).value == pytest.approx(0.9375)
    assert icc(totals[:2]).value is None and icc(totals[:2]).n == 2


def test_pairs_and_consistency_from_the_answers() -> None:
    def answer(rater: str, item: str, levels: list[int | None]) -> dict[str, object]:
        return {"task": "face", "kind": "answer", "rater": rater, "item": item,
                "levels": levels}

    records = [
        answer("ann", "i1", [0, 1, 2, 0, 1]), answer("bob", "i1", [0, 1, 2, 0, 1]),
        answer("ann", "i2", [1, 1, 1, None, 1]), answer("bob", "i2", [2, 1, 1, 1, 1]),
        answer("ann", "i3", [2, 2, 2, 2, 2]), answer("bob", "i3", [2, 2, 1, 2, 2]),
        answer("cy", "i3", [0, 0, 0, 0, 0]),
        answer("ann", "i1", [0, 1, 2, 1, 1]),  # ann sees i1 again
        {"task": "box", "kind": "answer", "rater": "ann", "item": "b1", "box": [1, 2, 3, 4]},
    ]
    ratings, repeats = face_ratings(records)
    assert ratings["ann"]["i1"] == [0, 1, 2, 0, 1]  # the first answer is the label
    found = {(p.a, p.b): p for p in pairs(ratings)}
    assert set(found) == {("ann", "bob"), ("ann", "cy"), ("bob", "cy")}
    ab = found[("ann", "bob")]
    assert ab.shared == 3
    assert ab.kappa["ear_position"].n == 2  # ann left i2's ears blank
    assert ab.kappa["nose_bulge"].value == pytest.approx(1.0)
    assert ab.icc.n == 2 and ab.icc.value is None  # only two images have all five units
    assert found[("ann", "cy")].shared == 1 and found[("ann", "cy")].kappa[UNITS[0]].value is None
    (mine,) = consistency(repeats)
    assert mine.rater == "ann" and mine.images == 1
    assert mine.identical.value == pytest.approx(4 / 5) and mine.identical.n == 5
    assert mine.kappa.value is None  # fewer than 10 comparisons
