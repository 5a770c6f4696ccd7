"""Running the monitor: `mgs-monitor run`, `replay` and `demo` end here.

The main thread loads the models, starts the Monitor (whose pipeline thread opens its own
sinks), and follows it as any dashboard would: subscribed to its in-process endpoint before the
pipeline binds it, so nothing is missed. The progress bars, the dashboard, the notices printed
and the systemd watchdog are all fed by the messages the pipeline publishes; signals are handled
here, in the main thread.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.text import Text

from monitor.capture import workers as capture
from monitor.capture.workers import Opener
from monitor.config import MonitorConfig
from monitor.outputs.bus import Subscriber
from monitor.outputs.csvlog import Rotate, period_names
from monitor.outputs.systemd import Watchdog, notify
from monitor.pipeline import Monitor
from monitor.schema import MESSAGE_TYPES, TOPIC_CAMERA, TOPIC_STATUS
from monitor.scoring.analyzer import Models
from monitor.scoring.models import runtime_conflict
from monitor.signals import stop_on_signals
from monitor.views.dashboard import DashboardState
from monitor.views.dashboard_service import follow, media_progress


def run_monitor(config: MonitorConfig, csv_path: Path, *, replay: bool, realtime: bool,
                config_path: Path | None = None, dashboard: bool = True,
                opener: Opener | None = None, watchdog: Watchdog | None = None,
                rotate: Rotate = "never") -> int:
    """Watch until the media ends or a signal asks for a stop; the exit code. `opener` opens a
    camera source (OpenCV's, unless a test gives a camera device of its own)."""
    models = Models.load(config)
    console = Console(stderr=True)
    monitor = Monitor(config, models, csv_path, opener=opener or capture.open_capture,
                      realtime=realtime, replay=replay, config_path=config_path, rotate=rotate)
    if models.is_demo:
        console.print("[bold yellow]DEMO models (trained on synthetic faces): "
                      "not a real pain model[/]")
    console.print(f"models: {models.runs_on()}")
    console.print(monitor.alert_line())
    for line in figure_lines(models.figures(), models.below_floor()):
        console.print(line)
    for advice in [*models.warnings(), runtime_conflict()]:
        if advice:
            console.print(f"[yellow]{advice}[/]")
    progress = media_progress([c.name for c in config.cameras], console) if replay else None
    show = dashboard and console.is_terminal
    # Without a dashboard, reports alone feed the progress bars, notices and the watchdog.
    topics = tuple(MESSAGE_TYPES) if show else (TOPIC_CAMERA, TOPIC_STATUS)

    def stop() -> None:
        notify("STOPPING=1")
        monitor.request_stop()

    with Subscriber(monitor.view_endpoint, topics=topics) as view, \
            stop_on_signals(stop, monitor.request_reload):
        monitor.start()
        if config.metrics is not None:
            console.print(f"metrics for Prometheus: http://{config.metrics.listen}/metrics")
        notify("READY=1")
        follow(view, DashboardState(), lambda: monitor.wait(0), console=console, show=show,
               progress=progress, watchdog=watchdog or Watchdog())
    if monitor.error is not None:
        raise monitor.error
    console.print(f"{monitor.records} records written to {period_names(csv_path, rotate)}")
    return 0


def figure_lines(figures: str, below_floor: str) -> list[Text]:
    """The models' figures for the start line: red, with the reason, when one is below its
    floor (exported with --accept-weak); none for models without figures (the demo's)."""
    lines = [Text(f"model figures: {figures}", style="bold red" if below_floor else "")]
    if below_floor:
        lines.append(Text(f"MODEL BELOW THE FLOOR (exported with --accept-weak): {below_floor}",
                          style="bold red"))
    return lines if figures or below_floor else []
