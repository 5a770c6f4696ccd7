"""The records the monitor publishes and logs: one per mouse per sample, one per camera report.

These are a versioned contract (SCHEMA_VERSION): subscribers and the CSV header depend on the
field names and order below. Add fields at the end and bump the version; never reorder.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from monitor.units import LEVELS, UNITS

SCHEMA_VERSION = 1

# Why a mouse has no score this sample: the monitor says what it could not see, it never guesses.
STATUSES = ("scored", "no_face", "low_quality", "camera_down")

TOPIC_SCORE = b"score"
TOPIC_CAMERA = b"camera"
TOPIC_ALERT = b"alert"


class JsonRecord:
    """Serialisation shared by the record types: plain JSON out, checked JSON in."""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), allow_nan=True).encode()  # type: ignore[call-overload]

    @classmethod
    def from_json(cls: type[R], data: bytes) -> R:
        return cls(**_checked_payload(cls, data))


R = TypeVar("R", bound=JsonRecord)


@dataclass
class ScoreRecord(JsonRecord):
    """One mouse, one sample. Probabilities/levels are empty unless status is `scored`."""

    publisher: str
    seq: int
    wall_time: float
    mono_time: float
    source_time: float
    frame_index: int
    camera: str
    cubicle: int
    mouse: str
    status: str
    face_box: tuple[float, float, float, float] | None = None
    face_score: float = math.nan
    sharpness: float = math.nan
    probs: list[list[float]] | None = None
    levels: list[int] | None = None
    total: int | None = None
    expected_total: float | None = None
    pain: bool | None = None
    alert: str = ""
    model_kind: str = ""
    scorer_id: str = ""
    localizer_id: str = ""
    latency_ms: float = math.nan
    schema: int = SCHEMA_VERSION

    def csv_row(self) -> list[str]:
        box = self.face_box or (math.nan,) * 4
        probs = self.probs or [[math.nan] * len(LEVELS)] * len(UNITS)
        levels: list[int | None] = list(self.levels) if self.levels else [None] * len(UNITS)
        values: list[Any] = [
            self.schema, self.publisher, self.seq, f"{self.wall_time:.3f}",
            f"{self.mono_time:.3f}", f"{self.source_time:.3f}", self.frame_index, self.camera,
            self.cubicle, self.mouse, self.status, *(_num(v, 4) for v in box),
            _num(self.face_score, 3), _num(self.sharpness, 1), *levels, self.total,
            _num(self.expected_total, 3), _flag(self.pain), self.alert,
            *(_num(p, 4) for unit_probs in probs for p in unit_probs),
            self.model_kind, self.scorer_id, self.localizer_id, _num(self.latency_ms, 1),
        ]
        return ["" if v is None else str(v) for v in values]


CSV_COLUMNS: tuple[str, ...] = (
    "schema", "publisher", "seq", "wall_time", "mono_time", "source_time", "frame_index",
    "camera", "cubicle", "mouse", "status", "face_cx", "face_cy", "face_w", "face_h",
    "face_score", "sharpness", *UNITS, "total", "expected_total", "pain", "alert",
    *(f"p_{unit}_{level}" for unit in UNITS for level in LEVELS),
    "model_kind", "scorer_id", "localizer_id", "latency_ms",
)


@dataclass
class CameraReport(JsonRecord):
    """A camera's health, published every few seconds and whenever its state changes."""

    publisher: str
    seq: int
    wall_time: float
    camera: str
    state: str  # connecting, ok, down, ended, stopped
    frames_read: int = 0
    frames_dropped: int = 0
    reconnects: int = 0
    last_frame_time: float | None = None
    fps: float = 0.0
    latency_ms: float = math.nan
    error: str = ""
    schema: int = SCHEMA_VERSION


@dataclass
class SequenceGap:
    """Sequence numbers of one publisher that a subscriber never received."""

    publisher: str
    first_missing: int
    last_missing: int
    wall_time: float = field(default=0.0)


class SequenceTracker:
    """Notices missing sequence numbers per publisher; a publisher restart (seq going back) is
    not a gap."""

    def __init__(self, last: dict[str, int] | None = None) -> None:
        self.last: dict[str, int] = dict(last or {})

    def check(self, publisher: str, seq: int) -> SequenceGap | None:
        last = self.last.get(publisher)
        self.last[publisher] = seq
        if last is None or seq <= last + 1:
            return None
        return SequenceGap(publisher, last + 1, seq - 1, time.time())


class RecordError(ValueError):
    """A message that is not a record this version understands."""


def _checked_payload(cls: type, data: bytes) -> dict[str, Any]:
    """Parse a message as plain data and refuse other schema versions or unknown fields."""
    try:
        payload = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"message is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise RecordError("message is not a JSON object")
    if payload.get("schema") != SCHEMA_VERSION:
        raise RecordError(
            f"record schema {payload.get('schema')!r} is not {SCHEMA_VERSION}; "
            "update mgs-monitor on this side"
        )
    names = {f.name for f in fields(cls)}
    unknown = set(payload) - names
    if unknown:
        raise RecordError(f"unknown record fields: {', '.join(sorted(unknown))}")
    if "face_box" in payload and payload["face_box"] is not None:
        payload["face_box"] = tuple(payload["face_box"])
    return payload


def _num(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}f}"


def _flag(value: bool | None) -> str:
    return "" if value is None else str(int(value))
