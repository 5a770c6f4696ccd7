"""`mgs-monitor`: watch cameras live, replay recordings, score images, attach dashboards/loggers.

This module parses the command line and hands each command to the module that does it (run,
dashboard_service, log_service, stills, report, markers, bus). Commands of other packages join
through the `mgs_monitor.commands` entry point (the demo's does). Every error a user can cause
ends in one line naming the file, key or value (exit code 2); Ctrl-C or SIGTERM stops the
cameras first, then drains scoring and logging (exit code 0).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from monitor import __version__
from monitor.capture.workers import media_problem, quiet_opencv
from monitor.config import (
    DEFAULT_COMMANDS,
    DEFAULT_ENDPOINT,
    ConfigError,
    MonitorConfig,
    build_config,
    load_config,
    read_config_file,
)
from monitor.frame_memory import keep_frames_out_of_the_heap
from monitor.outputs.bus import BusError, Serving, Upstream, run_proxy
from monitor.outputs.bus_keys import make_keys
from monitor.outputs.commands import CommandClient, CommandError
from monitor.outputs.csvlog import ROTATIONS, CsvLogError, Rotate
from monitor.outputs.db_url import (
    DatabaseError,
    add_selection,
    database_as_csvs,
    require_driver,
    selection_without_database,
    shown_url,
)
from monitor.outputs.markers import MarkerError, add_marker, latest_scores, new_marker
from monitor.outputs.metrics import MetricsError
from monitor.runner import run_monitor
from monitor.schema import MARKER_KINDS, CameraTag, alert_key
from monitor.scoring.alerts import RULES
from monitor.scoring.models import ModelError
from monitor.signals import stop_on_signals
from monitor.stills import StillsError, score_stills
from monitor.views.dashboard_service import run_dashboard
from monitor.views.log_service import DEFAULT_SPOOL, run_logger
from monitor.views.series_report import ReportError, write_report
from monitor.views.snapshot import FORMATS, SnapshotError, run_snapshot

DEFAULT_LOG_CSV = Path("mgs-records/scores.csv")
DEFAULT_WEB = "127.0.0.1:8090"
PLUGIN_GROUP = "mgs_monitor.commands"  # entry points: f(subparsers) adding a command
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
  mgs-monitor web                          ... or a page for browsers: http://127.0.0.1:8090/
  mgs-monitor log --out scores.csv         attach a CSV logger to a running monitor
  mgs-monitor log --db postgresql://mgs@dbhost/mgs
                                           ... or a logger writing to PostgreSQL
  mgs-monitor check-config lab.yaml        validate a config, naming every wrong key
  mgs-monitor snapshot --config lab.yaml   one annotated picture per camera (cubicles, faces,
                                           scores) to check the set-up before a long run
  mgs-monitor mark M101 "NTG injected"     record an event marker beside the newest CSV
  mgs-monitor ack --mouse M101 --who "A. Smith" --note "buprenorphine given"
                                           acknowledge an alert: its reminders stop
  mgs-monitor report mgs-records/*.csv     per-mouse series plots and summary (HTML, PNG)
  mgs-monitor demo                         synthetic cameras and DEMO models, no hardware needed

Run `mgs-monitor COMMAND --help` for the options of each command.
"""


class UsageError(ValueError):
    """A command-line value that cannot be used."""


USER_ERRORS = (ConfigError, ModelError, BusError, CsvLogError, UsageError, MarkerError,
               ReportError, StillsError, SnapshotError, DatabaseError, MetricsError,
               CommandError)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    keep_frames_out_of_the_heap()
    quiet_opencv()
    try:
        return int(args.func(args))
    except USER_ERRORS as exc:
        print(f"mgs-monitor: error: {exc}", file=sys.stderr)
        return 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser, commands = build_parser()
    if not argv or (argv[0] not in commands and argv[0] not in ("-h", "--help", "--version")):
        argv = ["run", *argv]  # `mgs-monitor --cameras 4` means `mgs-monitor run --cameras 4`
    return parser.parse_args(argv)


