"""Loading the monitor's ONNX models and checking their metadata contract before serving.

Both model files carry `metadata_props` written by mgs-export (export/onnx_export.py). The
monitor refuses a file it does not understand with one `ModelError` line that says why.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from monitor.units import LEVELS, UNITS

FORMAT_VERSION = "1"
SCORER = "scorer"
LOCALIZER = "localizer"
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
ProviderEntry = tuple[str, dict[str, Any]]


class ModelError(ValueError):
    """A model file the monitor cannot run; the message is one line for the user."""


@dataclass
class ModelInfo:
    """What a model file's metadata says about it."""

    path: Path
    role: str
    kind: str
    input_size: int
    model_id: str
    units: tuple[str, ...] = ()
    pain_cutoff: float | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_demo(self) -> bool:
        return self.kind == "demo"


class OnnxModel:
    """An onnxruntime session over a validated model file, warmed up and ready.

    `bind` runs through IO binding; None = when the session's first provider is a GPU one.
    """

    def __init__(self, path: Path, role: str, providers: list[str], threads: int = 0,
                 bind: bool | None = None) -> None:
        self.session = _open_session(path, providers, threads)
        self.info = _read_info(path, role, self.session)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.providers = self.session.get_providers()
        on_gpu = self.providers[0] in GPU_PROVIDERS
        self.bind = on_gpu if bind is None else bind
        self.device = "cuda" if on_gpu else "cpu"
        self.run(np.zeros((1, self.info.input_size, self.info.input_size, 3), np.uint8))

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Run a uint8 [N, S, S, 3] RGB batch; returns the outputs by name."""
        if self.bind:
            return self._run_bound(images)
        outputs = self.session.run(self.output_names, {self.input_name: images})
        return dict(zip(self.output_names, outputs, strict=True))

    def _run_bound(self, images: np.ndarray) -> dict[str, np.ndarray]:
        # Outputs are bound to the device, so they stay there until the one copy at the end and
        # onnxruntime takes them from its device arena instead of allocating host buffers and
        # copying each output back inside every run. The binding is made per call: a binding
        # reused across calls would reuse last call's outputs, whose batch size may differ.
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, images)
        for name in self.output_names:
            binding.bind_output(name, self.device)
        self.session.run_with_iobinding(binding)
        return dict(zip(self.output_names, binding.copy_outputs_to_cpu(), strict=True))


def runtime_conflict(installed: Callable[[str], bool] | None = None) -> str:
    """A line for the user when both onnxruntime builds are installed: they share one module,
    and whichever was installed last decides whether the GPU providers exist."""
    is_installed = installed or _distribution_installed
    if is_installed("onnxruntime") and is_installed("onnxruntime-gpu"):
        return ("onnxruntime and onnxruntime-gpu are both installed and the GPU may go unused: "
                "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu")
    return ""


def _distribution_installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def available_providers(wanted: list[str]) -> list[str]:
    """The wanted providers this onnxruntime build has, in order; the CPU is always last."""
    have = set(ort.get_available_providers())
    chosen = [p for p in wanted if p in have and p != "CPUExecutionProvider"]
    return [*chosen, "CPUExecutionProvider"]


def provider_entries(names: list[str]) -> list[ProviderEntry]:
    """(name, options) for each chosen provider, as InferenceSession takes them."""
    return [(name, _provider_options(name)) for name in names]


def _provider_options(name: str) -> dict[str, Any]:
    if name == "TensorrtExecutionProvider":
        # TensorRT takes minutes to build an engine; the cache makes every later start fast.
        return {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(tensorrt_cache())}
    if name == "CUDAExecutionProvider":
        # EXHAUSTIVE (the default) benchmarks cuDNN's algorithms for every new input shape,
        # seconds each time, and the monitor's batch size varies with the faces found.
        return {"cudnn_conv_algo_search": "HEURISTIC"}
    return {}


def tensorrt_cache() -> Path:
    """Where TensorRT engines are kept between starts: $XDG_CACHE_HOME/mgs-monitor/tensorrt."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mgs-monitor" / "tensorrt"


def _open_session(path: Path, providers: list[str], threads: int) -> ort.InferenceSession:
    if not path.is_file():
        raise ModelError(f"{path}: model file not found (write one with mgs-export, give "
                         "--models DIR, or run scripts/demo for DEMO models)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    entries = provider_entries(available_providers(providers))
    if any(name == "TensorrtExecutionProvider" for name, _ in entries):
        tensorrt_cache().mkdir(parents=True, exist_ok=True)
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=entries)
    except Exception as exc:  # onnxruntime raises several private exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a loadable ONNX model ({first[:200]})") from exc


def _read_info(path: Path, role: str, session: ort.InferenceSession) -> ModelInfo:
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if meta.get("mgs_format") != FORMAT_VERSION:
        raise ModelError(
            f"{path}: metadata mgs_format={meta.get('mgs_format')!r}, this monitor reads "
            f"{FORMAT_VERSION!r}; export the model with mgs-export"
        )
    if meta.get("mgs_role") != role:
        raise ModelError(f"{path}: is a {meta.get('mgs_role')!r} model, expected a {role} model")
    size = _int_field(path, meta, "input_size")
    _check_input(path, session, size)
    info = ModelInfo(
        path=path, role=role, kind=meta.get("kind", ""), input_size=size,
        model_id=meta.get("model_id") or _file_id(path), extra=meta,
    )
    if info.kind not in ("demo", "trained"):
        raise ModelError(f"{path}: metadata kind={info.kind!r} must be 'demo' or 'trained'")
    if role == SCORER:
        _check_scorer(path, meta, session, info)
    else:
        _check_outputs(path, session, {"box": [4], "score": []})
    return info


def _check_scorer(
    path: Path, meta: dict[str, str], session: ort.InferenceSession, info: ModelInfo
) -> None:
    units = tuple(_json_field(path, meta, "units"))
    if units != UNITS:
        raise ModelError(f"{path}: metadata units {list(units)} differ from {list(UNITS)}")
    info.units = units
    if meta.get("pain_cutoff"):
        info.pain_cutoff = float(meta["pain_cutoff"])
    _check_outputs(path, session, {"probs": [len(UNITS), len(LEVELS)]})


def _check_input(path: Path, session: ort.InferenceSession, size: int) -> None:
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].type != "tensor(uint8)":
        raise ModelError(f"{path}: expected one uint8 image input, found {_describe(inputs)}")
    shape = inputs[0].shape
    if len(shape) != 4 or shape[1:] != [size, size, 3]:
        raise ModelError(f"{path}: input shape {shape} is not [N, {size}, {size}, 3]")


def _check_outputs(path: Path, session: ort.InferenceSession, wanted: dict[str, list[int]]) -> None:
    found = {o.name: o.shape[1:] for o in session.get_outputs()}
    for name, tail in wanted.items():
        if found.get(name) != tail:
            raise ModelError(f"{path}: output {name!r} should be [N, {tail}], found {found}")


def _int_field(path: Path, meta: dict[str, str], key: str) -> int:
    try:
        return int(meta[key])
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{path}: metadata {key}={meta.get(key)!r} is not an integer") from exc


def _json_field(path: Path, meta: dict[str, str], key: str) -> Any:
    try:
        return json.loads(meta[key])
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{path}: metadata {key}={meta.get(key)!r} is not valid JSON") from exc


def _describe(inputs: list[Any]) -> str:
    return ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs) or "none"


def _file_id(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]
