#!/usr/bin/env python3
"""
How many commits and wake-ups of the database threads a new connection
costs: the whole gateway in this process (embedded store), C{ocpptw-sim
--idle} in a child process; once every charger is registered (and a second
later) the counters of both databases, per connection.

    .venv/bin/python bench/store_batches.py -n 300
    PYTHONPATH=../base .venv/bin/python bench/store_batches.py -n 300   # another build

The gateway runs with its defaults (accept pace C{ACCEPT_RATE=auto}), so
chargers arrive about as they do in a storm.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile

from twisted.internet import reactor
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread

from ocpptw.app.gateway import make_gateway
from ocpptw.config import load_config
from ocpptw.store import sqlite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("-n", "--chargers", type=int, default=300)
    options = parser.parse_args()
    n = options.chargers
    data = tempfile.mkdtemp(prefix="ocpptw-batches-")
    wakes: collections.Counter[str] = collections.Counter()
    notify = sqlite.Database._notify

    def counting_notify(self: sqlite.Database) -> None:
        wakes[self._path.rsplit("/", 1)[-1]] += 1
        notify(self)

    sqlite.Database._notify = counting_notify  # type: ignore[method-assign]
    config = load_config(environ={"DATA_DIR": data, "OCPP_PING_INTERVAL": "0", "PORT": "0",
                                  "WEBSOCKET_HOST": "127.0.0.1"})
    gateway = make_gateway(config, reactor)
    snapshot: dict = {}

    def go(_: object) -> None:
        port = gateway.parts.listeners.chargers.port.getHost().port
        dbs = gateway.databases
        start = {d._path: (d.commits, d.writes) for d in dbs}
        wakes.clear()

        def take() -> None:
            for d in dbs:
                name = d._path.rsplit("/", 1)[-1]
                c0, w0 = start[d._path]
                snapshot[name] = {"commits": round((d.commits - c0) / n, 2), "writes": round((d.writes - w0) / n, 2),
                                  "wake-ups": round(wakes[name] / n, 2)}

        def poll() -> None:
            if len(gateway.parts.registry) >= n and "armed" not in snapshot:
                snapshot["armed"] = True
                reactor.callLater(1.0, take)

        LoopingCall(poll).start(0.1)

        def simulate() -> str:
            return subprocess.run(
                [sys.executable, "-m", "ocpptw.sim.cli", "--url", f"ws://127.0.0.1:{port}/ocpp/", "-n", str(n),
                 "--duration", "4", "--idle", "--json"], capture_output=True, text=True, timeout=900).stdout

        def done(_: object) -> None:
            snapshot.pop("armed", None)
            print(f"per connection ({n} chargers):")
            for name, figures in snapshot.items():
                print(f"  {name}: {figures}")
            reactor.stop()

        deferToThread(simulate).addBoth(done)

    try:
        gateway.startService()
        gateway.started.addCallback(go)
        reactor.run()
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
