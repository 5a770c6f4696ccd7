"""Synthetic mouse faces, cubicle views and array videos whose drawn features follow MGS levels.

No labelled mouse images exist for this project, so training, tests and the demo use cartoon
mice drawn with OpenCV. Each action unit changes one facial region strongly enough for a small
CNN at 64x64 to learn it, while fur, lighting, pose, background, blur and noise vary
independently of the levels. Every function is deterministic given its numpy Generator.

A package of its own, beside training: the demo, the tests and the benchmarks draw from it, and
it stands on monitor/ alone. `synth.study_course` gives such mice a course over days.
"""

from __future__ import annotations

import csv
import math
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np

from monitor.units import UNITS

Levels = tuple[int, int, int, int, int]
Box = tuple[float, float, float, float]
Colour = tuple[float, float, float]
_Blob = tuple[tuple[float, float], tuple[float, float], float]

_SHIFT = 4  # fractional bits for sub-pixel cv2 drawing
_TILE = 256  # side of the cached texture and noise tiles
_WHISKERS = 6  # whiskers per side
_JITTER = 5 + 2 * _WHISKERS  # one value per unit, then one per whisker
_MICE = 8
_WHITE: Colour = (255.0, 255.0, 255.0)
_BLACK: Colour = (0.0, 0.0, 0.0)
_DIVIDER: Colour = (24.0, 24.0, 27.0)

# fur, inner ear, nose, tail, eye rim; white mice may be albino (pink eyes)
_COATS: tuple[tuple[Colour, Colour, Colour, Colour, Colour], ...] = (
    ((236, 232, 224), (238, 168, 176), (232, 150, 160), (232, 182, 180), (214, 150, 156)),
    ((40, 36, 35), (128, 92, 98), (112, 82, 88), (82, 72, 72), (132, 120, 120)),
    ((128, 98, 70), (208, 142, 138), (202, 132, 132), (162, 126, 112), (72, 56, 46)),
)
_DARK_EYE: Colour = (16.0, 12.0, 14.0)
_ALBINO_EYE: Colour = (196.0, 44.0, 66.0)
_WALLS: tuple[Colour, ...] = (
    (205, 210, 212),
    (170, 182, 190),
    (120, 128, 135),
    (225, 222, 214),
    (86, 92, 98),
    (180, 196, 186),
)
_BEDDINGS: tuple[Colour, ...] = ((205, 185, 145), (186, 150, 96), (226, 220, 206), (158, 120, 82))

# per whisker level: angle range (deg, + is downward), length, droop, thickness
_WHISKER_SHAPES: tuple[tuple[float, float, float, float, float], ...] = (
    (-15.0, 45.0, 0.44, 0.12, 0.010),
    (-22.0, 10.0, 0.36, 0.05, 0.011),
    (-17.0, -7.0, 0.30, 0.0, 0.012),
)


@dataclass(frozen=True)
class _Style:
    """One mouse's looks, fixed for an animal while its grimace changes."""

    fur: Colour
    ear_inner: Colour
    nose: Colour
    tail: Colour
    rim: Colour
    eye: Colour
    head_width: float
    eye_y: float
    eye_dx: float


@dataclass(frozen=True)
class _Cage:
    """A cubicle's fixed surroundings: wall tint, bedding colour and height, texture phase."""

    wall: Colour
    bedding: Colour
    floor: float  # top of the bedding as a fraction of the height
    phase: tuple[int, int]
    glare: float  # x of the glare band as a fraction of the width


@dataclass(frozen=True)
class _Camera:
    """Optics of one recording: lighting gradient, focus blur and sensor noise."""

    gains: np.ndarray  # (2, 2, 3) corner gains
    blur: float
    noise: float


@dataclass(frozen=True)
class _Pose:
    """Where the face box sits in its image (pixels) and how the head is tilted."""

    cx: float
    cy: float
    size: float
    angle: float


@dataclass(frozen=True)
class _Setup:
    """What stays fixed about one cubicle over a recording."""

    cage: _Cage
    style: _Style
    jitter: np.ndarray


