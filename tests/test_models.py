"""Model files: the monitor refuses what it cannot run, with one line naming the file."""

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from export.onnx_export import ExportError, export_scorer
from monitor.scoring.models import LOCALIZER, SCORER, ModelError, OnnxModel, runtime_conflict
from monitor.scoring.runtimes import OrtSession, provider_entries, tensorrt_cache
from monitor.units import UNITS
from train.models import UnitScorer

CPU = ["CPUExecutionProvider"]


def load(path: Path, role: str = SCORER) -> OnnxModel:
    return OnnxModel(path, role, CPU, threads=1)


def with_metadata(src: Path, dst: Path, **changes: str) -> Path:
    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props}
    props.update(changes)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(dst))
    return dst


def test_exported_models_load_with_their_metadata(random_models: Path) -> None:
    scorer = load(random_models / "scorer.onnx")
    assert scorer.info.kind == "demo" and scorer.info.is_demo
    assert scorer.info.units == UNITS and scorer.info.input_size == 32
    probs = scorer.run(np.zeros((3, 32, 32, 3), np.uint8))["probs"]
    assert probs.shape == (3, 5, 3)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    localizer = load(random_models / "localizer.onnx", LOCALIZER)
    out = localizer.run(np.zeros((2, 32, 32, 3), np.uint8))
    assert out["box"].shape == (2, 4) and out["score"].shape == (2,)


def test_missing_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"scorer.onnx: model file not found"):
        load(tmp_path / "scorer.onnx")


def test_truncated_model(random_models: Path, tmp_path: Path) -> None:
    path = tmp_path / "scorer.onnx"
    path.write_bytes((random_models / "scorer.onnx").read_bytes()[:5000])
    with pytest.raises(ModelError, match=r"scorer.onnx: not a loadable ONNX model"):
        load(path)


def test_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "scorer.onnx"
    path.write_text("hello")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        load(path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mgs_format": "99"}, "metadata mgs_format='99'"),
        ({"mgs_role": LOCALIZER}, "is a 'localizer' model, expected a scorer model"),
        ({"kind": "great"}, "kind='great' must be 'demo' or 'trained'"),
        ({"units": '["a", "b"]'}, r"metadata units \['a', 'b'\] differ"),
        ({"units": "not json"}, "metadata units='not json' is not valid JSON"),
        ({"input_size": "224"}, r"input shape \[.*32, 32, 3\] is not \[N, 224, 224, 3\]"),
        ({"input_size": "big"}, "input_size='big' is not an integer"),
    ],
)
def test_wrong_metadata_is_refused(random_models: Path, tmp_path: Path,
                                   changes: dict[str, str], message: str) -> None:
    path = with_metadata(random_models / "scorer.onnx", tmp_path / "scorer.onnx", **changes)
    with pytest.raises(ModelError, match=message) as err:
        load(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_localizer_file_given_as_scorer(random_models: Path) -> None:
    with pytest.raises(ModelError, match="is a 'localizer' model, expected a scorer"):
        load(random_models / "localizer.onnx", SCORER)


class TracedDifferently(UnitScorer):
    """Python state baked into the traced graph: the export must notice and refuse."""

    calls = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        TracedDifferently.calls += 1
        return super().forward(images) * TracedDifferently.calls


@pytest.mark.slow
def test_export_refuses_a_graph_that_differs_from_pytorch(tmp_path: Path) -> None:
    images = np.random.default_rng(1).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ExportError, match="model not written"):
        export_scorer(TracedDifferently("tiny", 32), tmp_path / "s.onnx", images, kind="demo")
    assert not (tmp_path / "s.onnx").exists()


@pytest.mark.slow
def test_export_parity_and_metadata(tmp_path: Path) -> None:
    images = np.random.default_rng(2).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    model = UnitScorer("tiny", 32).eval()
    path = export_scorer(model, tmp_path / "s.onnx", images, kind="trained",
                         fingerprint="abc", metrics={"accuracy": 0.9}, pain_cutoff=3.5)
    loaded = load(path)
    assert loaded.info.kind == "trained" and loaded.info.pain_cutoff == 3.5
    assert loaded.info.extra["data_fingerprint"] == "abc"
    with torch.no_grad():
        want = torch.softmax(model(torch.from_numpy(images)), -1).numpy()
    np.testing.assert_allclose(loaded.run(images)["probs"], want, atol=1e-4)
    shutil.copy(path, tmp_path / "copy.onnx")
    assert load(tmp_path / "copy.onnx").info.model_id == loaded.info.model_id


@pytest.mark.parametrize(("role", "name"), [(SCORER, "scorer.onnx"),
                                            (LOCALIZER, "localizer.onnx")])
def test_io_binding_gives_the_plain_run_outputs(random_models: Path, role: str, name: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    plain = OnnxModel(random_models / name, role, CPU, threads=1)
    bound = OnnxModel(random_models / name, role, CPU, threads=1, bind=True)
    assert isinstance(plain.session, OrtSession) and isinstance(bound.session, OrtSession)
    assert not plain.session.bind and bound.session.bind and bound.session.device == "cpu"
    monkeypatch.setattr(bound.session.session, "run", None)  # the bound model must not take it
    for n in (3, 1):  # a new batch size must not trip over the last call's outputs
        images = np.random.default_rng(n).integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
        want, got = plain.run(images), bound.run(images)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key].dtype == want[key].dtype
            np.testing.assert_array_equal(got[key], want[key])


def test_provider_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    names = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert provider_entries(names) == [
        ("TensorrtExecutionProvider", {
            "trt_fp16_enable": True, "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(tmp_path / "mgs-monitor" / "tensorrt")}),
        ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}),
        ("CPUExecutionProvider", {}),
    ]
    assert provider_entries(["CPUExecutionProvider"]) == [("CPUExecutionProvider", {})]
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert tensorrt_cache() == tmp_path / "home" / ".cache" / "mgs-monitor" / "tensorrt"
    assert not (tmp_path / "mgs-monitor").exists()  # made only when TensorRT is used


def test_both_onnxruntime_builds_installed_is_named_with_the_fix() -> None:
    both = runtime_conflict(lambda name: name in ("onnxruntime", "onnxruntime-gpu"))
    assert "onnxruntime-gpu are both installed" in both and "pip uninstall" in both
    assert runtime_conflict(lambda name: name == "onnxruntime") == ""
    assert runtime_conflict(lambda name: name == "onnxruntime-gpu") == ""
    assert runtime_conflict() == ""  # this environment has the CPU build only
