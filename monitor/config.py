"""The monitor's configuration: a typed model that forbids unknown keys and describes every field.

A YAML file (`--config`) or the command line builds a `MonitorConfig`; `load_config` turns any
mistake into one `ConfigError` line naming the file and the key path.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from monitor.outputs.csvlog import Rotate
from monitor.outputs.db_url import shown_url
from monitor.units import UNITS

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5560"
DEFAULT_COMMANDS = "tcp://127.0.0.1:5561"  # the command socket, beside the default publisher


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
    study: str = Field("", description="Study its mice belong to, kept in the database.")
    room: str = Field("", description="Room it stands in, kept in the database.")

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
        description="onnxruntime providers in order of preference; missing ones are skipped. "
        "TensorrtExecutionProvider is used only when listed here (put it first).",
    )
    threads: int = Field(0, ge=0, description="Intra-op threads; 0 = one per CPU core.")
    runtime: Literal["auto", "onnxruntime", "openvino"] = Field(
        "auto", description="What runs the models: auto takes OpenVINO for int8 files on the "
        "CPU when it is installed (the faster there), onnxruntime otherwise.")


class Faces(Strict):
    """When a face is good enough to score."""

    min_score: float = Field(0.5, ge=0, le=1, description="Localizer score below this: no_face.")
    min_sharpness: float = Field(
        15.0, ge=0, description="Laplacian variance of the face crop below this: low_quality."
    )
    margin: float = Field(0.1, ge=0, le=1, description="Box enlargement before cropping.")


MAX_ALERT_SAMPLES = 1000


class AlertRule(Strict):
    """How one mouse is judged. The pain rule looks at a window of scored samples, never at one
    noisy snapshot; the no-face and camera-down rules keep an unseen mouse from looking fine."""

    threshold: float | None = Field(
        None, ge=0, le=10,
        description="Window mean at or above which the pain alert is raised (a rise over the "
        "mouse's baseline when baseline_samples > 0); default the scorer's pain cut-off from "
        "its metadata, else 4.",
    )
    units: list[str] | None = Field(
        None, min_length=1,
        description="Sum only these action units (names as in monitor.units) instead of the "
        "total; needs its own threshold.",
    )
    window: int = Field(
        3, ge=1, le=MAX_ALERT_SAMPLES,
        description="Rolling window: the mean of the mouse's last n scored samples is judged.",
    )
    min_valid: int = Field(
        2, ge=1,
        description="Scored samples the window needs before the pain alert can be raised "
        "(at most window).",
    )
    clear_below: float | None = Field(
        None, ge=-10, le=10,
        description="The pain alert clears when the window value falls below this; default "
        "threshold - 1, so a mean hovering at the threshold does not flap.",
    )
    baseline_samples: int = Field(
        0, ge=0, le=MAX_ALERT_SAMPLES,
        description="If > 0, judge the rise over the mouse's own baseline (the mean of its "
        "first n scored samples this session); needs its own threshold.",
    )
    no_face_after_s: float | None = Field(
        3600.0, gt=0,
        description="Raise 'no_face' when the mouse's records keep coming but none was scored "
        "for this many seconds (camera-down time not counted); null = off.",
    )
    camera_down_after_s: float | None = Field(
        600.0, gt=0,
        description="Raise 'camera_down' when the mouse's records have said camera_down for "
        "this many seconds; null = off.",
    )

    @field_validator("units")
    @classmethod
    def _known_units(cls, units: list[str] | None) -> list[str] | None:
        unknown = [u for u in units or [] if u not in UNITS]
        if unknown:
            raise ValueError(f"unknown unit {unknown[0]!r}; units are {', '.join(UNITS)}")
        if units is not None and len(set(units)) < len(units):
            raise ValueError("a unit is listed twice")
        return units

    @model_validator(mode="after")
    def _consistent(self) -> AlertRule:
        if self.min_valid > self.window:
            raise ValueError(f"min_valid {self.min_valid} is more than window {self.window}")
        if self.threshold is None:
            if self.units or self.baseline_samples:
                raise ValueError("a units or baseline rule needs its own threshold: the scorer's "
                                 "cut-off is for the absolute total")
            return self
        most = 2 * len(self.units or UNITS)
        if self.threshold > most:
            raise ValueError(f"threshold {self.threshold:g} can never be reached (at most {most})")
        if self.clear_below is not None and self.clear_below > self.threshold:
            raise ValueError(f"clear_below {self.clear_below:g} is above threshold "
                             f"{self.threshold:g}")
        return self


class Alerts(Strict):
    """Alert rules per mouse, and the command run when an alert is raised or cleared."""

    threshold: float | None = Field(
        None, ge=0, le=10,
        description="Shorthand for defaults.threshold (older configs); give one or the other.",
    )
    defaults: AlertRule = Field(
        default_factory=AlertRule, validate_default=True,
        description="The rule of every mouse without an override.",
    )
    overrides: dict[str, AlertRule] = Field(
        default_factory=dict,
        description="Per-mouse changes {mouse id: only the rule keys that differ from "
        "defaults}; a plain number is that mouse's threshold.",
    )
    repeat_every_s: float = Field(
        1800.0, gt=0,
        description="Seconds (session clock) between 'active' reminders of one open alert.",
    )
    on_alert: list[str] | None = Field(
        None, min_length=1,
        description="Command run without a shell on every raised or cleared alert, as a list "
        "[program, arg, ...]; details in the environment (MGS_MOUSE, MGS_RULE, MGS_EVENT, ...).",
    )
    hook_timeout_s: float = Field(
        10.0, gt=0, description="An on_alert command still running after this long is killed."
    )

    @field_validator("on_alert")
    @classmethod
    def _runnable(cls, argv: list[str] | None) -> list[str] | None:
        """A pager that cannot run must stop the monitor at start, not stay silent at 3 a.m."""
        if argv is None:
            return None
        program = argv[0]
        found = shutil.which(program)
        if found is None:
            what = "is not executable" if Path(program).is_file() else "no such program"
            raise ValueError(f"{program}: {what} (the alert hook must be runnable)")
        return argv

    @field_validator("defaults")
    @classmethod
    def _shorthand_threshold(cls, defaults: AlertRule, info: ValidationInfo) -> AlertRule:
        """`alerts: {threshold: 3}` keeps meaning what it meant before rules existed."""
        threshold = info.data.get("threshold")
        if threshold is None:
            return defaults
        if defaults.threshold is not None:
            raise ValueError("give threshold or defaults.threshold, not both")
        try:
            return AlertRule.model_validate(
                defaults.model_dump(exclude_unset=True) | {"threshold": threshold})
        except ValidationError as exc:  # only the checks across keys can fail here
            raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None

    @field_validator("overrides", mode="before")
    @classmethod
    def _over_defaults(cls, overrides: Any, info: ValidationInfo) -> Any:
        """An override holds only what differs: each is validated as the rule it makes."""
        if not isinstance(overrides, dict):
            return overrides
        defaults = info.data.get("defaults")  # absent when invalid: its own error says why
        base = defaults.model_dump() if defaults is not None else {}
        return {mouse: cls._merged(base, rule) for mouse, rule in overrides.items()}

    @staticmethod
    def _merged(base: dict[str, Any], rule: Any) -> Any:
        """Defaults updated by one override; anything else is left for validation to refuse."""
        if isinstance(rule, AlertRule):
            rule = rule.model_dump(exclude_unset=True)
        elif isinstance(rule, int | float) and not isinstance(rule, bool):
            rule = {"threshold": rule}
        return base | rule if isinstance(rule, dict) else rule


class Bus(Strict):
    """Where records are published."""

    endpoint: str = Field(DEFAULT_ENDPOINT, description="ZeroMQ PUB endpoint to bind.")
    enabled: bool = Field(True, description="Publish records on ZeroMQ.")
    secret_key: Path | None = Field(
        None, description="CURVE secret certificate (from `mgs-monitor keys`): encrypts the "
        "stream; needed to bind beyond this machine.")
    insecure: bool = Field(
        False, description="Allow binding beyond this machine without CURVE keys.")
    allowed_clients: Path | None = Field(
        None, description="Folder of subscribers' public keys (NAME.key from `mgs-monitor keys "
        "DIR --name NAME`): only they may subscribe; needs secret_key. Default: anyone who has "
        "the public server key.")
    commands: str | None = Field(
        None, description="ZeroMQ endpoint of the command socket (acknowledgements, snapshots), "
        "served under the same keys and rules as `endpoint`; \"none\": off (so too when "
        f"publishing is). Default: beside the publisher, its port + 1 ({DEFAULT_COMMANDS} "
        "beside the default endpoint), so each monitor of a host has its own.")

    @property
    def command_endpoint(self) -> str:
        """Where the command socket is bound; "" when it is off."""
        if self.commands is None:
            return beside(self.endpoint)
        return "" if self.commands.strip().lower() in ("", "none") else self.commands

    @model_validator(mode="after")
    def _clients_need_keys(self) -> Bus:
        if self.allowed_clients is not None and self.secret_key is None:
            raise ValueError("allowed_clients: clients are known by their CURVE keys, so it "
                             "needs secret_key too")
        return self


def beside(endpoint: str) -> str:
    """The endpoint next to a publisher's: its TCP port + 1, or its name + `-commands`."""
    tcp = re.fullmatch(r"(tcp://.+:)(\d+)", endpoint)
    return f"{tcp[1]}{int(tcp[2]) + 1}" if tcp else f"{endpoint}-commands"