@dataclass(frozen=True, eq=False)
class _Pen:
    """Draws in face units (the face box is the unit square), so one similarity transform
    poses the whole mouse without warping pixels."""

    img: np.ndarray
    pose: _Pose
    flip: bool = False

    def mirrored(self) -> _Pen:
        """Lets one routine draw both the left and the right feature."""
        return replace(self, flip=not self.flip)

    def _fixed(self, x: float, y: float) -> tuple[int, int]:
        """Maps a face-unit point to fixed-point pixels for sub-pixel drawing."""
        p = self.pose
        dx, dy = ((0.5 - x) if self.flip else (x - 0.5)) * p.size, (y - 0.5) * p.size
        c, s = math.cos(math.radians(p.angle)), math.sin(math.radians(p.angle))
        one = 1 << _SHIFT
        return round((p.cx + c * dx - s * dy) * one), round((p.cy + s * dx + c * dy) * one)

    def _px(self, thickness: float) -> int:
        """Converts a face-unit stroke width to whole pixels, at least one."""
        return max(1, round(thickness * self.pose.size))

    def ellipse(
        self,
        centre: tuple[float, float],
        axes: tuple[float, float],
        colour: Colour,
        angle: float = 0.0,
        thickness: float | None = None,
        arc: tuple[float, float] = (0.0, 360.0),
    ) -> None:
        """Filled (thickness None) or outlined ellipse or arc in face units."""
        start, end = arc
        if self.flip:
            angle, start, end = -angle, 180.0 - end, 180.0 - start
        scale = self.pose.size * (1 << _SHIFT)
        cv2.ellipse(
            self.img,
            self._fixed(*centre),
            (round(axes[0] * scale), round(axes[1] * scale)),
            self.pose.angle + angle,
            start,
            end,
            colour,
            -1 if thickness is None else self._px(thickness),
            cv2.LINE_AA,
            _SHIFT,
        )

    def polyline(
        self, points: Sequence[tuple[float, float]], colour: Colour, thickness: float
    ) -> None:
        """Open stroke through face-unit points."""
        pts = np.array([self._fixed(x, y) for x, y in points], np.int32)
        cv2.polylines(self.img, [pts], False, colour, self._px(thickness), cv2.LINE_AA, _SHIFT)


def _mix(a: Colour, b: Colour, t: float) -> Colour:
    """Blends colour a towards b, the basis of every shade and highlight."""
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def _luma(c: Colour) -> float:
    """Perceived brightness, to pick strokes that contrast with what lies under them."""
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _edge(fur: Colour) -> Colour:
    """Contour colour that shows on any fur: darker on light fur, lighter on black fur."""
    return _mix(fur, _WHITE, 0.3) if _luma(fur) < 90 else _mix(fur, _BLACK, 0.45)


def _jittered(rng: np.random.Generator, colour: Colour, spread: float) -> Colour:
    """Individual variation around a palette colour."""
    c = np.clip(np.asarray(colour) + rng.normal(0.0, spread, 3), 0, 255)
    return (float(c[0]), float(c[1]), float(c[2]))


def _as_levels(values: Sequence[int] | np.ndarray) -> Levels:
    """Validates five levels in 0..2 so a bad label fails loudly, not as a silent drawing."""
    levels = tuple(int(v) for v in values)
    if len(levels) != len(UNITS) or any(v not in (0, 1, 2) for v in levels):
        raise ValueError(f"expected {len(UNITS)} levels in 0..2, got {tuple(values)}")
    return levels  # type: ignore[return-value]


def random_levels(rng: np.random.Generator, pain: float | None = None) -> Levels:
    """Draws unit levels: uniform, or for a pain in [0, 1] binomial with a per-draw shared
    offset, so units rise together as in a mouse in pain."""
    if pain is None:
        return _as_levels(rng.integers(0, 3, len(UNITS)))
    if not 0.0 <= pain <= 1.0:
        raise ValueError(f"pain must be in [0, 1], got {pain}")
    q = float(np.clip(pain + rng.normal(0.0, 0.12), 0.0, 1.0))
    return _as_levels(rng.binomial(2, q, len(UNITS)))


def _sample_style(rng: np.random.Generator) -> _Style:
    """A random mouse: coat (white/albino, black, agouti) and small proportion changes."""
    coat = _COATS[int(rng.integers(len(_COATS)))]
    fur, ear, nose, tail, rim = (_jittered(rng, c, 6.0) for c in coat)
    albino = rng.random() < 0.8 and coat is _COATS[0]
    return _Style(
        fur=fur,
        ear_inner=ear,
        nose=nose,
        tail=tail,
        rim=rim,
        eye=_ALBINO_EYE if albino else _DARK_EYE,
        head_width=float(rng.uniform(0.94, 1.06)),
        eye_y=float(rng.uniform(0.45, 0.48)),
        eye_dx=float(rng.uniform(0.145, 0.165)),
    )


