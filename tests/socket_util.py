"""Waiting for processes to connect, read from Linux's /proc: a test starts the monitor's
camera once its subscribers are connected rather than after a guess at their start-up time,
which a loaded machine can stretch to seconds."""

from __future__ import annotations

import os
import time
from pathlib import Path

ESTABLISHED = "01"  # the state column of /proc/net/tcp


def connected_ports(pid: int) -> set[int]:
    """The remote ports of the process's established TCP connections."""
    try:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        rows = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:  # it has exited, or a descriptor closed while being read
        return set()
    sockets = {link[8:-1] for link in links if link.startswith("socket:[")}
    ports = set()
    for row in rows:
        fields = row.split()
        if fields[3] == ESTABLISHED and fields[9] in sockets:
            ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def wait_connected(pid: int, endpoints: list[str], timeout: float = 60.0) -> None:
    """Until process `pid` holds a connection to each tcp endpoint (then ZeroMQ's handshake and
    subscriptions follow within milliseconds on loopback)."""
    wanted = {port_of(e) for e in endpoints}
    deadline = time.monotonic() + timeout
    while not wanted <= connected_ports(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} did not connect to {sorted(wanted)} in "
                                 f"{timeout:.0f} s")
        time.sleep(0.05)
