"""The two runtimes that run a model file: the same checks, the same answers, the choice `auto`
makes, and what the user is told when a runtime is missing or a GPU did not load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import synth
from demo.build import DemoBuild
from export.onnx_export import ExportError
from export.quantize import quantize_scorer
from monitor.config import build_config
from monitor.pipeline import monitor_title
from monitor.scoring import runtimes
from monitor.scoring.analyzer import Models
from monitor.scoring.models import LOCALIZER, SCORER, ModelError, OnnxModel
from monitor.scoring.runtimes import gpu_fallback, installed_runtimes

CPU = ["CPUExecutionProvider"]
CUDA = "CUDAExecutionProvider"
pytest.importorskip("openvino", reason="the openvino extra: pip install 'mgs-monitor[openvino]'")


def faces(size: int, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([synth.draw_face(synth.random_levels(rng), rng, size) for _ in range(count)])


@pytest.fixture(scope="module")
def int8_scorer(demo_small: DemoBuild, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An int8 file for choosing runtimes (ungated: the tiny test scorer's int8 levels are
    not what the gate is shown on here; bench/monitor_speed.py measures the demo scorer's)."""
    size = demo_small.spec.scorer_size
    out = tmp_path_factory.mktemp("int8") / "scorer-int8.onnx"
    quantize_scorer(demo_small.folder / "scorer.onnx", out, faces(size, 32, 1),
                    faces(size, 50, 2), min_agreement=0.0)
    return out


def test_both_runtimes_give_the_same_levels_on_demo_faces(demo_small: DemoBuild) -> None:
    crops = faces(demo_small.spec.scorer_size, 300, 3)
    ort_model = OnnxModel(demo_small.folder / "scorer.onnx", SCORER, CPU, runtime="onnxruntime")
    ov_model = OnnxModel(demo_small.folder / "scorer.onnx", SCORER, CPU, runtime="openvino")
    assert (ort_model.runtime, ov_model.runtime) == ("onnxruntime CPU", "openvino CPU")
    assert ov_model.info == ort_model.info  # the same metadata, read by either
    levels = [m.run(crops)["probs"].argmax(-1) for m in (ort_model, ov_model)]
    assert (levels[0] == levels[1]).mean() >= 0.99


def test_the_localizer_runs_on_either_with_the_same_boxes(demo_small: DemoBuild) -> None:
    path = demo_small.folder / "localizer.onnx"
    ort_model = OnnxModel(path, LOCALIZER, CPU, runtime="onnxruntime")
    ov_model = OnnxModel(path, LOCALIZER, CPU, runtime="openvino")
    size = ort_model.info.input_size
    views = np.random.default_rng(4).integers(0, 255, (8, size, size, 3), dtype=np.uint8)
    want, got = ort_model.run(views), ov_model.run(views)
    for name in ("box", "score"):
        np.testing.assert_allclose(got[name], want[name], atol=1e-3)


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_auto_takes_openvino_for_int8_on_the_cpu_and_onnxruntime_otherwise(
        demo_small: DemoBuild, int8_scorer: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = build_config({**demo_small.config(), "models": {
        "scorer": str(int8_scorer), "localizer": str(demo_small.folder / "localizer.onnx")}})
    models = Models.load(config)
    assert models.runs_on() == ("scorer (int8) on openvino CPU, localizer on onnxruntime CPU")
    assert config.models.runtime == "auto" and not models.warnings()
    assert monitor_title(config, models, replay=True).endswith(" mice, openvino CPU int8")
    # With a GPU provider at hand, onnxruntime runs everything (here the CPU stands in).
    monkeypatch.setattr("monitor.scoring.runtimes.available_providers", lambda _w: [CUDA, *CPU])
    assert OnnxModel(int8_scorer, SCORER, [CUDA, *CPU]).runtime == "onnxruntime CPU"


def test_a_missing_runtime_is_one_line(demo_small: DemoBuild,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("monitor.scoring.models.openvino_installed", lambda: False)
    path = demo_small.folder / "scorer.onnx"
    with pytest.raises(ModelError) as refused:
        OnnxModel(path, SCORER, CPU, runtime="openvino")
    assert str(refused.value) == (f"{path}: models.runtime is openvino, but OpenVINO is not "
                                  "installed (pip install 'mgs-monitor[openvino]')")


def test_metadata_is_checked_the_same_under_openvino(tmp_path: Path,
                                                     demo_small: DemoBuild) -> None:
    with pytest.raises(ModelError, match="is a 'localizer' model, expected a scorer model"):
        OnnxModel(demo_small.folder / "localizer.onnx", SCORER, CPU, runtime="openvino")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"broken\.onnx: not a loadable ONNX model"):
        OnnxModel(broken, SCORER, CPU, runtime="openvino")


def test_the_agreement_gate_holds_under_every_installed_runtime(
        demo_small: DemoBuild, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file refused is refused whichever runtime would run it: the gate takes the runtime
    that agrees least (here OpenVINO is made to disagree, onnxruntime agrees)."""
    assert installed_runtimes() == ["onnxruntime", "openvino"]
    size = demo_small.spec.scorer_size
    original = runtimes.OpenVinoSession.run

    def disagreeing(self: runtimes.OpenVinoSession, images: np.ndarray) -> dict[str, np.ndarray]:
        probs = original(self, images)["probs"]
        return {"probs": probs[..., ::-1].copy()}  # levels 0 and 2 swapped

    monkeypatch.setattr(runtimes.OpenVinoSession, "run", disagreeing)
    out = tmp_path / "int8.onnx"
    with pytest.raises(ExportError, match=r"agrees with fp32 on .*% of unit levels under "
                                          r"openvino .*not written"):
        quantize_scorer(demo_small.folder / "scorer.onnx", out, faces(size, 32, 1),
                        faces(size, 100, 2))
    assert not out.exists()


def test_a_gpu_that_did_not_load_is_one_warning() -> None:
    assert gpu_fallback([CUDA, *CPU], [CUDA, *CPU], CPU) == (
        "GPU asked for (CUDA), the CPU is running: CUDA or cuDNN did not load; "
        "pip install 'onnxruntime-gpu[cuda,cudnn]' brings them")
    assert gpu_fallback([CUDA, *CPU], [CUDA, *CPU], [CUDA, *CPU]) == ""  # it runs
    assert gpu_fallback([CUDA, *CPU], CPU, CPU) == ""  # a CPU-only build: nothing to warn of
    assert gpu_fallback(CPU, [CUDA, *CPU], CPU) == ""  # --cpu
