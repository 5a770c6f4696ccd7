"""Evaluation report: what DeepMGS (Chiang et al., J Pers Med 2022, 12:851) reports, for new data,
as report.json, the PNGs and one HTML page that references them by relative path. The figures
come from train/statistics.py, the pictures from train/plots.py.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from monitor.units import UNITS
from train.frames import summary_html
from train.plots import label_of, write_plots
from train.statistics import EvalInput, Stat, evaluate


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _p(value: float | None) -> str:
    return "n/a" if value is None else "<0.0001" if value < 1e-4 else f"{value:.4f}"


def _ci(stat: Stat | None) -> str:
    """'0.85 [0.78, 0.90]', plus k/n where the value is a proportion."""
    if stat is None or stat["value"] is None:
        return "n/a"
    text = _num(stat["value"])
    if stat["ci_low"] is not None:
        text += f" [{_num(stat['ci_low'])}, {_num(stat['ci_high'])}]"
    return text + (f" ({stat['k']}/{stat['n']})" if "k" in stat else "")


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Cells are escaped here, so callers pass plain text."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _unit_table(results: dict[str, Any]) -> str:
    rows = []
    for unit in UNITS:
        metrics = results["unit_metrics"][unit]
        for level, m in metrics["levels"].items():
            rows.append([unit, _ci(metrics["accuracy"]), _num(metrics.get("kappa")), level,
                         _ci(m["sensitivity"]), _ci(m["specificity"]), _ci(m["precision"]),
                         _ci(m["f1"]), _ci(m["accuracy"])])
    return _table(["unit", "accuracy", "kappa (quadratic) with the reference", "level",
                   "sensitivity", "specificity", "precision", "F1 (2TP/(2TP+FP+FN), no CI)",
                   "level accuracy (one-vs-rest)"], rows)


def _r_ci(a: Stat) -> str:
    return f"{_num(a['r'])} [{_num(a['r_ci_low'])}, {_num(a['r_ci_high'])}]"


def _slope(a: Stat) -> str:
    return f"{_num(a['proportional_slope'])} (p {_p(a['proportional_p'])})"


def _agreement_table(results: dict[str, Any]) -> str:
    """Per-image figures, and beside them (when mice are known) the same from mouse means."""
    rows, by_mouse = [], any(a.get("by_mouse") for a in results["agreement"].values())
    for key, a in results["agreement"].items():
        row = [label_of(key, results), str(a["n"]), _r_ci(a), _p(a["p_value"]),
               _num(a.get("icc")), _num(a["bias"]), _num(a["sd"]),
               f"{_num(a['loa_low'])} to {_num(a['loa_high'])}", _share(a["outside"]),
               _slope(a)]
        if by_mouse:
            m = a["by_mouse"]
            row += [str(m["n_mice"]), _r_ci(m), _p(m["p_value"]), _slope(m)]
        rows.append(row)
    header = ["total", "n images", "Pearson r [95% CI], per image", "p, per image",
              "ICC(2,1)", "bias (other - reference)", "SD", "95% limits of agreement",
              "outside the limits",
              "proportional bias: slope of difference on mean (p), per image"]
    if by_mouse:
        header += ["n mice", "Pearson r [95% CI], by mouse (mouse means)", "p, by mouse",
                   "proportional bias (p), by mouse"]
    return _table(header, rows)


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _discrimination_table(results: dict[str, Any]) -> str:
    rows = [[label_of(key, results), f"{d['n']} ({d['n_pain']})", _ci(d["auroc"]),
             _p(d.get("auroc_p_value")), _p(d.get("auroc_p_value_by_mouse")), _ci(d["auprc"]),
             _num(d["prevalence"]), _num(d["cutoff"]), _ci(d["sensitivity"]),
             _ci(d["specificity"])]
            for key, d in results["discrimination"].items()]
    return _table(["total", "n images (pain)", "AUROC [95% CI], per image",
                   "p (AUROC = 0.5), per image", "p (AUROC = 0.5), by mouse",
                   "AUPRC [95% CI], per image", "prevalence", "Youden cut-off (>=), in-sample",
                   "sensitivity at it, in-sample", "specificity at it, in-sample"], rows)


def _rater_section(results: dict[str, Any]) -> str:
    """Each rater and the model against the rater's own reference, on the same images."""
    found = results.get("rater_comparison")
    if not found:
        return ""
    majority = results["reference_name"] == "majority"
    against = "the majority of the other raters" if majority else results["reference_name"]
    aurocs = found.get("discrimination") or {}
    rows = []
    for name, c in found["raters"].items():
        w, paired = c["williams"], c.get("by_mouse") or {}
        rows.append([name, _num(c["rater"]["r"]), _num(c["model"]["r"]),
                     f"{_num(w['t'])} (df {w['df'] if w['df'] is not None else '—'}), "
                     f"p {_p(w['p_value'])}", _paired(paired, "r_difference"),
                     _num(c["rater"]["icc"]), _num(c["model"]["icc"]),
                     _num(c["rater"]["bias"]), _num(c["model"]["bias"]),
                     _ci(aurocs[name]["auroc"]) if name in aurocs else "—",
                     _paired(paired, "auroc_difference")])
    header = ["rater", "r rater, per image", "r model, per image", "Williams t, p (per image)",
              "r model - r rater [95% CI by mouse, paired]", "ICC(2,1) rater", "ICC(2,1) model",
              "bias rater", "bias model", "rater AUROC [95% CI], per image",
              "AUROC model - rater [95% CI by mouse, paired]"]
    where = f"On the {found['n_common']} images every rater scored"
    if aurocs:
        where += f" (model AUROC there, per image: {_ci(aurocs['model']['auroc'])})"
    else:
        header, rows = header[:-2], [row[:-2] for row in rows]
    notes = {c["by_mouse"]["note"] for c in found["raters"].values()
             if c.get("by_mouse") and c["by_mouse"]["note"]}
    return (f"<h2>Raters and the model, each against {html.escape(against)}</h2>"
            f"<p>{html.escape(where)}. Williams's test (images as independent units): is the "
            "model's correlation with the reference different from the rater's? The paired "
            "mouse bootstrap resamples the same whole mice for model and rater.</p>"
            + "".join(f"<p>No interval by mouse: {html.escape(n)}.</p>" for n in sorted(notes))
            + _table(header, rows) + _rater_kappa_table(found))