class Logging(Strict):
    """The in-process CSV logger."""

    folder: Path = Field(Path("mgs-records"), description="Folder for the CSV files.")
    rotate: Rotate = Field(
        "daily", description="A new file each day or hour (UTC, by each record's wall_time): "
        "scores-YYYYMMDD.csv, scores-YYYYMMDD-HH.csv, their side files beside them; never: one "
        "scores-<start time>.csv per start. With --out FILE only when set here.")


class Database(Strict):
    """PostgreSQL written by `run` itself, beside the CSV (monitor/outputs/database.py)."""

    url: str | None = Field(None, description="postgresql://user@host:port/database; none: no "
                            "database (a password is better kept in ~/.pgpass or PGPASSWORD).")
    spool: Path = Field(Path("mgs-records/database.spool"),
                        description="Where records wait while the database is down.")

    @field_validator("url")
    @classmethod
    def _postgresql(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"{shown_url(url)} is not a PostgreSQL URL "
                             "(postgresql://user@host:port/database)")
        return url


class Evidence(Strict):
    """Face crops and whole frames kept as JPEGs beside the CSV (monitor/outputs/evidence.py):
    what an alert is about, and the lab's own images to label with mgs-label."""

    enabled: bool = Field(True, description="Keep each scored face crop and some whole frames.")
    folder: Path | None = Field(
        None, description="Where; default: a folder `evidence` beside the CSVs, shared by "
        "every run writing there, so the budget holds across restarts.")
    budget_gb: float = Field(
        5.0, gt=0, description="Disk kept for evidence; the oldest files go first, never one "
        "an alert or a label refers to.")
    frame_every_s: float = Field(
        3600.0, gt=0, description="Seconds between whole frames kept per camera (the first "
        "frame and every no_face alert are kept too).")
    jpeg_quality: int = Field(90, ge=50, le=100, description="JPEG quality of kept images.")


