"""Telling systemd how the monitor is doing (sd_notify), without a dependency.

Under `Type=notify` the service says READY=1 once it is scoring, pings WATCHDOG=1 while its
pipeline keeps turning (its status reports keep arriving; a hung pipeline stops the pings and
systemd restarts it), and says STOPPING=1 when asked to stop. Outside systemd (no NOTIFY_SOCKET)
every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time

PIPELINE_STALE_S = 30.0  # a pipeline silent this long is hung: stop vouching for it


def notify(message: str) -> bool:
    """Send one sd_notify message; False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True


class Watchdog:
    """Pings at half the interval systemd asks for (WATCHDOG_USEC), only while alive."""

    def __init__(self, stale_s: float = PIPELINE_STALE_S) -> None:
        usec = os.environ.get("WATCHDOG_USEC", "")
        self.every_s = int(usec) / 2e6 if usec.isdigit() else None
        self.stale_s = stale_s
        self._last = 0.0

    def ping(self, pipeline_seen: float) -> None:
        """`pipeline_seen`: monotonic time the pipeline was last heard from."""
        now = time.monotonic()
        if self.every_s is None or now - self._last < self.every_s:
            return
        if now - pipeline_seen < self.stale_s:
            notify("WATCHDOG=1")
            self._last = now
