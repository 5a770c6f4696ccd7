"""`mgs-monitor snapshot`: one annotated picture per camera, to check a set-up before a long run.

Each camera is opened once, a short burst is read and the sharpest frame kept (as the monitor
samples), and that frame goes through the real localizer and scorer (`Analyzer`). The picture
shows every cubicle outlined with its mouse id, the face box the localizer found (or "no face"),
each mouse's status and levels, and a header naming the camera, source, time, models (DEMO
ones in red) and frame size. A camera that cannot be opened or gives no frame gets no picture
and one line saying why; the others still get theirs.

The drawing (`annotate`) is a function of a frame and its records alone, so the running
monitor draws the same picture of a camera's latest frame when a view asks for one
(monitor/outputs/commands.py).
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from monitor.capture.workers import (
    IMAGE_SUFFIXES,
    Frame,
    Opener,
    frame_sharpness,
    is_image_sequence,
    is_live,
    media_problem,
    open_capture,
)
from monitor.config import Camera, MonitorConfig
from monitor.schema import ScoreRecord
from monitor.scoring.analyzer import Analyzer, Models
from monitor.scoring.faces import cubicle_pixels

FORMATS = ("png", "jpg")
FONT = cv2.FONT_HERSHEY_SIMPLEX
REFERENCE_WIDTH = 1920  # frame width at which text is drawn at BASE_SCALE
BASE_SCALE = 1.1
HEADER_SCALE = 0.85  # the header's text, relative to the cubicles'
MIN_SCALE = 0.4  # below this Hershey text is hard to read
SHADE = 0.35  # how much of the frame shows through the dark panels behind text
# BGR colours
WHITE = (255, 255, 255)
OUTLINE = (255, 200, 0)  # cubicle regions: cyan-blue, apart from the status colours
RED = (70, 70, 255)
STATUS_COLOURS = {
    "scored": (80, 220, 80),
    "low_quality": (0, 210, 255),
    "no_face": (0, 140, 255),
    "camera_down": RED,
}
STATUS_WORDS = {"low_quality": "face too blurred", "no_face": "no face"}


class SnapshotError(ValueError):
    """A snapshot that cannot be taken at all (e.g. an --out folder that cannot be made)."""


@dataclass
class Shot:
    """One camera's snapshot: the picture written, or why there is none."""

    camera: str
    source: int | str
    path: Path | None = None
    records: list[ScoreRecord] = field(default_factory=list)
    error: str = ""
    size: tuple[int, int] = (0, 0)  # width, height of the frame

    @property
    def faces(self) -> int:
        """Cubicles where the localizer found a face (scored or too blurred to score)."""
        return sum(r.status in ("scored", "low_quality") for r in self.records)

    def line(self) -> str:
        """The terminal line for this camera."""
        if self.path is None:
            return f"{self.camera} (source {shown(self.source)}): no snapshot: {self.error}"
        mice = ", ".join(f"{r.mouse} {r.status}" + (f" {r.total}" if r.total is not None else "")
                         for r in self.records)
        return f"{self.camera}: {self.path}  faces {self.faces}/{len(self.records)}  {mice}"


def take_snapshots(config: MonitorConfig, out: Path, *, fmt: str = "png",
                   opener: Opener = open_capture,
                   models: Models | None = None) -> list[Shot]:
    """A frame from every camera, scored in one batch; one picture per camera in `out`."""
    if fmt not in FORMATS:
        raise SnapshotError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    models = models or Models.load(config)  # a bad model file fails before any camera opens
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SnapshotError(f"{out}: cannot make the snapshot folder ({exc.strerror})") from exc
    analyzer = Analyzer(config, models)
    shots: list[Shot] = []
    frames: list[Frame] = []
    for camera in config.cameras:
        frame, error = grab(camera, config.sampling_for(camera).burst, opener)
        shots.append(Shot(camera.name, camera.source, error=error))
        if frame is not None and frame.image is not None:
            frames.append(frame)
            shots[-1].size = (frame.image.shape[1], frame.image.shape[0])
    records = analyzer.process(frames) if frames else []
    by_frame = {f.camera: f for f in frames}
    names = _file_names([c.name for c in config.cameras], fmt)
    for camera, shot in zip(config.cameras, shots, strict=True):
        frame = by_frame.get(camera.name)
        if frame is None:
            continue
        shot.records = [r for r in records if r.camera == camera.name]
        picture = annotate(frame, camera, shot.records)
        path = out / names[camera.name]
        try:
            written = cv2.imwrite(str(path), picture)
        except cv2.error:
            written = False
        if not written:
            raise SnapshotError(f"{path}: cannot write the snapshot here")
        shot.path = path
    return shots


