"""The figures a welfare officer asks of an alert rule, by mouse: how many mice in pain it
caught and how soon, and how often it cried wolf on a control mouse.

Each mouse is one unit: a pain mouse is caught or not (sensitivity with an exact
Clopper-Pearson interval over mice), its delay is one number, and false alerts are counted per
control mouse-day with intervals from resampling whole mice. A sweep over rules picks an
operating point on one part of the mice and reports it on the others, never on the mice it was
picked on. Pure functions over arrays and small records; the page draws them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.views.alert_replay import Span, Track
from monitor.views.alert_truth import MouseTruth

DAY_S = 86400.0
ALPHA = 0.05
POISSON_ZERO_UPPER = 3.689  # 95% two-sided upper bound of a Poisson mean after 0 events


@dataclass(frozen=True)
class Outcome:
    """How one rule did on one mouse."""

    mouse: str
    pain: bool
    observed_s: float
    raises: int  # pain alerts raised (on a pain mouse: any time)
    before_onset: int  # pain mice: raised before the onset
    alert_s: float  # time under a pain alert
    delay_s: float | None  # pain mice: onset to the first moment under alert, if ever
    judged: bool  # pain mice: observed after the onset; controls: always
    unseen_s: float  # no_face / low_quality
    down_s: float  # camera_down

    def caught(self, horizon_s: float) -> bool:
        return self.delay_s is not None and self.delay_s <= horizon_s


def outcome(track: Track, truth: MouseTruth, spans: list[Span]) -> Outcome:
    end = float(track.time[-1])
    onset = truth.onset if truth.onset is not None else float(track.time[0])
    closed = [(start, end if stop is None else stop) for start, stop in spans]
    delay = None
    if truth.pain:
        after = [max(start, onset) for start, stop in closed if stop > onset or start >= onset]
        delay = min(after) - onset if after else None
    return Outcome(
        mouse=truth.mouse, pain=truth.pain, observed_s=track.observed, raises=len(spans),
        before_onset=sum(start < onset for start, _ in spans) if truth.pain else 0,
        alert_s=float(sum(stop - start for start, stop in closed)), delay_s=delay,
        judged=not truth.pain or onset <= end, unseen_s=track.unseen_s, down_s=track.down_s)


# Intervals ----------------------------------------------------------------------------------
def clopper_pearson(k: int, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """Exact binomial interval for k of n (each mouse one trial)."""
    if n == 0:
        return math.nan, math.nan
    low = 0.0 if k == 0 else _bisect(lambda p: _binom_tail(k, n, p) - alpha / 2)
    high = 1.0 if k == n else _bisect(lambda p: alpha / 2 - _binom_cdf(k, n, p))
    return low, high


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), in logs so large n does not overflow."""
    return sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                        + i * math.log(p) + (n - i) * math.log1p(-p)) for i in range(k + 1))


def _binom_tail(k: int, n: int, p: float) -> float:
    """P(X >= k)."""
    return 1.0 - _binom_cdf(k - 1, n, p)


def _bisect(f: Any, low: float = 1e-12, high: float = 1 - 1e-12) -> float:
    """The root of an increasing f on (0, 1)."""
    for _ in range(80):
        mid = (low + high) / 2
        low, high = (mid, high) if f(mid) < 0 else (low, mid)
    return (low + high) / 2


