"""Keep the monitor's memory flat over weeks of 1080p frames.

glibc raises its mmap threshold each time a large block is freed, after which multi-megabyte
frame buffers come from the heap arenas of the capture threads and fragment them: in a soak
run resident memory grew by about 1 GB in 8 minutes. A fixed threshold keeps every frame-sized
block in its own mapping, returned to the system when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
FRAME_BLOCK_BYTES = 1 << 20  # blocks this large and up are mapped, never kept in arenas


def keep_frames_out_of_the_heap() -> bool:
    """Fix glibc's mmap threshold; True when applied (False on other C libraries)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, FRAME_BLOCK_BYTES))
    except (OSError, AttributeError):
        return False
