"""A real PostgreSQL server for the tests: its own data folder and a free loopback port, started
with initdb and pg_ctl, stopped (or killed and started again) by the test, never a system
service. As root the server runs as the `postgres` user, which initdb requires."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def postgres_bin(name: str) -> str | None:
    """A server program: the distribution's (Debian keeps them off PATH, by version), else
    one on PATH."""
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True,
                         key=lambda f: [int(n) for n in f.parent.name.split(".") if n.isdigit()]):
        if (folder / name).is_file():
            return str(folder / name)
    return shutil.which(name)


class PostgresServer:
    """One cluster on 127.0.0.1:`port`, trusting local connections (user `mgs`)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="mgs-postgres-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: the server runs as `postgres`
            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "mgs", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        self._databases = 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://mgs@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "-o",
                  f"-p {self.port} -c listen_addresses=127.0.0.1 "
                  f"-c unix_socket_directories={self.folder} -c fsync=off", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def crash(self) -> None:
        """The server stops at once, connections cut, no checkpoint: it recovers on start."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def new_database(self) -> str:
        """The URL of a fresh, empty database."""
        import psycopg

        self._databases += 1
        name = f"mgs_{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, name: str, *args: str) -> None:
        program = postgres_bin(name)
        if program is None:
            raise RuntimeError(f"{name} not found: install PostgreSQL (scripts/test does)")
        done = subprocess.run([*self._as, program, *args], capture_output=True, text=True,
                              check=False, cwd=self.folder)
        if done.returncode != 0:
            raise RuntimeError(f"{name} failed: {done.stdout}{done.stderr}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
