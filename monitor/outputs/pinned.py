"""pinned.txt: the evidence files the disk budget never removes, one path a line (relative to
the evidence folder, POSIX form).

The monitor (what alerts name) and mgs-label (what a project queued) both write it, through
these functions alone. A path is pinned while at least one line names it: each pinner appends
lines of its own, and a release removes only the lines its caller added, so the pins of alerts
and of other projects stay.

Every change holds an flock on `pinned.txt.lock`, so an append never meets a release's rewrite
(written whole and renamed: a reader sees the old list or the new one, never half of it). A
last line a crash cut (no line end) is cut off before the next append, so two pins are never
glued into one name; a last line naming a file that exists is a whole pin typed without a line
end, and gets its line end instead.
"""

from __future__ import annotations

import fcntl
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

PINNED = "pinned.txt"
LOCK = "pinned.txt.lock"
TAIL = 4096  # a torn line is a part of one path: far shorter


def parse_pinned(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if line.strip()}


def read_pinned(folder: Path) -> set[str]:
    """The paths pinned.txt lists; none when there is no file. Any other failure to read it is
    raised: the caller must not take an unread list for an empty one."""
    try:
        return parse_pinned((folder / PINNED).read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        return set()


def append_pinned(folder: Path, names: list[str]) -> None:
    """Add paths (relative to the folder, POSIX form), a line each, durably."""
    with _locked(folder), (folder / PINNED).open("a+b") as handle:
        _end_last_line(folder, handle)
        handle.write("".join(f"{name}\n" for name in names).encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())


def release_pinned(folder: Path, names: list[str]) -> int:
    """Remove one line per name given (the lines the caller added); how many were found."""
    path = folder / PINNED
    with _locked(folder):
        try:
            lines = path.read_bytes().decode("utf-8", "surrogateescape").splitlines()
        except FileNotFoundError:
            return 0
        owed = Counter(names)
        kept = []
        for line in lines:
            if owed[line.strip()] > 0:
                owed[line.strip()] -= 1
            else:
                kept.append(line)
        _replace(path, "".join(f"{line}\n" for line in kept))
    return len(lines) - len(kept)


def torn_tail(handle: BinaryIO) -> bytes:
    """What follows the last line end of an open file (a line a crash cut); b"" when none."""
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - TAIL))
    tail = handle.read()
    return tail[tail.rfind(b"\n") + 1:]


def cut_torn_line(handle: BinaryIO) -> None:
    """Cut a torn last line back to the last line end (never glued onto the next line)."""
    torn = torn_tail(handle)
    if torn:
        handle.truncate(handle.seek(0, os.SEEK_END) - len(torn))


def _end_last_line(folder: Path, handle: BinaryIO) -> None:
    torn = torn_tail(handle)
    name = torn.decode("utf-8", "replace").strip()
    if name and (folder / name).is_file():
        handle.write(b"\n")  # a whole path, only its line end missing
    elif torn:
        cut_torn_line(handle)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # and the lock with it


def _replace(path: Path, text: str) -> None:
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with partial.open("wb") as handle:
        handle.write(text.encode("utf-8", "surrogateescape"))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
