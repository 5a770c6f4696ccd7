"""The GPU path: onnxruntime's CUDA provider runs the models and gives the CPU's answers.

Skipped where onnxruntime has no CUDA provider (the CPU build, or no NVIDIA GPU): CI has none.
Run on a GPU machine with the GPU build installed (README, "NVIDIA GPUs").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from demo.build import DemoBuild
from export.half import halve_scorer
from monitor.capture.workers import Frame
from monitor.config import build_config
from monitor.scoring.analyzer import Analyzer, Models
from monitor.scoring.models import SCORER, OnnxModel
from tests.test_half import crops
from tests.test_pipeline import cubicle_frame

CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]
CPU = ["CPUExecutionProvider"]

pytestmark = pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                                reason="onnxruntime has no CUDA provider here")


def test_the_scorer_runs_on_cuda_with_the_cpus_answers(random_models: Path) -> None:
    gpu = OnnxModel(random_models / "scorer.onnx", SCORER, CUDA, threads=1)
    cpu = OnnxModel(random_models / "scorer.onnx", SCORER, CPU, threads=1)
    assert gpu.on_gpu and gpu.runtime == "onnxruntime CUDA" and gpu.warning == ""
    for batch in (1, 7, 16, 3):  # IO binding is made per call: batch sizes may change
        images = crops(batch, batch)
        got, want = gpu.run(images), cpu.run(images)
        assert set(got) == set(want)
        np.testing.assert_allclose(got["probs"], want["probs"], atol=1e-3)
        assert got["probs"].shape[0] == batch


def test_the_fp16_scorer_on_cuda_agrees_with_fp32(random_models: Path, tmp_path: Path) -> None:
    out = tmp_path / "scorer-fp16.onnx"
    halve_scorer(random_models / "scorer.onnx", out, crops(16, 0), min_agreement=0.9)
    half = OnnxModel(out, SCORER, CUDA, threads=1)
    full = OnnxModel(random_models / "scorer.onnx", SCORER, CPU, threads=1)
    images = crops(32, 1)
    np.testing.assert_allclose(half.run(images)["probs"], full.run(images)["probs"], atol=2e-2)


def test_the_monitor_scores_each_mouse_on_cuda_as_on_the_cpu(demo_small: DemoBuild) -> None:
    frame = cubicle_frame([(0, 0, 0, 0, 0), (2, 2, 2, 2, 2), (1, 1, 1, 1, 1), (0, 1, 2, 1, 0)], 1)
    records = {}
    for providers in (CUDA, CPU):
        raw = {**demo_small.config(), "cameras": [{"name": "cam0", "source": 0}]}
        raw["models"] = {**raw.get("models", {}), "providers": providers}
        config = build_config(raw)
        models = Models.load(config)
        assert ("CUDA" in models.runs_on()) == (providers is CUDA), models.runs_on()
        assert models.warnings() == []
        records[providers[0]] = Analyzer(config, models).process(
            [Frame("cam0", frame, 0.0, 0.0, 0.0, 0)])
    gpu, cpu = records["CUDAExecutionProvider"], records["CPUExecutionProvider"]
    assert [r.status for r in gpu] == ["scored"] * 4
    for on_gpu, on_cpu in zip(gpu, cpu, strict=True):
        assert on_gpu.levels == on_cpu.levels
        np.testing.assert_allclose(on_gpu.probs, on_cpu.probs, atol=1e-2)