def _sample_cage(rng: np.random.Generator, floor: tuple[float, float]) -> _Cage:
    """Random cubicle surroundings; floor bounds where the bedding starts."""
    return _Cage(
        wall=_jittered(rng, _WALLS[int(rng.integers(len(_WALLS)))], 8.0),
        bedding=_jittered(rng, _BEDDINGS[int(rng.integers(len(_BEDDINGS)))], 8.0),
        floor=float(rng.uniform(*floor)),
        phase=(int(rng.integers(_TILE)), int(rng.integers(_TILE))),
        glare=float(rng.uniform(0.1, 0.8)),
    )


def _sample_camera(rng: np.random.Generator) -> _Camera:
    """Random optics: brightness, an uneven tinted light, slight blur and sensor noise."""
    gains = rng.uniform(0.7, 1.2) * rng.uniform(0.8, 1.1, (2, 2, 1))
    gains = gains * rng.uniform(0.97, 1.03, (1, 1, 3))
    return _Camera(
        gains=np.clip(gains, 0.0, 1.95),
        blur=float(rng.uniform(0.3, 1.2)),
        noise=float(rng.uniform(1.5, 7.0)),
    )


def _sample_pose(rng: np.random.Generator, width: int, height: int) -> _Pose:
    """Face box 25-55% of the cubicle width (capped by its height), fully inside it."""
    size = min(rng.uniform(0.25, 0.55) * width, 0.8 * height)
    margin = 0.02 * width
    cx = rng.uniform(margin + size / 2, width - margin - size / 2)
    cy = rng.uniform(0.06 * height + size / 2, 0.98 * height - size / 2)
    return _Pose(float(cx), float(cy), float(size), float(rng.uniform(-15.0, 15.0)))


def _drift(pose: _Pose, rng: np.random.Generator, width: int, height: int) -> _Pose:
    """Moves a face a little, so video faces wander smoothly instead of jumping."""
    size = float(
        np.clip(
            pose.size * math.exp(rng.normal(0.0, 0.01)),
            0.25 * width,
            min(0.55 * width, 0.8 * height),
        )
    )
    margin = 0.02 * width
    cx = np.clip(
        pose.cx + rng.normal(0.0, 0.006 * width), margin + size / 2, width - margin - size / 2
    )
    cy = np.clip(
        pose.cy + rng.normal(0.0, 0.006 * height),
        0.06 * height + size / 2,
        0.98 * height - size / 2,
    )
    angle = np.clip(pose.angle + rng.normal(0.0, 0.6), -15.0, 15.0)
    return _Pose(float(cx), float(cy), size, float(angle))


def _sample_setup(rng: np.random.Generator) -> _Setup:
    """A cubicle with its mouse and that mouse's within-level variation."""
    return _Setup(
        _sample_cage(rng, (0.62, 0.82)), _sample_style(rng), rng.uniform(-1.0, 1.0, _JITTER)
    )


@lru_cache(maxsize=1)
def _bedding_tile() -> np.ndarray:
    """Seamless wood-chip brightness tile, made once so bedding costs one lookup per image."""
    rng = np.random.default_rng(20240601)
    tile = np.full((_TILE, _TILE), 190, np.uint8)
    for _ in range(900):
        x, y = (int(v) for v in rng.integers(0, _TILE, 2))
        axes = (int(rng.integers(3, 10)), int(rng.integers(2, 5)))
        angle, value = float(rng.uniform(0, 180)), int(rng.integers(120, 256))
        for ox in (0, -_TILE):
            for oy in (0, -_TILE):
                cv2.ellipse(tile, (x + ox, y + oy), axes, angle, 0, 360, value, -1, cv2.LINE_AA)
    return tile


