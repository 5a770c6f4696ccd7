"""The demo: DEMO models trained on synthetic mouse faces, and a synthetic four-camera scene.

Everything here is made by the project itself. The models ship with it (demo/models/: trained
by demo/training.py from DemoSpec() and its fixed seed, marked `kind=demo` in their metadata so
the dashboard and every CSV row say they are not real pain models); the scene's videos and
truth are drawn with NumPy and OpenCV (synth/) on first use, then cached. Nothing here
imports PyTorch: only a rebuild of the models (`train=True`, `--rebuild`) does.

    python -m demo.build --ship    # retrain the shipped models from the recipe (PyTorch)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

import synth
from monitor.config import default_publisher
from monitor.units import UNITS

SHIPPED = Path(__file__).parent / "models"  # the shipped scorer.onnx and localizer.onnx
CUBICLES = 4


@dataclass(frozen=True)
class DemoSpec:
    """Sizes of a demo build; `small()` is the one most tests use, `small_accurate()` the one
    tests that hold the monitor's scores to the scene's truth use."""

    localizer_size: int = 96
    scorer_size: int = 64
    localizer_images: int = 3000
    localizer_epochs: int = 25
    unit_faces: int = 6000
    unit_epochs: int = 16
    cameras: int = 4
    width: int = 1920
    height: int = 1080
    fps: float = 2.0
    seconds: float = 240.0
    every_s: float = 4.0
    seed: int = 7
    build: int = 2  # raise when a build would come out different (e.g. how cubicles are resized)

    @classmethod
    def small(cls) -> DemoSpec:
        return cls(localizer_size=64, scorer_size=48, localizer_images=1500,
                   localizer_epochs=25, unit_faces=600, unit_epochs=6, cameras=2, width=640,
                   height=360, fps=2.0, seconds=12.0, every_s=2.0)

    @classmethod
    def small_accurate(cls) -> DemoSpec:
        """As small, with a scorer trained long enough to score the scene well (units
        0.78-0.96, r 0.96 on its replay) and a scene long enough for every pain mouse's rise
        to reach an alert: the smallest build the monitor's records can be held to its truth."""
        return replace(cls.small(), unit_faces=3000, unit_epochs=12, seconds=36.0)


@dataclass
class DemoBuild:
    """A built scene in `folder`, scored by the shipped models or by models trained into
    `folder` (`--rebuild`, the tests' small builds)."""

    folder: Path
    spec: DemoSpec
    metrics: dict[str, Any]
    shipped: bool = False

    @property
    def models(self) -> Path:
        """The folder holding scorer.onnx and localizer.onnx."""
        return SHIPPED if self.shipped else self.folder

    @property
    def videos(self) -> list[Path]:
        return [self.folder / f"cam{k}.mp4" for k in range(self.spec.cameras)]

    def config(self) -> dict[str, Any]:
        """A monitor config for the scene: each video one camera, sampled by its own clock."""
        return {
            "cameras": [{"name": v.stem, "source": str(v)} for v in self.videos],
            "models": {"scorer": str(self.models / "scorer.onnx"),
                       "localizer": str(self.models / "localizer.onnx")},
            "sampling": {"every_s": self.spec.every_s, "burst": 1},
            "csv": {"folder": str(self.folder / "records")},
            "publisher": default_publisher("mgs-demo"),
        }


def default_folder() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "mgs-monitor" / "demo"


def build_demo(folder: Path | None = None, spec: DemoSpec | None = None,
               rebuild: bool = False, quiet: bool = False, train: bool = False) -> DemoBuild:
    """Build whatever is missing and return the build; cached by spec. The scene is scored by
    the shipped models, or with `train` by models trained into `folder` (PyTorch). A cached
    build is kept with the models it was made with, until `rebuild`."""
    folder = folder or default_folder()
    spec = spec or DemoSpec()
    stamp = folder / "demo.json"
    if not rebuild and stamp.exists():
        saved = json.loads(stamp.read_text())
        # builds from before the models shipped hold trained models in their folder
        shipped = saved.get("models", "trained") == "shipped"
        build = DemoBuild(folder, spec, saved.get("metrics", {}), shipped=shipped)
        if (saved.get("spec") == asdict(spec) and not (train and shipped)
                and all(p.exists() for p in _outputs(build))):
            if not (folder / "mice.csv").exists():
                write_mice_table(build)
            return build
    folder.mkdir(parents=True, exist_ok=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  disable=quiet) as progress:
        if train:
            from demo.training import train_models  # PyTorch: only to make models

            build = DemoBuild(folder, spec, train_models(folder, spec, progress))
        else:
            build = DemoBuild(folder, spec, shipped_metrics(), shipped=True)
        _build_scene(build, progress)
        write_mice_table(build)
    stamp.write_text(json.dumps({"spec": asdict(spec), "metrics": build.metrics,
                                 "models": "shipped" if build.shipped else "trained"},
                                indent=2))
    return build


