"""`mgs-monitor`: watch cameras live, replay recordings, score images, attach dashboards/loggers.

Every error a user can cause ends in one line naming the file, key or value (exit code 2);
Ctrl-C or SIGTERM stops the cameras first, then drains scoring and logging (exit code 0).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from monitor import __version__
from monitor.alerts import AlertEvent, HookRunner
from monitor.bus import BusError, Publisher, Subscriber, make_keys, run_proxy
from monitor.config import (
    DEFAULT_ENDPOINT,
    Camera,
    ConfigError,
    MonitorConfig,
    build_config,
    load_config,
    read_config_file,
)
from monitor.csvlog import CsvLogError, CsvLogger, SideLog
from monitor.dashboard import DashboardState, render
from monitor.markers import MarkerError, add_marker, latest_scores
from monitor.memory import keep_frames_out_of_the_heap
from monitor.models import ModelError, runtime_conflict
from monitor.pipeline import Models, Monitor, Outputs
from monitor.records import TOPIC_ALERT, TOPIC_SCORE, SequenceTracker
from monitor.report import ReportError, write_report
from monitor.stills import StillsError, score_stills
from monitor.systemd import Watchdog, notify

COMMANDS = ("run", "replay", "score", "dashboard", "log", "check-config", "demo", "mark",
            "report", "proxy", "keys")
DEFAULT_MODELS = Path(os.environ.get("MGS_MODELS", "models"))
EPILOG = """\
examples:
  mgs-monitor --cameras 4                  watch camera devices 0-3 (16 mice), sample every 120 s
  mgs-monitor --config lab.yaml            cameras, cubicles, models and outputs from a YAML file
  mgs-monitor replay a.mp4 b.mp4 --out scores.csv
                                           score recorded videos, each video one camera
  mgs-monitor score photos/ --out scores.csv
                                           score still images of cubicle arrays (or --crops)
  mgs-monitor dashboard                    attach a live dashboard to a running monitor
  mgs-monitor log --out scores.csv         attach a CSV logger to a running monitor
  mgs-monitor check-config lab.yaml        validate a config, naming every wrong key
  mgs-monitor mark M101 "NTG injected"     record an event marker beside the newest CSV
  mgs-monitor report mgs-records/*.csv     per-mouse series plots and summary (HTML, PNG)
  mgs-monitor demo                         synthetic cameras and DEMO models, no hardware needed

Run `mgs-monitor COMMAND --help` for the options of each command.
"""


class UsageError(ValueError):
    """A command-line value that cannot be used."""


USER_ERRORS = (ConfigError, ModelError, BusError, CsvLogError, UsageError, MarkerError,
               ReportError, StillsError)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    keep_frames_out_of_the_heap()
    try:
        return int(args.func(args))
    except USER_ERRORS as exc:
        print(f"mgs-monitor: error: {exc}", file=sys.stderr)
        return 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv = ["run", *argv]  # `mgs-monitor --cameras 4` means `mgs-monitor run --cameras 4`
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgs-monitor", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Live Mouse Grimace Scale (MGS) monitor: cameras -> mouse faces -> five "
        "action-unit scores (0-2 each, total 0-10) -> alerts, dashboard and CSV.",
    )
    parser.add_argument("--version", action="version", version=f"mgs-monitor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_replay(sub)
    _add_score(sub)
    _add_dashboard(sub)
    _add_log(sub)
    check = sub.add_parser("check-config", help="validate a YAML config and exit")
    check.add_argument("config", type=Path, help="the YAML file")
    check.set_defaults(func=cmd_check_config)
    _add_mark(sub)
    _add_report(sub)
    _add_proxy(sub)
    _add_keys(sub)
    demo = sub.add_parser("demo", help="run on a synthetic four-camera scene with DEMO models")
    demo.add_argument("--rebuild", action="store_true", help="rebuild demo models and scene")
    demo.add_argument("--build-only", action="store_true", help="build, then exit")
    demo.add_argument("--fast", action="store_true", help="replay as fast as possible")
    _add_outputs(demo)
    demo.set_defaults(func=cmd_demo)
    return parser


def _add_models(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("models (ignored where --config sets them)")
    group.add_argument("--models", type=Path, default=DEFAULT_MODELS, metavar="DIR",
                       help="folder with scorer.onnx and localizer.onnx (default: %(default)s, "
                       "or $MGS_MODELS)")
    group.add_argument("--cpu", action="store_true", help="use the CPU even if a GPU is present")


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampling (overrides the config)")
    mode = group.add_mutually_exclusive_group()
    mode.add_argument("--every", type=float, metavar="S", help="seconds between samples "
                      "(default 120, the DeepMGS snapshot interval)")
    mode.add_argument("--continuous", action="store_true", help="score every frame")
    group.add_argument("--burst", type=int, metavar="K",
                       help="frames grabbed per sample, sharpest kept (default 5)")


def _add_outputs(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("outputs")
    group.add_argument("--out", type=Path, metavar="CSV", help="CSV file for the records")
    group.add_argument("--endpoint", help=f"ZeroMQ endpoint to publish on "
                       f"(default {DEFAULT_ENDPOINT})")
    group.add_argument("--no-publish", action="store_true", help="do not publish on ZeroMQ")
    group.add_argument("--insecure", action="store_true",
                       help="allow publishing beyond this machine without CURVE keys")
    group.add_argument("--no-dashboard", action="store_true", help="no live dashboard")


def _add_run(sub: Any) -> None:
    run = sub.add_parser("run", help="watch cameras live (the default command)",
                         description="Watch cameras live. Without --config, --cameras N opens "
                         "devices 0..N-1, each a four-cubicle array (mice camK-c1..c4).")
    run.add_argument("--cameras", type=int, default=1, metavar="N",
                     help="camera devices 0..N-1 (default %(default)s; ignored with --config)")
    run.add_argument("--config", type=Path, help="YAML config (see `check-config`)")
    _add_sampling(run)
    _add_models(run)
    _add_outputs(run)
    run.set_defaults(func=cmd_run)


def _add_replay(sub: Any) -> None:
    replay = sub.add_parser("replay", help="score recorded videos, each video one camera",
                            description="Run the monitor over recorded videos, sampling by each "
                            "video's own clock, as fast as possible unless --realtime.")
    replay.add_argument("videos", nargs="+", type=Path, help="video files (or image folders)")
    replay.add_argument("--realtime", action="store_true", help="pace at recorded speed")
    replay.add_argument("--config", type=Path,
                        help="YAML config; its cameras give the cubicle layout of each video")
    _add_sampling(replay)
    _add_models(replay)
    _add_outputs(replay)
    replay.set_defaults(func=cmd_replay)


def _add_score(sub: Any) -> None:
    score = sub.add_parser("score", help="score still images or folders into a CSV")
    score.add_argument("paths", nargs="+", type=Path, help="images or folders of images")
    score.add_argument("--crops", action="store_true",
                       help="images are face crops (skip the face localizer)")
    score.add_argument("--out", type=Path, default=Path("scores.csv"), metavar="CSV",
                       help="CSV file to write (default %(default)s)")
    _add_models(score)
    score.set_defaults(func=cmd_score)


def _add_dashboard(sub: Any) -> None:
    dash = sub.add_parser("dashboard", help="live dashboard of a running monitor (ZeroMQ)")
    dash.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help="default %(default)s")
    _add_server_key(dash)
    dash.add_argument("--seconds", type=float, help="stop after this long")
    dash.set_defaults(func=cmd_dashboard)


def _add_log(sub: Any) -> None:
    log = sub.add_parser("log", help="write a running monitor's records to CSV (ZeroMQ)")
    log.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help="default %(default)s")
    _add_server_key(log)
    log.add_argument("--out", type=Path, default=Path("mgs-records/scores.csv"), metavar="CSV",
                     help="CSV file to append to (default %(default)s)")
    log.add_argument("--seconds", type=float, help="stop after this long")
    log.set_defaults(func=cmd_log)


def _add_server_key(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server-key", type=Path, metavar="FILE",
                        help="the monitor's public CURVE certificate (server.key from "
                        "`mgs-monitor keys`) when it publishes with bus.secret_key")


def _add_keys(sub: Any) -> None:
    keys = sub.add_parser("keys", help="make a CURVE keypair for publishing beyond this machine")
    keys.add_argument("folder", type=Path, help="where to write server.key and server.key_secret")
    keys.set_defaults(func=cmd_keys)


def _add_proxy(sub: Any) -> None:
    proxy = sub.add_parser("proxy", help="join several monitors' records into one stream",
                           description="An XSUB/XPUB proxy: it subscribes to every monitor "
                           "named with --from and republishes everything on --backend, where "
                           "one `dashboard` or `log` sees all capture hosts.")
    proxy.add_argument("--from", dest="sources", action="append", required=True,
                       metavar="ENDPOINT", help="a monitor's bus.endpoint (repeat for each)")
    proxy.add_argument("--backend", default="tcp://127.0.0.1:5562",
                       help="where dashboards and loggers connect (default %(default)s)")
    proxy.add_argument("--seconds", type=float, help="stop after this long")
    proxy.set_defaults(func=cmd_proxy)


def _add_mark(sub: Any) -> None:
    mark = sub.add_parser("mark", help="record an event marker (e.g. an injection) for a mouse")
    mark.add_argument("mouse", help="mouse id, or '*' for every mouse")
    mark.add_argument("text", help="what happened, e.g. 'NTG injected'")
    where = mark.add_mutually_exclusive_group()
    where.add_argument("--csv", type=Path, help="score CSV the marker belongs to")
    where.add_argument("--folder", type=Path, default=Path("mgs-records"),
                       help="use the newest scores*.csv here (default %(default)s)")
    mark.set_defaults(func=cmd_mark)


def _add_report(sub: Any) -> None:
    report = sub.add_parser("report", help="per-mouse series plots and summary from CSVs")
    report.add_argument("csv", nargs="+", type=Path, help="score CSVs of one session")
    report.add_argument("--out", type=Path, default=Path("mgs-report"), metavar="DIR",
                        help="folder for index.html and the PNGs (default %(default)s)")
    report.set_defaults(func=cmd_report)


# configs ------------------------------------------------------------------------------------
def config_from_args(args: argparse.Namespace, raw: dict[str, Any],
                     origin: str = "command line") -> MonitorConfig:
    """Command-line values laid over the settings `raw` (from a file, or built), validated once."""
    if "models" not in raw:
        raw["models"] = {"scorer": str(args.models / "scorer.onnx"),
                         "localizer": str(args.models / "localizer.onnx")}
    if getattr(args, "cpu", False):
        raw["models"]["providers"] = ["CPUExecutionProvider"]
    _sampling_flags(args, raw)
    bus = dict(raw.get("bus") or {})
    if args.endpoint:
        bus["endpoint"] = args.endpoint
    if args.no_publish:
        bus["enabled"] = False
    if args.insecure:
        bus["insecure"] = True
    raw["bus"] = bus
    return build_config(raw, origin=origin)


def _sampling_flags(args: argparse.Namespace, raw: dict[str, Any]) -> None:
    """--every/--continuous/--burst win over the config, per-camera sampling included."""
    flags: dict[str, Any] = {}
    if getattr(args, "every", None) is not None:
        flags.update(every_s=args.every, continuous=False)
    if getattr(args, "continuous", False):
        flags["continuous"] = True
    if getattr(args, "burst", None) is not None:
        flags["burst"] = args.burst
    if not flags:
        return
    raw["sampling"] = {**(raw.get("sampling") or {}), **flags}
    for camera in raw.get("cameras") or []:
        if isinstance(camera, dict) and isinstance(camera.get("sampling"), dict):
            camera["sampling"] = {**camera["sampling"], **flags}


def file_settings(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The --config file's settings (or none) and the origin errors should name."""
    if getattr(args, "config", None):
        return read_config_file(args.config), str(args.config)
    return {}, "command line"


def csv_path(config: MonitorConfig, out: Path | None) -> Path:
    if out is not None:
        return out
    return config.csv.folder / f"scores-{time.strftime('%Y%m%d-%H%M%S')}.csv"


# commands -----------------------------------------------------------------------------------
def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    mice = sum(len(c.cubicle_list()) for c in config.cameras)
    print(f"{args.config}: ok ({len(config.cameras)} cameras, {mice} mice)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if args.cameras < 1:
        raise UsageError(f"--cameras {args.cameras}: need at least one camera")
    raw, origin = file_settings(args)
    if not args.config:
        raw["cameras"] = [{"name": f"cam{i}", "source": i} for i in range(args.cameras)]
    config = config_from_args(args, raw, origin)
    return run_monitor(config, args, realtime=True, replay=False)


def cmd_replay(args: argparse.Namespace) -> int:
    for video in args.videos:
        if not video.exists():
            raise UsageError(f"{video}: no such video file")
    raw, origin = file_settings(args)
    in_file = raw.get("cameras")
    layouts: list[Any] = in_file if isinstance(in_file, list) else []
    cameras = []
    for i, video in enumerate(args.videos):  # each video replaces the i-th camera's source
        layout = layouts[i] if i < len(layouts) and isinstance(layouts[i], dict) else {}
        cameras.append({**layout, "name": layout.get("name", f"cam{i}"), "source": str(video)})
    raw["cameras"] = cameras
    config = config_from_args(args, raw, origin)
    return run_monitor(config, args, realtime=args.realtime, replay=True)


def cmd_score(args: argparse.Namespace) -> int:
    return score_stills(args.paths, args.out, args.models, crops=args.crops, cpu=args.cpu)


def cmd_keys(args: argparse.Namespace) -> int:
    public, secret = make_keys(args.folder)
    print(f"secret (keep with the monitor, bus.secret_key): {secret}\n"
          f"public (give to dashboards and loggers, --server-key): {public}")
    return 0


def cmd_proxy(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.seconds if args.seconds else None
    print(f"proxy: {', '.join(args.sources)} -> {args.backend} (Ctrl-C to stop)",
          file=sys.stderr)
    with _stop_on_signals() as stopping:
        run_proxy(args.sources, args.backend, lambda: stopping() or (
            deadline is not None and time.monotonic() >= deadline))
    return 0


def cmd_mark(args: argparse.Namespace) -> int:
    scores = args.csv or latest_scores(args.folder)
    path = add_marker(scores, args.mouse, args.text)
    print(f"marker for {args.mouse} written to {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    html = write_report(args.csv, args.out)
    print(f"report written to {html}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from train.demo import build_demo
    except ImportError as exc:
        raise UsageError(f"the demo builds its models with PyTorch ({exc.name} missing): "
                         "install with pip install -e '.[train]'") from exc
    demo = build_demo(rebuild=args.rebuild)
    if args.build_only:
        print(f"demo ready in {demo.folder}")
        return 0
    config = config_from_args(args, demo.config(), origin=str(demo.folder))
    return run_monitor(config, args, realtime=not args.fast, replay=True)


def cmd_dashboard(args: argparse.Namespace) -> int:
    subscriber = Subscriber(args.endpoint, server_key=args.server_key)
    state = DashboardState()
    state.title = f"mgs-monitor dashboard — {args.endpoint}"
    sequence = SequenceTracker()
    deadline = time.monotonic() + args.seconds if args.seconds else None
    try:
        with Live(render(state, time.time()), refresh_per_second=4, screen=False) as live, \
                _stop_on_signals() as stopping:
            while not stopping() and (deadline is None or time.monotonic() < deadline):
                for message in subscriber.receive(250):
                    if message.score:
                        record = message.score
                        state.add_score(record)
                        state.records_total += 1
                        state.gaps += sequence.check(record.publisher, record.seq) is not None
                        state.demo = state.demo or record.model_kind == "demo"
                    elif message.camera:
                        state.add_camera(message.camera)
                    elif message.alert:
                        state.add_alert(message.alert)
                live.update(render(state, time.time()))
    finally:
        subscriber.close()
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    subscriber = Subscriber(args.endpoint, topics=(TOPIC_SCORE, TOPIC_ALERT),
                            server_key=args.server_key)
    logger = CsvLogger(args.out)
    alert_log = SideLog(args.out.with_suffix(".alerts.csv"), AlertEvent.CSV_COLUMNS)
    deadline = time.monotonic() + args.seconds if args.seconds else None
    console = Console(stderr=True)
    console.print(f"logging {args.endpoint} to {args.out} (Ctrl-C to stop)")
    notify("READY=1")
    watchdog = Watchdog()
    try:
        with _stop_on_signals() as stopping:
            while not stopping() and (deadline is None or time.monotonic() < deadline):
                watchdog.ping(time.monotonic())
                wrote = False
                for message in subscriber.receive(250):
                    if message.score:
                        logger.write(message.score)
                        wrote = True
                    elif message.alert:
                        alert_log.write(message.alert.csv_row())
                if wrote:
                    logger.sync()
    finally:
        logger.close()
        subscriber.close()
    gaps = f", {len(logger.gaps)} gaps written to {logger.gaps_path}" if logger.gaps else ""
    console.print(f"{logger.rows} records written to {args.out}{gaps}")
    return 0


# running the monitor ------------------------------------------------------------------------
def run_monitor(config: MonitorConfig, args: argparse.Namespace, *, realtime: bool,
                replay: bool) -> int:
    models = Models.load(config)
    out = csv_path(config, args.out)
    console = Console(stderr=True)
    state = DashboardState()
    outputs = _outputs(config, out, state, console)
    monitor = Monitor(config, models, outputs, realtime=realtime, replay=replay,
                      config_path=getattr(args, "config", None))
    state.title = _title(config, models, replay)
    state.demo = models.is_demo
    state.csv_path = str(out)
    if models.is_demo:
        console.print("[bold yellow]DEMO models (trained on synthetic faces): "
                      "not a real pain model[/]")
    for advice in (models.mismatch(), runtime_conflict()):
        if advice:
            console.print(f"[yellow]{advice}[/]")
    show = not args.no_dashboard and console.is_terminal
    _watch(monitor, state, console, show, replay)
    if monitor.error is not None:
        raise monitor.error
    console.print(f"{monitor.records} records written to {out}")
    return 0


def _outputs(config: MonitorConfig, out: Path, state: DashboardState,
             console: Console) -> Outputs:
    """CSV, publisher, dashboard and alert hook; nothing is left open if one of them fails."""
    bus = config.bus
    publisher = (Publisher(bus.endpoint, secret_key=bus.secret_key, insecure=bus.insecure)
                 if bus.enabled else None)
    try:
        logger = CsvLogger(out)
    except BaseException:
        if publisher:
            publisher.close()
        raise
    alerts = config.alerts
    hooks = HookRunner(alerts.on_alert, alerts.hook_timeout_s) if alerts.on_alert else None

    def notice(text: str) -> None:
        state.notice = text
        console.print(f"[magenta]{text}[/]")

    return Outputs(csv=logger, publisher=publisher, on_score=state.add_score,
                   on_camera=state.add_camera, on_alert=state.add_alert, on_notice=notice,
                   hooks=hooks)


def _watch(monitor: Monitor, state: DashboardState, console: Console, show: bool,
           replay: bool) -> None:
    progress = _progress(monitor, console) if replay else None
    monitor.start()
    notify("READY=1")
    watchdog = Watchdog()

    def stop() -> None:
        notify("STOPPING=1")
        monitor.request_stop()

    with _stop_on_signals(stop, monitor.request_reload):
        if not show and progress is None:
            while not monitor.wait(0.5):
                watchdog.ping(monitor.last_loop)
            return
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            while not monitor.wait(0.25):
                watchdog.ping(monitor.last_loop)
                live.update(_screen(monitor, state, progress, show))
            live.update(_screen(monitor, state, progress, show))
        if not console.is_terminal:
            console.line()  # a non-terminal Live leaves its last line open


def _screen(monitor: Monitor, state: DashboardState, progress: Progress | None,
            show: bool) -> Group:
    parts: list[Any] = []
    if progress is not None:
        for task, worker in zip(progress.tasks, monitor.workers, strict=True):
            progress.update(task.id, completed=worker.position,
                            total=worker.total_frames or None)
        parts.append(progress)
    if show:
        state.records_total = monitor.records
        state.alert_threshold = monitor.alerts.default  # follows a reload
        with monitor.outputs.lock:
            parts.append(render(state, time.time()))
    return Group(*parts)


def _progress(monitor: Monitor, console: Console) -> Progress:
    progress = Progress(TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.completed}/{task.total} frames"),
                        TimeRemainingColumn(), console=console)
    for worker in monitor.workers:
        progress.add_task(worker.camera, total=None)
    return progress


def _title(config: MonitorConfig, models: Models, replay: bool) -> str:
    mice = sum(len(c.cubicle_list()) for c in config.cameras)
    what = "replay" if replay else "live"
    provider = models.scorer.providers[0].replace("ExecutionProvider", "")
    return (f"mgs-monitor {what} — {len(config.cameras)} cameras, {mice} mice, {provider} "
            f"{models.precision}")


@contextmanager
def _stop_on_signals(on_stop: Any = None, on_reload: Any = None) -> Iterator[Any]:
    """SIGINT/SIGTERM ask for a clean stop, SIGHUP for a reload of the alert rules (main thread
    only); yields a 'stopping?' check."""
    stopping = False

    def handler(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        if on_stop is not None:
            on_stop()

    in_main = threading.current_thread() is threading.main_thread()
    signals = (signal.SIGINT, signal.SIGTERM) if in_main else ()
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    if in_main and on_reload is not None:
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: on_reload())
    try:
        yield lambda: stopping
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


__all__ = ["Camera", "main"]


if __name__ == "__main__":
    sys.exit(main())
