"""The agreement gate of the reduced-precision scorers, at its default (98% of unit levels), on
files that pass and on files that truly disagree with their fp32 source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import synth
from demo.build import DemoBuild
from export.half import halve_scorer
from export.onnx_export import ExportError
from export.quantize import quantize_scorer
from monitor.scoring.models import SCORER, OnnxModel


def faces(demo: DemoBuild, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    size = demo.spec.scorer_size
    return np.stack([synth.draw_face(synth.random_levels(rng), rng, size) for _ in range(count)])


def test_int8_passes_on_good_calibration_and_is_refused_on_bad(demo_small: DemoBuild,
                                                               tmp_path: Path) -> None:
    fp32 = demo_small.folder / "scorer.onnx"
    calibration, held_out = faces(demo_small, 32, 1), faces(demo_small, 200, 2)
    good = tmp_path / "good.onnx"
    # onnxruntime's int8 kernels: this tiny scorer's int8 levels under OpenVINO's own fall
    # short of the gate (tests/test_runtimes.py shows the gate taking the worse runtime).
    assert quantize_scorer(fp32, good, calibration, held_out, runtimes=["onnxruntime"]) >= 0.98
    assert OnnxModel(good, SCORER, ["CPUExecutionProvider"]).info.extra["precision"] == "int8"
    # Calibrated on black frames, the activation ranges are wrong and the levels change.
    bad = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match=r"int8 scorer agrees with fp32 on .*% .*not written"):
        quantize_scorer(fp32, bad, np.zeros_like(calibration), held_out)
    assert not bad.exists()


def test_fp16_passes_in_range_and_is_refused_beyond_it(demo_small: DemoBuild,
                                                       tmp_path: Path) -> None:
    fp32 = demo_small.folder / "scorer.onnx"
    held_out = faces(demo_small, 200, 2)
    assert halve_scorer(fp32, tmp_path / "good.onnx", held_out) >= 0.98
    # Logits a million times larger: fine in fp32, past fp16's largest number (65504).
    model = onnx.load(str(fp32))
    weights = {init.name: init for init in model.graph.initializer}
    for node in (n for n in model.graph.node if n.op_type == "Gemm"):
        weight = weights[node.input[1]]
        weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1e6,
                                                weight.name))
    hot = tmp_path / "hot.onnx"
    onnx.save(model, str(hot))
    with pytest.raises(ExportError, match=r"fp16 scorer agrees with fp32 on .*% .*not written"):
        halve_scorer(hot, tmp_path / "bad.onnx", held_out)
    assert not (tmp_path / "bad.onnx").exists()