def run_snapshot(config: MonitorConfig, out: Path, *, fmt: str = "png",
                 opener: Opener = open_capture, stdout: TextIO | None = None,
                 stderr: TextIO | None = None) -> int:
    """Take the snapshots and say one line per camera; 2 when any camera gave no picture."""
    shots = take_snapshots(config, out, fmt=fmt, opener=opener)
    for shot in shots:
        stream = (stdout or sys.stdout) if shot.path else (stderr or sys.stderr)
        print(shot.line(), file=stream, flush=True)  # in camera order, also when piped
    return 2 if any(shot.path is None for shot in shots) else 0


def shown(source: int | str) -> str:
    """The source as printed and drawn: a stream URL's password is left out."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", str(source))


# grabbing ---------------------------------------------------------------------------------
def grab(camera: Camera, burst: int, opener: Opener = open_capture) -> tuple[Frame | None, str]:
    """The sharpest of up to `burst` frames read from the camera, or None and why not."""
    source = camera.source
    if not is_live(source) and opener is open_capture:  # (a test's opener fakes the device)
        path = str(source)
        still = not is_image_sequence(path) and Path(path).suffix.lower() in IMAGE_SUFFIXES
        problem = ("no such image file" if still and not Path(path).is_file()
                   else media_problem(path))
        if problem:
            return None, problem
    try:
        capture = opener(source)
    except Exception as exc:  # a driver error is this camera's failure, not the command's
        return None, f"cannot open the source ({type(exc).__name__}: {exc})"
    best: Frame | None = None
    error = ""
    try:
        if not capture.isOpened():
            return None, "cannot open the source"
        fps = capture.get(cv2.CAP_PROP_FPS) if not is_live(source) else 0.0
        for index in range(burst):
            try:
                ok, image = capture.read()
            except Exception as exc:  # the camera's failure, said
                error = f"{type(exc).__name__}: {exc}"
                break
            if not ok or image is None:
                break
            if image.ndim == 2:  # grey / infrared: the pipeline and the drawing want 3 channels
                image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
            now = time.time()
            source_time = now if is_live(source) else (index / fps if fps > 0 else float(index))
            candidate = Frame(camera.name, image, now, time.monotonic(), source_time, index,
                              frame_sharpness(image))
            if best is None or candidate.sharpness > best.sharpness:
                best = candidate
    finally:
        capture.release()
    if best is None:
        return None, "opened, but gave no frame" + (f" ({error})" if error else "")
    return best, ""


def _file_names(cameras: list[str], fmt: str) -> dict[str, str]:
    """`<camera>.<fmt>` with anything odd in the name made safe, distinct for every camera."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for camera in cameras:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", camera).strip("._") or "camera"
        name, n = f"{stem}.{fmt}", 2
        while name in taken:
            name, n = f"{stem}-{n}.{fmt}", n + 1
        taken.add(name)
        names[camera] = name
    return names


# drawing ----------------------------------------------------------------------------------
def annotate(frame: Frame, camera: Camera, records: list[ScoreRecord]) -> np.ndarray:
    """The frame with the cubicles, face boxes, statuses and a header drawn on (same size);
    the models are named as the records name them."""
    assert frame.image is not None
    picture = frame.image.copy()
    height, width = picture.shape[:2]
    scale = max(MIN_SCALE, BASE_SCALE * width / REFERENCE_WIDTH)
    line = max(1, round(3 * width / REFERENCE_WIDTH))
    header, header_scale = _fit_header(_header_lines(frame, camera, records, (width, height)),
                                       width - 2 * max(3, round(10 * scale)),
                                       max(MIN_SCALE, scale * HEADER_SCALE))
    top = _panel_height(header, header_scale)
    by_cubicle = {r.cubicle: r for r in records}
    for number, cubicle in enumerate(camera.cubicle_list(), start=1):
        x0, y0, x1, y1 = cubicle_pixels(picture.shape, cubicle)
        record = by_cubicle.get(number)
        status = record.status if record else "camera_down"
        colour = STATUS_COLOURS.get(status, WHITE)
        cv2.rectangle(picture, (x0, y0), (x1 - 1, y1 - 1), OUTLINE, line, cv2.LINE_AA)
        face_low = False  # the face in the lower half: its labels go to the top
        if record is not None and record.face_box is not None and status != "no_face":
            _face_box(picture, (x0, y0, x1, y1), record.face_box, colour, (line, max(y0, top)),
                      scale, status)
            face_low = record.face_box[1] > 0.5
        elif status == "no_face":
            _centred(picture, "no face", (x0, y0, x1, y1), colour, scale)
        inner = x1 - x0 - 2 * line
        name = [(cubicle.mouse, WHITE)]
        name_scale = _fit_scale([cubicle.mouse], inner - 2 * line, scale * 1.1)
        lines = _record_lines(record, status, colour)
        fit = _fit_scale([t for t, _ in lines], inner - 2 * line, scale)
        stack = _panel_height(name, name_scale, bold=True) + _panel_height(lines, fit)
        y = max(y0, top) + line if face_low else y1 - line - stack
        y = _panel(picture, name, (x0 + line, y), inner, name_scale, bold=True)
        _panel(picture, lines, (x0 + line, y), inner, fit)
    _panel(picture, header, (0, 0), width, header_scale)  # last: on top of everything
    return picture


