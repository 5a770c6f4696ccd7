"""Every message that crosses a thread or a process, defined once: typed, versioned, checked.

Score records, camera reports, alert events, status reports, acknowledgements and the crops
behind alerts are pydantic models. The pipeline builds them, ZeroMQ carries them as JSON
(`encode` / `decode`), and every subscriber parses them with the same definitions: a message of
another version, with an unknown field or with a value of the wrong type is refused with the
reason, never guessed at. Each type carries its own version (`schema` on the wire); add fields
at the end and raise it, never reorder.

The CSV files are made from the same definitions: one column spec per file gives its header and
every row (`csv_header`, `csv_row`), and `side_file` names every file kept beside a score CSV.
The database tables (monitor/outputs/database.py) are made from the same column specs: each
column names its SQL type, and a row read back is written as the CSV's (`csv_cells`).
"""

from __future__ import annotations

import base64
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from monitor.units import LEVELS, UNITS

# Why a mouse has no score this sample: the monitor says what it could not see, it never guesses.
STATUSES = ("scored", "no_face", "low_quality", "camera_down")
Status = Literal["scored", "no_face", "low_quality", "camera_down"]
CameraState = Literal["connecting", "ok", "down", "ended", "stopped"]
AlertRuleName = Literal["pain", "no_face", "camera_down", "hook_failing"]
AlertStep = Literal["raised", "active", "cleared"]
ModelKind = Literal["demo", "trained", ""]

Level = Annotated[int, Field(ge=0, le=2)]
UnitLevels = Annotated[tuple[Level, ...], Field(min_length=len(UNITS), max_length=len(UNITS))]
UnitProbs = Annotated[tuple[tuple[float, float, float], ...],
                      Field(min_length=len(UNITS), max_length=len(UNITS))]
Box = tuple[float, float, float, float]


def _known(value: object) -> object:
    """NaN and infinities become None: JSON has no such numbers, so unknown is null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


# A number the monitor may not know (no face, no frame yet): null on the wire, blank in CSV.
Unknown = Annotated[float | None, BeforeValidator(_known)]

TOPIC_SCORE = b"score"
TOPIC_CAMERA = b"camera"
TOPIC_ALERT = b"alert"
TOPIC_STATUS = b"status"
TOPIC_ACK = b"ack"
TOPIC_CROP = b"crop"


class MessageError(ValueError):
    """A message that is not one this version understands."""


class Message(BaseModel):
    """A frozen value with a wire form: standard JSON (no NaN or Infinity, which other
    languages' parsers refuse; unknown numbers are null), parsed strictly."""

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="null",
                              serialize_by_alias=True, validate_by_name=True)
    TOPIC: ClassVar[bytes]
    KIND: ClassVar[str]

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes) -> Self:
        try:
            return cls.model_validate_json(data, strict=True)
        except ValidationError as exc:
            raise MessageError(_describe(cls, exc)) from None


class ScoreRecord(Message):
    """One mouse, one sample. Probabilities and levels are empty unless status is `scored`."""

    TOPIC: ClassVar[bytes] = TOPIC_SCORE
    KIND: ClassVar[str] = "score record"

    version: Literal[4] = Field(4, alias="schema")
    publisher: str
    seq: int
    wall_time: float
    mono_time: float
    source_time: float
    frame_index: int
    camera: str
    cubicle: int
    mouse: str
    status: Status
    face_box: Box | None = None
    face_score: Unknown = None  # None without a face box (camera_down)
    sharpness: Unknown = None  # None unless a face was cropped
    probs: UnitProbs | None = None
    levels: UnitLevels | None = None
    total: int | None = None
    expected_total: float | None = None
    pain: bool | None = None
    alert: str = ""
    model_kind: ModelKind = ""
    scorer_id: str = ""
    localizer_id: str = ""
    latency_ms: Unknown = None
    instance: str = ""  # one run of the monitor: its sequence numbers start with it (schema 2)
    crop: str = ""  # the face crop kept as evidence, relative to the CSV's folder (schema 3)
    # Schema 4: unknown numbers are null on the wire instead of NaN; the CSV row is unchanged.


def new_instance() -> str:
    """An id for one run of a monitor, different on every start."""
    return uuid.uuid4().hex[:8]


