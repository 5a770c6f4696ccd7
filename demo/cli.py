"""`mgs-monitor demo`: the monitor on a synthetic four-camera scene with DEMO models.

Registered with `mgs-monitor` through the `mgs_monitor.commands` entry point, so the monitor's
command line offers it without importing anything of training or export. The demo runs the
models that ship with it on the monitor's own dependencies; PyTorch is imported only by
`--rebuild`, which retrains them.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from monitor.cli import (
    UsageError,
    add_outputs,
    add_web_address,
    config_from_args,
    csv_path,
    web_settings,
)
from monitor.config import MonitorConfig
from monitor.runner import run_monitor


def add_command(sub: Any) -> None:
    demo = sub.add_parser("demo", help="run on a synthetic four-camera scene with DEMO models",
                          description="Build (once, cached) a synthetic four-camera scene, "
                          "then replay it at recorded speed with the live dashboard, scored "
                          "by the DEMO models that ship with mgs-monitor (trained on synthetic "
                          "mouse faces).")
    demo.add_argument("--rebuild", action="store_true",
                      help="retrain the demo models (needs the train extra) and redraw the scene")
    demo.add_argument("--build-only", action="store_true", help="build, then exit")
    demo.add_argument("--fast", action="store_true", help="replay as fast as possible")
    add_outputs(demo)
    add_web_address(demo)
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from demo.build import build_demo

    if args.rebuild:
        _need_training()
    demo = build_demo(rebuild=args.rebuild, train=args.rebuild)
    if args.build_only:
        print(f"demo ready in {demo.folder}")
        return 0
    config = config_from_args(args, demo.config(), origin=str(demo.folder))
    path, rotate = csv_path(config, args.out)
    web = start_web(args, config) if args.web else None
    try:
        return run_monitor(config, path, replay=True, realtime=not args.fast,
                           dashboard=not args.no_dashboard, rotate=rotate)
    finally:
        if web is not None:
            web.close()


def start_web(args: argparse.Namespace, config: MonitorConfig) -> Any:
    """The web view beside the demo, on loopback, following the demo's own bus."""
    from monitor.views.web import WebError, WebView
    from monitor.views.wsgi import is_loopback

    if not config.bus.enabled:
        raise UsageError("--web follows the demo's bus: drop --no-publish")
    settings = web_settings(args, config.bus.endpoint)
    if not is_loopback(settings.host):
        raise UsageError(f"--web {args.web}: the demo serves its web view on loopback only; "
                         "`mgs-monitor web` serves other addresses, with a token")
    try:
        web = WebView(settings)
    except WebError as exc:
        raise UsageError(str(exc)) from None
    web.start()
    print(f"web view of the demo: {web.address}", file=sys.stderr, flush=True)
    return web


def _need_training() -> None:
    """`--rebuild` trains with PyTorch, which only the train extra installs."""
    try:
        import demo.training  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"--rebuild retrains the demo models with PyTorch ({exc.name} missing): "
                         "pip install -e '.[train]', or run without --rebuild to use the "
                         "shipped models") from exc
