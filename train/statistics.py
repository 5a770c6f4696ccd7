"""Evaluation statistics: what DeepMGS (Chiang et al., J Pers Med 2022, 12:851) reports, for new
data.

Per-unit level metrics (Table 2 style) with exact Clopper-Pearson CIs, agreement of the model's
total and of every other human rater's total with the reference (Pearson r, Bland-Altman), and
pain discrimination (AUROC/AUPRC with bootstrap CIs, Youden cut-off), so model and humans are
measured the same way and sit side by side. Those figures take images as independent units;
when every image names its mouse, p-values and intervals with the mouse as the unit stand
beside them (conditions rearranged over mice, mouse means, mouse bootstraps), since images of
one mouse are alike. Pure functions over arrays, no plotting: the figures are JSON-safe (None,
never NaN); train/plots.py draws them and train/report.py writes the page.
"""


from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
from scipy.stats import linregress, mannwhitneyu, norm, pearsonr, rankdata
from scipy.stats import t as student_t
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)
from statsmodels.stats.proportion import proportion_confint

from monitor.units import LEVELS, UNITS
from train.agreement import icc_absolute, quadratic_kappa

Stat = dict[str, Any]
RESERVED = ("model", "model_expected", "reference")  # result keys a rater name must not take
LOA_Z = 1.96
EXACT_ARRANGEMENTS = 20_000  # up to this many, every arrangement of conditions over mice
RANDOM_ARRANGEMENTS = 10_000  # else this many drawn at random
MIN_MICE = 3  # mice an interval by mouse needs in all ...
MIN_MICE_PER_CONDITION = 2  # ... and in each condition: one mouse resampled is always itself


def _finite(value: float) -> float | None:
    """JSON has no NaN: an undefined number is None."""
    value = float(value)
    return value if math.isfinite(value) else None


def clopper_pearson(successes: int, trials: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact binomial CI: it stays honest at the small counts of rare levels such as level 2."""
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials >= 1, got {successes}/{trials}")
    low, high = proportion_confint(successes, trials, alpha=alpha, method="beta")
    return float(low), float(high)


def _proportion(k: int, n: int) -> Stat:
    """k/n with its Clopper-Pearson 95% CI; all None when n = 0 (undefined)."""
    if n == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "k": 0, "n": 0}
    low, high = clopper_pearson(k, n)
    return {"value": k / n, "ci_low": low, "ci_high": high, "k": k, "n": n}


def _f1(tp: int, fp: int, fn: int) -> Stat:
    """F1 = 2TP / (2TP + FP + FN), kept as k/n; no CI, since F1 is not a binomial proportion."""
    n = 2 * tp + fp + fn
    return {"value": 2 * tp / n if n else None, "ci_low": None, "ci_high": None,
            "k": 2 * tp, "n": n}


def _one_vs_rest(matrix: np.ndarray, i: int) -> dict[str, Stat]:
    """Level i against the other two levels, from the 3x3 confusion (rows truth, cols model)."""
    n = int(matrix.sum())
    tp = int(matrix[i, i])
    fn = int(matrix[i].sum()) - tp
    fp = int(matrix[:, i].sum()) - tp
    tn = n - tp - fn - fp
    return {"sensitivity": _proportion(tp, tp + fn), "specificity": _proportion(tn, tn + fp),
            "precision": _proportion(tp, tp + fp), "f1": _f1(tp, fp, fn),
            "accuracy": _proportion(tp + tn, n)}


def _levels(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or not np.isin(array, LEVELS).all():
        raise ValueError(f"{name} must be a 1-D array of levels {LEVELS}")
    return array.astype(int)


def level_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Accuracy and per-level (one-vs-rest) metrics of one unit, as DeepMGS Table 2 gives them."""
    truth, predicted = _levels(truth, "truth"), _levels(predicted, "predicted")
    if truth.shape != predicted.shape:
        raise ValueError(f"truth {truth.shape} and predicted {predicted.shape} differ")
    labels = list(LEVELS)
    matrix = (confusion_matrix(truth, predicted, labels=labels) if truth.size
              else np.zeros((len(labels), len(labels)), int))
    n = int(matrix.sum())
    return {"n": n, "accuracy": _proportion(int(np.trace(matrix)), n),
            "kappa": quadratic_kappa(truth.tolist(), predicted.tolist()),
            "levels": {str(level): _one_vs_rest(matrix, i) for i, level in enumerate(labels)},
            "confusion": matrix.tolist()}


def _pearson(x: np.ndarray, y: np.ndarray) -> Stat:
    """r, its Fisher-z 95% CI and p; None where undefined (n < 3 or a constant total)."""
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"r": None, "r_ci_low": None, "r_ci_high": None, "p_value": None}
    result = pearsonr(x, y)
    ci = result.confidence_interval(0.95)
    return {"r": _finite(result.statistic), "r_ci_low": _finite(ci.low),
            "r_ci_high": _finite(ci.high), "p_value": _finite(result.pvalue)}


def _bland_altman(diff: np.ndarray, mean: np.ndarray) -> Stat:
    """Bias and 95% limits of agreement (bias +- 1.96 SD, SD with ddof=1), the share of images
    outside them, and proportional bias: the slope of the difference on the mean of the two
    totals, with its p-value (a slope means the two disagree more at higher totals)."""
    empty = {"bias": None, "sd": None, "loa_low": None, "loa_high": None, "outside": None,
             "proportional_slope": None, "proportional_p": None}
    if diff.size < 2:
        return empty
    bias, sd = float(diff.mean()), float(diff.std(ddof=1))
    low, high = bias - LOA_Z * sd, bias + LOA_Z * sd
    found = empty | {"bias": bias, "sd": sd, "loa_low": low, "loa_high": high,
                     "outside": float(((diff < low) | (diff > high)).mean())}
    if diff.size >= 3 and np.ptp(mean) > 0:
        fit = linregress(mean, diff)
        found |= {"proportional_slope": _finite(fit.slope), "proportional_p": _finite(fit.pvalue)}
    return found