def mouse_bootstrap(numerator: np.ndarray, denominator: np.ndarray, n_boot: int,
                    rng: np.random.Generator) -> tuple[float, float] | None:
    """Percentile interval of sum(numerator)/sum(denominator) over mice drawn with replacement;
    None with fewer than two mice (one mouse says nothing about the next)."""
    if len(numerator) < 2 or n_boot <= 0:
        return None
    draws = rng.integers(0, len(numerator), (n_boot, len(numerator)))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = numerator[draws].sum(axis=1) / denominator[draws].sum(axis=1)
    ratios = ratios[np.isfinite(ratios)]
    if not len(ratios):
        return None
    low, high = np.percentile(ratios, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return float(low), float(high)


def median_bootstrap(values: np.ndarray, n_boot: int, rng: np.random.Generator
                     ) -> tuple[float, float] | None:
    if len(values) < 2 or n_boot <= 0:
        return None
    draws = np.median(values[rng.integers(0, len(values), (n_boot, len(values)))], axis=1)
    low, high = np.percentile(draws, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return float(low), float(high)


# Figures ------------------------------------------------------------------------------------
def figures(outcomes: Sequence[Outcome], horizon_s: float, n_boot: int = 0,
            seed: int = 0) -> dict[str, Any]:
    """Every figure of one rule over these mice; intervals only when n_boot > 0. JSON-safe."""
    rng = np.random.default_rng(seed)
    pain = [o for o in outcomes if o.pain and o.judged]
    controls = [o for o in outcomes if not o.pain]
    caught = [o for o in pain if o.caught(horizon_s)]
    delays = np.array([o.delay_s for o in caught], dtype=float)
    raises = np.array([o.raises for o in controls], dtype=float)
    days = np.array([o.observed_s / DAY_S for o in controls])
    alert_s = np.array([o.alert_s for o in controls])
    observed = np.array([o.observed_s for o in controls])
    rate = float(raises.sum() / days.sum()) if days.sum() > 0 else None
    return {
        "sensitivity": {
            "caught": len(caught), "mice": len(pain),
            "share": len(caught) / len(pain) if pain else None,
            "ci": _finite(clopper_pearson(len(caught), len(pain))) if n_boot and pain else None,
            "not_judged": sum(o.pain and not o.judged for o in outcomes)},
        "delay_s": {
            "mice": len(caught),
            "median": float(np.median(delays)) if len(delays) else None,
            "q1": float(np.percentile(delays, 25)) if len(delays) else None,
            "q3": float(np.percentile(delays, 75)) if len(delays) else None,
            "ci": median_bootstrap(delays, n_boot, rng)},
        "false_alerts": {
            "count": int(raises.sum()), "mice": len(controls),
            "mouse_days": float(days.sum()), "per_mouse_day": rate,
            "ci": mouse_bootstrap(raises, days, n_boot, rng),
            "zero_upper": (POISSON_ZERO_UPPER / float(days.sum())
                           if n_boot and rate == 0 and days.sum() > 0 else None)},
        "control_time_under_alert": {
            "seconds": float(alert_s.sum()),
            "share": float(alert_s.sum() / observed.sum()) if observed.sum() > 0 else None,
            "ci": mouse_bootstrap(alert_s, observed, n_boot, rng)},
        "raised_before_onset": {"count": sum(o.before_onset for o in pain),
                                "mice": sum(o.before_onset > 0 for o in pain)},
        "unseen": {"no_face_share": _share(outcomes, "unseen_s"),
                   "camera_down_share": _share(outcomes, "down_s")},
    }


def _share(outcomes: Sequence[Outcome], name: str) -> float | None:
    observed = sum(o.observed_s for o in outcomes)
    return sum(getattr(o, name) for o in outcomes) / observed if observed > 0 else None


def _finite(pair: tuple[float, float]) -> tuple[float, float] | None:
    return pair if all(math.isfinite(v) for v in pair) else None


# Choosing a rule out of sample --------------------------------------------------------------
def split_mice(truths: dict[str, MouseTruth], seed: int) -> tuple[set[str], set[str]]:
    """Two parts of the mice, whole mice each, pain and control mice halved separately so both
    parts hold both; refused when a condition has fewer than two mice."""
    rng = np.random.default_rng(seed)
    choose: set[str] = set()
    for pain in (True, False):
        mice = sorted(m for m, t in truths.items() if t.pain == pain)
        if len(mice) < 2:
            raise ValueError(f"{len(mice)} {'pain' if pain else 'control'} mouse/mice: a rule "
                             "is chosen on some mice of each condition and judged on others, "
                             "so each condition needs at least two")
        choose |= set(rng.permutation(mice)[: (len(mice) + 1) // 2].tolist())
    return choose, set(truths) - choose


def choose(points: Sequence[dict[str, Any]], max_false_per_day: float) -> int | None:
    """The point with the most pain mice caught among those within the false-alert limit;
    ties go to fewer false alerts, then the shorter median delay, then the earlier point."""
    def key(i: int) -> tuple[float, float, float, int]:
        f = points[i]
        delay = f["delay_s"]["median"]
        return (-(f["sensitivity"]["share"] or 0.0), f["false_alerts"]["per_mouse_day"],
                math.inf if delay is None else delay, i)

    allowed = [i for i, f in enumerate(points)
               if f["false_alerts"]["per_mouse_day"] is not None
               and f["false_alerts"]["per_mouse_day"] <= max_false_per_day
               and f["sensitivity"]["share"] is not None]
    return min(allowed, key=key) if allowed else None