class CameraReport(Message):
    """A camera's health, published every few seconds and whenever its state changes.
    `frames_dropped` counts what the camera's reader itself dropped; the pipeline's queue drops
    are in the status report. `position`/`total_frames` give the progress of recorded media."""

    TOPIC: ClassVar[bytes] = TOPIC_CAMERA
    KIND: ClassVar[str] = "camera report"

    version: Literal[3] = Field(3, alias="schema")  # 3: latency_ms null, not NaN, before a record
    publisher: str
    seq: int
    wall_time: float
    camera: str
    state: CameraState
    frames_read: int = 0
    frames_dropped: int = 0
    reconnects: int = 0
    last_frame_time: float | None = None
    fps: float = 0.0
    latency_ms: Unknown = None  # None until the camera's first record
    error: str = ""
    position: int = 0
    total_frames: int = 0


class AlertEvent(Message):
    """One step in an alert's life: raised, `active` reminders, cleared."""

    TOPIC: ClassVar[bytes] = TOPIC_ALERT
    KIND: ClassVar[str] = "alert event"

    version: Literal[4] = Field(4, alias="schema")  # 3: value null, not NaN, when unknown;
    # 4: publisher
    wall_time: float
    time: float  # session clock: the record's source_time
    mouse: str  # `*` for hook_failing: every mouse's pages are lost
    camera: str
    rule: AlertRuleName
    event: AlertStep
    value: Unknown  # pain: window value (None in a reminder while too few samples are scored);
    # no_face, camera_down: seconds
    threshold: float
    since: float  # session time the alert was raised
    peak: float  # highest value while active
    detail: str
    # The evidence files behind it, relative to the CSV's folder: the face crops of the samples
    # a pain alert was raised on, the frame kept when no_face was raised (schema 2).
    evidence: tuple[str, ...] = ()
    publisher: str = ""  # the monitor that raised it, which alone can acknowledge it (schema 4)


def alert_key(event: AlertEvent | Acknowledgement | AlertCrop) -> str:
    """One alert's identity across its raised, active and cleared events, its crops and its
    acknowledgement: `<publisher>/<mouse>/<rule>/<since>`, since (the session time it was
    raised) with six decimals. A name to match, not to parse: ids may hold `/` themselves."""
    return f"{event.publisher}/{event.mouse}/{event.rule}/{event.since:.6f}"


class Acknowledgement(Message):
    """A person has seen an alert ("seen, treated"): published by the monitor that raised it,
    once the marker is written. The alert stays active; its `active` reminders stop."""

    TOPIC: ClassVar[bytes] = TOPIC_ACK
    KIND: ClassVar[str] = "acknowledgement"

    version: Literal[1] = Field(1, alias="schema")
    publisher: str
    wall_time: float
    time: float  # session clock, as the alert's events
    mouse: str
    camera: str
    rule: AlertRuleName
    since: float  # which alert: the session time it was raised
    who: str
    note: str
    alert: str  # alert_key of the alert


MAX_CROP_JPEG = 400_000  # base64 characters: a crop at the scorer's input size is ~10 kB


class AlertCrop(Message):
    """One face crop a raised alert names (`AlertEvent.evidence`), its JPEG bytes carried as
    base64 text, so a subscriber on another host sees the face without the monitor's disk."""

    TOPIC: ClassVar[bytes] = TOPIC_CROP
    KIND: ClassVar[str] = "alert crop"

    version: Literal[1] = Field(1, alias="schema")
    publisher: str
    alert: str  # alert_key of the alert
    mouse: str
    rule: AlertRuleName
    since: float
    name: str  # the evidence path, as the alert names it
    jpeg: Annotated[str, Field(max_length=MAX_CROP_JPEG)]  # base64 of the JPEG file

    def jpeg_bytes(self) -> bytes:
        return base64.b64decode(self.jpeg)