def complete_pairs(reference: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both totals where both exist: NaN marks an image a rater did not score."""
    ref, oth = np.asarray(reference, float), np.asarray(other, float)
    if ref.shape != oth.shape or ref.ndim != 1:
        raise ValueError(f"totals must be 1-D of one length, got {ref.shape} and {oth.shape}")
    keep = np.isfinite(ref) & np.isfinite(oth)
    return ref[keep], oth[keep]


def total_agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    """Pearson r says whether totals rise together; Bland-Altman says by how much they differ.

    Pairs with NaN on either side are dropped; `n` counts the pairs used. Bias = mean(other - ref).
    ICC(2,1) (absolute agreement) joins both: it falls with a bias as well as with scatter.
    Every figure here takes images as independent units (per image).
    """
    ref, oth = complete_pairs(reference, other)
    return {"n": int(ref.size), **_pearson(ref, oth), **_bland_altman(oth - ref, (oth + ref) / 2),
            "icc": icc_absolute(ref.tolist(), oth.tolist())}


def agreement_by_mouse(reference: np.ndarray, other: np.ndarray, mice: np.ndarray) -> Stat:
    """Pearson r (Fisher CI, p) and the proportional-bias slope (and its p) from each mouse's
    mean totals: the mouse, not the image, is the unit, so images of one mouse (which are alike)
    cannot make a p small. Pairs with NaN on either side are dropped before the means."""
    ref, oth, mice = np.asarray(reference, float), np.asarray(other, float), np.asarray(mice)
    keep = np.isfinite(ref) & np.isfinite(oth)
    ids, index = np.unique(mice[keep], return_inverse=True)
    counts = np.bincount(index, minlength=ids.size)
    ref_mean = np.bincount(index, ref[keep], ids.size) / np.maximum(counts, 1)
    oth_mean = np.bincount(index, oth[keep], ids.size) / np.maximum(counts, 1)
    bias = _bland_altman(oth_mean - ref_mean, (oth_mean + ref_mean) / 2)
    return {"n_mice": int(ids.size), **_pearson(ref_mean, oth_mean),
            "proportional_slope": bias["proportional_slope"],
            "proportional_p": bias["proportional_p"]}


def _bootstrap(score: np.ndarray, pain: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, 2] AUROC, AUPRC of stratified resamples: class counts kept, so none lacks one."""
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    rng = np.random.default_rng(seed)
    positive, negative = np.flatnonzero(pain), np.flatnonzero(~pain)
    stats = np.empty((n_boot, 2))
    for b in range(n_boot):
        idx = np.concatenate([rng.choice(positive, positive.size),
                              rng.choice(negative, negative.size)])
        stats[b] = (_auroc(pain[idx], score[idx]), _auprc(pain[idx], score[idx]))
    return stats


def _auroc(pain: np.ndarray, score: np.ndarray) -> float:
    """AUROC from ranks (ties count one half, as roc_auc_score); NaN with one class only."""
    n_pain = int(pain.sum())
    if n_pain in (0, pain.size):
        return math.nan
    ranks = rankdata(score)
    return float((ranks[pain].sum() - n_pain * (n_pain + 1) / 2) / (n_pain * (pain.size - n_pain)))


def _auprc(pain: np.ndarray, score: np.ndarray) -> float:
    """Average precision as average_precision_score gives it (precision at each distinct
    threshold, weighted by the recall it adds), without its checks: bootstraps call it often."""
    order = np.argsort(-score, kind="mergesort")
    ranked, hits = score[order], pain[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1]  # each threshold's end
    true_pos = np.cumsum(hits)[last]
    if not true_pos[-1]:
        return math.nan
    precision, recall = true_pos / (last + 1), true_pos / true_pos[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def auroc_p_by_mouse(score: np.ndarray, pain: np.ndarray, mice: np.ndarray,
                     seed: int = 0) -> float | None:
    """Two-sided p of AUROC = 0.5 with the mouse as the unit: the conditions are rearranged over
    the mice, each keeping all its images (a mouse is pain when most of its images are), and p
    is the share of arrangements whose AUROC is as far from 0.5 as the study's. Every
    arrangement is tried when there are at most EXACT_ARRANGEMENTS (4 + 4 mice: 70), else
    RANDOM_ARRANGEMENTS drawn at random, with p = (1 + k) / (1 + n). None with one class."""
    ids, index = np.unique(np.asarray(mice), return_inverse=True)
    counts = np.bincount(index, minlength=ids.size)
    rank_sums = np.bincount(index, rankdata(score), ids.size)
    mouse_pain = np.bincount(index, np.asarray(pain, float), ids.size) * 2 > counts
    n_pain = int(mouse_pain.sum())
    if n_pain in (0, ids.size):
        return None
    exact = math.comb(ids.size, n_pain) <= EXACT_ARRANGEMENTS
    if exact:
        arrangements = np.zeros((math.comb(ids.size, n_pain), ids.size), bool)
        for row, chosen in enumerate(combinations(range(ids.size), n_pain)):
            arrangements[row, list(chosen)] = True
    else:
        rng = np.random.default_rng(seed)
        arrangements = rng.permuted(np.tile(mouse_pain, (RANDOM_ARRANGEMENTS, 1)), axis=1)

    def auroc(rows: np.ndarray) -> np.ndarray:
        n_1 = rows @ counts
        return (rows @ rank_sums - n_1 * (n_1 + 1) / 2) / (n_1 * (counts.sum() - n_1))

    distance = np.abs(auroc(arrangements) - 0.5)
    extreme = int((distance >= abs(auroc(mouse_pain[None])[0] - 0.5) - 1e-12).sum())
    return extreme / len(arrangements) if exact else (1 + extreme) / (1 + len(arrangements))


def _with_ci(value: float, samples: np.ndarray) -> Stat:
    low, high = np.percentile(samples, [2.5, 97.5])
    return {"value": float(value), "ci_low": float(low), "ci_high": float(high)}


def _youden(score: np.ndarray, pain: np.ndarray) -> Stat:
    """Cut-off t (score >= t means pain) maximising sensitivity + specificity - 1.

    Sensitivity and specificity carry Clopper-Pearson CIs; they are optimistic, since t was chosen
    on the same images. sklearn's first ROC threshold (inf, nobody is pain) is never chosen.
    """
    fpr, tpr, thresholds = roc_curve(pain, score)
    best = 1 + int(np.argmax((tpr - fpr)[1:]))
    cutoff = float(thresholds[best])
    return {"cutoff": cutoff, "youden_j": float(tpr[best] - fpr[best]),
            "sensitivity": _proportion(int((score[pain] >= cutoff).sum()), int(pain.sum())),
            "specificity": _proportion(int((score[~pain] < cutoff).sum()), int((~pain).sum()))}


def _curves(score: np.ndarray, pain: np.ndarray) -> Stat:
    fpr, tpr, roc_t = roc_curve(pain, score)
    precision, recall, pr_t = precision_recall_curve(pain, score)
    return {"roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(),
                    "thresholds": [_finite(t) for t in roc_t]},
            "pr": {"precision": precision.tolist(), "recall": recall.tolist(),
                   "thresholds": [_finite(t) for t in pr_t]}}


def pain_discrimination(scores: np.ndarray, is_pain: np.ndarray, n_boot: int = 1000,
                        seed: int = 0, mice: np.ndarray | None = None) -> dict[str, Any]:
    """How well a total separates pain from no-pain images: AUROC/AUPRC and the Youden cut-off.

    NaN scores (images a rater did not score) are dropped. With one class only, every metric is
    None. CIs are percentile bootstrap, resampling images within each class, and
    `auroc_p_value` is the Mann-Whitney test's: both per image. With `mice` (per image),
    `auroc_p_value_by_mouse` rearranges conditions over whole mice (`auroc_p_by_mouse`).
    """
    score, pain = np.asarray(scores, float), np.asarray(is_pain, bool)
    if score.shape != pain.shape or score.ndim != 1:
        raise ValueError(f"scores {score.shape} and is_pain {pain.shape} must be 1-D, same length")
    if mice is not None and np.shape(mice) != score.shape:
        raise ValueError(f"mice {np.shape(mice)} and scores {score.shape} must be the same length")
    scored = np.isfinite(score)
    score, pain = score[scored], pain[scored]
    n, n_pain = int(score.size), int(pain.sum())
    out: dict[str, Any] = {"n": n, "n_pain": n_pain, "prevalence": n_pain / n if n else None}
    if n_pain in (0, n):
        return out | {key: None for key in ("auroc", "auroc_p_value", "auroc_p_value_by_mouse",
                                            "auprc", "roc", "pr", "cutoff", "youden_j",
                                            "sensitivity", "specificity")}
    boot = _bootstrap(score, pain, n_boot, seed)
    # AUROC = U / (n_pain n_other): its p-value against chance (0.5) is the Mann-Whitney test's
    chance = mannwhitneyu(score[pain], score[~pain], alternative="two-sided")
    by_mouse = (None if mice is None
                else auroc_p_by_mouse(score, pain, np.asarray(mice)[scored], seed))
    return out | {"auroc": _with_ci(roc_auc_score(pain, score), boot[:, 0]),
                  "auroc_p_value": _finite(chance.pvalue),
                  "auroc_p_value_by_mouse": by_mouse,
                  "auprc": _with_ci(average_precision_score(pain, score), boot[:, 1]),
                  **_curves(score, pain), **_youden(score, pain)}


@dataclass
class EvalInput:
    """One evaluation set: truth, model output and other raters for N images.

    truth_levels/model_levels: int [N, 5] in UNITS order, truth -1 = unit not scoreable.
    raters: other humans' totals [N], NaN where they did not score an image.
    """

    image: list[str]
    truth_levels: np.ndarray
    model_levels: np.ndarray
    model_expected_total: np.ndarray
    condition: list[str]
    pain_conditions: set[str] = field(default_factory=set)
    # no pain; empty = every condition not named pain. Images of neither are left out.
    control_conditions: set[str] = field(default_factory=set)
    mouse: list[str] = field(default_factory=list)  # per image; empty = not known
    raters: dict[str, np.ndarray] = field(default_factory=dict)
    # per rater, the reference total they are compared with (never one they are part of);
    # a rater missing here is compared with the reference of the truth levels
    rater_references: dict[str, np.ndarray] = field(default_factory=dict)
    # optional, per rater: their levels and their reference's [N, 5] (NaN = not scored; a
    # reference level may be a half, two others tied), for kappa per unit
    rater_levels: dict[str, np.ndarray] = field(default_factory=dict)
    rater_reference_levels: dict[str, np.ndarray] = field(default_factory=dict)
    reference_name: str = "reference"
    title: str = "MGS evaluation"

    def __post_init__(self) -> None:
        n = len(self.image)
        shapes = {"truth_levels": (np.shape(self.truth_levels), (n, len(UNITS))),
                  "model_levels": (np.shape(self.model_levels), (n, len(UNITS))),
                  "model_expected_total": (np.shape(self.model_expected_total), (n,)),
                  "condition": ((len(self.condition),), (n,))}
        shapes |= {f"rater {name}": (np.shape(v), (n,)) for name, v in self.raters.items()}
        shapes |= {f"reference of rater {name}": (np.shape(v), (n,))
                   for name, v in self.rater_references.items()}
        shapes |= {f"levels of rater {name}": (np.shape(v), (n, len(UNITS)))
                   for name, v in self.rater_levels.items()}
        shapes |= {f"reference levels of rater {name}": (np.shape(v), (n, len(UNITS)))
                   for name, v in self.rater_reference_levels.items()}
        for name, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"{name} has shape {got}, expected {want}")
        if clash := set(self.raters) & set(RESERVED):
            raise ValueError(f"rater names {sorted(clash)} are reserved")


