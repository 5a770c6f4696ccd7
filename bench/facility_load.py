"""Facility load: many monitors through one proxy into one logger, records counted at the end.

Starts the real commands, `mgs-monitor proxy` and `mgs-monitor log` (CSV; with `--db URL`
PostgreSQL too, whose rows are counted once the logger has stopped), each in its own process,
and `--publishers` record generators, each a process with a monitor's Publisher
(monitor/outputs/bus.py) sending score records of the monitor's shape (monitor/schema.py,
every field filled as for a scored mouse) in rounds every 50 ms, as a monitor sends one
sampling round of its mice. Each step runs one total rate for `--seconds` and then counts, per
publisher run, the records the logger wrote against those sent: lost, and how many of them the
logger reported as gaps. The lag is how far the newest row in the CSV trails the clock while records
flow (sampled every 0.2 s), and the drain, how long after the last record was sent the logger
had written everything. The figure is the highest rate whose step lost nothing and whose
logger kept up (drain within KEPT_UP_S: every hop queues several seconds of records, so a
short step above what the logger sustains loses nothing but trails further and further);
steps go on up to the first that loses.

    .venv/bin/python bench/facility_load.py [--publishers 4] [--rates 2000,5000,10000,15000]
    taskset -c 0,1 .venv/bin/python bench/facility_load.py    # two cores, sink included
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from figures import publish
from monitor_speed import cpu_name

from monitor.outputs.bus import Publisher
from monitor.schema import CSV_COLUMNS, GAP_COLUMNS, ScoreRecord, new_instance, side_file

ROUND_S = 0.05  # a monitor sends its mice's records in rounds (one sampling round)
LINGER_S = 120.0  # a publisher's queue is given this long to reach a proxy that is behind
KEPT_UP_S = 3.0  # a rate is sustained when the logger has written everything this soon after
WARM_UP = "warm-up"  # the instance of the records that only open the path
SEQ, PUBLISHER, INSTANCE, WALL = (CSV_COLUMNS.index(name)
                                  for name in ("seq", "publisher", "instance", "wall_time"))


def free_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


def record(publisher: str, instance: str, seq: int, mice: int) -> ScoreRecord:
    """A scored mouse as a monitor sends it (camera, cubicle, probabilities, crop path)."""
    cubicle = seq % mice
    return ScoreRecord(
        publisher=publisher, seq=seq, wall_time=time.time(), mono_time=time.monotonic(),
        source_time=seq * 0.2, frame_index=seq, camera=f"{publisher}-cam{cubicle // 4}",
        cubicle=cubicle % 4 + 1, mouse=f"{publisher}-m{cubicle}", status="scored",
        face_box=(0.41, 0.52, 0.22, 0.19), face_score=0.93, sharpness=131.7,
        probs=((0.61, 0.33, 0.06), (0.2, 0.7, 0.1), (0.5, 0.4, 0.1), (0.8, 0.15, 0.05),
               (0.3, 0.6, 0.1)),
        levels=(0, 1, 0, 0, 1), total=2, expected_total=2.4, pain=False, model_kind="trained",
        scorer_id="scorer-3f9a2c1b", localizer_id="localizer-77d0e4aa", latency_ms=14.2,
        instance=instance, crop=f"evidence/{publisher}/2026-12-07/m{cubicle}-{seq}.jpg")


Sent = tuple[str, str, int, float]  # publisher, instance, records sent, when the last was


def publish_records(endpoint: str, name: str, rate: float, seconds: float, go: Event,
                    counted: Event, done: mp.Queue[Sent]) -> None:
    """One monitor: warm-up records until `go`, then `rate` records/s for `seconds`; puts
    (name, instance, records sent, time the last was sent) on `done` and stays until `counted`:
    a socket closed while its peer is behind drops the batch it was writing."""
    publisher = Publisher(endpoint)
    warm = 0
    while not go.wait(0.05):
        publisher.publish(record(name, WARM_UP, warm, 16))
        warm += 1
    instance, sent = new_instance(), 0
    started = time.monotonic()
    while (now := time.monotonic()) < started + seconds:
        due = int(min(now - started + ROUND_S, seconds) * rate)
        while sent < due:
            sent += 1
            publisher.publish(record(name, instance, sent, 16))
        time.sleep(max(0.0, started + (sent / rate) - time.monotonic()))
    done.put((name, instance, sent, time.time()))
    counted.wait(LINGER_S)
    publisher.close()


def read_rows(path: Path, width: int = len(CSV_COLUMNS)) -> list[list[str]]:
    """The full rows of a CSV the logger is writing, header left out."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [row for row in csv.reader(handle) if len(row) == width][1:]


