"""fp16 scorer (for GPUs): converted from the fp32 file, gated on agreement, run on the CPU here."""

from pathlib import Path

import numpy as np
import onnx
import pytest

from export.half import halve_scorer
from export.onnx_export import ExportError
from monitor.scoring.models import SCORER, OnnxModel

CPU = ["CPUExecutionProvider"]


def crops(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)


def test_fp16_scorer_runs_like_fp32(random_models: Path, tmp_path: Path) -> None:
    fp32_path = random_models / "scorer.onnx"
    out = tmp_path / "scorer-fp16.onnx"
    agreement = halve_scorer(fp32_path, out, crops(16, 0), min_agreement=0.9)
    graph = onnx.load(str(out)).graph
    assert any(w.data_type == onnx.TensorProto.FLOAT16 for w in graph.initializer)
    fp16 = OnnxModel(out, SCORER, CPU, threads=1)
    fp32 = OnnxModel(fp32_path, SCORER, CPU, threads=1)
    assert fp16.info.extra["precision"] == "fp16"
    assert float(fp16.info.extra["fp16_agreement"]) == pytest.approx(agreement, abs=1e-4)
    assert fp16.info.model_id != fp32.info.model_id and fp16.info.units == fp32.info.units
    assert fp16.info.extra["kind"] == fp32.info.extra["kind"]
    images = crops(8, 1)
    probs = fp16.run(images)["probs"]
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs, fp32.run(images)["probs"], atol=1e-2)
    assert not out.with_suffix(".onnx.tmp").exists()


def test_fp16_scorer_is_gated_on_agreement(random_models: Path, tmp_path: Path) -> None:
    out = tmp_path / "scorer-fp16.onnx"
    with pytest.raises(ExportError, match=r"fp16 scorer agrees with fp32 on .*; not written"):
        halve_scorer(random_models / "scorer.onnx", out, crops(4, 2), min_agreement=1.01)
    assert list(tmp_path.iterdir()) == []