DEFAULT_METRICS = "127.0.0.1:9560"


class Metrics(Strict):
    """Metrics for Prometheus (monitor/outputs/metrics.py), served at /metrics over plain HTTP:
    like the bus, on this machine only unless opted out of knowingly."""

    listen: str = Field(DEFAULT_METRICS, description="HOST:PORT to serve /metrics on.")
    insecure: bool = Field(
        False, description="Allow serving beyond this machine: anyone who can reach the port "
        "reads every mouse id, total and pain state, unencrypted.")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, listen: str) -> str:
        split_listen(listen)
        return listen

    @model_validator(mode="after")
    def _loopback_unless_insecure(self) -> Metrics:
        host, _ = split_listen(self.listen)
        if not (is_loopback_host(host) or self.insecure):
            raise ValueError(f"listen {self.listen} reaches beyond this machine: the metrics "
                             "name every mouse and its pain state in plain HTTP; serve on "
                             "127.0.0.1 and scrape through a tunnel, or, knowingly, set insecure")
        return self


def split_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (an IPv6 host in brackets) as (host, port); ValueError says what is wrong."""
    host, colon, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{listen!r} is not HOST:PORT with a port from 1 to 65535")
    return host, int(port)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def default_publisher(name: str = "mgs-monitor") -> str:
    """One id per host: records from two hosts joined by a proxy stay apart."""
    return f"{name}@{socket.gethostname() or 'localhost'}"


class MonitorConfig(Strict):
    """Everything the live monitor needs."""

    cameras: list[Camera] = Field(description="Cameras to watch.", min_length=1)
    models: Models
    sampling: Sampling = Field(default_factory=Sampling, description="Default sampling.")
    faces: Faces = Field(default_factory=Faces)
    alerts: Alerts = Field(default_factory=Alerts)
    bus: Bus = Field(default_factory=Bus)
    csv: Logging = Field(default_factory=Logging)
    database: Database = Field(default_factory=Database)
    evidence: Evidence = Field(default_factory=Evidence)
    metrics: Metrics | None = Field(
        None, description="Serve metrics for Prometheus (`metrics: {}` on 127.0.0.1:9560); "
        "off when absent.")
    publisher: str = Field(default_factory=lambda: default_publisher(), min_length=1,
                           description="Publisher id written in every record; default: "
                                       "mgs-monitor@<host name>, so two hosts never share one.")
    queue_size: int = Field(8, ge=1, description="Frames buffered per camera before dropping.")

    @model_validator(mode="after")
    def _unique_ids(self) -> MonitorConfig:
        _require_unique([c.name for c in self.cameras], "camera name")
        _require_unique([m.mouse for c in self.cameras for m in c.cubicle_list()], "mouse id")
        return self

    def sampling_for(self, camera: Camera) -> Sampling:
        """The global sampling with the keys this camera sets itself."""
        if camera.sampling is None:
            return self.sampling
        own = camera.sampling.model_dump(exclude_unset=True)
        return Sampling.model_validate(self.sampling.model_dump() | own)


class ConfigError(ValueError):
    """A config a user wrote that cannot be used; the message is one line for the user."""


def load_config(path: Path) -> MonitorConfig:
    """Read and validate a YAML config; relative model/CSV paths are relative to the file."""
    return build_config(read_config_file(path), origin=str(path))


def read_config_file(path: Path) -> dict[str, Any]:
    """The YAML settings as plain data, paths made relative to the file, not yet validated
    (so command-line values can be laid over them before the one validation)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_one_line(str(exc))}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return _relative_to(raw, path.parent)


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
    cameras = raw.get("cameras")
    for camera in cameras if isinstance(cameras, list) else []:
        source = camera.get("source") if isinstance(camera, dict) else None
        if isinstance(source, str) and "://" not in source:
            camera["source"] = str(base / Path(source).expanduser())
    models = raw.get("models")
    if isinstance(models, dict):
        for key in ("scorer", "localizer"):
            if isinstance(models.get(key), str):
                models[key] = str(base / Path(models[key]).expanduser())
    bus = raw.get("bus")
    for key in ("secret_key", "allowed_clients"):
        if isinstance(bus, dict) and isinstance(bus.get(key), str):
            bus[key] = str(base / Path(bus[key]).expanduser())
    for section, key in (("csv", "folder"), ("evidence", "folder"), ("database", "spool")):
        folders = raw.get(section)
        if isinstance(folders, dict) and isinstance(folders.get(key), str):
            folders[key] = str(base / Path(folders[key]).expanduser())
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
