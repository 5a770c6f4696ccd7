"""What every training-side command shares: parse, run, end a user mistake in one line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any


class CommandError(ValueError):
    """A value given to a training-side command that cannot be used; one line for the user.
    Only such errors (and each command's own) end in that line: a bug keeps its traceback."""


def run_command(parser: argparse.ArgumentParser, main: Callable[[argparse.Namespace], Any],
                user_errors: tuple[type[Exception], ...], argv: Sequence[str] | None) -> int:
    """0 when `main` finishes; 2 with one line on stderr for an error the user can fix."""
    args = parser.parse_args(argv)
    try:
        main(args)
    except user_errors as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0