def newest_wall_time(path: Path) -> float | None:
    """The wall time of the last full row of the logger's CSV (read from its end)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 4096))
            lines = handle.read().split(b"\n")[1:-1]
    except OSError:
        return None
    for line in reversed(lines):
        row = next(csv.reader([line.decode()]))
        if len(row) == len(CSV_COLUMNS):
            try:
                return float(row[WALL])
            except ValueError:
                return None
    return None


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "monitor", *args]


def step(rate: float, publishers: int, seconds: float, db: str | None,
         folder: Path) -> dict[str, Any]:
    """One rate through a fresh proxy and logger; what arrived, what was lost and said."""
    out = folder / f"scores-{int(rate)}.csv"
    sources = [free_endpoint() for _ in range(publishers)]
    backend = free_endpoint()
    proxy = subprocess.Popen(command("proxy", *(f"--from={s}" for s in sources),
                                     "--backend", backend),
                             stderr=(folder / f"proxy-{int(rate)}.log").open("w"))
    log_args = ["log", "--endpoint", backend, "--out", str(out)]
    logger = subprocess.Popen(command(*log_args, *(["--db", db] if db else [])),
                              stderr=(folder / f"log-{int(rate)}.log").open("w"))
    go, counted = mp.Event(), mp.Event()
    done: mp.Queue[Sent] = mp.Queue()
    names = [f"host{i:02d}" for i in range(publishers)]
    workers = [mp.Process(target=publish_records,
                          args=(source, name, rate / publishers, seconds, go, counted, done))
               for source, name in zip(sources, names, strict=True)]
    for worker in workers:
        worker.start()
    try:
        wait_for_warm_up(out, set(names), logger)
        go.set()
        lags = sample_lags(out, seconds)
        ends = [done.get(timeout=seconds + 30) for _ in workers]
        sent = {(name, instance): count for name, instance, count, _ in ends}
        last_sent = max(end for *_, end in ends)
        drain_s = wait_for_rows(out, sum(sent.values()), last_sent)
        cpu = {"proxy": cpu_s(proxy.pid), "logger": cpu_s(logger.pid)}
    finally:
        counted.set()
        for worker in workers:
            worker.join(10)
        for process in (logger, proxy):
            process.send_signal(signal.SIGINT)
            process.wait(30)
    found = count(out, sent, rate, seconds, lags, drain_s)
    if db:
        found["db_lost"] = db_lost(db, sent)
        found["lost"] = max(found["lost"], found["db_lost"])
    return {**found, "cpu_s": cpu}


def db_lost(url: str, sent: dict[tuple[str, str], int]) -> int:
    """Records of this step's publisher runs missing from the database's score table."""
    import psycopg

    with psycopg.connect(url) as connection:
        rows = connection.execute("SELECT publisher, instance, count(DISTINCT seq) FROM "
                                  "mgs_scores GROUP BY publisher, instance").fetchall()
    got = {(publisher, instance): n for publisher, instance, n in rows}
    return sum(n - got.get(run, 0) for run, n in sent.items())


def cpu_s(pid: int) -> float:
    """CPU seconds a process has used (user and system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 1)