def _header_lines(frame: Frame, camera: Camera, records: list[ScoreRecord],
                  size: tuple[int, int]) -> list[tuple[list[str], tuple[int, int, int]]]:
    """Each header line in a long and a short wording (for narrow frames), and its colour."""
    kind, scorer = (records[0].model_kind, records[0].scorer_id) if records else ("", "")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(frame.wall_time))
    what = f"{camera.name}   {size[0]}x{size[1]}   {when}"
    at = _position(camera.source, frame)
    if any(r.model_kind == "demo" for r in records):
        models = (["DEMO models: trained on synthetic faces, not a pain model",
                   "DEMO models: not a pain model"], RED)
    else:
        models = ([f"models: {kind}, scorer {scorer}", f"models: {kind}"], WHITE)
    return [([f"{what}{f' ({at})' if at else ''}",
              f"{what}{f' ({at.split()[0]} s)' if at.endswith('recording') else ''}"], WHITE),
            ([f"source: {shown(camera.source)}"], WHITE), models,
            (["levels [orbital tightening, nose bulge, cheek bulge, ear position, whisker change]",
              "levels [orbital, nose, cheek, ear, whisker]"], WHITE)]


def _position(source: int | str, frame: Frame) -> str:
    """Where in recorded media the frame is ("" for live sources and single images)."""
    if is_live(source):
        return ""
    if is_image_sequence(str(source)):
        return f"image {frame.frame_index + 1}"
    if Path(str(source)).suffix.lower() in IMAGE_SUFFIXES:
        return ""
    return f"{frame.source_time:.1f} s into the recording"


def _fit_header(header: list[tuple[list[str], tuple[int, int, int]]], width: int,
                scale: float) -> tuple[list[tuple[str, tuple[int, int, int]]], float]:
    """The header's wording and scale for a frame `width` wide: the long wording where it fits
    at `scale`, else the short one, shrunk to fit; a long source is cut from the left."""
    def fits(text: str) -> bool:
        return cv2.getTextSize(text, FONT, scale, _thickness(scale))[0][0] <= width

    chosen = [(next((t for t in texts if fits(t)), texts[-1]), colour)
              for texts, colour in header]
    fitted = _fit_scale([t for t, _ in chosen if not t.startswith("source: ")], width, scale)
    return [(_clip(text, width, fitted), colour) for text, colour in chosen], fitted


def _record_lines(record: ScoreRecord | None, status: str,
                  colour: tuple[int, int, int]) -> list[tuple[str, tuple[int, int, int]]]:
    """What the localizer and scorer made of one cubicle, a line or two."""
    if record is None:
        return [("camera_down", colour)]
    if record.levels is not None and record.total is not None:
        levels = " ".join(str(level) for level in record.levels)
        return [(f"{status}  total {record.total}", colour), (f"[{levels}]", colour)]
    if status == "no_face":
        return [(status, colour), (f"face score {record.face_score:.2f}", colour)]
    if status == "low_quality":
        return [(status, colour), (f"blurred: sharpness {record.sharpness:.0f}", colour)]
    return [(status, colour)]


def _face_box(picture: np.ndarray, region: tuple[int, int, int, int],
              box: tuple[float, float, float, float], colour: tuple[int, int, int],
              lines: tuple[int, int], scale: float, status: str) -> None:
    """The localizer's (cx, cy, w, h) box, normalised to the cubicle region, in frame pixels;
    `lines` is the line width and the highest row its label may use (below the header)."""
    x0, y0, x1, y1 = region
    line, label_top = lines
    rw, rh = x1 - x0, y1 - y0
    cx, cy, w, h = box
    a = (round(x0 + (cx - w / 2) * rw), round(y0 + (cy - h / 2) * rh))
    b = (round(x0 + (cx + w / 2) * rw), round(y0 + (cy + h / 2) * rh))
    a = (min(max(a[0], x0), x1 - 1), min(max(a[1], y0), y1 - 1))
    b = (min(max(b[0], x0), x1 - 1), min(max(b[1], y0), y1 - 1))
    cv2.rectangle(picture, (a[0] - line, a[1] - line), (b[0] + line, b[1] + line), (0, 0, 0),
                  line, cv2.LINE_AA)  # a dark rim keeps the box visible on pale fur
    cv2.rectangle(picture, a, b, colour, line * 2, cv2.LINE_AA)
    label = "face" if status == "scored" else STATUS_WORDS.get(status, status)
    small = max(MIN_SCALE, scale * 0.8)
    (_, th), base = cv2.getTextSize(label, FONT, small, _thickness(small))
    above = a[1] - 2 * line - th - base > label_top
    y = a[1] - 2 * line - base if above else b[1] + th + 3 * line
    _text_box(picture, label, (a[0], y), colour, small)


