"""A PostgreSQL URL as the user gave it: checked, printed without its password, and the one-line
error naming it. Free of the database driver, so commands that take `--db` load without it;
the driver is loaded when a database is used (`require_driver`, `database_as_csvs`)."""

from __future__ import annotations

import argparse
import importlib.util
import urllib.parse
from datetime import datetime
from pathlib import Path


class DatabaseError(ValueError):
    """A database that cannot be used; one line naming its URL (never the password)."""


def shown_url(url: str) -> str:
    """The URL as it may be printed: the password, if any, replaced by ***."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username or ''}:***@{netloc}").geturl()


def check_url(url: str) -> None:
    if urllib.parse.urlsplit(url).scheme not in ("postgresql", "postgres"):
        raise DatabaseError(f"{shown_url(url)}: not a PostgreSQL URL "
                            "(postgresql://user@host:port/database)")


def without_password(text: str, url: str) -> str:
    """A message on one line, the URL's password (should it be quoted) replaced by ***."""
    text = " ".join(text.split())
    password = urllib.parse.urlsplit(url).password
    return text.replace(password, "***") if password else text


def require_driver(url: str) -> None:
    """Say in one line when the driver (the `db` extra) is missing, before loading it."""
    if importlib.util.find_spec("psycopg") is None:
        raise DatabaseError(f"{shown_url(url)}: psycopg is not installed "
                            "(pip install 'mgs-monitor[db]')")


def add_selection(parser: argparse.ArgumentParser) -> None:
    """`--study`, `--room`, `--since`: which records of a database a command reads."""
    parser.add_argument("--study", help="with --db: only the cameras of this study")
    parser.add_argument("--room", help="with --db: only the cameras in this room")
    parser.add_argument("--since", metavar="TIME", help="with --db: only records from this "
                        "clock time on (2026-03-02 or 2026-03-02T09:30, local time)")


def database_as_csvs(args: argparse.Namespace, folder: Path) -> Path:
    """The records of the database `args.db` (those of its `--study`, `--room`, `--since`)
    written into `folder` as a score CSV with its side files, for the readers of files
    (`report`, `mgs-eval --alerts`); returns the score CSV."""
    require_driver(args.db)
    from monitor.outputs.database import Selection, export_csvs

    return export_csvs(args.db, folder, Selection(args.study, args.room, _since(args.since)))


def selection_without_database(args: argparse.Namespace) -> str | None:
    """The first of `--study`, `--room`, `--since` given without --db, if any."""
    return next((f"--{name}" for name in ("study", "room", "since")
                 if getattr(args, name) is not None and not args.db), None)


def _since(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise DatabaseError(f"--since {text!r} is not a clock time like 2026-03-02T09:30"
                            ) from None