def build_parser() -> tuple[argparse.ArgumentParser, set[str]]:
    """The parser, and the names of its commands (ours and those of installed plugins)."""
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
    _add_web(sub)
    _add_log(sub)
    check = sub.add_parser("check-config", help="validate a YAML config and exit")
    check.add_argument("config", type=Path, help="the YAML file")
    check.set_defaults(func=cmd_check_config)
    _add_snapshot(sub)
    _add_mark(sub)
    _add_ack(sub)
    _add_report(sub)
    _add_proxy(sub)
    _add_keys(sub)
    for plugin in metadata.entry_points(group=PLUGIN_GROUP):
        plugin.load()(sub)
    return parser, set(sub.choices)


def _add_models(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("models (ignored where --config sets them)")
    group.add_argument("--models", type=Path, default=DEFAULT_MODELS, metavar="DIR",
                       help="folder with scorer.onnx and localizer.onnx (default: %(default)s, "
                       "or $MGS_MODELS)")
    group.add_argument("--cpu", action="store_true", help="use the CPU even if a GPU is present")
    group.add_argument("--runtime", choices=("auto", "onnxruntime", "openvino"),
                       help="what runs the models (default: models.runtime, else auto: OpenVINO "
                       "for int8 files on the CPU when installed, onnxruntime otherwise)")


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampling (overrides the config)")
    mode = group.add_mutually_exclusive_group()
    mode.add_argument("--every", type=float, metavar="S", help="seconds between samples "
                      "(default 120, the DeepMGS snapshot interval)")
    mode.add_argument("--continuous", action="store_true", help="score every frame")
    group.add_argument("--burst", type=int, metavar="K",
                       help="frames grabbed per sample, sharpest kept (default 5)")


def add_outputs(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("outputs")
    group.add_argument("--out", type=Path, metavar="CSV", help="CSV file for the records")
    group.add_argument("--endpoint", help=f"ZeroMQ endpoint to publish on "
                       f"(default {DEFAULT_ENDPOINT})")
    group.add_argument("--no-publish", action="store_true", help="do not publish on ZeroMQ")
    group.add_argument("--commands", metavar="ENDPOINT",
                       help="command socket for acknowledgements and snapshots (default: the "
                       f"publisher's port + 1, {DEFAULT_COMMANDS}; none: off)")
    group.add_argument("--insecure", action="store_true",
                       help="allow publishing beyond this machine without CURVE keys")
    group.add_argument("--no-dashboard", action="store_true", help="no live dashboard")
    group.add_argument("--no-evidence", action="store_true",
                       help="keep no face crops or frames beside the CSV (evidence.enabled)")


def _add_run(sub: Any) -> None:
    run = sub.add_parser("run", help="watch cameras live (the default command)",
                         description="Watch cameras live. Without --config, --cameras N opens "
                         "devices 0..N-1, each a four-cubicle array (mice camK-c1..c4).")
    run.add_argument("--cameras", type=int, default=1, metavar="N",
                     help="camera devices 0..N-1 (default %(default)s; ignored with --config)")
    run.add_argument("--config", type=Path, help="YAML config (see `check-config`)")
    _add_sampling(run)
    _add_models(run)
    add_outputs(run)
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
    add_outputs(replay)
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


SNAPSHOT_EPILOG = """\
examples:
  mgs-monitor snapshot --config lab.yaml   every camera of the config, pictures in snapshots/
  mgs-monitor snapshot --cameras 2 --out /tmp/check
                                           camera devices 0 and 1
  mgs-monitor snapshot rec.mp4 --config lab.yaml
                                           a recording, with the first camera's cubicles

Each picture (snapshots/<camera>.png) shows every cubicle outlined with its mouse id, the face
box the localizer found or "no face", each mouse's status, total and five unit levels (orbital
tightening, nose bulge, cheek bulge, ear position, whisker change), and a header with the
camera, source, time, models (DEMO in red) and frame size. One line per camera is printed; a
camera that gives no frame gets no picture and a line saying why (exit code 2).
"""


def _add_snapshot(sub: Any) -> None:
    snap = sub.add_parser(
        "snapshot", help="one annotated picture per camera, to check the set-up",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SNAPSHOT_EPILOG,
        description="Grab one frame per camera (the sharpest of a short burst), find and score\n"
        "the faces with the real models, and write a picture per camera showing the cubicle\n"
        "regions, face boxes and scores: check layout, lighting and regions before leaving\n"
        "the monitor running.")
    snap.add_argument("sources", nargs="*", metavar="SOURCE",
                      help="device index, URL, video, image, image folder or glob, each one "
                      "camera (replacing the config's cameras' sources in order)")
    snap.add_argument("--cameras", type=int, default=1, metavar="N",
                      help="camera devices 0..N-1 (default %(default)s; ignored with --config "
                      "or SOURCE)")
    snap.add_argument("--config", type=Path, help="YAML config (see `check-config`)")
    snap.add_argument("--burst", type=int, metavar="K",
                      help="frames grabbed per camera, the sharpest kept (default: the "
                      "config's sampling.burst, 5)")
    snap.add_argument("--out", type=Path, default=Path("snapshots"), metavar="DIR",
                      help="folder for the pictures, <camera>.<format> (default %(default)s)")
    snap.add_argument("--format", choices=FORMATS, default="png",
                      help="picture format (default %(default)s)")
    _add_models(snap)
    snap.set_defaults(func=cmd_snapshot, endpoint=None, no_publish=True, insecure=False)


def _add_dashboard(sub: Any) -> None:
    dash = sub.add_parser("dashboard", help="live dashboard of a running monitor (ZeroMQ)")
    dash.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help="default %(default)s")
    _add_subscriber_keys(dash)
    dash.add_argument("--seconds", type=float, help="stop after this long")
    dash.set_defaults(func=cmd_dashboard)


def _add_web(sub: Any) -> None:
    web = sub.add_parser("web", help="every mouse and alert in a browser, acknowledged there",
                         description="Serve a live page of a running monitor (or of many "
                         "through a proxy): a tile per mouse, alerts with their face crops, "
                         "acknowledgements sent back to the monitor that raised them.")
    web.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help="default %(default)s")
    _add_subscriber_keys(web)
    web.add_argument("--listen", dest="web", default=DEFAULT_WEB, metavar="HOST:PORT",
                     help="where the page listens (default %(default)s); any address but "
                     "loopback needs a token")
    web.add_argument("--token-file", type=Path, metavar="FILE",
                     help="the token browsers must bring (else $MGS_WEB_TOKEN); needed on any "
                     "address but loopback")
    web.add_argument("--tls-cert", type=Path, metavar="FILE", help="serve HTTPS: certificate")
    web.add_argument("--tls-key", type=Path, metavar="FILE", help="... and its key")
    web.add_argument("--monitor-key", action="append", default=[], metavar="PUBLISHER=FILE",
                     help="public key of that monitor's command socket (its server.key), where "
                     "it differs from --server-key (e.g. behind a proxy); repeat per monitor")
    web.add_argument("--history", action="append", default=[], type=Path, metavar="PATH",
                     help="score CSV, folder of them or quoted glob (as report takes): each "
                     "mouse's last 7 days before the view started; repeatable")
    web.add_argument("--seconds", type=float, help="stop after this long")
    web.set_defaults(func=cmd_web)


