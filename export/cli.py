"""`mgs-export`: turn a trained run into the scorer ONNX file the monitor runs.

The fused five-unit graph is written with its metadata (units, input size, normalisation, data
fingerprint, per-unit validation metrics, kind, and the pain cut-off from an mgs-eval report)
after a parity check against PyTorch on the run's own held-out crops.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from export.onnx_export import ExportError, export_scorer
from monitor.units import UNITS
from train.labels import LabelError
from train.run import Run, RunError, crops_of, load_scorer

PARITY_CROPS = 16


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgs-export", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Export a trained run (mgs-train) as the monitor's scorer ONNX file.")
    parser.add_argument("--run", type=Path, required=True, help="mgs-train --output-dir")
    parser.add_argument("--fold", type=int, default=0, help="which fold's models to export")
    parser.add_argument("--report", type=Path,
                        help="mgs-eval report.json: its pain cut-off goes into the metadata")
    parser.add_argument("--out", type=Path, default=Path("models/scorer.onnx"))
    parser.add_argument("--kind", choices=("trained", "demo"), default="trained",
                        help="'demo' for models trained on synthetic faces")
    return parser


def main(args: argparse.Namespace) -> Path:
    run = Run.open(args.run)
    fold = run.fold(args.fold)
    scorer, checkpoint = load_scorer(fold)
    missing = [u for u in UNITS if u not in checkpoint["units"]]
    if missing:
        raise RunError(f"{fold / 'scorer.pth'}: units not trained: {', '.join(missing)}")
    held_out = run.test_items(fold)[:PARITY_CROPS] or run.labels()[:PARITY_CROPS]
    crops = crops_of(held_out, scorer.input_size)
    cutoff = None
    if args.report:
        cutoff = json.loads(args.report.read_text()).get("pain_cutoff")
    metrics = checkpoint["metrics"]
    path = export_scorer(scorer, args.out, crops, kind=args.kind,
                         fingerprint=metrics["fingerprint"], metrics=metrics["units"],
                         pain_cutoff=cutoff)
    print(f"{path}: five-unit scorer ({scorer.arch}, {scorer.input_size}px, kind={args.kind}"
          f"{f', pain cut-off {cutoff:g}' if cutoff is not None else ''}); parity checked on "
          f"{len(crops)} held-out crops")
    return path


def cli(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        main(args)
    except (RunError, LabelError, ExportError, OSError) as exc:
        print(f"mgs-export: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