@lru_cache(maxsize=4)
def _noise_field(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative parts of unit Gaussian noise (x40), tiled and cached, so sensor
    noise is two saturating adds instead of a fresh per-pixel draw."""
    base = np.random.default_rng(7).normal(0.0, 40.0, (_TILE, _TILE, 3))
    pos = np.clip(base, 0, 255).astype(np.uint8)
    neg = np.clip(-base, 0, 255).astype(np.uint8)
    return np.tile(pos, (rows, cols, 1)), np.tile(neg, (rows, cols, 1))


def _tiled(tile: np.ndarray, height: int, width: int, phase: tuple[int, int]) -> np.ndarray:
    """A height x width window of an endlessly repeated tile, starting at phase."""
    oy, ox = phase
    reps = (-(-(height + oy) // _TILE), -(-(width + ox) // _TILE))
    return np.tile(tile, reps)[oy : oy + height, ox : ox + width]


def _paint_cage(img: np.ndarray, cage: _Cage) -> None:
    """Back wall with a gradient darkening towards the floor, textured bedding below."""
    height, width = img.shape[:2]
    top = min(height, max(1, round(cage.floor * height)))
    shades = np.array([[_mix(cage.wall, _WHITE, 0.08)], [_mix(cage.wall, _BLACK, 0.22)]])
    img[:top] = cv2.resize(shades.astype(np.uint8), (width, top))
    if top < height:
        lut = np.linspace(0.0, 1.0, 256)[None, :, None] * np.array(cage.bedding)[None, None, :]
        chips = cv2.cvtColor(
            _tiled(_bedding_tile(), height - top, width, cage.phase), cv2.COLOR_GRAY2RGB
        )
        img[top:] = cv2.LUT(chips, lut.astype(np.uint8))
        cv2.line(
            img,
            (0, top),
            (width, top),
            _mix(cage.bedding, _BLACK, 0.45),
            max(1, height // 150),
            cv2.LINE_AA,
        )


def _paint_glass(img: np.ndarray, cage: _Cage) -> None:
    """Transparent box in front of the mouse: lid bar, corner edges and a glare band."""
    height, width = img.shape[:2]
    x0, band = round(cage.glare * width), max(2, width // 12)
    glare = img[:, x0 : x0 + band]
    cv2.addWeighted(glare, 0.8, np.full_like(glare, 255), 0.2, 0.0, dst=glare)
    edge, line = _mix(cage.wall, _WHITE, 0.55), max(1, width // 160)
    for x in (round(0.025 * width), round(0.975 * width)):
        cv2.line(img, (x, 0), (x, height), edge, line, cv2.LINE_AA)
    cv2.rectangle(img, (0, 0), (width, round(0.035 * height)), (62, 64, 68), -1)


def _develop(img: np.ndarray, camera: _Camera, rng: np.random.Generator) -> np.ndarray:
    """Applies the camera: lighting gradient, blur, then sensor noise at a random phase."""
    height, width = img.shape[:2]
    gain = cv2.resize(np.round(camera.gains * 128).astype(np.uint8), (width, height))
    out = cv2.GaussianBlur(cv2.multiply(img, gain, scale=1 / 128), (0, 0), camera.blur)
    oy, ox = (int(v) for v in rng.integers(0, _TILE, 2))
    pos, neg = _noise_field(-(-height // _TILE) + 1, -(-width // _TILE) + 1)
    k = camera.noise / 40.0
    cv2.addWeighted(out, 1.0, pos[oy : oy + height, ox : ox + width], k, 0.0, dst=out)
    cv2.addWeighted(out, 1.0, neg[oy : oy + height, ox : ox + width], -k, 0.0, dst=out)
    return out


def _pair(blob: _Blob) -> tuple[_Blob, _Blob]:
    """A left-side blob and its mirror image, for symmetric silhouettes."""
    (x, y), axes, angle = blob
    return blob, ((1.0 - x, y), axes, -angle)


def _silhouette(pen: _Pen, blobs: Sequence[_Blob], fill: Colour, width: float) -> None:
    """Fills blobs with one outline around their union (all edges before any fill)."""
    edge = _edge(fill)
    for centre, axes, angle in blobs:
        pen.ellipse(centre, axes, edge, angle, thickness=width)
    for centre, axes, angle in blobs:
        pen.ellipse(centre, axes, fill, angle)


def _draw_body(pen: _Pen, style: _Style) -> None:
    """Shoulders and trunk behind the head, as a detector crop would show."""
    _silhouette(pen, [((0.5, 1.2), (0.6, 0.5), 0.0)], _mix(style.fur, _BLACK, 0.08), 0.014)


def _draw_ears(pen: _Pen, style: _Style, level: int, jit: float) -> None:
    """Ears: 0 round, upright and apart with pink inside; 1 rotated back and flattened;
    2 narrow, pressed back flat on the skull and close together."""
    if level == 0:
        r = 0.165 * (1 + 0.05 * jit)
        _silhouette(pen, _pair(((0.2, 0.2), (r, r), 0.0)), style.fur, 0.014)
        for side in (pen, pen.mirrored()):
            side.ellipse((0.22, 0.22), (0.7 * r, 0.74 * r), style.ear_inner)
    elif level == 1:
        angle = -32.0 + 5.0 * jit
        _silhouette(pen, _pair(((0.17, 0.27), (0.16, 0.095), angle)), style.fur, 0.014)
        for side in (pen, pen.mirrored()):
            side.ellipse((0.18, 0.26), (0.1, 0.038), style.ear_inner, angle)
    else:
        angle = -30.0 + 4.0 * jit
        _silhouette(
            pen, _pair(((0.32, 0.21), (0.15, 0.045), angle)), _mix(style.fur, _BLACK, 0.1), 0.012
        )
        for side in (pen, pen.mirrored()):
            side.ellipse((0.32, 0.21), (0.11, 0.0), _edge(style.fur), angle, thickness=0.008)


def _cheek_blob(level: int, jit: float) -> _Blob:
    """Left cheek: 1 moderately convex, 2 bulging far past the face outline."""
    scale = 1 + 0.08 * jit
    if level == 1:
        return (0.32, 0.67), (0.105 * scale, 0.085 * scale), 0.0
    return (0.285, 0.67), (0.15 * scale, 0.12 * scale), 0.0


def _draw_head(pen: _Pen, style: _Style, cheek: int, jit: float) -> None:
    """Skull tapering to the snout, widened at the cheeks by the cheek level."""
    w = style.head_width
    blobs: list[_Blob] = [
        ((0.5, 0.45), (0.31 * w, 0.27), 0.0),
        ((0.5, 0.6), (0.25 * w, 0.2), 0.0),
        ((0.5, 0.71), (0.17 * w, 0.17), 0.0),
    ]
    if cheek:
        blobs.extend(_pair(_cheek_blob(cheek, jit)))
    _silhouette(pen, blobs, style.fur, 0.014)
    if cheek:
        _shade_cheeks(pen, style, cheek, jit)


def _shade_cheeks(pen: _Pen, style: _Style, level: int, jit: float) -> None:
    """Highlight on top and shadow underneath make the cheeks read as convex."""
    (x, y), (a, b), _ = _cheek_blob(level, jit)
    for side in (pen, pen.mirrored()):
        side.ellipse(
            (x - 0.15 * a, y - 0.2 * b), (0.55 * a, 0.5 * b), _mix(style.fur, _WHITE, 0.2 * level)
        )
        side.ellipse(
            (x, y),
            (0.8 * a, 0.75 * b),
            _edge(style.fur),
            0.0,
            thickness=0.007 * level,
            arc=(20.0, 160.0),
        )


def _draw_nose_bridge(pen: _Pen, style: _Style, level: int, jit: float) -> None:
    """Nose bridge: 0 flat, 1 small rounded bump, 2 large highlighted bump."""
    if level == 0:
        return
    scale = (0.055 if level == 1 else 0.088) * (1 + 0.08 * jit)
    centre = (0.5, 0.615 - 0.008 * level)
    pen.ellipse(centre, (scale, 0.82 * scale), _mix(style.fur, _WHITE, 0.25 * level))
    if level == 2:
        pen.ellipse(
            (0.5, centre[1] - 0.3 * scale),
            (0.45 * scale, 0.3 * scale),
            _mix(style.fur, _WHITE, 0.75),
        )
    pen.ellipse(
        centre,
        (scale, 0.82 * scale),
        _edge(style.fur),
        0.0,
        thickness=0.01 * level,
        arc=(-10.0, 190.0),
    )


def _draw_eye(pen: _Pen, style: _Style, level: int, jit: float) -> None:
    """Left eye: 0 open, round and shiny; 1 narrowed under a lid; 2 a slit with creases."""
    centre = (0.5 - style.eye_dx, style.eye_y)
    x, y = centre
    if level == 0:
        r = 0.068 * (1 + 0.05 * jit)
        pen.ellipse(centre, (r + 0.012, r + 0.014), style.rim)
        pen.ellipse(centre, (r, r * 1.04), style.eye)
        pen.ellipse((x - 0.35 * r, y - 0.38 * r), (0.3 * r, 0.3 * r), (248, 248, 248))
    elif level == 1:
        h = 0.03 * (1 + 0.15 * jit)
        pen.ellipse(centre, (0.085, h + 0.012), style.rim)
        pen.ellipse(centre, (0.072, h), style.eye)
        pen.ellipse(
            (x, y + 0.006),
            (0.082, h + 0.018),
            _edge(style.fur),
            0.0,
            thickness=0.018,
            arc=(190.0, 350.0),
        )
    else:
        pen.ellipse(
            (x, y - 0.01), (0.08, 0.022), style.rim, 0.0, thickness=0.026, arc=(10.0, 170.0)
        )
        pen.ellipse(
            (x, y - 0.01),
            (0.078, 0.02),
            _mix(style.eye, _BLACK, 0.4),
            0.0,
            thickness=0.012,
            arc=(10.0, 170.0),
        )
        for dy in (-0.03, 0.0, 0.03):
            pen.polyline([(x - 0.09, y + dy * 0.3), (x - 0.14, y + dy)], _edge(style.fur), 0.008)


def _draw_muzzle(pen: _Pen, style: _Style) -> None:
    """Whisker pads, nose tip and mouth, identical at every level."""
    pad = _mix(style.fur, _WHITE, 0.12)
    dots = _edge(style.fur)
    for side in (pen, pen.mirrored()):
        side.ellipse((0.415, 0.8), (0.068, 0.046), pad)
        for dx, dy in ((-0.03, -0.01), (-0.01, 0.012), (0.012, -0.006)):
            side.ellipse((0.415 + dx, 0.8 + dy), (0.006, 0.006), dots)
    pen.ellipse((0.5, 0.842), (0.046, 0.03), style.nose)
    for side in (pen, pen.mirrored()):
        side.ellipse((0.484, 0.846), (0.01, 0.007), _mix(style.nose, _BLACK, 0.5))
        side.polyline([(0.5, 0.872), (0.5, 0.89), (0.47, 0.905)], dots, 0.008)


def _draw_whiskers(pen: _Pen, level: int, jitter: np.ndarray, colour: Colour) -> None:
    """Whiskers: 0 fanned and drooping, 1 partly pulled back, 2 a stiff straight clump."""
    low, high, length, droop, thickness = _WHISKER_SHAPES[level]
    spread = 3.0 if level == 2 else 6.0
    for sign, side in ((0, pen), (1, pen.mirrored())):
        wj = jitter[5 + sign * _WHISKERS : 5 + (sign + 1) * _WHISKERS]
        for i, angle in enumerate(np.linspace(low, high, _WHISKERS)):
            theta = math.radians(float(angle) + 4.0 * jitter[4] + spread * wj[i])
            ox, oy = 0.41 - 0.01 * i, 0.775 + 0.01 * i
            size = length * (1 + 0.06 * wj[i])
            side.polyline(
                [
                    (
                        ox - math.cos(theta) * size * t,
                        oy + math.sin(theta) * size * t + droop * size * t * t,
                    )
                    for t in np.linspace(0.0, 1.0, 6)
                ],
                colour,
                thickness,
            )


def _draw_mouse(pen: _Pen, style: _Style, levels: Levels, jitter: np.ndarray) -> None:
    """A front-facing mouse whose five features follow the unit levels."""
    eyes, nose, cheeks, ears, whiskers = levels
    _draw_body(pen, style)
    if ears < 2:
        _draw_ears(pen, style, ears, jitter[3])
    _draw_head(pen, style, cheeks, jitter[2])
    if ears == 2:
        _draw_ears(pen, style, ears, jitter[3])
    _draw_nose_bridge(pen, style, nose, jitter[1])
    for side in (pen, pen.mirrored()):
        _draw_eye(side, style, eyes, jitter[0])
    _draw_muzzle(pen, style)
    _draw_whiskers(pen, whiskers, jitter, _whisker_colour(style.fur))


def _draw_back(pen: _Pen, style: _Style) -> None:
    """A mouse turned away: back of the head and ears, body and tail, no face."""
    _silhouette(pen, _pair(((0.25, 0.22), (0.13, 0.13), 0.0)), _mix(style.fur, _BLACK, 0.12), 0.014)
    _silhouette(
        pen, [((0.5, 1.0), (0.5, 0.58), 0.0), ((0.5, 0.42), (0.3, 0.26), 0.0)], style.fur, 0.014
    )
    pen.ellipse((0.5, 0.85), (0.16, 0.34), _mix(style.fur, _WHITE, 0.1))
    tail = [(0.56, 1.5), (0.72, 1.66), (0.98, 1.74), (1.24, 1.68), (1.44, 1.54)]
    for i in range(len(tail) - 1):
        pen.polyline(tail[i : i + 2], style.tail, 0.055 - 0.01 * i)


def _whisker_colour(fur: Colour) -> Colour:
    """Whiskers mostly lie over the face and shoulders, so they contrast with the fur."""
    return (56.0, 52.0, 50.0) if _luma(fur) > 150 else (230.0, 230.0, 226.0)


def _render_face(levels: Levels, rng: np.random.Generator, size: int, style: _Style) -> np.ndarray:
    """A detector-like crop of one mouse, before and after the camera."""
    cage = _sample_cage(rng, (0.55, 1.05))
    camera = _sample_camera(rng)
    jitter = rng.uniform(-1.0, 1.0, _JITTER)
    offset = rng.uniform(-0.05, 0.05, 2) * size
    pose = _Pose(
        size / 2 + float(offset[0]),
        size / 2 + float(offset[1]),
        size * float(rng.uniform(0.8, 0.95)),
        float(rng.uniform(-15.0, 15.0)),
    )
    img = np.empty((size, size, 3), np.uint8)
    _paint_cage(img, cage)
    _draw_mouse(_Pen(img, pose), style, levels, jitter)
    return _develop(img, camera, rng)


def draw_face(levels: Sequence[int], rng: np.random.Generator, size: int = 224) -> np.ndarray:
    """A size x size RGB face crop of a random mouse showing the given unit levels."""
    return _render_face(_as_levels(levels), rng, size, _sample_style(rng))


def _render_cubicle(
    img: np.ndarray, setup: _Setup, levels: Levels | None, pose: _Pose | None
) -> Box | None:
    """Draws a cubicle in place; no pose means empty. Returns the normalised face box."""
    _paint_cage(img, setup.cage)
    box: Box | None = None
    if pose is not None:
        pen = _Pen(img, pose)
        if levels is None:
            _draw_back(pen, setup.style)
        else:
            _draw_mouse(pen, setup.style, levels, setup.jitter)
            height, width = img.shape[:2]
            box = (pose.cx / width, pose.cy / height, pose.size / width, pose.size / height)
    _paint_glass(img, setup.cage)
    return box


def _sample_scene_pose(
    rng: np.random.Generator, levels: Levels | None, width: int, height: int
) -> _Pose | None:
    """A pose, or for a hidden face sometimes none (an empty-looking cubicle)."""
    pose = _sample_pose(rng, width, height)
    empty = rng.random() < 0.2
    return None if levels is None and empty else pose


def _optional_levels(levels: Sequence[int] | None) -> Levels | None:
    """Validates levels where None means a hidden face."""
    return None if levels is None else _as_levels(levels)


def draw_cubicle(
    levels: Sequence[int] | None, rng: np.random.Generator, width: int, height: int
) -> tuple[np.ndarray, Box | None]:
    """One cubicle view with a mouse; returns the image and its face box (cx, cy, w, h) in
    0..1, or None when the face is hidden (mouse turned away or out of view)."""
    checked = _optional_levels(levels)
    setup = _sample_setup(rng)
    pose = _sample_scene_pose(rng, checked, width, height)
    camera = _sample_camera(rng)
    img = np.empty((height, width, 3), np.uint8)
    box = _render_cubicle(img, setup, checked, pose)
    return _develop(img, camera, rng), box


def _bounds(width: int, count: int) -> list[int]:
    """Column edges of count equal cubicle regions across the frame."""
    if count < 1:
        raise ValueError("need at least one cubicle")
    return [round(i * width / count) for i in range(count + 1)]


def _render_frame(
    cubicles: Sequence[Levels | None],
    setups: Sequence[_Setup],
    poses: Sequence[_Pose | None],
    camera: _Camera,
    rng: np.random.Generator,
    size: tuple[int, int],
) -> tuple[np.ndarray, list[Box | None]]:
    """Side-by-side cubicles, each drawn at native size, split by thin dark dividers."""
    width, height = size
    xs = _bounds(width, len(cubicles))
    frame = np.empty((height, width, 3), np.uint8)
    boxes = [
        _render_cubicle(frame[:, x0:x1], setup, levels, pose)
        for (x0, x1), setup, levels, pose in zip(pairwise(xs), setups, cubicles, poses, strict=True)
    ]
    half = max(1, width // 640)
    for x in xs[1:-1]:
        cv2.rectangle(frame, (x - half, 0), (x + half - 1, height), _DIVIDER, -1)
    return _develop(frame, camera, rng), boxes


def draw_array_frame(
    cubicles: Sequence[Sequence[int] | None],
    rng: np.random.Generator,
    width: int = 1920,
    height: int = 1080,
) -> tuple[np.ndarray, list[Box | None]]:
    """One camera frame of len(cubicles) cubicles; boxes are normalised to each region."""
    checked = [_optional_levels(levels) for levels in cubicles]
    xs = _bounds(width, len(checked))
    setups = [_sample_setup(rng) for _ in checked]
    poses = [
        _sample_scene_pose(rng, levels, x1 - x0, height)
        for (x0, x1), levels in zip(pairwise(xs), checked, strict=True)
    ]
    return _render_frame(checked, setups, poses, _sample_camera(rng), rng, (width, height))


def write_face_dataset(folder: Path, n: int, rng: np.random.Generator, size: int = 224) -> Path:
    """Writes n labelled face PNGs from eight mice (fixed looks each) and returns the CSV;
    pain-condition images draw higher, correlated levels than controls."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    mice = [_sample_style(rng) for _ in range(_MICE)]
    path = folder / "labels.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", *UNITS, "mouse", "condition", "rater"])
        for i in range(n):
            mouse, pain = int(rng.integers(_MICE)), bool(rng.random() < 0.5)
            levels = random_levels(
                rng, float(rng.uniform(0.45, 1.0) if pain else rng.uniform(0.0, 0.35))
            )
            name = f"images/{i:06d}.png"
            img = _render_face(levels, rng, size, mice[mouse])
            if not cv2.imwrite(str(folder / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
                raise OSError(f"could not write {folder / name}")
            condition = "pain" if pain else "control"
            writer.writerow([name, *levels, f"m{mouse + 1:02d}", condition, "synthetic"])
    return path


def write_study_dataset(folder: Path, mice: int, per_mouse: int, rng: np.random.Generator,
                        size: int = 64) -> Path:
    """Writes a study as a lab would label it and returns the CSV: `mice` animals (fixed looks
    each), half of them in pain, `per_mouse` images each. The expert's levels for a mouse lean
    one way per unit beyond what its face shows (a level up or down, kept per mouse), as real
    animals differ from each other: a model that learns to recognise mice can exploit that, but
    only on mice it was trained on."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    path = folder / "labels.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", *UNITS, "mouse", "condition", "rater"])
        for m in range(mice):
            style, pain = _sample_style(rng), m % 2 == 0
            lean = rng.integers(-1, 2, len(UNITS))
            for k in range(per_mouse):
                shown = random_levels(rng, float(rng.uniform(0.45, 1.0) if pain
                                                 else rng.uniform(0.0, 0.35)))
                img = _render_face(shown, rng, size, style)
                name = f"images/m{m:03d}-{k:03d}.png"
                if not cv2.imwrite(str(folder / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
                    raise OSError(f"could not write {folder / name}")
                labelled = np.clip(np.asarray(shown) + lean, 0, 2)
                writer.writerow([name, *map(int, labelled), f"m{m:03d}",
                                 "pain" if pain else "control", "synthetic"])
    return path


ENCODE_AHEAD = 4  # frames drawn ahead of the encoder at most (1080p: 6 MB each)


def _open_writer(path: Path, fps: float, width: int, height: int) -> cv2.VideoWriter:
    """Opens an mp4v (.mp4) or MJPG (.avi) writer, failing clearly if it cannot."""
    codecs = {".mp4": "mp4v", ".avi": "MJPG"}
    codec = codecs.get(path.suffix.lower())
    if codec is None:
        raise ValueError(f"unsupported video extension {path.suffix!r}; use .mp4 or .avi")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*codec), fps, (width, height))
    if not writer.isOpened():
        raise ValueError(f"cannot open a {codec} video writer for {path}")
    return writer


def write_array_video(
    path: Path,
    schedule: Sequence[Sequence[Sequence[int] | None]],
    rng: np.random.Generator,
    fps: float = 5.0,
    width: int = 1920,
    height: int = 1080,
) -> None:
    """Writes one array frame per schedule entry; cubicles, mice and lighting stay fixed
    while each face drifts slowly and its levels follow the schedule."""
    frames = [[_optional_levels(levels) for levels in entry] for entry in schedule]
    if not frames or any(len(entry) != len(frames[0]) for entry in frames):
        raise ValueError("schedule must be non-empty with the same cubicle count per frame")
    xs = _bounds(width, len(frames[0]))
    widths = [x1 - x0 for x0, x1 in pairwise(xs)]
    setups = [_sample_setup(rng) for _ in widths]
    poses = [_sample_pose(rng, w, height) for w in widths]
    camera = _sample_camera(rng)
    writer = _open_writer(path, fps, width, height)
    try:
        # Encoding (a third of the time) runs on a thread of its own while the next frame is
        # drawn: OpenCV lets go of the GIL, and the frames and their order stay the same.
        with ThreadPoolExecutor(1) as encoder:
            pending: deque[Future[None]] = deque()
            for cubicles in frames:
                poses = [_drift(pose, rng, w, height)
                         for pose, w in zip(poses, widths, strict=True)]
                frame, _ = _render_frame(cubicles, setups, poses, camera, rng, (width, height))
                pending.append(encoder.submit(_encode, writer, frame))
                if len(pending) > ENCODE_AHEAD:
                    pending.popleft().result()
            for done in pending:
                done.result()
    finally:
        writer.release()


def _encode(writer: cv2.VideoWriter, frame: np.ndarray) -> None:
    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