def add_web_address(parser: argparse.ArgumentParser) -> None:
    """`--web [HOST:PORT]`: the web view beside a monitor (`mgs-monitor demo --web`)."""
    parser.add_argument("--web", nargs="?", const=DEFAULT_WEB, metavar="HOST:PORT",
                        help="serve the web view beside it, on loopback (default %(const)s)")


def _add_log(sub: Any) -> None:
    log = sub.add_parser("log", help="write a running monitor's records to CSV or PostgreSQL "
                         "(ZeroMQ)")
    log.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help="default %(default)s")
    _add_subscriber_keys(log)
    log.add_argument("--out", type=Path, metavar="CSV",
                     help=f"CSV file to append to (default {DEFAULT_LOG_CSV} without --db)")
    log.add_argument("--rotate", choices=ROTATIONS, default="never",
                     help="a new file each day or hour (UTC, by each record's wall_time), "
                     "named <out stem>-YYYYMMDD.csv or -YYYYMMDD-HH.csv, side files beside "
                     "(default %(default)s: --out itself)")
    log.add_argument("--db", metavar="URL", help="PostgreSQL database to write to "
                     "(postgresql://user@host:port/database; a password is better kept in "
                     "~/.pgpass or PGPASSWORD than in the URL)")
    log.add_argument("--spool", type=Path, default=DEFAULT_SPOOL, metavar="FILE",
                     help="where records wait while the database is down (default "
                     "%(default)s)")
    log.add_argument("--config", type=Path, action="append", default=[], metavar="YAML",
                     help="a logged monitor's config: its cameras' study and room are kept in "
                     "the database (repeat per monitor; each must set `publisher`)")
    log.add_argument("--seconds", type=float, help="stop after this long")
    log.set_defaults(func=cmd_log)