class HookCounts(BaseModel):
    """Outcomes of the alert hook's runs so far; dropped: events never run (queue full, closed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ok: int = 0
    failed: int = 0
    timed_out: int = 0
    dropped: int = 0
    in_a_row: int = 0  # runs failed or timed out since the last one that worked
    last_error: str = ""


class StatusReport(Message):
    """How the monitor itself is doing, published every few seconds and with every notice.

    A dashboard is drawn from these alone (with the records): what runs, what was lost and why.
    `notice` is the latest thing a person should read (a refused reload, a full disk, a failing
    hook); it stays in every later report so a dashboard that attaches late sees it too."""

    TOPIC: ClassVar[bytes] = TOPIC_STATUS
    KIND: ClassVar[str] = "status report"

    version: Literal[7] = Field(7, alias="schema")  # 4: queue_depth, 5: database, 6: commands,
    # 7: instance and last_seq
    publisher: str
    seq: int
    wall_time: float
    title: str
    model_kind: ModelKind
    alert_threshold: float
    records: int
    csv_path: str = ""
    csv_backlog: int = 0
    csv_dropped: int = 0
    csv_error: str = ""
    queue_dropped: dict[str, int] = Field(default_factory=dict)
    hooks: HookCounts = Field(default_factory=HookCounts)
    notice: str = ""
    notice_time: float | None = None
    evidence_folder: str = ""  # "" when no evidence is kept (schema 2)
    evidence_files: int = 0
    evidence_bytes: int = 0
    evidence_dropped: int = 0  # not kept: the writer's queue was full or the disk refused
    evidence_error: str = ""
    # Schema 3: the models' figures as mgs-export wrote them, and why one is below its floor
    # ("" when none is; shown in red).
    model_figures: str = ""
    model_below_floor: str = ""
    # Schema 4: frames waiting to be scored per camera when the report was made (the pipeline
    # takes them all at once, so anything above 0 means scoring lags the cameras).
    queue_depth: dict[str, int] = Field(default_factory=dict)
    # Schema 5: the database `run` writes to (its URL, password hidden; "" for none), the rows
    # spooled while it is away, and why it is not written now ("" while it is).
    database: str = ""
    database_spooled: int = 0
    database_error: str = ""
    # Schema 6: the command endpoint the monitor serves (acknowledgements, snapshots); "" off.
    commands: str = ""
    # Schema 7: this run (its records' `instance`) and the seq of the last score record it
    # published (0 before the first). Published after those records on the same socket, so a
    # subscriber that has this report and not the records lost them, the last ones of a run
    # included, which no later record would reveal.
    instance: str = ""
    last_seq: int = 0


MESSAGE_TYPES: dict[bytes, type[Message]] = {
    kind.TOPIC: kind for kind in (ScoreRecord, CameraReport, AlertEvent, StatusReport,
                                  Acknowledgement, AlertCrop)
}


def encode(message: Message) -> list[bytes]:
    """The two ZeroMQ frames of a message: [topic, JSON]."""
    return [message.TOPIC, message.to_json()]


def decode(frames: Sequence[bytes]) -> Message:
    """A message from its ZeroMQ frames; MessageError says what is wrong with it."""
    if len(frames) != 2:
        raise MessageError(f"expected 2 message frames, got {len(frames)}")
    topic, payload = frames
    kind = MESSAGE_TYPES.get(topic)
    if kind is None:
        raise MessageError(f"unknown topic {topic!r}")
    return kind.from_json(payload)


def _describe(kind: type[Message], exc: ValidationError) -> str:
    """One line: the version mismatch when there is one, else every field that is wrong."""
    errors = exc.errors()
    for error in errors:
        if error["type"] == "json_invalid":
            return f"{kind.KIND} is not JSON: {error['msg']}"
        if error["loc"] == ("schema",):
            wanted = kind.model_fields["version"].default
            return (f"{kind.KIND} schema {error.get('input')!r} is not {wanted}; "
                    "update mgs-monitor on the older side")
    return f"{kind.KIND}: " + "; ".join(
        f"{'.'.join(map(str, e['loc'])) or '(top level)'}: "
        f"{'unknown field' if e['type'] == 'extra_forbidden' else e['msg']}" for e in errors)


# CSV files ----------------------------------------------------------------------------------
SqlType = Literal["text", "bigint", "double precision", "boolean"]
TEXT: SqlType = "text"
INT: SqlType = "bigint"
REAL: SqlType = "double precision"
BOOL: SqlType = "boolean"


@dataclass(frozen=True)
class Column:
    """One CSV column: its name, how its cell is read off an item, and its type in a database
    table. Floats are written with `digits` decimals (a table keeps them whole); None and NaN
    are written as empty cells, booleans as 0/1."""

    name: str
    get: Callable[[Any], object]
    digits: int = 3
    sql: SqlType = REAL


def csv_header(columns: Sequence[Column]) -> tuple[str, ...]:
    return tuple(column.name for column in columns)


def csv_row(columns: Sequence[Column], item: object) -> list[str]:
    return [_cell(column.get(item), column.digits) for column in columns]


def column_values(columns: Sequence[Column], item: object) -> tuple[object, ...]:
    """An item's values for a table row: as the CSV's cells, without rounding or text."""
    return tuple(_value(column.get(item)) for column in columns)


def csv_cells(columns: Sequence[Column], values: Sequence[object]) -> list[str]:
    """A table row written as the CSV row of the same item."""
    return [_cell(value, column.digits) for column, value in zip(columns, values, strict=True)]


def _value(value: object) -> object:
    return None if isinstance(value, float) and math.isnan(value) else value


def _cell(value: object, digits: int) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _attr(name: str, digits: int = 3, sql: SqlType = REAL) -> Column:
    return Column(name, lambda item: getattr(item, name), digits, sql)


def _attrs(sql: SqlType, *names: str) -> tuple[Column, ...]:
    return tuple(_attr(name, sql=sql) for name in names)


def _box(i: int) -> Callable[[ScoreRecord], float | None]:
    return lambda r: r.face_box[i] if r.face_box else None


def _level(i: int) -> Callable[[ScoreRecord], int | None]:
    return lambda r: r.levels[i] if r.levels else None


def _prob(i: int, j: int) -> Callable[[ScoreRecord], float | None]:
    return lambda r: r.probs[i][j] if r.probs else None


# The score CSV: stable header; new columns only ever at the end, with a new record schema.
SCORE_COLUMNS: tuple[Column, ...] = (
    Column("schema", lambda r: r.version, sql=INT),
    _attr("publisher", sql=TEXT),
    _attr("seq", sql=INT),
    *_attrs(REAL, "wall_time", "mono_time", "source_time"),
    _attr("frame_index", sql=INT),
    _attr("camera", sql=TEXT),
    _attr("cubicle", sql=INT),
    *_attrs(TEXT, "mouse", "status"),
    *(Column(name, _box(i), 4) for i, name in enumerate(("face_cx", "face_cy", "face_w",
                                                          "face_h"))),
    _attr("face_score"),
    _attr("sharpness", 1),
    *(Column(unit, _level(i), sql=INT) for i, unit in enumerate(UNITS)),
    _attr("total", sql=INT),
    _attr("expected_total"),
    _attr("pain", sql=BOOL),
    _attr("alert", sql=TEXT),
    *(Column(f"p_{unit}_{level}", _prob(i, j), 4)
      for i, unit in enumerate(UNITS) for j, level in enumerate(LEVELS)),
    *_attrs(TEXT, "model_kind", "scorer_id", "localizer_id"),
    _attr("latency_ms", 1),
    *_attrs(TEXT, "instance", "crop"),
)
CSV_COLUMNS = csv_header(SCORE_COLUMNS)
# Headers of every score schema still read (by `report`); only the newest is written.
# Schema 4 changed the wire only (null for NaN): its rows are laid out as schema 3's, so a
# file of schema 3 rows takes schema 4 rows.
SCORE_HEADERS: dict[int, tuple[str, ...]] = {1: CSV_COLUMNS[:-2], 2: CSV_COLUMNS[:-1],
                                              3: CSV_COLUMNS, 4: CSV_COLUMNS}

# `<csv>.alerts.csv`: the first seven columns are a contract with readers.
ALERT_COLUMNS: tuple[Column, ...] = (
    _attr("wall_time"),
    *_attrs(TEXT, "mouse", "rule", "event"),
    *_attrs(REAL, "value", "threshold"),
    *_attrs(TEXT, "detail", "camera"),
    *_attrs(REAL, "time", "since", "peak"),
    Column("evidence", lambda event: ";".join(event.evidence), sql=TEXT),  # `;` between paths
)


@dataclass(frozen=True)
class SequenceGap:
    """Sequence numbers of one run of a publisher that a subscriber never received."""

    publisher: str
    first_missing: int
    last_missing: int
    wall_time: float
    instance: str = ""


GAP_COLUMNS: tuple[Column, ...] = (
    _attr("publisher", sql=TEXT), *_attrs(INT, "first_missing", "last_missing"),
    _attr("wall_time"), _attr("instance", sql=TEXT))


MARKER_KINDS = ("note", "onset", "injection", "surgery", "treatment", "acknowledged")
ONSET_KINDS = ("onset", "injection", "surgery")  # what `mgs-eval --alerts` takes as pain onset


@dataclass(frozen=True)
class Marker:
    """An event a person marked for a mouse ("NTG injected"); mouse `*` is every mouse. The
    kind says what it was, so an onset can be told from a note."""

    wall_time: float
    mouse: str
    text: str
    kind: str = "note"


MARKER_COLUMNS: tuple[Column, ...] = (_attr("wall_time"), *_attrs(TEXT, "mouse", "text", "kind"))
MARKER_HEADERS = (csv_header(MARKER_COLUMNS), csv_header(MARKER_COLUMNS)[:3])  # newest first

@dataclass(frozen=True)
class CameraTag:
    """Where a camera's mice belong, from the monitor's config: kept by camera in a database
    (a camera's study changes rarely; its records say only the camera)."""

    publisher: str
    camera: str
    study: str = ""
    room: str = ""


CAMERA_COLUMNS: tuple[Column, ...] = _attrs(TEXT, "publisher", "camera", "study", "room")

SideKind = Literal["alerts", "gaps", "markers"]
SIDE_KINDS: tuple[SideKind, ...] = ("alerts", "gaps", "markers")


def side_file(scores_csv: Path, kind: SideKind) -> Path:
    """The file of `kind` kept beside a score CSV: `<name>.alerts.csv`, `.gaps.csv`,
    `.markers.csv`."""
    return scores_csv.with_suffix(f".{kind}.csv")


def is_side_file(path: Path) -> bool:
    return path.name.endswith(tuple(f".{kind}.csv" for kind in SIDE_KINDS))


Run = tuple[str, str]  # (publisher, instance): one run of one monitor


class SequenceTracker:
    """Notices missing sequence numbers per run of each publisher. A restart is a new run, not
    a gap; so are two monitors sharing a publisher id, which would otherwise look like one
    sequence jumping back and forth."""

    def __init__(self, last: dict[Run, int] | None = None) -> None:
        self.last: dict[Run, int] = dict(last or {})

    def check(self, record: ScoreRecord) -> SequenceGap | None:
        run = (record.publisher, record.instance)
        last = self.last.get(run)
        self.last[run] = record.seq
        if last is None or record.seq <= last + 1:
            return None
        return SequenceGap(record.publisher, last + 1, record.seq - 1, time.time(),
                           record.instance)

    def check_report(self, report: StatusReport) -> SequenceGap | None:
        """The records a status report says were published and never arrived (before a report,
        which follows them, the records of its run had all been sent). A run first heard of
        by its report starts there: what it published earlier was before this subscriber."""
        if not report.instance or report.last_seq == 0:  # an older monitor, or no record yet
            return None
        run = (report.publisher, report.instance)
        last = self.last.get(run)
        if last is not None and report.last_seq <= last:
            return None
        self.last[run] = report.last_seq
        if last is None:
            return None
        return SequenceGap(report.publisher, last + 1, report.last_seq, time.time(),
                           report.instance)


class MouseOrigins:
    """Notices one mouse id coming from two monitors, which a subscriber would otherwise merge
    into one mouse: two publishers, or two runs of one publisher id that both keep sending (a
    run replaced by a newer one is a restart). Each pair of monitors is named once."""

    def __init__(self) -> None:
        self._publisher: dict[str, Run] = {}  # mouse -> the run it was first seen from
        self._current: dict[tuple[str, str], str] = {}  # (publisher, mouse) -> newest instance
        self._replaced: dict[tuple[str, str], set[str]] = {}
        self._named: set[frozenset[Run]] = set()

    def check(self, record: ScoreRecord) -> str | None:
        """A one-line notice the first time this record's monitor and another share a mouse."""
        run: Run = (record.publisher, record.instance)
        first = self._publisher.setdefault(record.mouse, run)
        other = first if first[0] != run[0] else self._same_publisher(record)
        if other is None or frozenset((other, run)) in self._named:
            return None
        self._named.add(frozenset((other, run)))
        return (f"mouse {record.mouse} comes from two monitors, {_run_name(other)} and "
                f"{_run_name(run)}: their records would be mixed up; give each monitor its own "
                "camera or mouse names (and `publisher` id)")

    def _same_publisher(self, record: ScoreRecord) -> Run | None:
        key = (record.publisher, record.mouse)
        current = self._current.setdefault(key, record.instance)
        replaced = self._replaced.setdefault(key, set())
        if record.instance == current:
            return None
        if record.instance in replaced:  # a replaced run still sends: not a restart
            return (record.publisher, current)
        replaced.add(current)
        self._current[key] = record.instance
        return None


def _run_name(run: Run) -> str:
    return f"{run[0]} (run {run[1]})" if run[1] else run[0]
