"""Makes a project's image files say nothing but their pixels.

A rater with the browser's developer tools, or anyone listing the project folder, sees each
file's name, size, times and the order the files were made in. None of that may tell capture
time, selection (random / uncertain), condition, or which image is an unannounced repeat:

- names are fresh opaque ids, one per copy (a repeat is a copy of its own);
- the copies are written in an order no one can reconstruct (`shuffled`), so inode numbers
  and change times follow no order of the queue;
- every file of a folder is padded to one size with random bytes the decoders skip (a JPEG
  comment segment, a private PNG chunk): a repeat has the same pixels as its original and
  nothing else in common, and Content-Length says nothing;
- every file gets one and the same modification and access time.
"""

from __future__ import annotations

import os
import secrets
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

from .errors import UserError

T = TypeVar("T")
JPEG_SOI, JPEG_APP0, JPEG_COM = b"\xff\xd8", b"\xff\xe0", b"\xff\xfe"
JPEG_SEGMENT = 65537  # marker (2) + length (2) + at most 65533 bytes of comment
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_CHUNK = b"skIp"  # ancillary, private, safe to copy: every decoder ignores it
PNG_IEND = 12  # the last chunk: length, "IEND", crc
MIN_PAD = 64  # more than a comment segment's or a chunk's own bytes


def shuffled(jobs: Sequence[Callable[[], T]]) -> list[T]:
    """Runs the jobs in an order drawn from the system's randomness (not the project's seed,
    which the project folder records); returns their results in the jobs' own order."""
    order = list(range(len(jobs)))
    secrets.SystemRandom().shuffle(order)
    results: dict[int, T] = {}
    for i in order:
        results[i] = jobs[i]()
    return [results[i] for i in range(len(jobs))]


def disguise(folder: Path, groups: Sequence[Sequence[str]]) -> None:
    """Pads the files of each group (names relative to `folder`) to the group's one size, then
    gives every file, and the folders they are in, one modification time. Both go through the
    files in a random order: a padded file is a new inode, and a new time a new change time."""
    sizes = {}
    for names in groups:
        if names:
            largest = max((folder / name).stat().st_size for name in names)
            sizes.update({name: largest + MIN_PAD for name in names})  # room for a pad in each
    shuffled([partial(_pad, folder / name, size) for name, size in sizes.items()])
    now = time.time_ns()
    paths = [folder / name for name in sizes]
    shuffled([partial(os.utime, path, ns=(now, now))
              for path in [*paths, *{p.parent for p in paths}]])


def _pad(path: Path, size: int) -> None:
    data = path.read_bytes()
    room = size - len(data)
    if data.startswith(JPEG_SOI):
        at = 2 + (2 + int.from_bytes(data[4:6], "big") if data[2:4] == JPEG_APP0 else 0)
        padded = data[:at] + _jpeg_comments(room) + data[at:]  # after JFIF's header, if any
    elif data.startswith(PNG_SIGNATURE) and data[-PNG_IEND + 4:-4] == b"IEND":
        padded = data[:-PNG_IEND] + _png_chunk(room) + data[-PNG_IEND:]
    else:
        raise UserError(f"{path}: neither JPEG nor PNG, cannot be padded")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(padded)
    os.replace(tmp, path)


def _jpeg_comments(room: int) -> bytes:
    """Comment segments of `room` bytes in all (room >= 4), filled with random bytes."""
    count = -(-room // JPEG_SEGMENT)
    sizes = [room // count + (i < room % count) for i in range(count)]
    return b"".join(JPEG_COM + struct.pack(">H", n - 2) + secrets.token_bytes(n - 4)
                    for n in sizes)


def _png_chunk(room: int) -> bytes:
    """One private chunk of `room` bytes in all (room >= 12), filled with random bytes."""
    body = PNG_CHUNK + secrets.token_bytes(room - 12)
    return struct.pack(">I", room - 12) + body + struct.pack(">I", zlib.crc32(body))