def _add_subscriber_keys(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server-key", type=Path, metavar="FILE",
                        help="the monitor's public CURVE certificate (server.key from "
                        "`mgs-monitor keys`) when it publishes with bus.secret_key")
    _add_client_key(parser)


def _add_client_key(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client-key", type=Path, metavar="FILE",
                        help="the secret certificate it presents (NAME.key_secret from "
                        "`mgs-monitor keys DIR --name NAME`), for a monitor that admits only "
                        "the keys in its bus.allowed_clients folder (default: a fresh key, "
                        "which such a monitor refuses)")


KEYS_EPILOG = """examples:
  mgs-monitor keys /etc/mgs-monitor/keys
      server.key_secret for the monitor's bus.secret_key (or the proxy's --secret-key);
      server.key for every subscriber's --server-key (the proxy: --from ENDPOINT=server.key)
  mgs-monitor keys /etc/mgs-logger/keys --name logger1
      a subscriber's own keypair: logger1.key_secret for its --client-key, logger1.key
      copied into the monitor's bus.allowed_clients folder (or the proxy's --allowed-clients)

An existing key is never overwritten: others may already trust it.
"""


def _add_keys(sub: Any) -> None:
    keys = sub.add_parser("keys", help="make a CURVE keypair for the bus (a monitor's, or a "
                          "subscriber's)", epilog=KEYS_EPILOG,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    keys.add_argument("folder", type=Path, help="where to write NAME.key and NAME.key_secret")
    keys.add_argument("--name", default="server",
                      help="file name of the pair (default %(default)s: a publisher's; any "
                      "other name: a subscriber's client keypair)")
    keys.set_defaults(func=cmd_keys)


PROXY_EPILOG = """examples:
  mgs-monitor proxy --from tcp://hostA:5560 --from tcp://hostB:5560
      two monitors publishing without encryption (bus.insecure); dashboards and loggers of
      this host connect to tcp://127.0.0.1:5562
  mgs-monitor proxy --from tcp://hostA:5560=keys/hostA.key --from tcp://hostB:5560=keys/hostB.key \\
      --client-key keys/proxy.key_secret \\
      --backend tcp://0.0.0.0:5562 --secret-key keys/server.key_secret --allowed-clients clients/
      monitors that encrypt (bus.secret_key; ENDPOINT=KEYFILE gives each one's public server.key)
      and admit the proxy's key (proxy.key in their bus.allowed_clients); the backend encrypts
      with the proxy's own keys and admits the subscribers whose NAME.key is in clients/:
      mgs-monitor log --endpoint tcp://proxyhost:5562 --server-key keys/server.key \\
          --client-key logger1.key_secret

A monitor that refuses the proxy (a missing or wrong server key, a client key it does not
admit) is said once, in one line naming it; nothing from it reaches the backend meanwhile.
"""


def _add_proxy(sub: Any) -> None:
    proxy = sub.add_parser("proxy", help="join several monitors' records into one stream",
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog=PROXY_EPILOG,
                           description="An XSUB/XPUB proxy: it subscribes to every monitor "
                           "named with --from and republishes everything on --backend, where "
                           "one `dashboard` or `log` sees all capture hosts.")
    proxy.add_argument("--from", dest="sources", action="append", required=True,
                       type=Upstream.parse, metavar="ENDPOINT[=KEYFILE]",
                       help="a monitor's bus.endpoint, with =KEYFILE its public server.key "
                       "when it encrypts (repeat for each monitor)")
    _add_client_key(proxy)
    proxy.add_argument("--backend", default="tcp://127.0.0.1:5562",
                       help="where dashboards and loggers connect (default %(default)s)")
    proxy.add_argument("--secret-key", type=Path, metavar="FILE",
                       help="the proxy's own secret certificate (`mgs-monitor keys`): encrypts "
                       "the backend; needed to bind it beyond this machine")
    proxy.add_argument("--allowed-clients", type=Path, metavar="DIR",
                       help="only subscribers whose public key (NAME.key) is in DIR may "
                       "connect to the backend (needs --secret-key)")
    proxy.add_argument("--insecure", action="store_true",
                       help="bind the backend beyond this machine without encryption")
    proxy.add_argument("--seconds", type=float, help="stop after this long")
    proxy.set_defaults(func=cmd_proxy)


def _add_mark(sub: Any) -> None:
    mark = sub.add_parser("mark", help="record an event marker (e.g. an injection) for a mouse")
    mark.add_argument("mouse", help="mouse id, or '*' for every mouse")
    mark.add_argument("text", help="what happened, e.g. 'NTG injected'")
    mark.add_argument("--kind", choices=MARKER_KINDS, default="note",
                      help="what kind of event: onset, injection and surgery mark when pain "
                      "may begin, for `mgs-eval --alerts` (default %(default)s)")
    where = mark.add_mutually_exclusive_group()
    where.add_argument("--csv", type=Path, help="score CSV the marker belongs to")
    where.add_argument("--folder", type=Path, default=Path("mgs-records"),
                       help="use the newest scores*.csv here (default %(default)s)")
    where.add_argument("--db", metavar="URL", help="PostgreSQL database the records go to "
                       "(`log --db`, the config's database.url)")
    mark.set_defaults(func=cmd_mark)


def _add_ack(sub: Any) -> None:
    ack = sub.add_parser("ack", help="acknowledge an alert (seen, treated) on the monitor that "
                         "raised it: marked in its records, its reminders stop until it clears")
    ack.add_argument("--endpoint", default=DEFAULT_COMMANDS,
                     help="the monitor's command socket (its bus.commands; default %(default)s)")
    _add_subscriber_keys(ack)
    what = ack.add_mutually_exclusive_group()
    what.add_argument("--alert", metavar="KEY",
                      help="the alert's key (publisher/mouse/rule/since, as a view shows it)")
    what.add_argument("--mouse", help="the mouse whose active alert it is (with --rule when it "
                      "has several)")
    ack.add_argument("--rule", choices=RULES, help="which of its alerts")
    ack.add_argument("--who", required=True, help="your name (1-40 characters)")
    ack.add_argument("--note", default="", help="what was done, e.g. 'buprenorphine given'")
    ack.add_argument("--timeout", type=float, default=5.0,
                     help="seconds to wait for the monitor (default %(default)s)")
    ack.set_defaults(func=cmd_ack)


def _add_report(sub: Any) -> None:
    report = sub.add_parser("report", help="per-mouse series plots and summary from CSVs or "
                            "PostgreSQL")
    report.add_argument("csv", nargs="*", type=Path,
                        help="score CSVs of one session, folders of them or quoted glob "
                        "patterns (a rotating logger's files, read as one series)")
    report.add_argument("--db", metavar="URL", help="read the records from this PostgreSQL "
                        "database instead (`log --db`)")
    add_selection(report)
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
    if getattr(args, "runtime", None):
        raw["models"]["runtime"] = args.runtime
    _sampling_flags(args, raw)
    bus = dict(raw.get("bus") or {})
    if args.endpoint:
        bus["endpoint"] = args.endpoint
    if getattr(args, "commands", None):
        bus["commands"] = args.commands
    if args.no_publish:
        bus["enabled"] = False
    if args.insecure:
        bus["insecure"] = True
    raw["bus"] = bus
    if getattr(args, "no_evidence", False):
        raw["evidence"] = {**(raw.get("evidence") or {}), "enabled": False}
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


def csv_path(config: MonitorConfig, out: Path | None) -> tuple[Path, Rotate]:
    """Where `run` writes and how it rotates: `--out FILE` is that one file unless the config
    sets `csv.rotate`; in `csv.folder` the files rotate (default daily), or when they never do,
    each start writes a file named by its start time."""
    rotate = config.csv.rotate
    if out is not None:
        return out, rotate if "rotate" in config.csv.model_fields_set else "never"
    if rotate == "never":
        return config.csv.folder / f"scores-{time.strftime('%Y%m%d-%H%M%S')}.csv", rotate
    return config.csv.folder / "scores.csv", rotate


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
    path, rotate = csv_path(config, args.out)
    return run_monitor(config, path, replay=False, realtime=True, config_path=args.config,
                       dashboard=not args.no_dashboard, rotate=rotate)


def cmd_replay(args: argparse.Namespace) -> int:
    for video in args.videos:
        problem = media_problem(str(video))
        if problem:
            raise UsageError(f"{video}: {problem}")
    raw, origin = file_settings(args)
    in_file = raw.get("cameras")
    layouts: list[Any] = in_file if isinstance(in_file, list) else []
    cameras = []
    for i, video in enumerate(args.videos):  # each video replaces the i-th camera's source
        layout = layouts[i] if i < len(layouts) and isinstance(layouts[i], dict) else {}
        cameras.append({**layout, "name": layout.get("name", f"cam{i}"), "source": str(video)})
    raw["cameras"] = cameras
    config = config_from_args(args, raw, origin)
    path, rotate = csv_path(config, args.out)
    return run_monitor(config, path, replay=True, realtime=args.realtime,
                       config_path=args.config, dashboard=not args.no_dashboard, rotate=rotate)


def cmd_snapshot(args: argparse.Namespace) -> int:
    if args.cameras < 1:
        raise UsageError(f"--cameras {args.cameras}: need at least one camera")
    raw, origin = file_settings(args)
    if args.sources:  # each source replaces the i-th camera's, keeping its cubicles
        in_file = raw.get("cameras")
        layouts: list[Any] = in_file if isinstance(in_file, list) else []
        cameras = []
        for i, source in enumerate(args.sources):
            layout = layouts[i] if i < len(layouts) and isinstance(layouts[i], dict) else {}
            cameras.append({**layout, "name": layout.get("name", f"cam{i}"),
                            "source": int(source) if source.isdigit() else source})
        raw["cameras"] = cameras
    elif not args.config:
        raw["cameras"] = [{"name": f"cam{i}", "source": i} for i in range(args.cameras)]
    config = config_from_args(args, raw, origin)
    return run_snapshot(config, args.out, fmt=args.format)


def cmd_score(args: argparse.Namespace) -> int:
    return score_stills(args.paths, args.out, args.models, crops=args.crops, cpu=args.cpu)


def cmd_keys(args: argparse.Namespace) -> int:
    public, secret = make_keys(args.folder, args.name)
    if args.name == "server":
        print(f"secret (keep with the monitor, bus.secret_key): {secret}\n"
              f"public (give to dashboards and loggers, --server-key): {public}")
    else:
        print(f"secret (keep with the subscriber, --client-key): {secret}\n"
              f"public (copy into the monitor's bus.allowed_clients folder): {public}")
    return 0


def cmd_proxy(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.seconds if args.seconds else None
    sources = ", ".join(s.endpoint for s in args.sources)
    serving = Serving(args.secret_key, args.allowed_clients, args.insecure,
                      ("--secret-key", "--allowed-clients", "--insecure"))
    print(f"proxy: {sources} -> {args.backend} (Ctrl-C to stop)", file=sys.stderr)
    with stop_on_signals() as stopping:
        run_proxy(args.sources, args.backend, lambda: stopping() or (
            deadline is not None and time.monotonic() >= deadline), serving=serving,
            client_key=args.client_key, say=lambda line: print(f"proxy: {line}",
                                                                file=sys.stderr, flush=True))
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    client = CommandClient(args.endpoint, server_key=args.server_key,
                           client_key=args.client_key, timeout_s=args.timeout)
    key = args.alert or _only_alert(client, args.endpoint, args.mouse, args.rule)
    ack = client.acknowledge(key, args.who, args.note)
    print(f"{ack.rule} alert of {ack.mouse} acknowledged by {ack.who} on {ack.publisher}: "
          "its reminders stop until it clears")
    return 0


def _only_alert(client: CommandClient, endpoint: str, mouse: str | None,
                rule: str | None) -> str:
    """The key of the one active alert of `mouse` (of `rule`, if given) on the monitor."""
    if mouse is None:
        raise UsageError("name the alert: --alert KEY, or --mouse (and --rule)")
    found = [e for e in client.alerts() if e.mouse == mouse and rule in (None, e.rule)]
    if len(found) == 1:
        return alert_key(found[0])
    which = f"{mouse}" + (f" {rule}" if rule else "")
    if not found:
        raise UsageError(f"{endpoint}: no active alert of {which}")
    raise UsageError(f"{endpoint}: {len(found)} active alerts of {which} "
                     f"({', '.join(e.rule for e in found)}); choose one with --rule")


def cmd_mark(args: argparse.Namespace) -> int:
    if args.db:
        require_driver(args.db)
        from monitor.outputs.database import add_marker as add_database_marker

        add_database_marker(args.db, new_marker(args.mouse, args.text, kind=args.kind))
        print(f"marker for {args.mouse} written to {shown_url(args.db)}")
        return 0
    scores = args.csv or latest_scores(args.folder)
    path = add_marker(scores, args.mouse, args.text, kind=args.kind)
    print(f"marker for {args.mouse} written to {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    if bool(args.csv) == bool(args.db):
        raise UsageError("give score CSVs or --db URL (one of them)")
    wrong = selection_without_database(args)
    if wrong:
        raise UsageError(f"{wrong} selects records of a database: add --db")
    if args.db:
        with tempfile.TemporaryDirectory(prefix="mgs-report-") as folder:
            html = write_report([database_as_csvs(args, Path(folder))], args.out)
    else:
        html = write_report(args.csv, args.out)
    print(f"report written to {html}")
    return 0


def config_cameras(path: Path) -> tuple[CameraTag, ...]:
    """A logged monitor's cameras with their study and room. Its records name it by its
    `publisher`, which must be set: the default is the host name of the one who reads it."""
    raw = read_config_file(path)
    if "publisher" not in raw:
        raise ConfigError(f"{path}: publisher: not set; its records would not be matched to "
                          "its cameras' study and room (the default names the host that reads "
                          "the config)")
    from monitor.outputs.database import camera_tags

    return camera_tags(build_config(raw, origin=str(path)))


def cmd_dashboard(args: argparse.Namespace) -> int:
    return run_dashboard(args.endpoint, args.server_key, args.seconds, args.client_key)


def web_settings(args: argparse.Namespace, endpoint: str) -> Any:
    """The web view's settings from its flags; bad ones as one UsageError line."""
    from monitor.views.web import WebError, WebSettings, parse_monitor_key

    host, sep, port = str(args.web).rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise UsageError(f"--listen {args.web}: expected HOST:PORT, e.g. 127.0.0.1:8090")
    try:
        keys = dict(parse_monitor_key(text) for text in getattr(args, "monitor_key", []))
    except WebError as exc:
        raise UsageError(str(exc)) from None
    return WebSettings(endpoint, getattr(args, "server_key", None),
                       getattr(args, "client_key", None), host.strip("[]"), int(port),
                       getattr(args, "token_file", None), getattr(args, "tls_cert", None),
                       getattr(args, "tls_key", None), keys,
                       tuple(getattr(args, "history", [])))


def cmd_web(args: argparse.Namespace) -> int:
    from monitor.views.web import WebError, run_web

    try:
        return run_web(web_settings(args, args.endpoint), args.seconds)
    except WebError as exc:
        raise UsageError(str(exc)) from None


def cmd_log(args: argparse.Namespace) -> int:
    if args.config and not args.db:
        raise UsageError("--config gives the cameras' study and room to a database: add --db")
    out = args.out or (None if args.db else DEFAULT_LOG_CSV)
    cameras = tuple(tag for path in args.config for tag in config_cameras(path))
    return run_logger(args.endpoint, args.server_key, out, args.seconds, args.client_key,
                      db=args.db, spool=args.spool, cameras=cameras, rotate=args.rotate)


if __name__ == "__main__":
    sys.exit(main())