def _complete(data: EvalInput) -> np.ndarray:
    """Images with all five units scored: only there is the reference total defined."""
    return np.asarray((np.asarray(data.truth_levels) >= 0).all(axis=1))


def totals_of(data: EvalInput) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Reference total and the model's totals on complete images (raters are compared with
    their own references, on the images all of them scored: `rater_comparison`)."""
    complete = _complete(data)
    reference = np.asarray(data.truth_levels)[complete].sum(axis=1).astype(float)
    others = {"model": np.asarray(data.model_levels)[complete].sum(axis=1).astype(float),
              "model_expected": np.asarray(data.model_expected_total, float)[complete]}
    return reference, others


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def williams_test(n: int, r12: float, r13: float, r23: float) -> Stat:
    """Williams's t for two correlations sharing variable 1 (r12 vs r13, with r23 between the
    other two), as in Steiger (1980, eq. 7): df = n - 3, two-sided p."""
    if n < 4 or not all(map(math.isfinite, (r12, r13, r23))):
        return {"t": None, "df": None, "p_value": None}
    det = 1 - r12**2 - r13**2 - r23**2 + 2 * r12 * r13 * r23
    mean = (r12 + r13) / 2
    denominator = 2 * (n - 1) / (n - 3) * det + mean**2 * (1 - r23) ** 3
    if denominator <= 0:
        return {"t": None, "df": n - 3, "p_value": None}
    t = (r12 - r13) * math.sqrt((n - 1) * (1 + r23) / denominator)
    return {"t": t, "df": n - 3, "p_value": float(2 * student_t.sf(abs(t), n - 3))}


def rater_references(data: EvalInput) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each rater's reference totals (the truth's where none was given), and the images where
    the truth, every rater and every rater's reference have a total."""
    complete = _complete(data)
    truth = np.where(complete, np.asarray(data.truth_levels).sum(axis=1), np.nan)
    references = {name: np.asarray(data.rater_references.get(name, truth), float)
                  for name in data.raters}
    common = complete.copy()
    for name, totals in data.raters.items():
        common &= np.isfinite(np.asarray(totals, float)) & np.isfinite(references[name])
    return references, common


