"""Turn trained PyTorch models into the ONNX files the monitor runs.

Each file carries the metadata contract the monitor checks (monitor/scoring/models.py) and is only
written after a parity check: onnxruntime must reproduce PyTorch's outputs on real images within
`PARITY_TOLERANCE`, otherwise nothing is written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from export.gate import Figures
from monitor.scoring.models import FORMAT_VERSION, LOCALIZER, SCORER
from monitor.units import UNITS
from train import strict_json
from train.image_hashes import METADATA_KEY as TRAINING_IMAGES
from train.image_hashes import metadata_value
from train.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FaceLocalizer,
    LocalizerOutputs,
    ScorerProbs,
    UnitScorer,
)

PARITY_TOLERANCE = 1e-3  # max abs difference of probabilities / box coordinates
OPSET = 18


class ExportError(RuntimeError):
    """The exported graph does not reproduce the PyTorch model; nothing was written."""


def export_scorer(scorer: UnitScorer, path: Path, check_images: np.ndarray, *, kind: str,
                  fingerprint: str = "", metrics: dict[str, Any] | None = None,
                  pain_cutoff: float | None = None, trained_on: str = "",
                  pain_cutoff_how: str = "", training_images: list[str] | None = None,
                  figures: Figures | None = None, accepted_weak: bool = False,
                  recipe: str = "") -> Path:
    """Write the fused five-unit graph: uint8 `image` [N,S,S,3] -> `probs` [N,5,3].
    `trained_on` says which model of a run this is (a fold, or the final fit);
    `pain_cutoff_how` how its cut-off was chosen (a fold's own, or the folds' median);
    `training_images` are the content hashes of the images it learnt from (train/image_hashes),
    so `mgs-eval --frames` can refuse frames it has seen; `figures`, what it is known by
    (export/gate.py), marked accepted when below the floor and `accepted_weak`; `recipe`, how
    a model made by the project itself (the demo's) was made."""
    meta = {
        "units": json.dumps(list(UNITS)),
        "val_metrics": strict_json.dumps(metrics or {}),
        "pain_cutoff": "" if pain_cutoff is None else f"{pain_cutoff:g}",
        # mgs-export takes only cut-offs chosen out of the test set (see export/cli.py)
        "pain_cutoff_from": "" if pain_cutoff is None else "validation",
        "trained_on": trained_on,
        "pain_cutoff_how": "" if pain_cutoff is None else pain_cutoff_how,
        **_training_images(training_images),
        **(figures.metadata(accepted_weak) if figures else {}),
        **({"recipe": recipe} if recipe else {}),
    }
    return _export(ScorerProbs(scorer), path, check_images, SCORER, ["probs"], meta,
                   kind=kind, arch=scorer.arch, size=scorer.input_size, fingerprint=fingerprint)


def export_localizer(localizer: FaceLocalizer, path: Path, check_images: np.ndarray, *,
                     kind: str, fingerprint: str = "",
                     metrics: dict[str, Any] | None = None,
                     training_images: list[str] | None = None, figures: Figures | None = None,
                     accepted_weak: bool = False, recipe: str = "") -> Path:
    """Write the face localizer: uint8 `image` [N,S,S,3] -> `box` [N,4], `score` [N];
    `training_images`, `figures` and `recipe` as for the scorer."""
    meta = {"val_metrics": strict_json.dumps(metrics or {}),
            **_training_images(training_images),
            **(figures.metadata(accepted_weak) if figures else {}),
            **({"recipe": recipe} if recipe else {})}
    return _export(LocalizerOutputs(localizer), path, check_images, LOCALIZER, ["box", "score"],
                   meta, kind=kind, arch=localizer.arch, size=localizer.input_size,
                   fingerprint=fingerprint)


def _training_images(hashes: list[str] | None) -> dict[str, str]:
    """The metadata entry of the training images' hashes; none at all for models made without
    labelled image files (the demo's), which `mgs-eval --frames` then says it cannot check."""
    return {} if hashes is None else {TRAINING_IMAGES: metadata_value(hashes)}


def _export(module: torch.nn.Module, path: Path, check_images: np.ndarray, role: str,
            outputs: list[str], extra: dict[str, str], *, kind: str, arch: str, size: int,
            fingerprint: str) -> Path:
    if kind not in ("demo", "trained"):
        raise ValueError(f"kind must be 'demo' or 'trained', not {kind!r}")
    if check_images.dtype != np.uint8 or check_images.shape[1:] != (size, size, 3):
        raise ValueError(f"parity images must be uint8 [N, {size}, {size}, 3]")
    module = module.eval()
    graph = _to_onnx(module, size, outputs)
    meta = {
        "mgs_format": FORMAT_VERSION, "mgs_role": role, "kind": kind, "arch": arch,
        "input_size": str(size), "input_layout": "NHWC uint8 RGB",
        "normalisation": json.dumps({"mean": IMAGENET_MEAN, "std": IMAGENET_STD}),
        "data_fingerprint": fingerprint,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **extra,
    }
    meta["model_id"] = _model_id(graph, meta)
    onnx.helper.set_model_props(graph, meta)
    data = graph.SerializeToString()
    check_parity(module, data, check_images)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # never leave a half-written model where the monitor looks
    return path


def _to_onnx(module: torch.nn.Module, size: int, outputs: list[str]) -> onnx.ModelProto:
    """Export through torch.export (the maintained exporter) with a dynamic batch axis."""
    example = torch.zeros((2, size, size, 3), dtype=torch.uint8)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, (example,), input_names=["image"], output_names=outputs,
            dynamic_shapes={"images": {0: torch.export.Dim("N")}},
            opset_version=OPSET, dynamo=True, verbose=False,
        )
    assert program is not None
    graph = program.model_proto
    onnx.checker.check_model(graph)
    return graph


def check_parity(module: torch.nn.Module, onnx_bytes: bytes, images: np.ndarray) -> float:
    """Largest abs difference between PyTorch and onnxruntime; raises ExportError past tolerance."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": images})
    with torch.no_grad():
        want = module(torch.from_numpy(images))
    want = want if isinstance(want, tuple) else (want,)
    worst = max(float(np.max(np.abs(g - w.numpy()))) for g, w in zip(got, want, strict=True))
    if worst > PARITY_TOLERANCE:
        raise ExportError(
            f"onnxruntime differs from PyTorch by {worst:.2e} (> {PARITY_TOLERANCE:g}); "
            "model not written"
        )
    return worst


def write_variant(model: onnx.ModelProto, fp32: Path, out: Path, **changes: str) -> Path:
    """Save a converted scorer (int8, fp16) with fp32's metadata plus `changes` and its own id.

    The id hashes the converted graph, so the monitor's records tell the variants apart; the
    file appears atomically, like every model this package writes.
    """
    meta = {p.key: p.value for p in onnx.load(str(fp32)).metadata_props}
    meta.update(changes)
    meta["model_id"] = hashlib.sha256(model.SerializeToString()).hexdigest()[:12]
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    return out


def _model_id(graph: onnx.ModelProto, meta: dict[str, str]) -> str:
    digest = hashlib.sha256(graph.SerializeToString())
    digest.update(json.dumps(meta, sort_keys=True).encode())
    return digest.hexdigest()[:12]