def _rater_kappa_table(found: dict[str, Any]) -> str:
    """Per unit, 'rater / model' quadratic kappa with the rater's reference."""
    rows = [[name, *(f"{_num(k[u]['rater'])} / {_num(k[u]['model'])} (n {k[u]['n']})"
                     for u in UNITS)]
            for name, c in found["raters"].items() if (k := c.get("kappa"))]
    if not rows:
        return ""
    return ("<p>Quadratic-weighted kappa per unit with the rater's reference, rater / model "
            "(units where the reference is a whole level), per image:</p>"
            + _table(["rater", *UNITS], rows))


def _paired(found: dict[str, Any], key: str) -> str:
    """A model-minus-rater difference with its paired mouse-bootstrap CI; '—' without mice."""
    return _ci(found[key]) if key in found else "—"


def _by_mouse_section(results: dict[str, Any]) -> str:
    """The intervals that respect clustering, beside the per-image ones."""
    found = results.get("by_mouse")
    if not found:
        return ("<p>No mouse ids in the labels: every interval and p-value here treats images "
                "as independent, which images of one mouse are not.</p>")
    p_value = ("" if found.get("auroc_p_value") is None else
               f" The model's AUROC against chance, conditions rearranged over whole mice: "
               f"p = {_p(found['auroc_p_value'])}.")
    if found["note"]:
        counted = f" ({found['n_mice']} mice)" if found["n_mice"] else ""
        return (f"<h2>By mouse{counted}</h2><p>No interval by mouse: "
                f"{html.escape(found['note'])}. The per-image intervals and p-values on this "
                f"page treat images as independent, which images of one mouse are not."
                f"{html.escape(p_value)}</p>")
    rows = [[key, _num(stat["value"]), f"[{_num(stat['ci_low'])}, {_num(stat['ci_high'])}]",
             str(stat["defined"])]
            for key, stat in found.items() if isinstance(stat, dict) and "defined" in stat]
    mice = ", ".join(f"{c or '(none)'} {n}" for c, n in found["mice_per_condition"].items())
    return (f"<h2>95% CIs by mouse ({found['n_mice']} mice: {html.escape(mice)}; "
            f"{found['n_boot']} resamples of whole mice within each condition)</h2>"
            "<p>Images of one mouse are alike, so these intervals, not the per-image ones, say "
            f"how the figures would move with other mice.{html.escape(p_value)}</p>"
            + _table(["figure", "value", "95% CI by mouse", "resamples defining it"], rows))


def _analysed_text(results: dict[str, Any]) -> str:
    pain = ", ".join(results["pain_conditions"])
    control = ", ".join(results["control_conditions"]) or "every other condition"
    left = results["left_out_of_pain_analysis"]
    out = "; left out (neither): " + ", ".join(f"{c or '(none)'} {n}" for c, n in left.items())
    return f"Pain: {pain}. No pain: {control}{out if left else ''}."


