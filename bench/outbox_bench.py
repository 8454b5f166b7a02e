# -*- test-case-name: tests.store.test_outbox -*-
"""
Outbox append throughput: grouped commits (C{synchronous=FULL} and
C{NORMAL}) against one commit per append, on a real file in a temporary
directory and the real reactor.

Usage::

    .venv/bin/python bench/outbox_bench.py [--count 20000] [--window 1000] [--serial 2000]

C{--window} is how many appends are outstanding at once in the grouped
runs (as many chargers answering at once); the serial run waits for each
append before the next, so every append pays its own commit.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BODY = {
    "deviceId": "CP-000123",
    "transactionId": 1234567,
    "meterStop": 123456,
    "energyWh": 5000,
    "stoppedAt": "2026-11-24T10:00:00.000Z",
    "reason": "Local",
    "cost": "1.75",
    "refund": "18.25",
}


async def grouped(reactor, directory: Path, synchronous: str, count: int, window: int) -> tuple[float, int]:
    from twisted.internet.defer import gatherResults

    from ocpptw.store.outbox import SCHEMA, Outbox
    from ocpptw.store.sqlite import Database

    db = Database(directory / f"grouped-{synchronous}.sqlite", reactor, SCHEMA, synchronous=synchronous)
    db.open()
    outbox = Outbox(db, reactor, max_age=3600.0)
    started = time.perf_counter()
    done = 0
    while done < count:
        batch = min(window, count - done)
        await gatherResults([outbox.append(f"CP{(done + i) % 500}", "stop", BODY) for i in range(batch)])
        done += batch
    elapsed = time.perf_counter() - started
    commits = db.commits
    db.close()
    return elapsed, commits


async def serial(reactor, directory: Path, synchronous: str, count: int) -> tuple[float, int]:
    from ocpptw.store.outbox import SCHEMA, Outbox
    from ocpptw.store.sqlite import Database

    db = Database(directory / f"serial-{synchronous}.sqlite", reactor, SCHEMA, synchronous=synchronous)
    db.open()
    outbox = Outbox(db, reactor, max_age=3600.0)
    started = time.perf_counter()
    for n in range(count):
        await outbox.append(f"CP{n % 500}", "stop", BODY)
    elapsed = time.perf_counter() - started
    commits = db.commits
    db.close()
    return elapsed, commits


async def run(reactor, options: argparse.Namespace) -> None:
    rows = []
    with tempfile.TemporaryDirectory(dir=options.dir) as name:
        directory = Path(name)
        for sync in ("FULL", "NORMAL"):
            elapsed, commits = await grouped(reactor, directory, sync, options.count, options.window)
            rows.append((f"grouped, window {options.window}", sync, options.count, commits, elapsed))
        for sync in ("FULL", "NORMAL"):
            elapsed, commits = await serial(reactor, directory, sync, options.serial)
            rows.append(("one commit per append", sync, options.serial, commits, elapsed))
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    print(f"{'mode':<26} {'sync':<7} {'appends':>8} {'commits':>8} {'appends/s':>10} {'us/append':>10}")
    for mode, sync, count, commits, elapsed in rows:
        print(f"{mode:<26} {sync:<7} {count:>8} {commits:>8} {count / elapsed:>10.0f} {elapsed / count * 1e6:>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20000, help="appends in each grouped run")
    parser.add_argument("--window", type=int, default=1000, help="appends outstanding at once when grouped")
    parser.add_argument("--serial", type=int, default=2000, help="appends in each one-commit-per-append run")
    parser.add_argument("--dir", default=None, help="where the temporary database files go (default: the system's)")
    options = parser.parse_args()

    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import react

    react(lambda reactor: ensureDeferred(run(reactor, options)))


if __name__ == "__main__":
    main()
