"""int8 scorer: static quantisation calibrated on real training crops, gated on agreement.

onnxruntime's static quantiser (QDQ, per-channel int8 weights, uint8 activations) turns the
fused fp32 scorer into one that uses the CPU's int8 paths (VNNI/AMX where present). The int8
file is written only when its unit levels agree with the fp32 scorer's on held-out crops at
least `min_agreement` of the time under every runtime installed here that could run it (each
runtime has int8 kernels of its own); its metadata is the fp32 file's plus `precision=int8`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)

from export.onnx_export import ExportError, write_variant
from monitor.scoring.runtimes import RuntimeName, Session, installed_runtimes, open_session

CPU = ["CPUExecutionProvider"]

MIN_AGREEMENT = 0.98


class _Crops(CalibrationDataReader):
    """Feeds calibration crops one at a time (the activation ranges come from these)."""

    def __init__(self, crops: np.ndarray) -> None:
        self._batches = iter(crops[i:i + 1] for i in range(len(crops)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {"image": batch}


def quantize_scorer(fp32: Path, out: Path, calibration: np.ndarray, held_out: np.ndarray,
                    min_agreement: float = MIN_AGREEMENT,
                    runtimes: list[RuntimeName] | None = None) -> float:
    """Write the int8 scorer; returns the level agreement with fp32 on `held_out` crops, the
    least among `runtimes` (default: every runtime installed here)."""
    runtimes = runtimes or installed_runtimes()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "int8.onnx"
        quantize_static(str(fp32), str(raw), _Crops(calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        runtime, agreement = level_agreement(fp32, raw, held_out, runtimes)
        if agreement < min_agreement:
            raise ExportError(f"int8 scorer agrees with fp32 on {agreement:.1%} of unit levels "
                              f"under {runtime} (< {min_agreement:.0%}); not written")
        model = onnx.load(str(raw))
    write_variant(model, fp32, out, precision="int8", int8_agreement=f"{agreement:.4f}",
                  agreement_runtimes=",".join(runtimes))
    return agreement


def level_agreement(fp32: Path, variant: Path, crops: np.ndarray,
                    runtimes: list[RuntimeName] | None = None) -> tuple[str, float]:
    """The runtime under which `variant` agrees least with the fp32 scorer (run by onnxruntime),
    and that agreement: the fraction of (crop, unit) pairs where both pick the same level."""
    reference = _levels(open_session(fp32, "onnxruntime", CPU, 0), crops)
    agreements = {runtime: float((_levels(open_session(variant, runtime, CPU, 0), crops)
                                  == reference).mean())
                  for runtime in runtimes or installed_runtimes()}
    worst = min(agreements, key=agreements.__getitem__)
    return worst, agreements[worst]


def _levels(session: Session, crops: np.ndarray) -> np.ndarray:
    return session.run(crops)["probs"].argmax(-1)
