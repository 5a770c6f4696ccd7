"""Who may open the scoring page: two secrets, one for raters and one for the coordinator.

Each comes from the environment ($MGS_LABEL_TOKEN, $MGS_LABEL_COORDINATOR_TOKEN) or from a
file in the project's `access/` folder, and is made there (192 random bits, readable by its
owner only) when neither gives one. A token shorter than 128 bits is refused. Tokens are never
printed in full: the terminal shows their first characters, and the addresses to hand out (the
token in the query string, once) are written next to them, `access/rater-url` and
`access/coordinator-url`. Nothing takes a token on the command line, where `ps` shows it.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from monitor.views.wsgi import token_bits

from .errors import UserError

RATER, COORDINATOR = "rater", "coordinator"
ENV = {RATER: "MGS_LABEL_TOKEN", COORDINATOR: "MGS_LABEL_COORDINATOR_TOKEN"}
MIN_BITS = 128


@dataclass(frozen=True)
class Token:
    value: str
    source: str  # where it came from, for messages: "$MGS_LABEL_TOKEN" or a file

    @property
    def hint(self) -> str:
        """Enough to tell two tokens apart, far too little to guess one."""
        return self.value[:4] + "…"


def folder(project: Path) -> Path:
    return project / "access"


def load(project: Path, role: str) -> Token:
    """The role's token from its environment variable, else its file, else a new one."""
    name = ENV[role]
    given = os.environ.get(name, "").strip()
    if given:
        return _checked(Token(given, f"${name}"))
    path = folder(project) / f"{role}-token"
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        token = Token(secrets.token_hex(24), str(path))
        _write_private(path, token.value + "\n")
        return token
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the {role} token: {exc}") from None
    return _checked(Token(text, str(path)))


def load_both(project: Path) -> dict[str, Token]:
    tokens = {role: load(project, role) for role in (RATER, COORDINATOR)}
    if tokens[RATER].value == tokens[COORDINATOR].value:
        raise UserError(f"{tokens[COORDINATOR].source}: the coordinator token equals the "
                        f"raters' ({tokens[RATER].source}): give the coordinator one of its own")
    return tokens


bits = token_bits


def _checked(token: Token) -> Token:
    if any(c.isspace() or not c.isprintable() for c in token.value):
        raise UserError(f"{token.source}: the token holds spaces or unprintable characters")
    found = bits(token.value)
    if found < MIN_BITS:
        raise UserError(f"{token.source}: the token holds at most {found} bits, fewer than "
                        f"{MIN_BITS}: use 32 or more hex digits (openssl rand -hex 16), or "
                        "remove it and mgs-label makes one")
    return token


def write_addresses(project: Path, base: str, tokens: dict[str, Token]) -> dict[str, Path]:
    """The addresses to hand out, each with its token once, in files only their owner reads."""
    paths = {}
    for role, page in ((RATER, "/"), (COORDINATOR, "/agreement")):
        path = folder(project) / f"{role}-url"
        _write_private(path, f"{base}{page}?token={tokens[role].value}\n", replace=True)
        paths[role] = path
    return paths


def _write_private(path: Path, text: str, replace: bool = False) -> None:
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # never over a token another start wrote meanwhile
            tmp.unlink()
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: made by another start meanwhile: start again") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot write: {exc.strerror or exc}") from None
