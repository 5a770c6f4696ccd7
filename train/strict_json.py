"""JSON every parser reads: numbers that are not finite (a metric with nothing to measure it
on, e.g. the final fit's validation figures) are written as null, never as NaN or Infinity."""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """The value with every non-finite float inside it (dicts, lists, tuples) made None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """json.dumps of `finite(value)`, refusing anything else that is not JSON."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
