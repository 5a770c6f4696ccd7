"""Builders for records used by several tests."""

from __future__ import annotations

import time

from monitor.schema import ScoreRecord


def score_record(seq: int, mouse: str = "cam0-c1", publisher: str = "test",
                 total: int | None = 3, status: str = "scored") -> ScoreRecord:
    scored = status == "scored"
    levels = [1, 1, 1, 0, 0] if total == 3 else [min(2, (total or 0) // 5 + 1)] * 5
    return ScoreRecord(
        publisher=publisher, seq=seq, wall_time=time.time(), mono_time=time.monotonic(),
        source_time=float(seq), frame_index=seq, camera="cam0", cubicle=1, mouse=mouse,
        status=status, face_box=(0.5, 0.5, 0.3, 0.3), face_score=0.9, sharpness=120.0,
        probs=[[0.2, 0.7, 0.1]] * 5 if scored else None, levels=levels if scored else None,
        total=total if scored else None, expected_total=2.9 if scored else None,
        pain=False if scored else None, model_kind="demo", scorer_id="s", localizer_id="l",
        latency_ms=12.5,
    )
