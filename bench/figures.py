"""Shared by the benchmark scripts: print the figures and keep them as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FOLDER = Path(__file__).parent / "results"


def publish(name: str, results: dict[str, Any], hidden: tuple[str, ...] = (),
            table: bool = True) -> Path:
    """Print the figures (but `hidden` keys; none without `table`) and write all of them to
    results/<name>.json."""
    width = max(len(key) for key in results) + 2
    for key, value in results.items():
        if table and key not in hidden:
            print(f"{key:{width}}{value}")
    FOLDER.mkdir(exist_ok=True)
    path = FOLDER / f"{name}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"written to {path}")
    return path