def rater_comparison(data: EvalInput, n_boot: int, seed: int) -> dict[str, Any] | None:
    """The model and every rater on the same images: those with a reference total, every
    rater's total and every rater's own reference. Each rater against their reference (never
    one they are part of), the model against that same reference, and Williams's test of
    "model vs reference" against "rater vs reference"; with pain conditions, AUROC/AUPRC of
    each on those images too."""
    if not data.raters:
        return None
    model = np.asarray(data.model_levels).sum(axis=1).astype(float)
    references, common = rater_references(data)
    found: dict[str, Any] = {"n_common": int(common.sum()), "raters": {}}
    for name, totals in data.raters.items():
        reference, rater = references[name][common], np.asarray(totals, float)[common]
        versus_model = total_agreement(reference, model[common])
        versus_rater = total_agreement(reference, rater)
        between = _pearson(model[common], rater)["r"]
        found["raters"][name] = {
            "model": versus_model, "rater": versus_rater,
            "williams": williams_test(int(common.sum()), _or_nan(versus_model["r"]),
                                      _or_nan(versus_rater["r"]), _or_nan(between))}
    if data.pain_conditions:
        kept = common & _in_pain_analysis(data)
        pain = np.array([c in data.pain_conditions for c in data.condition], bool)[kept]
        found["discrimination"] = {
            key: pain_discrimination(values[kept], pain, n_boot, seed)
            for key, values in {"model": model,
                                **{n: np.asarray(v, float) for n, v in data.raters.items()}
                                }.items()}
    for name in data.raters:
        found["raters"][name]["by_mouse"] = paired_by_mouse(data, name, n_boot, seed)
        found["raters"][name]["kappa"] = rater_kappas(data, name, common)
    return found


def rater_kappas(data: EvalInput, name: str, common: np.ndarray) -> dict[str, Stat] | None:
    """Per unit, quadratic kappa of the rater and of the model with the rater's reference, on
    the common images where both rater and reference give the unit a whole level (a half, two
    others tied, is no level); None without the rater's levels."""
    if name not in data.rater_levels or name not in data.rater_reference_levels:
        return None
    rater = np.asarray(data.rater_levels[name], float)[common]
    reference = np.asarray(data.rater_reference_levels[name], float)[common]
    model = np.asarray(data.model_levels)[common]
    found = {}
    for j, unit in enumerate(UNITS):
        kept = np.isfinite(rater[:, j]) & (reference[:, j] % 1 == 0)  # NaN % 1 is NaN
        truth = reference[kept, j].astype(int).tolist()
        found[unit] = {"n": int(kept.sum()),
                       "rater": quadratic_kappa(truth, rater[kept, j].astype(int).tolist()),
                       "model": quadratic_kappa(truth, model[kept, j].tolist())}
    return found


