"""Which browser is which rater: a secret per browser, a name per rater, at most N raters.

The server gives each browser a random secret in an HttpOnly cookie at its first visit. A
rater's name belongs to the first browser that gives it; from then on only that browser
answers, skips and undoes as that rater, whatever a request's body says. One browser may hold
several names (a shared lab computer): the last one given is the one it scores as. The
project's `raters.json` keeps names and a hash of their browser's secret (not the secret), so
a restart changes nothing; the number of names is bounded, so strangers cannot grow it.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
from pathlib import Path

from .errors import UserError
from .project import write_atomic

NAME = re.compile(r"^\w[\w .-]{0,39}$")
SECRET = re.compile(r"^[0-9a-f]{32}$")


class Refused(Exception):
    """A name this browser may not take; the message says why."""


def new_secret() -> str:
    return secrets.token_hex(16)


def valid_secret(value: str | None) -> str | None:
    return value if value and SECRET.match(value) else None


class Raters:
    def __init__(self, path: Path, limit: int) -> None:
        self.path, self.limit = path, limit
        self.lock = threading.Lock()
        self._owners: dict[str, str] = _read(path)  # name -> hash of its browser's secret, in
        # the order given; a browser's current name is the last one it gave

    def name_of(self, secret: str) -> str | None:
        digest = _hash(secret)
        with self.lock:
            return next((n for n, h in reversed(self._owners.items()) if h == digest), None)

    def claim(self, secret: str, name: str) -> str:
        """Makes `name` this browser's rater; Refused when another browser holds it or the
        project has its N raters."""
        name = name.strip()
        if not NAME.match(name):
            raise Refused("rater name: 1-40 letters, digits, spaces, dots, dashes or underscores")
        digest = _hash(secret)
        with self.lock:
            owner = self._owners.get(name)
            if owner is not None and owner != digest:
                raise Refused(f"the name {name!r} is taken by another browser: choose another, "
                              "or ask the coordinator")
            if owner is None and len(self._owners) >= self.limit:
                raise Refused(f"this project takes at most {self.limit} raters "
                              "(mgs-label serve --max-raters)")
            self._owners.pop(name, None)
            self._owners[name] = digest
            self._save()
        return name

    def release(self, name: str) -> bool:
        """Frees a name for the next browser that gives it (a rater on a new computer, or
        whose cookies were cleared); their answers stay theirs. False: no such name."""
        with self.lock:
            if self._owners.pop(name, None) is None:
                return False
            self._save()
        return True

    def names(self) -> list[str]:
        with self.lock:
            return list(self._owners)

    def _save(self) -> None:
        write_atomic(self.path, json.dumps({"version": 1, "raters": self._owners},
                                           indent=2) + "\n")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _read(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        owners = json.loads(path.read_text())["raters"]
        if not isinstance(owners, dict):
            raise TypeError("raters is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: damaged rater list: {exc}") from None
    return {str(k): str(v) for k, v in owners.items()}
