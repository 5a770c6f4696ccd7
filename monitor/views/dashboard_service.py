"""The dashboard as a service: a subscriber's messages, drawn live.

`mgs-monitor dashboard` follows a monitor over ZeroMQ; `run`, `replay` and `demo` follow their
own monitor the same way, over its in-process endpoint. Either way the screen is built only from
the messages (`DashboardState.apply`): the progress of recorded media from camera reports, the
header, notices and health lines from status reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from monitor.outputs.bus import Subscriber
from monitor.outputs.systemd import Watchdog
from monitor.schema import StatusReport
from monitor.signals import stop_on_signals
from monitor.views.dashboard import DashboardState, render

RECEIVE_MS = 250  # the screen is redrawn at least this often
DRAIN_MS = 100  # once done: what is queued, and what arrives within this long, is taken in


def follow(subscriber: Subscriber, state: DashboardState, done: Callable[[], bool], *,
           console: Console, show: bool, progress: Progress | None = None,
           watchdog: Watchdog | None = None) -> None:
    """Take in messages until `done()`, then what is still on its way. Draws the progress bars
    and/or the dashboard, prints each new notice, and vouches to systemd's watchdog only while
    the monitor's status reports keep coming."""
    live = Live(console=console, refresh_per_second=4, transient=False) \
        if show or progress is not None else None
    heard = time.monotonic()
    with live if live is not None else nullcontext():
        while True:
            finished = done()  # then one last pass takes what is already queued
            for message in subscriber.receive(DRAIN_MS if finished else RECEIVE_MS):
                notice, mixed = state.notice, len(state.mixed)
                state.apply(message)
                if isinstance(message, StatusReport):
                    heard = time.monotonic()
                if state.notice != notice:
                    console.print(f"[magenta]{state.notice}[/]")
                for line in state.mixed[mixed:]:
                    console.print(f"[bold red]{line}[/]")
            for problem in subscriber.problems():  # e.g. a key the monitor refuses
                console.print(f"[bold red]{problem}[/]")
            state.malformed = subscriber.malformed
            if watchdog is not None:
                watchdog.ping(heard)
            if live is not None:
                live.update(screen(state, progress, show, time.time()))
            if finished:
                break
    if live is not None and not console.is_terminal:
        console.line()  # a non-terminal Live leaves its last line open


def screen(state: DashboardState, progress: Progress | None, show: bool,
           now: float) -> RenderableType:
    """The progress bars of recorded media (from camera reports) and/or the dashboard."""
    parts: list[Any] = []
    if progress is not None:
        for task in progress.tasks:
            report = state.cameras.get(task.description)
            if report is not None:
                progress.update(task.id, completed=report.position,
                                total=report.total_frames or None)
        parts.append(progress)
    if show:
        parts.append(render(state, now))
    return Group(*parts)


def media_progress(cameras: list[str], console: Console) -> Progress:
    """A bar per recorded video (or image folder), in frames."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.completed}/{task.total} frames"),
                        TimeRemainingColumn(), console=console)
    for camera in cameras:
        progress.add_task(camera, total=None)
    return progress


def run_dashboard(endpoint: str, server_key: Path | None, seconds: float | None,
                  client_key: Path | None = None) -> int:
    """`mgs-monitor dashboard`: follow a running monitor until Ctrl-C (or `seconds`)."""
    state = DashboardState(title=f"mgs-monitor dashboard — {endpoint}")
    deadline = time.monotonic() + seconds if seconds else None
    with Subscriber(endpoint, server_key=server_key, client_key=client_key) as subscriber, \
            stop_on_signals() as stopping:
        follow(subscriber, state,
               lambda: stopping() or (deadline is not None and time.monotonic() >= deadline),
               console=Console(), show=True)
    return 0