def _cutoff_text(results: dict[str, Any]) -> str:
    """The exported cut-off and how it was chosen, each fold's own (chosen on its validation
    part, reported on its test part), the paper's Table 3 at those cut-offs for the model, the
    reference and each rater, and the one the test images themselves would pick (only shown)."""
    model = results["discrimination"]["model"]
    chosen, folds = results.get("pain_cutoff"), results.get("pain_cutoff_folds") or {}
    if chosen is None:
        text = f"No cut-off for the monitor: {results.get('pain_cutoff_note') or 'none chosen'}."
    else:
        text = (f"Model total >= {chosen:g} means pain for the model mgs-export deploys: "
                f"{results['pain_cutoff_how']}. This is the cut-off mgs-export writes into the "
                "scorer (--fold N writes fold N's own).")
    test = results.get("pain_cutoff_on_test")
    if test is not None:
        text += (f" Each fold's own cut-off on that fold's test images only, out of sample, "
                 f"counts pooled over {', '.join(test['folds'])}: sensitivity "
                 f"{_ci(test['sensitivity'])}, specificity {_ci(test['specificity'])}, "
                 f"accuracy {_ci(test['accuracy'])}, precision {_ci(test['precision'])}, F1 "
                 f"{_num(test['f1']['value'])}.")
    if model["cutoff"] is not None:
        text += (f" The test images' own best cut-off would be {model['cutoff']:g} (the table's "
                 "Youden column: chosen on the images it is measured on, so optimistic; "
                 "never exported).")
    rows = [[name, "n/a" if found["cutoff"] is None else f"{found['cutoff']:g}",
             found["how"] or found["note"], ", ".join(found.get("test_mice") or []) or "—"]
            for name, found in folds.items()]
    per_fold = (_table(["fold", "cut-off (>=)", "chosen on", "test mice"], rows)
                if rows else "")
    return f"<p>{html.escape(text)}</p>" + per_fold + _cutoff_table(results)


def _cutoff_table(results: dict[str, Any]) -> str:
    """The paper's Table 3 for the model, the reference and every rater, each at its own
    cut-offs chosen the same way: per fold on validation images, counted on test images."""
    rows = []
    for key, found in (results.get("cutoff_table") or {}).items():
        cutoffs = ", ".join("n/a" if c is None else f"{c:g}" for c in found["cutoffs"].values())
        figures = [_ci(found.get(name)) for name in ("accuracy", "precision")]
        figures += [_num(found["f1"]["value"]) if "f1" in found else "n/a"]
        figures += [_ci(found.get(name)) for name in ("sensitivity", "specificity")]
        rows.append([label_of(key, results), cutoffs, *figures])
    if not rows:
        return ""
    return ("<h3>At the cut-offs chosen on validation images (Table 3), out of sample</h3>"
            "<p>Each total (the model's, the reference's and every rater's) gets its own "
            "cut-off per fold, chosen on that fold's validation images and counted on its test "
            "images, pooled over folds: the reference and the raters are measured as the "
            "model is.</p>"
            + _table(["total", "cut-offs per fold (>=)", "accuracy", "precision", "F1",
                      "sensitivity", "specificity"], rows))


def _images(paths: list[str]) -> str:
    return "".join(f'<img src="{html.escape(p, quote=True)}" alt="{html.escape(p, quote=True)}">'
                   for p in paths)


def _extra(folder: Path, extra_images: dict[str, list[Path]]) -> str:
    return "".join(f"<h2>{html.escape(title)}</h2>"
                   + _images([Path(os.path.relpath(p, folder)).as_posix() for p in paths])
                   for title, paths in extra_images.items())


STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
         "td,th{border:1px solid #bbb;padding:3px 6px;font-size:13px}th{background:#eee}"
         "img{max-width:100%;margin:4px;border:1px solid #ddd}")


def _html(folder: Path, results: dict[str, Any], plots: list[str],
          extra_images: dict[str, list[Path]]) -> str:
    title = html.escape(results["title"])
    reference = html.escape(results["reference_name"])
    sections = [f"<h1>{title}</h1>",
                f"<p>{results['n_images']} images, {results['n_complete']} with all units "
                f"scored; reference: {reference}. "
                f"{html.escape(results.get('deployed_model', ''))}</p>",
                "<h2>Per unit (95% Clopper-Pearson CIs, per image)</h2>", _unit_table(results),
                _by_mouse_section(results),
                f"<h2>Total score agreement with {reference} (per image; by mouse from each "
                "mouse's mean totals)</h2>", _agreement_table(results),
                _rater_section(results)]
    if results["discrimination"]:
        sections += ["<h2>Pain discrimination (95% bootstrap CIs per image; p by mouse "
                     "beside)</h2>",
                     f"<p>{html.escape(_analysed_text(results))}</p>",
                     _discrimination_table(results), _cutoff_text(results)]
    if results.get("frames"):
        sections += ["<h2>The localizer in the loop (labelled frames, as live)</h2>",
                     summary_html(results["frames"])]
    sections += ["<h2>Plots</h2>", _images(plots), _extra(folder, extra_images)]
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>")


def write_report(folder: Path, data: EvalInput, results: dict[str, Any] | None = None,
                 extra_images: dict[str, list[Path]] | None = None) -> Path:
    """report.json, the PNGs and report.html into folder; returns the HTML path."""
    folder.mkdir(parents=True, exist_ok=True)
    results = evaluate(data) if results is None else results
    (folder / "report.json").write_text(json.dumps(results, indent=1, allow_nan=False))
    plots = write_plots(folder, data, results)
    page = folder / "report.html"
    page.write_text(_html(folder, results, plots, extra_images or {}), encoding="utf-8")
    return page
