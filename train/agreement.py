"""Agreement statistics shared by the evaluation report and mgs-label's agreement page, so a
model and a human rater are measured with the same variants: Cohen's kappa with quadratic
weights (scikit-learn) per unit, and ICC(2,1) of totals from pingouin (its `ICC2`, also called
`ICC(A,1)`: two-way random effects, absolute agreement, one rater).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from monitor.units import LEVELS


def quadratic_kappa(a: Sequence[int], b: Sequence[int]) -> float | None:
    """Quadratic-weighted Cohen's kappa of two raters' levels (a level of 2 against 0 costs four
    times 1 against 0); None with fewer than 2 pairs or no variation at all."""
    if len(a) != len(b):
        raise ValueError(f"kappa needs paired levels, got {len(a)} and {len(b)}")
    if len(a) < 2:
        return None
    # scikit-learn takes a second to import: mgs-label's server starts without it
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        value = float(cohen_kappa_score(list(a), list(b), labels=list(LEVELS),
                                        weights="quadratic"))
    return value if math.isfinite(value) else None


def icc_absolute(x: Sequence[float], y: Sequence[float]) -> float | None:
    """ICC(2,1) of two raters' totals on the same images; None with fewer than 3 images (pingouin
    wants 5 values) or when it is undefined."""
    if len(x) != len(y):
        raise ValueError(f"ICC needs paired totals, got {len(x)} and {len(y)}")
    if len(x) < 3:
        return None
    import pandas as pd  # pingouin and pandas take seconds to import: only when needed
    import pingouin

    long = pd.DataFrame([(i, rater, float(value)) for i, pair in enumerate(zip(x, y, strict=True))
                         for rater, value in enumerate(pair)],
                        columns=["image", "rater", "total"])
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        table = pingouin.intraclass_corr(long, targets="image", raters="rater", ratings="total")
    value = float(table[table["Type"].isin(("ICC2", "ICC(A,1)"))]["ICC"].iloc[0])
    return value if math.isfinite(value) else None
