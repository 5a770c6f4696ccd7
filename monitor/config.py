"""The monitor's configuration: a typed model that forbids unknown keys and describes every field.

A YAML file (`--config`) or the command line builds a `MonitorConfig`; `load_config` turns any
mistake into one `ConfigError` line naming the file and the key path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5560"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class Cubicle(Strict):
    """One cubicle of the array a camera sees, holding one mouse."""

    mouse: str = Field(description="Mouse id written in every record of this cubicle.")
    roi: tuple[Fraction, Fraction, Fraction, Fraction] = Field(
        description="Region [x, y, w, h] as fractions of the frame (0-1), top-left origin."
    )

    @field_validator("roi")
    @classmethod
    def _inside_frame(cls, roi: tuple[float, float, float, float]
                      ) -> tuple[float, float, float, float]:
        x, y, w, h = roi
        if w <= 0 or h <= 0 or x + w > 1.0001 or y + h > 1.0001:
            raise ValueError(f"{list(roi)} must have w, h > 0 and lie inside the frame")
        return roi


class Sampling(Strict):
    """When a camera is sampled."""

    every_s: float = Field(120.0, gt=0, description="Seconds between samples (periodic mode).")
    burst: int = Field(5, ge=1, le=60, description="Frames grabbed per sample; the sharpest wins.")
    continuous: bool = Field(False, description="Score every frame instead of sampling.")


class Camera(Strict):
    """One camera looking at one cubicle array."""

    name: str = Field(description="Camera id used in records and on the dashboard.")
    source: int | str = Field(
        description="Device index, RTSP/HTTP URL, video file, image folder or glob pattern."
    )
    cubicles: list[Cubicle] | None = Field(
        None, description="Cubicle regions; default four equal side-by-side regions."
    )
    sampling: Sampling | None = Field(None, description="Overrides the global sampling.")

    @field_validator("cubicles")
    @classmethod
    def _no_overlap(cls, cubicles: list[Cubicle] | None) -> list[Cubicle] | None:
        for i, a in enumerate(cubicles or []):
            for b in (cubicles or [])[i + 1:]:
                if _overlap(a.roi, b.roi) > 0.01 * min(a.roi[2] * a.roi[3], b.roi[2] * b.roi[3]):
                    raise ValueError(f"regions of {a.mouse!r} and {b.mouse!r} overlap")
        return cubicles

    def cubicle_list(self, count: int = 4) -> list[Cubicle]:
        """The configured cubicles, or `count` equal side-by-side ones named `<camera>-c<n>`."""
        if self.cubicles is not None:
            return self.cubicles
        width = 1.0 / count
        return [
            Cubicle(mouse=f"{self.name}-c{i + 1}", roi=(i * width, 0.0, width, 1.0))
            for i in range(count)
        ]


class Models(Strict):
    """The ONNX model files the monitor runs."""

    scorer: Path = Field(description="Five-unit scorer ONNX file (mgs-export).")
    localizer: Path = Field(description="Face localizer ONNX file (mgs-export).")
    providers: list[str] = Field(
        ["CUDAExecutionProvider", "CPUExecutionProvider"],
        description="onnxruntime providers in order of preference; missing ones are skipped.",
    )
    threads: int = Field(0, ge=0, description="Intra-op threads; 0 = one per CPU core.")


class Faces(Strict):
    """When a face is good enough to score."""

    min_score: float = Field(0.5, ge=0, le=1, description="Localizer score below this: no_face.")
    min_sharpness: float = Field(
        15.0, ge=0, description="Laplacian variance of the face crop below this: low_quality."
    )
    margin: float = Field(0.1, ge=0, le=1, description="Box enlargement before cropping.")


class Alerts(Strict):
    """Pain flag and alert thresholds on the total MGS (0-10)."""

    threshold: float | None = Field(
        None, ge=0, le=10,
        description="Total at or above which a mouse is flagged; default from the scorer's "
        "metadata (its pain cut-off), else 4.",
    )
    overrides: dict[str, float] = Field(
        default_factory=dict, description="Per-mouse thresholds: {mouse id: total}."
    )


class Bus(Strict):
    """Where records are published."""

    endpoint: str = Field(DEFAULT_ENDPOINT, description="ZeroMQ PUB endpoint to bind.")
    enabled: bool = Field(True, description="Publish records on ZeroMQ.")


class Logging(Strict):
    """The in-process CSV logger."""

    folder: Path = Field(Path("mgs-records"), description="Folder for the CSV files.")


class MonitorConfig(Strict):
    """Everything the live monitor needs."""

    cameras: list[Camera] = Field(description="Cameras to watch.", min_length=1)
    models: Models
    sampling: Sampling = Field(default_factory=Sampling, description="Default sampling.")
    faces: Faces = Field(default_factory=Faces)
    alerts: Alerts = Field(default_factory=Alerts)
    bus: Bus = Field(default_factory=Bus)
    csv: Logging = Field(default_factory=Logging)
    publisher: str = Field("mgs-monitor", description="Publisher id written in every record.")
    queue_size: int = Field(8, ge=1, description="Frames buffered per camera before dropping.")

    @model_validator(mode="after")
    def _unique_ids(self) -> MonitorConfig:
        _require_unique([c.name for c in self.cameras], "camera name")
        _require_unique([m.mouse for c in self.cameras for m in c.cubicle_list()], "mouse id")
        return self

    def sampling_for(self, camera: Camera) -> Sampling:
        return camera.sampling or self.sampling


class ConfigError(ValueError):
    """A config a user wrote that cannot be used; the message is one line for the user."""


def load_config(path: Path) -> MonitorConfig:
    """Read and validate a YAML config; relative model/CSV paths are relative to the file."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_one_line(str(exc))}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return build_config(_relative_to(raw, path.parent), origin=str(path))


def build_config(raw: dict[str, Any], origin: str = "config") -> MonitorConfig:
    try:
        return MonitorConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {describe_errors(exc)}") from exc


def describe_errors(exc: ValidationError) -> str:
    """All validation errors on one line, each as `key.path: message`."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        message = message.removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def _relative_to(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    for camera in raw.get("cameras") or []:
        source = camera.get("source") if isinstance(camera, dict) else None
        if isinstance(source, str) and "://" not in source:
            camera["source"] = str(base / Path(source).expanduser())
    models = raw.get("models")
    if isinstance(models, dict):
        for key in ("scorer", "localizer"):
            if isinstance(models.get(key), str):
                models[key] = str(base / Path(models[key]).expanduser())
    csv = raw.get("csv")
    if isinstance(csv, dict) and isinstance(csv.get("folder"), str):
        csv["folder"] = str(base / Path(csv["folder"]).expanduser())
    return raw


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Area shared by two [x, y, w, h] regions."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0.0, width) * max(0.0, height)


def _require_unique(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} {value!r}")
        seen.add(value)


def _one_line(text: str) -> str:
    return " ".join(text.split())
