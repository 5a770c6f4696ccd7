"""How far raters agree with each other and with themselves.

Per unit and pair of raters: Cohen's kappa with quadratic weights (scikit-learn), on the images
both scored for that unit (a level of 2 against 0 costs four times 1 against 0). For totals:
ICC(2,1) from pingouin (its `ICC(A,1)`: two-way random effects, absolute agreement, one rater),
on the images both scored in all five units. Consistency: each rater's first answer against
their answer to the same image shown again unannounced. The statistics themselves live in
train/agreement.py, so mgs-eval measures the model against its reference the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from monitor.units import UNITS
from train.agreement import icc_absolute, quadratic_kappa

from .answers import ANSWER

Levels = Sequence[int | None]
MIN_KAPPA = 2  # image pairs a kappa needs at least
MIN_ICC = 3  # images an ICC needs at least (pingouin wants 5 values)
MIN_SELF_KAPPA = 10  # unit comparisons a rater's own kappa needs


@dataclass(frozen=True)
class Figure:
    """A statistic and how many images (or comparisons) it rests on; None when too few."""

    value: float | None
    n: int

    def __str__(self) -> str:
        return "\u2013" if self.value is None else f"{self.value:.2f}"


@dataclass(frozen=True)
class PairAgreement:
    a: str
    b: str
    shared: int  # images both answered
    kappa: dict[str, Figure]  # unit -> quadratic-weighted kappa
    icc: Figure  # ICC(2,1) of totals


@dataclass(frozen=True)
class Consistency:
    rater: str
    images: int  # images answered twice
    identical: Figure  # share of unit levels given the same both times
    kappa: Figure  # quadratic kappa over all units' comparisons pooled


def face_ratings(records: Iterable[dict[str, Any]]
                 ) -> tuple[dict[str, dict[str, Levels]], dict[str, list[tuple[Levels, Levels]]]]:
    """From the answers in force: per rater, item -> first levels; and per rater, (first,
    repeat) level pairs for the images they saw twice."""
    first: dict[str, dict[str, Levels]] = defaultdict(dict)
    again: dict[str, list[tuple[Levels, Levels]]] = defaultdict(list)
    for r in records:
        if r["task"] != "face" or r["kind"] != ANSWER:
            continue
        mine = first[r["rater"]]
        if r["item"] in mine:
            again[r["rater"]].append((mine[r["item"]], r["levels"]))
        else:
            mine[r["item"]] = r["levels"]
    return dict(first), dict(again)


def pairs(ratings: dict[str, dict[str, Levels]]) -> list[PairAgreement]:
    found = []
    for a, b in combinations(sorted(ratings), 2):
        shared = sorted(set(ratings[a]) & set(ratings[b]))
        kappas = {}
        for u, unit in enumerate(UNITS):
            both = [(ratings[a][i][u], ratings[b][i][u]) for i in shared]
            kappas[unit] = kappa([(x, y) for x, y in both if x is not None and y is not None])
        totals = [(_total(ratings[a][i]), _total(ratings[b][i])) for i in shared]
        found.append(PairAgreement(a, b, len(shared), kappas,
                                   icc([(x, y) for x, y in totals if x is not None
                                        and y is not None])))
    return found


def consistency(repeats: dict[str, list[tuple[Levels, Levels]]]) -> list[Consistency]:
    found = []
    for rater, twice in sorted(repeats.items()):
        same = [(x, y) for first, second in twice for x, y in zip(first, second, strict=True)
                if x is not None and y is not None]
        share = Figure(float(np.mean([x == y for x, y in same])) if same else None, len(same))
        pooled = kappa(same) if len(same) >= MIN_SELF_KAPPA else Figure(None, len(same))
        found.append(Consistency(rater, len(twice), share, pooled))
    return found


def kappa(pairs: Sequence[tuple[int | None, int | None]]) -> Figure:
    """Quadratic-weighted Cohen's kappa; None with too few pairs or no variation at all."""
    if len(pairs) < MIN_KAPPA:
        return Figure(None, len(pairs))
    a, b = zip(*pairs, strict=True)
    return Figure(quadratic_kappa(a, b), len(pairs))  # type: ignore[arg-type]


def icc(pairs: Sequence[tuple[int, int]]) -> Figure:
    """ICC(2,1) of two raters' values on the same images (pingouin's ICC(A,1))."""
    if len(pairs) < MIN_ICC:
        return Figure(None, len(pairs))
    x, y = zip(*pairs, strict=True)
    return Figure(icc_absolute(x, y), len(pairs))


def _total(levels: Levels) -> int | None:
    return None if any(v is None for v in levels) else sum(v for v in levels if v is not None)
