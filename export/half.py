"""fp16 scorer for GPUs: the fp32 graph in half precision, gated on agreement with fp32.

On a CUDA GPU fp16 convolutions and matrix products run on the tensor cores; on the CPU it is
not faster than fp32 (keep scorer.onnx, or scorer-int8.onnx, there). The uint8 `image` input
and the float32 `probs` output keep their types, so the monitor feeds and reads the file like
the fp32 one. It is written only when its unit levels agree with the fp32 scorer's on held-out
crops at least `min_agreement` of the time; its metadata is the fp32 file's plus
`precision=fp16`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.transformers.float16 import convert_float_to_float16

from export.onnx_export import ExportError, write_variant
from export.quantize import MIN_AGREEMENT, level_agreement


def halve_scorer(fp32: Path, out: Path, held_out: np.ndarray,
                 min_agreement: float = MIN_AGREEMENT) -> float:
    """Write the fp16 scorer; returns the level agreement with fp32 on `held_out` crops."""
    model = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "fp16.onnx"
        onnx.save(model, str(raw))
        runtime, agreement = level_agreement(fp32, raw, held_out)
    if agreement < min_agreement:
        raise ExportError(f"fp16 scorer agrees with fp32 on {agreement:.1%} of unit levels "
                          f"under {runtime} (< {min_agreement:.0%}); not written")
    write_variant(model, fp32, out, precision="fp16", fp16_agreement=f"{agreement:.4f}")
    return agreement
