"""The runtimes a model file runs on: onnxruntime (always installed: CPU, CUDA, TensorRT) and
OpenVINO (`pip install 'mgs-monitor[openvino]'`: x86 CPUs).

Both read the same ONNX file and answer the same questions (its metadata, inputs and outputs),
so the monitor checks and runs a model the same way whichever runs it. `auto` takes OpenVINO
for int8 files on the CPU when it is installed: there it ran the fused int8 scorer 1.26x faster
than onnxruntime, near the CPU's int8 bound, with unit levels agreeing on 99.7% (the export
gate checks each runtime; bench/monitor_speed.py);
for fp32 files the two ran at the same rate, so onnxruntime, which is always there, runs them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import onnxruntime as ort

RuntimeName = Literal["auto", "onnxruntime", "openvino"]
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
OPENVINO_INSTALL = "pip install 'mgs-monitor[openvino]'"
ProviderEntry = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Port:
    """An input or output as the file declares it: dtype name and shape (None = any size)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    def __str__(self) -> str:
        dims = ", ".join("N" if d is None else str(d) for d in self.shape)
        return f"{self.name} {self.dtype} [{dims}]"


class Session(Protocol):
    """One loaded model file, ready to run."""

    label: str  # what runs it, for the start line and the dashboard: "onnxruntime CPU"
    on_gpu: bool
    warning: str  # what the user should know about how it runs, or ""

    def metadata(self) -> dict[str, str]: ...
    def inputs(self) -> list[Port]: ...
    def outputs(self) -> list[Port]: ...
    def run(self, images: np.ndarray) -> dict[str, np.ndarray]: ...


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def installed_runtimes() -> list[RuntimeName]:
    found: list[RuntimeName] = ["onnxruntime"]
    if openvino_installed():
        found.append("openvino")
    return found


def open_session(path: Path, runtime: RuntimeName, providers: list[str], threads: int,
                 bind: bool | None = None) -> Session:
    """The file loaded by the runtime asked for, or by the one `auto` picks for it here.
    `bind` (onnxruntime only): run through IO binding; None = on a GPU provider."""
    if runtime == "openvino":
        return OpenVinoSession(_read_openvino(path), threads)
    if runtime == "auto":
        model = _auto(path, providers)
        if model is not None:
            return OpenVinoSession(model, threads)
    return OrtSession(path, providers, threads, bind)


def _auto(path: Path, providers: list[str]) -> Any | None:
    """The file as OpenVINO read it when OpenVINO should run it here (an int8 file on the
    CPU), else None. Read once: the session compiles this same model."""
    on_gpu = any(p in GPU_PROVIDERS for p in available_providers(providers))
    if on_gpu or not openvino_installed():
        return None
    try:
        model = _read_openvino(path)
    except Exception:  # a file OpenVINO cannot read: onnxruntime may, and says why if not
        return None
    return model if _framework_info(model).get("precision") == "int8" else None


def _read_openvino(path: Path) -> Any:
    import openvino as ov  # optional: imported only when OpenVINO may run the file

    return ov.Core().read_model(str(path))


# onnxruntime --------------------------------------------------------------------------------
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


def preload_gpu_libraries(providers: list[str]) -> None:
    """Load CUDA and cuDNN from the pip packages `onnxruntime-gpu[cuda,cudnn]` installs, so the
    CUDA provider needs nothing installed system-wide (nothing happens without them)."""
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime 1.21 and later
    if preload is not None and any(p in GPU_PROVIDERS for p in available_providers(providers)):
        with contextlib.suppress(OSError, RuntimeError):  # then the CPU runs, with a warning
            preload()


def gpu_fallback(wanted: list[str], available: list[str], running: list[str]) -> str:
    """A warning when this onnxruntime has a GPU provider that was asked for, yet the session
    runs on the CPU (CUDA or cuDNN did not load); "" otherwise."""
    asked = [p for p in wanted if p in GPU_PROVIDERS and p in available]
    if not asked or running[0] in GPU_PROVIDERS:
        return ""
    return (f"GPU asked for ({asked[0].replace('ExecutionProvider', '')}), the CPU is running: "
            "CUDA or cuDNN did not load; pip install 'onnxruntime-gpu[cuda,cudnn]' brings them")