def paired_by_mouse(data: EvalInput, name: str, n_boot: int, seed: int) -> dict[str, Any] | None:
    """Model minus rater, each against the rater's reference on the images every rater scored:
    the difference of the correlations and (with pain conditions) of the AUROCs, with 95% CIs
    from one mouse bootstrap shared by both sides (paired: the same mice for model and rater,
    so what the mice share cancels), as t intervals on the bootstrap's standard error. None
    without mouse ids; `note` says why there are no intervals with too few mice."""
    if _mice_of(data) is None:
        return None
    references, common = rater_references(data)
    totals = {"model": np.asarray(data.model_levels).sum(axis=1).astype(float),
              "rater": np.asarray(data.raters[name], float), "reference": references[name]}
    analysed = common & _in_pain_analysis(data) if data.pain_conditions else None
    pain = np.array([c in data.pain_conditions for c in data.condition], bool)

    def differences(index: np.ndarray) -> dict[str, float]:
        shared = index[common[index]]
        r = {key: _r(totals["reference"][shared], totals[key][shared])
             for key in ("model", "rater")}
        found = {"r_difference": r["model"] - r["rater"]}
        if analysed is not None:
            scored = index[analysed[index]]
            found["auroc_difference"] = (_auroc(pain[scored], totals["model"][scored])
                                         - _auroc(pain[scored], totals["rater"][scored]))
        return found

    strata = mouse_strata(data)
    note = too_few_mice(strata)
    point = differences(np.arange(len(data.image)))
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {key: [] for key in point}
    for _ in range(0 if note else n_boot):
        for key, value in differences(_resample_mice(strata, rng)).items():
            samples[key].append(value)
    return {"note": note, "n_boot": 0 if note else n_boot,
            **{key: _t_interval(point[key], np.asarray(values), strata)
               for key, values in samples.items()}}


def _t_interval(value: float, samples: np.ndarray, strata: dict[str, list[np.ndarray]]) -> Stat:
    """value +- t SE, SE the bootstrap samples' SD widened as `_expanded_tail` widens: for a
    difference of model and rater, whose percentile interval stays too narrow with few mice
    (in studies with no effect and 4 mice per condition, bench/null_pvalues.py, it left out 0
    for the AUROC difference in about 7-9% of them; this one in about 5%)."""
    defined = samples[np.isfinite(samples)]
    if defined.size < 2 or not math.isfinite(value):
        return {"value": _finite(value), "ci_low": None, "ci_high": None,
                "defined": int(defined.size)}
    fewest, df = _small_sample(strata)
    half = (float(student_t.ppf(0.975, df)) * math.sqrt(fewest / max(fewest - 1, 1))
            * float(defined.std(ddof=1)))
    return {"value": float(value), "ci_low": float(value - half), "ci_high": float(value + half),
            "defined": int(defined.size)}


def _small_sample(strata: dict[str, list[np.ndarray]]) -> tuple[int, int]:
    """The mice of the smallest condition, and the degrees of freedom: mice - conditions."""
    fewest = min(len(mice) for mice in strata.values())
    return fewest, max(sum(len(mice) for mice in strata.values()) - len(strata), 1)


def _expanded_tail(strata: dict[str, list[np.ndarray]]) -> float:
    """The percent cut off each side for a 95% expanded percentile interval (Hesterberg 2015):
    with few mice the plain percentile bootstrap is too narrow (a condition's resampled spread
    shrinks by (n - 1) / n, and the spread itself is only estimated), so its quantiles are
    widened by sqrt(n / (n - 1)), n the mice of the smallest condition, and Student's t on
    (all mice - conditions) degrees of freedom. With many mice it is the plain 2.5%."""
    fewest, df = _small_sample(strata)
    widened = math.sqrt(fewest / max(fewest - 1, 1)) * float(student_t.ppf(0.975, df))
    return 100 * float(norm.cdf(-widened))


