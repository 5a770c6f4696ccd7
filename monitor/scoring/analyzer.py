"""Frames in, records out: the two models loaded and checked, each cubicle's face found and
scored, one record per cubicle. Pure, so the pipeline, `score` (stills) and `snapshot` share it.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np

from monitor.capture.workers import Frame
from monitor.config import Camera, MonitorConfig
from monitor.schema import ScoreRecord, new_instance
from monitor.scoring.faces import FaceFinder, FaceResult, cubicle_pixels
from monitor.scoring.models import LOCALIZER, SCORER, OnnxModel
from monitor.scoring.scorer import Scorer, UnitScores


@dataclass
class Models:
    """The two loaded models; loading validates them (ModelError names the file)."""

    scorer: OnnxModel
    localizer: OnnxModel

    @classmethod
    def load(cls, config: MonitorConfig) -> Models:
        m = config.models
        return cls(OnnxModel(m.scorer, SCORER, m.providers, m.threads, m.runtime),
                   OnnxModel(m.localizer, LOCALIZER, m.providers, m.threads, m.runtime))

    @property
    def is_demo(self) -> bool:
        return self.scorer.info.is_demo or self.localizer.info.is_demo

    @property
    def kind(self) -> str:
        return "demo" if self.is_demo else "trained"

    @property
    def precision(self) -> str:
        return self.scorer.info.extra.get("precision", "fp32")

    def figures(self) -> str:
        """Each model's figures, for the start line, the dashboard and the status reports."""
        return "; ".join(f"{role} {model.info.figures}" for role, model in self._by_role()
                         if model.info.figures)

    def below_floor(self) -> str:
        """Why a model runs below its floor ("" when none does): shown in red wherever the
        figures are."""
        return "; ".join(f"{role} {model.info.below_floor}" for role, model in self._by_role()
                         if model.info.below_floor)

    def _by_role(self) -> tuple[tuple[str, OnnxModel], ...]:
        return (("scorer", self.scorer), ("localizer", self.localizer))

    def runs_on(self) -> str:
        """Which runtime runs each model, for the start line."""
        return (f"scorer ({self.precision}) on {self.scorer.runtime}, localizer on "
                f"{self.localizer.runtime}")

    def warnings(self) -> list[str]:
        """What the user should know about how the models run (said once each)."""
        found = [self.mismatch(), self.scorer.warning, self.localizer.warning]
        return list(dict.fromkeys(w for w in found if w))

    def mismatch(self) -> str:
        """A line for the user when the scorer file does not suit the device it runs on."""
        if self.precision == "fp16" and not self.scorer.on_gpu:
            return ("fp16 scorer running on the CPU: slower than the fp32 file, which is the "
                    "one to use without a GPU")
        return ""


class Analyzer:
    """Frames in, one record per cubicle out: localize all cubicles, score all faces at once."""

    def __init__(self, config: MonitorConfig, models: Models) -> None:
        self.config = config
        self.models = models
        self.cameras = {c.name: c for c in config.cameras}
        self.scorer = Scorer(models.scorer)
        self.finder = FaceFinder(models.localizer, config.faces, self.scorer.input_size)
        self.instance = new_instance()  # this run: its records' sequence numbers start here
        self._seq = itertools.count(1)

    def process(self, frames: list[Frame]) -> list[ScoreRecord]:
        return [record for record, _ in self.analyze(frames)]

    def analyze(self, frames: list[Frame]) -> list[tuple[ScoreRecord, np.ndarray | None]]:
        """Each record with the face crop it was scored from (None when none was scored)."""
        slots: list[tuple[Frame, int]] = []  # (frame, cubicle index) per region, in order
        regions: list[np.ndarray] = []
        for frame in frames:
            if frame.image is None:
                continue
            for index, cubicle in enumerate(self._camera(frame).cubicle_list()):
                x0, y0, x1, y1 = cubicle_pixels(frame.image.shape, cubicle)
                regions.append(frame.image[y0:y1, x0:x1])
                slots.append((frame, index))
        faces = self.finder.find(regions)
        crops = [f.crop for f in faces if f.crop is not None]
        scores = iter(self.scorer.score(crops) if crops else [])
        found = {(id(fr), i): (face, next(scores) if face.crop is not None else None)
                 for (fr, i), face in zip(slots, faces, strict=True)}
        analyzed = []
        for frame in frames:
            for index, cubicle in enumerate(self._camera(frame).cubicle_list()):
                face, unit_scores = found.get((id(frame), index), (None, None))
                record = self.record_for(frame, index + 1, cubicle.mouse, face, unit_scores)
                analyzed.append((record, face.crop if face and unit_scores else None))
        return analyzed

    def _camera(self, frame: Frame) -> Camera:
        return self.cameras[frame.camera]

    def record_for(self, frame: Frame, cubicle: int, mouse: str, face: FaceResult | None,
                scores: UnitScores | None) -> ScoreRecord:
        """One record; without a face result the frame was missing, unless crops were scored."""
        status = face.status if face else ("scored" if scores else "camera_down")
        return ScoreRecord(
            publisher=self.config.publisher, seq=next(self._seq), wall_time=time.time(),
            mono_time=time.monotonic(), source_time=frame.source_time,
            frame_index=frame.frame_index, camera=frame.camera, cubicle=cubicle, mouse=mouse,
            status=status, face_box=face.box if face else None,
            face_score=face.score if face else None,
            sharpness=face.sharpness if face else None,
            probs=scores.probs.round(5).tolist() if scores else None,
            levels=scores.levels if scores else None, total=scores.total if scores else None,
            expected_total=scores.expected_total if scores else None,
            model_kind=self.models.kind, scorer_id=self.models.scorer.info.model_id,
            localizer_id=self.models.localizer.info.model_id,
            latency_ms=(time.monotonic() - frame.mono_time) * 1000.0, instance=self.instance,
        )
