"""Content hashes of the images a model learnt from, carried in its ONNX metadata.

`mgs-eval --frames` measures the exported models on labelled frames; a frame whose image the
scorer or localizer trained on gives an in-sample figure. The hash is of the image file's bytes
(the first 16 hex digits of its sha256), so the same picture copied or renamed is recognised;
re-encoded, resized or cropped, it is a different picture.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from train.labels import LabelError

METADATA_KEY = "training_image_hashes"
HASH_DIGITS = 16  # 64 bits: no two images of a study share one by chance


def image_hash(path: Path) -> str:
    """The content hash of one image file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LabelError(f"{path}: cannot read the image to hash it ({exc.strerror})") from None
    return hashlib.sha256(data).hexdigest()[:HASH_DIGITS]


def image_hashes(paths: Iterable[Path]) -> list[str]:
    """Sorted distinct hashes of image files (a model's training images)."""
    return sorted({image_hash(path) for path in paths})


def metadata_value(hashes: Iterable[str]) -> str:
    return json.dumps(sorted(set(hashes)))


def hashes_in(model: Path, metadata: dict[str, str]) -> set[str] | None:
    """The training-image hashes a model's metadata carries; None when it carries none (demo
    models, or models exported before the hashes were written)."""
    text = metadata.get(METADATA_KEY)
    if not text:
        return None
    try:
        found = json.loads(text)
    except ValueError:
        found = None
    if not isinstance(found, list) or not all(isinstance(h, str) for h in found):
        raise LabelError(f"{model}: metadata {METADATA_KEY} is not a JSON list of hashes")
    return set(found)