def _centred(picture: np.ndarray, text: str, region: tuple[int, int, int, int],
             colour: tuple[int, int, int], scale: float) -> None:
    x0, y0, x1, y1 = region
    fit = _fit_scale([text], x1 - x0 - 8, scale * 1.4)
    (tw, th), _ = cv2.getTextSize(text, FONT, fit, _thickness(fit))
    _text_box(picture, text, ((x0 + x1 - tw) // 2, (y0 + y1 + th) // 2), colour, fit)


def _thickness(scale: float) -> int:
    return max(1, round(scale * 2))


def _clip(text: str, width: int, scale: float) -> str:
    """`text` cut from the left ("...end") until it fits `width` pixels: long paths keep the
    file name."""
    thick = _thickness(scale)
    if cv2.getTextSize(text, FONT, scale, thick)[0][0] <= width:
        return text
    head, _, tail = text.partition(": ")
    if not tail:
        head, tail = "", text
    prefix = f"{head}: ..." if head else "..."
    while tail and cv2.getTextSize(prefix + tail, FONT, scale, thick)[0][0] > width:
        tail = tail[1:]
    return prefix + tail


def _fit_scale(texts: list[str], width: int, scale: float) -> float:
    """`scale`, shrunk (to MIN_SCALE at most) until the widest text fits in `width` pixels."""
    widest = max((cv2.getTextSize(t, FONT, scale, _thickness(scale))[0][0] for t in texts),
                 default=0)
    if widest <= width or widest == 0:
        return scale
    return max(MIN_SCALE, scale * width / widest)


def _shade(picture: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> None:
    """Darken a rectangle (clipped to the picture) so text on it reads on any background."""
    height, width = picture.shape[:2]
    x0, y0 = max(0, min(a[0], b[0])), max(0, min(a[1], b[1]))
    x1, y1 = min(width, max(a[0], b[0])), min(height, max(a[1], b[1]))
    if x1 > x0 and y1 > y0:
        area = picture[y0:y1, x0:x1]
        area[:] = (area.astype(np.float32) * SHADE).astype(np.uint8)


def _text_box(picture: np.ndarray, text: str, origin: tuple[int, int],
              colour: tuple[int, int, int], scale: float) -> None:
    """One line of text at its baseline `origin`, on a dark box of its own."""
    thick = _thickness(scale)
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    pad = max(2, th // 4)
    x, y = origin
    _shade(picture, (x - pad, y - th - pad), (x + tw + pad, y + base + pad))
    cv2.putText(picture, text, (x, y), FONT, scale, colour, thick, cv2.LINE_AA)


def _panel_geometry(lines: list[tuple[str, tuple[int, int, int]]], scale: float,
                    bold: bool) -> tuple[int, int, int, int, int]:
    """(ascent, descent, gap, pad, width of the widest line) of a text panel."""
    thick = _thickness(scale) + bold
    sizes = [cv2.getTextSize(text, FONT, scale, thick) for text, _ in lines]
    ascent = max((h for (_, h), _ in sizes), default=0)
    descent = max((b for _, b in sizes), default=0)
    gap = max(3, round(ascent * 0.45))
    pad = max(3, round(ascent * 0.4))
    return ascent, descent, gap, pad, max((w for (w, _), _ in sizes), default=0)


def _panel_height(lines: list[tuple[str, tuple[int, int, int]]], scale: float,
                  bold: bool = False) -> int:
    ascent, descent, gap, pad, _ = _panel_geometry(lines, scale, bold)
    return len(lines) * (ascent + descent) + (len(lines) - 1) * gap + 2 * pad


def _panel(picture: np.ndarray, lines: list[tuple[str, tuple[int, int, int]]],
           corner: tuple[int, int], width: int, scale: float, *, bold: bool = False) -> int:
    """Lines of text on a dark panel at most `width` wide, its top-left corner at `corner`;
    returns the panel's lower edge."""
    ascent, descent, gap, pad, widest = _panel_geometry(lines, scale, bold)
    height = _panel_height(lines, scale, bold)
    x, y = corner
    _shade(picture, (x, y), (x + min(width, widest + 2 * pad), y + height))
    for k, (text, colour) in enumerate(lines):
        baseline = y + pad + ascent + k * (ascent + descent + gap)
        cv2.putText(picture, text, (x + pad, baseline), FONT, scale, colour,
                    _thickness(scale) + bold, cv2.LINE_AA)
    return y + height
