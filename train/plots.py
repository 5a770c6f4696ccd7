"""The evaluation report's PNGs: confusion matrices, total scatter, Bland-Altman plots, ROC and
PR curves, drawn from the figures train/statistics.py computes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from monitor.units import LEVELS, UNITS
from train.statistics import EvalInput, Stat, complete_pairs, rater_pairs, totals_of

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def label_of(key: str, results: dict[str, Any]) -> str:
    names = {"model": "model (total)", "model_expected": "model (expected total)",
             "reference": results["reference_name"]}
    return str(names.get(key, key))


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _plot_confusion(folder: Path, results: dict[str, Any]) -> str:
    fig, axes = plt.subplots(1, len(UNITS), figsize=(3.4 * len(UNITS), 3.6))
    for ax, unit in zip(axes, UNITS, strict=True):
        matrix = np.array(results["unit_metrics"][unit]["confusion"])
        ax.imshow(matrix, cmap="Blues")
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center",
                    color="white" if count > matrix.max() / 2 else "black")
        ax.set(title=unit, xlabel="model level", ylabel=f"{results['reference_name']} level",
               xticks=range(len(LEVELS)), yticks=range(len(LEVELS)))
    return _save(fig, folder / "confusion.png")


def _plot_bland_altman(path: Path, reference: np.ndarray, other: np.ndarray, stats: Stat,
                       label: str, reference_name: str) -> str:
    ref, oth = complete_pairs(reference, other)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter((ref + oth) / 2, oth - ref, alpha=0.4, s=18)
    for key, style in (("bias", "-"), ("loa_low", "--"), ("loa_high", "--")):
        if stats[key] is not None:
            ax.axhline(stats[key], color="crimson", linestyle=style,
                       label=f"{key} {stats[key]:.2f}")
    ax.set(title=f"{label} vs {reference_name}", xlabel="mean of the two totals",
           ylabel=f"{label} - {reference_name}")
    if stats["bias"] is not None:
        ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_scatter(folder: Path, reference: np.ndarray, others: dict[str, np.ndarray],
                  results: dict[str, Any]) -> str:
    fig, axes = plt.subplots(1, len(others), figsize=(3.6 * len(others), 3.6), squeeze=False)
    for ax, (key, values) in zip(axes[0], others.items(), strict=True):
        ref, oth = complete_pairs(reference, values)
        ax.scatter(ref, oth, alpha=0.4, s=18)
        ax.plot([0, 2 * len(UNITS)], [0, 2 * len(UNITS)], color="grey", linewidth=1)
        ax.set(title=label_of(key, results), xlabel=f"{results['reference_name']} total",
               ylabel="total")
    return _save(fig, folder / "scatter_totals.png")


def _plot_curves(folder: Path, results: dict[str, Any]) -> list[str]:
    """ROC and PR curves of every total on shared axes; none when there is nothing to plot."""
    series = {k: v for k, v in (results["discrimination"] or {}).items() if v["roc"]}
    if not series:
        return []
    roc_fig, roc_ax = plt.subplots(figsize=(5, 4.5))
    pr_fig, pr_ax = plt.subplots(figsize=(5, 4.5))
    for key, d in series.items():
        label = label_of(key, results)
        roc_ax.plot(d["roc"]["fpr"], d["roc"]["tpr"],
                    label=f"{label} (AUROC {d['auroc']['value']:.2f})")
        pr_ax.plot(d["pr"]["recall"], d["pr"]["precision"],
                   label=f"{label} (AUPRC {d['auprc']['value']:.2f})")
    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    pr_ax.axhline(next(iter(series.values()))["prevalence"], color="grey", linestyle=":")
    roc_ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC: pain vs no pain")
    pr_ax.set(xlabel="recall", ylabel="precision", title="Precision-recall: pain vs no pain")
    roc_ax.legend(fontsize=8)
    pr_ax.legend(fontsize=8)
    return [_save(roc_fig, folder / "roc.png"), _save(pr_fig, folder / "pr.png")]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text)


def write_plots(folder: Path, data: EvalInput, results: dict[str, Any]) -> list[str]:
    """All PNGs, file names relative to the folder, in the order the page shows them."""
    reference, others = totals_of(data)
    names = [_plot_confusion(folder, results), _plot_scatter(folder, reference, others, results)]
    names += [_plot_bland_altman(folder / f"bland_altman_{i}_{_slug(key)}.png", reference, values,
                                 results["agreement"][key], label_of(key, results),
                                 results["reference_name"])
              for i, (key, values) in enumerate(others.items())]
    compared = results.get("rater_comparison") or {"raters": {}}
    for i, (name, found) in enumerate(compared["raters"].items(), start=len(names)):
        reference, totals = rater_pairs(data, name)
        names.append(_plot_bland_altman(folder / f"bland_altman_{i}_{_slug(name)}.png",
                                        reference, totals, found["rater"], name,
                                        "their reference"))
    return names + _plot_curves(folder, results)
