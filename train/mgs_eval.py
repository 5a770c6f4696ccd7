"""`mgs-eval`: image figures of a trained run, or with `--alerts`, alerts against truth.

The alert evaluation runs on the monitor's own install, so it is dispatched before anything
that needs PyTorch is imported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from train.command import run_command

ALERTS = "--alerts"


def cli(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if ALERTS in args:
        from monitor.views import alert_eval

        args.remove(ALERTS)
        return run_command(alert_eval.get_args_parser(), alert_eval.main,
                           alert_eval.USER_ERRORS, args)
    try:
        from train.evaluate import cli as evaluate_run
    except ImportError as exc:
        print(f"mgs-eval: error: evaluating a trained run needs the training extra ({exc.name} "
              "is missing: pip install 'mgs-monitor[train]'); `mgs-eval --alerts` works "
              "without it", file=sys.stderr)
        return 2
    return evaluate_run(args)


if __name__ == "__main__":
    sys.exit(cli())
