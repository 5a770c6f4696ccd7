"""Loading the monitor's ONNX models and checking their metadata contract before serving.

Both model files carry `metadata_props` written by mgs-export (export/onnx_export.py). The
monitor refuses a file it does not understand with one `ModelError` line that says why.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from monitor.scoring.runtimes import (
    OPENVINO_INSTALL,
    RuntimeName,
    Session,
    open_session,
    openvino_installed,
)
from monitor.units import LEVELS, UNITS

FORMAT_VERSION = "1"
SCORER = "scorer"
LOCALIZER = "localizer"


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

    @property
    def figures(self) -> str:
        """What mgs-export said the model is known by ("" for the demo's and older files)."""
        return self.extra.get("figures", "")

    @property
    def below_floor(self) -> str:
        """Why the model is below its floor, when it was exported so with --accept-weak."""
        return self.extra.get("below_floor", "")


class OnnxModel:
    """A validated model file, loaded by its runtime (monitor/scoring/runtimes.py), warmed up and
    ready."""

    def __init__(self, path: Path, role: str, providers: list[str], threads: int = 0,
                 runtime: RuntimeName = "auto", bind: bool | None = None) -> None:
        self.session = _open_session(path, providers, threads, runtime, bind)
        self.info = _read_info(path, role, self.session)
        self.runtime = self.session.label  # what runs it: "onnxruntime CPU", "openvino CPU"
        self.on_gpu = self.session.on_gpu
        self.warning = self.session.warning  # e.g. a GPU asked for that did not load
        self.run(np.zeros((1, self.info.input_size, self.info.input_size, 3), np.uint8))

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Run a uint8 [N, S, S, 3] RGB batch; returns the outputs by name."""
        return self.session.run(images)


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


def _open_session(path: Path, providers: list[str], threads: int, runtime: RuntimeName,
                  bind: bool | None) -> Session:
    if not path.is_file():
        raise ModelError(f"{path}: model file not found (write one with mgs-export, give "
                         "--models DIR, or run scripts/demo for DEMO models)")
    if runtime == "openvino" and not openvino_installed():
        raise ModelError(f"{path}: models.runtime is openvino, but OpenVINO is not installed "
                         f"({OPENVINO_INSTALL})")
    try:
        return open_session(path, runtime, providers, threads, bind)
    except Exception as exc:  # either runtime raises several private exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a loadable ONNX model ({first[:200]})") from exc


def _read_info(path: Path, role: str, session: Session) -> ModelInfo:
    meta = session.metadata()
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


def _check_scorer(path: Path, meta: dict[str, str], session: Session, info: ModelInfo) -> None:
    units = tuple(_json_field(path, meta, "units"))
    if units != UNITS:
        raise ModelError(f"{path}: metadata units {list(units)} differ from {list(UNITS)}")
    info.units = units
    if meta.get("pain_cutoff"):
        info.pain_cutoff = float(meta["pain_cutoff"])
    _check_outputs(path, session, {"probs": [len(UNITS), len(LEVELS)]})


def _check_input(path: Path, session: Session, size: int) -> None:
    inputs = session.inputs()
    if len(inputs) != 1 or inputs[0].dtype != "uint8":
        raise ModelError(f"{path}: expected one uint8 image input, found "
                         f"{', '.join(map(str, inputs)) or 'none'}")
    shape = inputs[0].shape
    if len(shape) != 4 or shape[1:] != (size, size, 3):
        raise ModelError(f"{path}: input shape {_dims(shape)} is not [N, {size}, {size}, 3]")


def _check_outputs(path: Path, session: Session, wanted: dict[str, list[int]]) -> None:
    found = {o.name: list(o.shape[1:]) for o in session.outputs()}
    for name, tail in wanted.items():
        if found.get(name) != tail:
            raise ModelError(f"{path}: output {name!r} should be [N, {tail}], found {found}")


def _dims(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


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


def _file_id(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]