def _r(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r, NaN where undefined (fewer than 3 pairs, or a constant side)."""
    if x.size < 3 or not np.ptp(x) or not np.ptp(y):
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def _unit_metrics(data: EvalInput) -> dict[str, Any]:
    """Per unit, only images where that unit was scoreable (truth >= 0)."""
    truth, model = np.asarray(data.truth_levels), np.asarray(data.model_levels)
    return {unit: level_metrics(truth[truth[:, j] >= 0, j], model[truth[:, j] >= 0, j])
            for j, unit in enumerate(UNITS)}


def _in_pain_analysis(data: EvalInput) -> np.ndarray:
    """Per image: pain or control. Without control conditions, every image is one or the other."""
    if not data.control_conditions:
        return np.ones(len(data.condition), bool)
    named = data.pain_conditions | data.control_conditions
    return np.array([c in named for c in data.condition], bool)


def _pain_sets(data: EvalInput) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every total (the reference's, the model's, the raters') and pain or not, on the complete
    images of the pain analysis."""
    complete = _complete(data)
    keep = _in_pain_analysis(data)[complete]
    reference, others = totals_of(data)
    is_pain = np.array([c in data.pain_conditions for c in data.condition], bool)[complete]
    return ({key: values[keep] for key, values in {"reference": reference, **others}.items()},
            is_pain[keep])


def _left_out(data: EvalInput) -> dict[str, int]:
    """Images of neither pain nor control conditions, per condition: not in the pain analysis."""
    return dict(Counter(c for c, kept in zip(data.condition, _in_pain_analysis(data),
                                             strict=True) if not kept))


def _discrimination(data: EvalInput, n_boot: int, seed: int) -> dict[str, Any] | None:
    """Every total, the reference's included, on the same complete images."""
    if not data.pain_conditions:
        return None
    totals, is_pain = _pain_sets(data)
    mice = _pain_mice(data)
    return {key: pain_discrimination(values, is_pain, n_boot, seed, mice)
            for key, values in totals.items()}


def _pain_mice(data: EvalInput) -> np.ndarray | None:
    """Each image's mouse on the images of `_pain_sets`; None unless every image names one."""
    mice = _mice_of(data)
    return None if mice is None else mice[_complete(data)][_in_pain_analysis(data)[_complete(data)]]


def _complete_mice(data: EvalInput) -> np.ndarray | None:
    """Each complete image's mouse (the images of `totals_of`); None unless every image names
    one."""
    mice = _mice_of(data)
    return None if mice is None else mice[_complete(data)]


def _cutoff_totals(data: EvalInput) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The totals a pain cut-off is chosen for (the model's, the reference's and each rater's)
    and pain or not, on the complete images of the pain analysis; NaN where a rater did not
    score an image."""
    totals, pain = _pain_sets(data)
    complete = _complete(data)
    keep = _in_pain_analysis(data)[complete]
    raters = {name: np.asarray(values, float)[complete][keep]
              for name, values in data.raters.items()}
    return {"model": totals["model"], "reference": totals["reference"], **raters}, pain


def validation_cutoff(data: EvalInput, key: str = "model") -> dict[str, Any]:
    """One total's Youden cut-off (the model's by default; "reference" or a rater's name)
    chosen on one validation part (`data`), so that its fold's test part can report it out of
    sample; `note` says why there is none, `validation_mice` which mice chose it."""
    totals, pain = _cutoff_totals(data)
    score = totals.get(key, np.full(pain.shape, np.nan))
    scored = np.isfinite(score)
    score, pain = score[scored], pain[scored]
    n, n_pain = int(score.size), int(pain.sum())
    found: dict[str, Any] = {"cutoff": None, "n": n, "n_pain": n_pain, "note": "",
                             "validation_mice": sorted({m for m in data.mouse if m})}
    if not data.image:
        return found | {"note": "the run has no validation predictions (trained by an older "
                                "mgs-train: train it again)"}
    if n == 0:
        return found | {"note": f"the validation part has no complete image with a {key} total"}
    if n_pain in (0, n):
        which = "no pain image" if n_pain == 0 else "only pain images"
        return found | {"note": f"the validation part has {which} among its {n} complete "
                                "images; a larger validation part (more labelled images) is "
                                "needed to choose a cut-off"}
    youden = _youden(score, pain)
    return found | {"cutoff": youden["cutoff"], "youden_j": youden["youden_j"]}


@dataclass
class FoldPredictions:
    """One fold's predictions: its validation part chooses the fold's cut-offs, and its test
    part alone is where they are reported."""

    name: str  # fold0, fold1, ...
    validation: EvalInput
    test: EvalInput


def fold_cutoffs(folds: list[FoldPredictions], deployed: str = "final",
                 refused: str = "") -> dict[str, Any]:
    """Per fold, the Youden cut-off of the model's, the reference's and each rater's total,
    chosen on that fold's validation part only and applied to that fold's test part only, so
    no test image helps choose the cut-off it is measured with; counts are pooled over folds.
    `deployed`: "final" (the final fit: the median of the folds' model cut-offs, each chosen
    on validation mice only) or the fold mgs-export deploys by default. `refused`: why no
    cut-off may be chosen at all (folds of images, whose validation images are other folds'
    test images); the evaluate() keys."""
    keys = list(dict.fromkeys(key for fold in folds for key in _cutoff_totals(fold.test)[0]))
    chosen = {}
    for fold in folds:
        choices = {key: validation_cutoff(fold.validation, key) for key in keys}
        if refused:
            choices = {key: found | {"cutoff": None, "note": refused}
                       for key, found in choices.items()}
        chosen[fold.name] = (choices, fold.test)
    return _cutoff_results(chosen, deployed)


def _cutoff_results(folds: dict[str, tuple[dict[str, dict[str, Any]], EvalInput]],
                    deployed: str) -> dict[str, Any]:
    """evaluate()'s cut-off keys from each fold's choices and test part."""
    per_fold = {}
    for name, (choices, test) in folds.items():
        found = choices["model"]
        how = (f"chosen on the validation part of {name} only ({found['n']} images, "
               f"{found['n_pain']} pain" + (f"; mice {', '.join(found['validation_mice'])}"
                                            if found.get("validation_mice") else "")
               + "; Youden J)")
        per_fold[name] = found | {"how": how if found["cutoff"] is not None else "",
                                  "test_mice": sorted({m for m in test.mouse if m})}
    table = {}
    for key in dict.fromkeys(k for choices, _ in folds.values() for k in choices):
        counts, used = np.zeros(4, int), {}
        for name, (choices, test) in folds.items():
            cutoff = choices.get(key, {}).get("cutoff")
            used[name] = cutoff
            if cutoff is not None:
                counts += _calls(test, key, cutoff)
        table[key] = {"cutoffs": used, **_figures(*counts)} if any(
            c is not None for c in used.values()) else {"cutoffs": used}
    chosen, how, note = _deployed_cutoff(per_fold, deployed)
    model = table.get("model", {})
    return {"pain_cutoff": chosen, "pain_cutoff_from": "validation" if chosen is not None else None,
            "pain_cutoff_how": how, "pain_cutoff_note": note, "pain_cutoff_folds": per_fold,
            "pain_cutoff_on_test": (model | {"folds": [n for n, c in model["cutoffs"].items()
                                                       if c is not None]}
                                    if "accuracy" in model else None),
            "cutoff_table": table}


def _deployed_cutoff(per_fold: dict[str, dict[str, Any]], deployed: str
                     ) -> tuple[float | None, str, str]:
    """The deployed model's cut-off, how it was chosen, and why there is none."""
    if deployed != "final":
        found = per_fold.get(deployed) or {"cutoff": None, "note": f"{deployed} not evaluated"}
        if found["cutoff"] is None:
            return None, "", found["note"]
        return found["cutoff"], f"{deployed}'s own, {found['how']}", ""
    cutoffs = [found["cutoff"] for found in per_fold.values() if found["cutoff"] is not None]
    if not cutoffs:
        notes = dict.fromkeys(found["note"] for found in per_fold.values())
        return None, "", "; ".join(note for note in notes if note) or "no fold chose one"
    median = float(np.median(cutoffs))
    return median, (f"the median of {len(cutoffs)} of the {len(per_fold)} folds' cut-offs "
                    f"({', '.join(f'{c:g}' for c in cutoffs)}), each chosen on its own fold's "
                    "validation part only (Youden J)"), ""


def _calls(data: EvalInput, key: str, cutoff: float) -> np.ndarray:
    """`total >= cutoff` as a pain test on these (test) images: TP, FP, FN, TN."""
    totals, pain = _cutoff_totals(data)
    score = totals.get(key, np.full(pain.shape, np.nan))
    scored = np.isfinite(score)
    called, pain = score[scored] >= cutoff, pain[scored]
    return np.array([(called & pain).sum(), (called & ~pain).sum(),
                     (~called & pain).sum(), (~called & ~pain).sum()], int)


def _figures(tp: int, fp: int, fn: int, tn: int) -> dict[str, Stat]:
    """Sensitivity, specificity, accuracy and precision with Clopper-Pearson CIs, and F1 (the
    paper's Table 3)."""
    tp, fp, fn, tn = int(tp), int(fp), int(fn), int(tn)
    return {"sensitivity": _proportion(tp, tp + fn), "specificity": _proportion(tn, tn + fp),
            "accuracy": _proportion(tp + tn, tp + tn + fp + fn),
            "precision": _proportion(tp, tp + fp), "f1": _f1(tp, fp, fn)}


def _mice_of(data: EvalInput) -> np.ndarray | None:
    """Each image's mouse; None unless every image names one."""
    if len(data.mouse) != len(data.image) or not data.mouse or not all(data.mouse):
        return None
    return np.asarray(data.mouse)


def _mice_note(data: EvalInput) -> str:
    """Why there are no figures by mouse at all ('' when the labels name every image's mouse)."""
    if not any(data.mouse):
        return "No mouse ids in the labels"
    unnamed = sum(not mouse for mouse in data.mouse) if len(data.mouse) == len(data.image) else 0
    return (f"{unnamed} of {len(data.image)} images name no mouse" if unnamed
            else "the mouse ids do not match the images")


def mouse_strata(data: EvalInput) -> dict[str, list[np.ndarray]]:
    """Per condition, each mouse's image indices; a mouse is taken as the condition most of its
    images have. Needs `_mice_of(data)`."""
    by_mouse: dict[str, list[int]] = {}
    for index, mouse in enumerate(data.mouse):
        by_mouse.setdefault(mouse, []).append(index)
    strata: dict[str, list[np.ndarray]] = {}
    for images in by_mouse.values():
        condition = Counter(data.condition[i] for i in images).most_common(1)[0][0]
        strata.setdefault(condition, []).append(np.asarray(images))
    return strata


def too_few_mice(strata: dict[str, list[np.ndarray]]) -> str:
    """Why resampling these mice gives no honest interval ('' when it does)."""
    n_mice = sum(len(mice) for mice in strata.values())
    if n_mice < MIN_MICE:
        return (f"only {n_mice} mice: an interval by mouse needs at least {MIN_MICE}, and "
                f"{MIN_MICE_PER_CONDITION} in each condition")
    few = [f"{condition or '(no condition)'} has {len(mice)} mouse"
           for condition, mice in strata.items() if len(mice) < MIN_MICE_PER_CONDITION]
    if few:
        return (f"{', '.join(few)}: an interval by mouse needs at least "
                f"{MIN_MICE_PER_CONDITION} mice in each condition (one mouse resampled is "
                "always itself, so its spread would be left out)")
    return ""


def _resample_mice(strata: dict[str, list[np.ndarray]], rng: np.random.Generator) -> np.ndarray:
    """The images of mice drawn with replacement within each condition, as many as it has."""
    return np.concatenate([mice[k] for mice in strata.values()
                           for k in rng.integers(0, len(mice), len(mice))])


def mouse_bootstrap(data: EvalInput, n_boot: int = 1000, seed: int = 0) -> dict[str, Any] | None:
    """95% CIs that respect clustering: whole mice are resampled (within each condition, a
    mouse taken as the condition most of its images have), with all their images, and
    accuracy per unit, the model's r with the reference and its AUROC/AUPRC are recomputed.
    Images of one mouse are alike, so the per-image intervals beside these are too narrow.
    None without mouse ids; with too few mice (`too_few_mice`) the figures stand without
    intervals and `note` says why. `auroc_p_value` (the model's AUROC against chance, mice
    rearranged) is filled in by `evaluate`, which knows the pain analysis."""
    if not any(data.mouse):
        return None
    point = _clustered_stats(data, np.arange(len(data.image)))
    if _mice_of(data) is None:
        return {"n_mice": 0, "n_boot": 0, "mice_per_condition": {}, "note": _mice_note(data),
                **{key: _nan_ci(value, np.array([])) for key, value in point.items()}}
    strata = mouse_strata(data)
    note = too_few_mice(strata)
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {key: [] for key in point}
    for _ in range(0 if note else n_boot):
        for key, value in _clustered_stats(data, _resample_mice(strata, rng)).items():
            samples[key].append(value)
    tail = _expanded_tail(strata)
    return {"n_mice": sum(len(m) for m in strata.values()), "n_boot": 0 if note else n_boot,
            "mice_per_condition": {c: len(m) for c, m in strata.items()}, "note": note,
            "ci_tail_percent": tail,
            **{key: _nan_ci(point[key], np.asarray(values), tail)
               for key, values in samples.items()}}


def _clustered_stats(data: EvalInput, index: np.ndarray) -> dict[str, float]:
    """Accuracy per unit, r and (with pain conditions) AUROC/AUPRC on the images `index`
    (repeats allowed); NaN where a sample cannot define one."""
    truth, model = np.asarray(data.truth_levels)[index], np.asarray(data.model_levels)[index]
    stats = {f"accuracy {unit}": float((model[truth[:, j] >= 0, j]
                                        == truth[truth[:, j] >= 0, j]).mean())
             if (truth[:, j] >= 0).any() else math.nan for j, unit in enumerate(UNITS)}
    complete = (truth >= 0).all(axis=1)
    reference, total = truth[complete].sum(1), model[complete].sum(1)
    stats["r"] = _r(reference, total)
    if data.pain_conditions:
        kept = _in_pain_analysis(data)[index] & complete
        pain = np.array([data.condition[i] in data.pain_conditions for i in index])[kept]
        score = model[kept].sum(1)
        both = 0 < pain.sum() < pain.size
        stats["auroc"] = _auroc(pain, score) if both else math.nan
        stats["auprc"] = _auprc(pain, score) if both else math.nan
    return stats


def _nan_ci(value: float, samples: np.ndarray, tail: float = 2.5) -> Stat:
    """Percentile CI (`tail` percent cut off each side) over the samples that define the
    figure, and how many did."""
    defined = samples[np.isfinite(samples)]
    if not defined.size:
        return {"value": _finite(value), "ci_low": None, "ci_high": None, "defined": 0}
    low, high = np.percentile(defined, [tail, 100 - tail])
    return {"value": _finite(value), "ci_low": float(low), "ci_high": float(high),
            "defined": int(defined.size)}


def _cutoff_keys(data: EvalInput, cutoff: dict[str, Any] | None,
                 discrimination: dict[str, Any] | None) -> dict[str, Any]:
    """evaluate()'s cut-off keys: from `fold_cutoffs`, or from one validation part's choice
    (`validation_cutoff`) whose test part is `data`."""
    if cutoff is not None and "pain_cutoff_folds" not in cutoff:
        cutoff = _cutoff_results({"fold0": ({"model": cutoff}, data)}, "fold0")
    if cutoff is None or not discrimination:
        note = "" if discrimination else "no --pain-conditions given"
        return {"pain_cutoff": None, "pain_cutoff_from": None, "pain_cutoff_how": "",
                "pain_cutoff_note": note or "none chosen", "pain_cutoff_folds": {},
                "pain_cutoff_on_test": None, "cutoff_table": {}}
    return cutoff


def evaluate(data: EvalInput, n_boot: int = 1000, seed: int = 0,
             cutoff: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything the report shows, as one JSON-able dict. `cutoff`: every fold's, chosen on
    its own validation part (`fold_cutoffs`), or one validation part's (`validation_cutoff`)
    with `data` its test part; the deployed model's is the only one exported to the monitor."""
    reference, others = totals_of(data)
    discrimination = _discrimination(data, n_boot, seed)
    by_mouse = mouse_bootstrap(data, n_boot, seed)
    if by_mouse is not None:
        by_mouse["auroc_p_value"] = (discrimination["model"]["auroc_p_value_by_mouse"]
                                     if discrimination else None)
    return {"title": data.title, "reference_name": data.reference_name, "units": list(UNITS),
            "n_images": len(data.image), "n_complete": int(_complete(data).sum()),
            "conditions": dict(Counter(data.condition)),
            "pain_conditions": sorted(data.pain_conditions),
            "control_conditions": sorted(data.control_conditions),
            "left_out_of_pain_analysis": _left_out(data),
            "unit_metrics": _unit_metrics(data),
            "agreement": _agreement(data, reference, others),
            "rater_comparison": rater_comparison(data, n_boot, seed),
            "discrimination": discrimination,
            **_cutoff_keys(data, cutoff, discrimination),
            "by_mouse": by_mouse}


def _agreement(data: EvalInput, reference: np.ndarray, others: dict[str, np.ndarray]
               ) -> dict[str, Any]:
    """Each of the model's totals against the reference: per image, and (`by_mouse`, None
    without mouse ids) r and proportional bias from each mouse's mean totals."""
    mice = _complete_mice(data)
    return {key: total_agreement(reference, values)
            | {"by_mouse": None if mice is None else agreement_by_mouse(reference, values, mice)}
            for key, values in others.items()}


def rater_pairs(data: EvalInput, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A rater's reference and own totals on the images every rater scored."""
    references, common = rater_references(data)
    return references[name][common], np.asarray(data.raters[name], float)[common]
