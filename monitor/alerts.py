"""Per-mouse pain flag and alert state on the total MGS, with hysteresis.

A mouse is flagged (`pain`) when its total reaches its threshold. Its alert is raised on a
flagged sample and cleared only when the total falls `clear_margin` below the threshold, so a
total hovering at the threshold does not flap.
"""

from __future__ import annotations

from monitor.config import Alerts

DEFAULT_THRESHOLD = 4.0


class AlertEngine:
    def __init__(self, alerts: Alerts, model_cutoff: float | None,
                 clear_margin: float = 1.0) -> None:
        self.default = alerts.threshold if alerts.threshold is not None else (
            model_cutoff if model_cutoff is not None else DEFAULT_THRESHOLD)
        self.overrides = dict(alerts.overrides)
        self.clear_margin = clear_margin
        self.active: set[str] = set()

    def threshold(self, mouse: str) -> float:
        return self.overrides.get(mouse, self.default)

    def update(self, mouse: str, total: int | None) -> tuple[bool | None, str]:
        """(pain flag, alert text) after this sample; an unscored sample keeps the alert as is."""
        if total is None:
            return None, "pain" if mouse in self.active else ""
        threshold = self.threshold(mouse)
        pain = total >= threshold
        if pain:
            self.active.add(mouse)
        elif total <= threshold - self.clear_margin:
            self.active.discard(mouse)
        return pain, "pain" if mouse in self.active else ""