class OrtSession:
    """An onnxruntime session; on a GPU provider it runs through IO binding (`bind`)."""

    def __init__(self, path: Path, providers: list[str], threads: int,
                 bind: bool | None = None) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        preload_gpu_libraries(providers)
        entries = provider_entries(available_providers(providers))
        if any(name == "TensorrtExecutionProvider" for name, _ in entries):
            tensorrt_cache().mkdir(parents=True, exist_ok=True)
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=entries)
        self.providers = self.session.get_providers()
        self.on_gpu = self.providers[0] in GPU_PROVIDERS
        self.bind = self.on_gpu if bind is None else bind  # IO binding: by default on a GPU
        self.device = "cuda" if self.on_gpu else "cpu"
        self.label = f"onnxruntime {self.providers[0].replace('ExecutionProvider', '')}"
        self.warning = gpu_fallback(providers, ort.get_available_providers(), self.providers)
        self._input = self.session.get_inputs()[0].name
        self._outputs = [o.name for o in self.session.get_outputs()]

    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def inputs(self) -> list[Port]:
        return [_ort_port(i) for i in self.session.get_inputs()]

    def outputs(self) -> list[Port]:
        return [_ort_port(o) for o in self.session.get_outputs()]

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Run a uint8 [N, S, S, 3] RGB batch; returns the outputs by name."""
        if self.bind:
            return self._run_bound(images)
        outputs = self.session.run(self._outputs, {self._input: images})
        return dict(zip(self._outputs, outputs, strict=True))

    def _run_bound(self, images: np.ndarray) -> dict[str, np.ndarray]:
        # Outputs are bound to the device, so they stay there until the one copy at the end and
        # onnxruntime takes them from its device arena instead of allocating host buffers and
        # copying each output back inside every run. The binding is made per call: a binding
        # reused across calls would reuse last call's outputs, whose batch size may differ.
        binding = self.session.io_binding()
        binding.bind_cpu_input(self._input, images)
        for name in self._outputs:
            binding.bind_output(name, self.device)
        self.session.run_with_iobinding(binding)
        return dict(zip(self._outputs, binding.copy_outputs_to_cpu(), strict=True))


def _ort_port(node: Any) -> Port:
    dtype = node.type.removeprefix("tensor(").removesuffix(")")
    dtype = {"float": "float32", "double": "float64"}.get(dtype, dtype)
    return Port(node.name, dtype, tuple(d if isinstance(d, int) else None for d in node.shape))


# OpenVINO -----------------------------------------------------------------------------------
class OpenVinoSession:
    """The ONNX file read and compiled by OpenVINO for the CPU, tuned for one batch at a time
    (the LATENCY hint: every core on the one request the pipeline has in flight). Precision
    stays f32 where the file is f32: OpenVINO would otherwise run bf16 on CPUs that have it."""

    on_gpu = False

    def __init__(self, model: Any, threads: int) -> None:
        import openvino as ov

        self.model = model  # as read from the ONNX file (`_read_openvino`)
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY",
                                  "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = ov.Core().compile_model(self.model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.label = "openvino CPU"
        self.warning = ""
        self._outputs = [o.get_any_name() for o in self.model.outputs]

    def metadata(self) -> dict[str, str]:
        return _framework_info(self.model)

    def inputs(self) -> list[Port]:
        return [_ov_port(p) for p in self.model.inputs]

    def outputs(self) -> list[Port]:
        return [_ov_port(p) for p in self.model.outputs]

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        results = self.request.infer({0: images})
        # copies: the request's buffers are reused by the next batch
        return {name: np.array(results[k]) for name, k in zip(
            self._outputs, self.compiled.outputs, strict=True)}


def _framework_info(model: Any) -> dict[str, str]:
    """ONNX metadata_props, which OpenVINO keeps under rt_info["framework"]."""
    info = model.get_rt_info()
    if "framework" not in info:
        return {}
    found = info["framework"]  # an OVAny, or already a dict, depending on the model
    keys = found.astype(dict) if hasattr(found, "astype") else found
    return {key: model.get_rt_info(["framework", key]).astype(str) for key in keys}


def _ov_port(port: Any) -> Port:
    shape = port.get_partial_shape()
    dims = tuple(d.get_length() if d.is_static else None for d in shape)
    return Port(port.get_any_name(), port.get_element_type().to_dtype().name, dims)