def wait_for_warm_up(out: Path, names: set[str], logger: subprocess.Popen) -> None:
    """Until every publisher's warm-up records reach the CSV: the subscriptions are through."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if logger.poll() is not None:
            raise SystemExit(f"the logger stopped (exit {logger.returncode}); see its log")
        if names <= {row[PUBLISHER] for row in read_rows(out) if row[INSTANCE] == WARM_UP}:
            return
        time.sleep(0.2)
    raise SystemExit(f"{out}: the publishers' warm-up records did not arrive within 30 s")


def sample_lags(out: Path, seconds: float) -> list[float]:
    lags = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.2)
        newest = newest_wall_time(out)
        if newest is not None:
            lags.append(time.time() - newest)
    return lags


class NewRows:
    """Counts the rows the logger has written but the warm-up, reading only what is new (the
    bench must not take the logger's CPU by reading the whole file again)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.rows = path, 0, -1  # -1: the header

    def count(self) -> int:
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        whole = data[:data.rfind(b"\n") + 1]
        self.offset += len(whole)
        self.rows += whole.count(b"\n") - whole.count(f",{WARM_UP},".encode())
        return self.rows


def wait_for_rows(out: Path, expected: int, last_sent: float, patience_s: float = 15.0) -> float:
    """Seconds from the last record sent until the CSV held `expected` records more than the
    warm-up (or until it stopped growing for `patience_s`)."""
    rows, size, grew = NewRows(out), -1, time.monotonic()
    while time.monotonic() - grew < patience_s:
        written = rows.count()
        if written >= expected:
            break
        if written != size:
            size, grew = written, time.monotonic()
        time.sleep(0.1)
    return time.time() - last_sent


def count(out: Path, sent: dict[tuple[str, str], int], rate: float, seconds: float,
          lags: list[float], drain_s: float) -> dict[str, Any]:
    got: dict[tuple[str, str], set[int]] = {run: set() for run in sent}
    for row in read_rows(out):
        if (row[PUBLISHER], row[INSTANCE]) in got:
            got[(row[PUBLISHER], row[INSTANCE])].add(int(row[SEQ]))
    reported = 0
    for row in read_rows(side_file(out, "gaps"), len(GAP_COLUMNS)):
        if (row[0], row[4]) in got:
            reported += int(row[2]) - int(row[1]) + 1
    lost = sum(n - len(got[run]) for run, n in sent.items())
    total = sum(sent.values())
    return {"rate": rate, "sent": total, "sent_per_s": round(total / seconds),
            "written": total - lost, "lost": lost, "lost_reported_as_gaps": reported,
            "lag_s_median": round(statistics.median(lags), 2) if lags else None,
            "lag_s_max": round(max(lags), 2) if lags else None,
            "drain_s": round(drain_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--rates", default="2000,5000,10000,15000,20000",
                        help="total records/s of each step, comma-separated, rising")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each step")
    parser.add_argument("--db", metavar="URL",
                        help="log to PostgreSQL (postgresql://user@host:port/db) as well as "
                        "to the CSV; a step passes when neither lost a record")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]  # other work on the machine shares its cores
    steps = []
    with tempfile.TemporaryDirectory(prefix="facility-load-") as scratch:  # GBs of CSV
        for rate in (float(r) for r in args.rates.split(",")):
            steps.append(step(rate, args.publishers, args.seconds, args.db, Path(scratch)))
            print(steps[-1], flush=True)
            if steps[-1]["lost"]:
                break
    lossless = [s for s in steps if not s["lost"] and s["drain_s"] <= KEPT_UP_S]
    best = max(lossless, key=lambda s: s["sent_per_s"]) if lossless else None
    results = {
        "publishers": args.publishers, "seconds_per_step": args.seconds,
        "sink": "postgresql" if args.db else "csv",
        "cores": len(os.sched_getaffinity(0)), "cpu": cpu_name(),
        "load_average_before": round(load_before, 2),
        "records_per_s_with_0_lost": best["sent_per_s"] if best else 0,
        "lag_s_median": best["lag_s_median"] if best else None,
        "lag_s_max": best["lag_s_max"] if best else None,
        "steps": steps,
    }
    publish("facility_load_postgresql" if args.db else "facility_load", results,
            hidden=("steps",))


if __name__ == "__main__":
    main()
