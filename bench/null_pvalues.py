"""Benchmark: how often the report's p-values cry wolf when there is nothing to find.

Simulates studies with no pain effect and no relation between the model, a second rater and the
reference: 4 mice per condition (NTG, saline), 20 images each, every total driven by a mouse
effect and an image effect of equal spread (images of one mouse are alike, as on camera), each
of the three drawn independently. Every study goes through the report's own `evaluate`, and
each p-value (and each paired by-mouse interval) the page shows is counted as a false positive
when p < 0.05 (or the interval leaves out 0): per image beside by mouse. A sound test stays near
0.05. Prints the rates and writes bench/results/null_pvalues.json.

    .venv/bin/python bench/null_pvalues.py [--studies 300] [--bootstrap 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from figures import publish

from monitor.units import UNITS
from train.statistics import EvalInput, evaluate

ALPHA = 0.05
CUTS = (-0.6, 0.6)  # latent -> level 0, 1, 2


def levels(mice: int, per_mouse: int, rng: np.random.Generator) -> np.ndarray:
    """[mice * per_mouse, 5] levels: mouse effect and image effect of equal spread (SD 1),
    shared by the five units, plus a little unit noise."""
    mouse = np.repeat(rng.normal(0, 1, mice), per_mouse)
    image = rng.normal(0, 1, mice * per_mouse)
    latent = (mouse + image)[:, None] + rng.normal(0, 0.5, (mice * per_mouse, len(UNITS)))
    return np.digitize(latent, CUTS)


def study(args: argparse.Namespace, rng: np.random.Generator) -> EvalInput:
    """One study without a pain effect: truth, model and rater independent of each other."""
    mice = 2 * args.mice_per_condition
    n = mice * args.per_mouse
    model = levels(mice, args.per_mouse, rng)
    return EvalInput(
        image=[f"i{k}" for k in range(n)], truth_levels=levels(mice, args.per_mouse, rng),
        model_levels=model, model_expected_total=model.sum(1) + rng.normal(0, 0.3, n),
        condition=["NTG" if k < n // 2 else "saline" for k in range(n)],
        pain_conditions={"NTG"}, mouse=[f"m{k // args.per_mouse}" for k in range(n)],
        raters={"rater": levels(mice, args.per_mouse, rng).sum(1).astype(float)})


def positives(results: dict[str, Any]) -> dict[str, bool | None]:
    """Each figure the page shows: True when it calls the study's nothing a finding."""
    found: dict[str, bool | None] = {}
    for key, d in results["discrimination"].items():
        found[f"AUROC {key}, per image"] = _below(d["auroc_p_value"])
        found[f"AUROC {key}, by mouse"] = _below(d["auroc_p_value_by_mouse"])
    for key, a in results["agreement"].items():
        found[f"r {key}, per image"] = _below(a["p_value"])
        found[f"r {key}, by mouse"] = _below(a["by_mouse"]["p_value"])
        found[f"proportional bias {key}, per image"] = _below(a["proportional_p"])
        found[f"proportional bias {key}, by mouse"] = _below(a["by_mouse"]["proportional_p"])
    rater = results["rater_comparison"]["raters"]["rater"]
    found["r model vs rater (Williams), per image"] = _below(rater["williams"]["p_value"])
    found["r model - rater, by mouse (paired CI)"] = _excludes_zero(
        rater["by_mouse"]["r_difference"])
    found["AUROC model - rater, by mouse (paired CI)"] = _excludes_zero(
        rater["by_mouse"]["auroc_difference"])
    return found


def _below(p: float | None) -> bool | None:
    return None if p is None else p < ALPHA


def _excludes_zero(stat: dict[str, Any]) -> bool | None:
    if stat["ci_low"] is None:
        return None
    return bool(stat["ci_low"] > 0 or stat["ci_high"] < 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--mice-per-condition", type=int, default=4)
    parser.add_argument("--per-mouse", type=int, default=20)
    parser.add_argument("--bootstrap", type=int, default=200,
                        help="resamples per study (the report's default is 1000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    counts: dict[str, list[bool]] = {}
    for k in range(args.studies):
        found = positives(evaluate(study(args, rng), n_boot=args.bootstrap, seed=k))
        for key, positive in found.items():
            if positive is not None:
                counts.setdefault(key, []).append(positive)
    rates = {key: round(float(np.mean(values)), 3) for key, values in counts.items()}
    results: dict[str, Any] = {
        "studies": args.studies, "mice_per_condition": args.mice_per_condition,
        "images_per_mouse": args.per_mouse, "bootstrap": args.bootstrap, "alpha": ALPHA,
        "false_positive_rate": rates,
        "defined_in": {key: len(values) for key, values in counts.items()},
        "seconds": round(time.perf_counter() - started)}
    print(f"false-positive rate at alpha {ALPHA} over {args.studies} studies with no effect "
          f"({args.mice_per_condition} mice per condition, {args.per_mouse} images each):")
    width = max(map(len, rates)) + 2
    for key, rate in rates.items():
        print(f"  {key:{width}}{rate:.3f}")
    publish("null_pvalues", results, table=False)


if __name__ == "__main__":
    main()