def _outputs(build: DemoBuild) -> list[Path]:
    return [build.models / "scorer.onnx", build.models / "localizer.onnx", *build.videos,
            build.folder / "truth.csv"]


def shipped_metrics() -> dict[str, Any]:
    """The shipped models' validation metrics, as their metadata keeps them."""
    return {role: json.loads(model_metadata(SHIPPED / f"{role}.onnx").get("val_metrics") or "{}")
            for role in ("localizer", "scorer")}


def model_metadata(path: Path) -> dict[str, str]:
    """A model file's metadata_props, read by onnxruntime (the monitor's own runtime)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(session.get_modelmeta().custom_metadata_map)


def write_mice_table(build: DemoBuild) -> Path:
    """`mice.csv`: each mouse of the scene, its condition and, for pain mice, the second of
    the video its grimace begins (the injection of `pain_course`), as `mgs-eval --alerts` reads
    it. Made from the spec alone, so a cached build gets it without being rebuilt."""
    path = build.folder / "mice.csv"
    lines = ["mouse,condition,onset"]
    for camera in range(build.spec.cameras):
        for cubicle in range(CUBICLES):
            pain = is_pain_mouse(cubicle)
            onset = f"{pain_onset(build.spec.seconds):g}" if pain else ""
            lines.append(f"{mouse_id(camera, cubicle)},{'pain' if pain else 'control'},{onset}")
    path.write_text("\n".join(lines) + "\n")
    return path


# scene --------------------------------------------------------------------------------------
def is_pain_mouse(cubicle: int) -> bool:
    """Cubicles 1 and 3 of every camera (0-based 0 and 2) hold pain mice, 2 and 4 controls."""
    return cubicle % 2 == 0


def mouse_id(camera: int, cubicle: int) -> str:
    return f"cam{camera}-c{cubicle + 1}"


def pain_onset(duration: float) -> float:
    """The injection: a fifth into the video."""
    return 0.2 * duration


def truth_alert_delays(build: DemoBuild, threshold: float = 4.0, window: int = 3,
                       min_valid: int = 2) -> dict[str, float]:
    """Per pain mouse, onset to the first sample at which a pain rule would fire on the scene's
    own truth: the mean of the last `window` visible totals at the sampled frames, counted
    from truth.csv alone (no model, no alert engine), as a check on what the monitor reports."""
    with (build.folder / "truth.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    onset = pain_onset(build.spec.seconds)
    every = max(1, int(build.spec.every_s * build.spec.fps))
    delays: dict[str, float] = {}
    for mouse in sorted({r["mouse"] for r in rows if r["pain_mouse"] == "1"}):
        seen: list[int] = []
        for row in rows:
            if row["mouse"] != mouse or int(row["frame_index"]) % every:
                continue
            if row["visible"] == "1":
                seen.append(sum(int(row[unit]) for unit in UNITS))
            last = seen[-window:]
            if len(last) >= min_valid and sum(last) / len(last) >= threshold:
                delays[mouse] = max(0.0, float(row["source_time"]) - onset)
                break
    return delays


def records_against_truth(build: DemoBuild, records: Path) -> dict[str, Any]:
    """A replay's score CSV joined row by row (camera, cubicle, frame) to the scene's truth:
    per-unit agreement and Pearson r of totals on the scored rows, the share of visible faces
    scored, the rows scored where the mouse had turned away, and per mouse whether any of its
    rows carried a pain alert, pain mice and controls apart."""
    truth = {(r["camera"], r["cubicle"], r["frame_index"]): r
             for r in _read_csv(build.folder / "truth.csv")}
    rows = [(row, truth[row["camera"], row["cubicle"], row["frame_index"]])
            for row in _read_csv(records)]
    scored = [(row, true) for row, true in rows if row["status"] == "scored"]
    got = np.array([int(row["total"]) for row, _ in scored])
    want = np.array([sum(int(true[u]) for u in UNITS) for _, true in scored])
    pain = {row["mouse"]: true["pain_mouse"] == "1" for row, true in rows}
    alerted = {mouse: any(row["mouse"] == mouse and "pain" in row["alert"].split(",")
                          for row, _ in rows) for mouse in pain}
    return {
        "records": len(rows), "scored": len(scored),
        "scored_of_visible_faces": len(scored) / max(1, sum(t["visible"] == "1" for _, t in rows)),
        "scored_hidden_faces": sum(true["visible"] != "1" for _, true in scored),
        "unit_agreement": {u: float(np.mean([row[u] == true[u] for row, true in scored]))
                           for u in UNITS},
        "total_pearson_r": float(np.corrcoef(got, want)[0, 1]),
        "total_mean_abs_error": float(np.abs(got - want).mean()),
        "pain_mice_alerted": {m: alerted[m] for m in sorted(pain) if pain[m]},
        "controls_alerted": {m: alerted[m] for m in sorted(pain) if not pain[m]},
    }


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def pain_course(t: float, duration: float, pain_mouse: bool) -> float:
    """0-1 pain intensity: baseline, injection at 20%, rise to a peak, relief after analgesia."""
    if not pain_mouse:
        return 0.0
    start, peak, relief = pain_onset(duration), 0.45 * duration, 0.75 * duration
    if t < start:
        return 0.0
    if t < peak:
        return (t - start) / (peak - start)
    if t < relief:
        return 1.0
    return max(0.0, 1.0 - (t - relief) / (0.15 * duration))


def scene_schedule(spec: DemoSpec, camera: int, rng: np.random.Generator
                   ) -> tuple[list[list[synth.Levels | None]], list[dict[str, Any]]]:
    """Per frame, per cubicle levels (None = face hidden) and the ground-truth rows."""
    frames = int(spec.seconds * spec.fps)
    schedule: list[list[synth.Levels | None]] = []
    truth: list[dict[str, Any]] = []
    held: list[synth.Levels] = [synth.random_levels(rng, 0.0) for _ in range(CUBICLES)]
    for index in range(frames):
        t = index / spec.fps
        row: list[synth.Levels | None] = []
        for cubicle in range(CUBICLES):
            if index % max(1, int(spec.every_s * spec.fps)) == 0:
                pain = pain_course(t, spec.seconds, pain_mouse=is_pain_mouse(cubicle))
                held[cubicle] = synth.random_levels(rng, pain)
            hidden = rng.random() < 0.08
            row.append(None if hidden else held[cubicle])
            truth.append({"camera": f"cam{camera}", "cubicle": cubicle + 1,
                          "mouse": mouse_id(camera, cubicle), "frame_index": index,
                          "source_time": round(t, 3), "visible": int(not hidden),
                          "pain_mouse": int(is_pain_mouse(cubicle)),
                          **dict(zip(UNITS, held[cubicle], strict=True))})
        schedule.append(row)
    return schedule, truth


def _build_scene(build: DemoBuild, progress: Progress) -> None:
    spec = build.spec
    rng = np.random.default_rng(spec.seed + 1)
    task = progress.add_task("demo videos", total=spec.cameras)
    rows: list[dict[str, Any]] = []
    for camera, video in enumerate(build.videos):
        schedule, truth = scene_schedule(spec, camera, rng)
        synth.write_array_video(video, schedule, rng, fps=spec.fps, width=spec.width,
                                height=spec.height)
        rows.extend(truth)
        progress.advance(task)
    header = list(rows[0])
    lines = [",".join(header)] + [",".join(str(r[k]) for k in header) for r in rows]
    (build.folder / "truth.csv").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    """`python -m demo.build --ship`: retrain the shipped models from DemoSpec() and its seed."""
    parser = argparse.ArgumentParser(description="Make the demo's shipped models.")
    parser.add_argument("--ship", action="store_true", required=True,
                        help=f"train DemoSpec()'s models into {SHIPPED} (PyTorch)")
    parser.parse_args(argv)
    from demo.training import train_models  # PyTorch: only to make models

    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns) as progress:
        train_models(SHIPPED, DemoSpec(), progress)
    for role in ("localizer", "scorer"):
        path = SHIPPED / f"{role}.onnx"
        print(f"{path}: model_id {model_metadata(path)['model_id']}, "
              f"{path.stat().st_size:,} bytes")
    print("check them: pytest tests/test_demo_models.py tests/test_monitor_vs_truth.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
