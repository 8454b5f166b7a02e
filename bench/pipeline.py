"""
The gateway's own work per OCPP call, without sockets: the real wiring
(sessions, validation, router, services, the embedded store on its database
threads, the outbox) fed in process by 100 chargers in a closed loop with
the load generator's frames and mix (C{heartbeat=1,status=1,meter=6,
session=2}).  What Autobahn, the reactor and TCP cost is left out, so small
changes to the gateway's own code show through the noise of a shared
machine.

    python bench/pipeline.py                       # CPU per call, both threads
    python bench/pipeline.py --calls 300           # instruction counts:
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/pipeline.py --calls 1300
    # (the difference of the two "Collected" totals / 1000 is instructions per call)
    python bench/pipeline.py --ocpp 2.0.1          # the same mix, translated to 2.0.1

With C{--ocpp 2.0.1} the chargers are 2.0.1 stations and the mix is
translated call for call: Heartbeat, StatusNotification, MeterValues
outside a session, and a session of Authorize, TransactionEvent Started,
three TransactionEvent Updated carrying the same ten sampled values as the
1.6 MeterValues, and TransactionEvent Ended.  Run both versions under
callgrind (the four commands of docs/performance.md, "OCPP 2.0.1 against
1.6") to compare them.

It prints one line: CPU microseconds per call in all, on the reactor thread
and on the other (database) threads, measured after the first 500 calls
(50 with C{--calls} under 2,000).  C{DATA_DIR} is a fresh temporary
directory, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time

from twisted.internet import reactor

from ocpptw.app.gateway import make_gateway
from ocpptw.config import load_config
from ocpptw.ocpp.versions import V16, V201
from ocpptw.sim import payloads as p
from ocpptw.sim import payloads_v201 as p201

_OPERATIONS = ["heartbeat"] + ["status"] + ["meter"] * 6 + ["session"] * 2
_SESSION = ["authorize", "start", "meter_tx", "meter_tx", "meter_tx", "stop"]


def _thread_seconds() -> dict[int, float]:
    tick = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        seconds[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return seconds


class Run:
    def __init__(self, gateway, chargers: int, calls: int, warmup: int, v201: bool = False) -> None:
        self.gateway = gateway
        self.v201 = v201
        self.calls = 0
        self.goal = calls + warmup
        self.warmup = warmup
        self.started = None
        self.random = random.Random(7)
        self.chargers = [Charger(self, f"PIPE{n}") for n in range(chargers)]

    def answered(self) -> bool:
        self.calls += 1
        if self.calls == self.warmup:
            self.started = (time.process_time(), _thread_seconds())
        if self.calls == self.goal:
            cpu, threads = time.process_time(), _thread_seconds()
            calls = self.goal - self.warmup
            main = threads[os.getpid()] - self.started[1][os.getpid()]
            total = cpu - self.started[0]
            print(f"cpu_us_per_call {total / calls * 1e6:.1f} reactor_thread {main / calls * 1e6:.1f}"
                  f" other_threads {(total - main) / calls * 1e6:.1f}", flush=True)
            reactor.callLater(0, reactor.stop)
        return self.calls < self.goal


class Charger:
    """One simulated charger: its session, its next CALL when the last is answered."""

    def __init__(self, run: Run, charge_point_id: str) -> None:
        self.run = run
        self.id = charge_point_id
        #: read by the session factory: the version this charger speaks
        self.version = V201 if run.v201 else V16
        self.session = run.gateway.gate._session_factory(charge_point_id, self, True)
        self.seq = 0
        self.plan: list[str] = []
        self.transaction = None
        self.energy = 1000
        self.pending = ""
        self.tx_seq = 0

    def send(self, action: str, payload: str) -> None:
        self.seq += 1
        self.pending = action
        reactor.callLater(0, self.session.frame_received, p.call_frame(f"m{self.seq}", action, payload))

    def next(self) -> None:
        if not self.plan:
            operation = self.run.random.choice(_OPERATIONS)
            self.plan = list(_SESSION) if operation == "session" else [operation]
        operation = self.plan.pop(0)
        self.energy += 17
        tag = "TAG" + self.id
        if self.run.v201:
            self.next_v201(operation, tag)
        elif operation == "heartbeat":
            self.send("Heartbeat", p.HEARTBEAT)
        elif operation == "status":
            self.send("StatusNotification", p.status_notification(1, "Available"))
        elif operation == "meter":
            self.send("MeterValues", p.meter_values(1, None, self.energy, self.seq))
        elif operation == "meter_tx":
            self.send("MeterValues", p.meter_values(1, self.transaction, self.energy, self.seq))
        elif operation == "authorize":
            self.send("Authorize", p.authorize(tag))
        elif operation == "start":
            self.send("StartTransaction", p.start_transaction(1, tag, self.energy))
        else:
            self.send("StopTransaction", p.stop_transaction(self.transaction, tag, self.energy))

    def next_v201(self, operation: str, tag: str) -> None:
        if operation == "heartbeat":
            self.send("Heartbeat", p.HEARTBEAT)
        elif operation == "status":
            self.send("StatusNotification", p201.status_notification(1, False))
        elif operation == "meter":
            self.send("MeterValues", p201.meter_values(self.energy, self.seq))
        elif operation == "authorize":
            self.send("Authorize", p201.authorize(tag))
        elif operation == "start":
            self.transaction = f"{self.id}-{self.seq}"
            self.tx_seq = 0
            self.send("TransactionEvent", p201.transaction_event("Started", self.transaction, 0, tag, self.energy))
        else:
            self.tx_seq += 1
            kind = "Updated" if operation == "meter_tx" else "Ended"
            self.send("TransactionEvent", p201.transaction_event(kind, self.transaction, self.tx_seq, None, self.energy))

    # the session's sink
    def send_text(self, text: str) -> None:
        frame = json.loads(text)
        if frame[0] != 3:
            raise SystemExit(f"{self.id}: {self.pending} answered {text}")
        if self.pending == "StartTransaction" and not self.run.v201:
            self.transaction = frame[2]["transactionId"]
        if self.pending == "BootNotification" or self.run.answered():
            self.next()

    def close(self, code: int, reason: str) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--chargers", type=int, default=100)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--ocpp", choices=["1.6", "2.0.1"], default="1.6")
    options = parser.parse_args()
    data = tempfile.mkdtemp(prefix="ocpptw-pipeline-")
    try:
        config = load_config(environ={"DATA_DIR": data, "OCPP_PING_INTERVAL": "0", "PORT": "0",
                                      "WEBSOCKET_HOST": "127.0.0.1"})
        gateway = make_gateway(config, reactor)
        warmup = 500 if options.calls >= 2000 else 50

        def go(_: object) -> None:
            run = Run(gateway, options.chargers, options.calls, warmup, options.ocpp == "2.0.1")
            boot = p201.boot_notification if run.v201 else p.boot_notification
            for charger in run.chargers:
                charger.send("BootNotification", boot(charger.id))

        gateway.startService()
        gateway.started.addCallback(go)
        reactor.callLater(3600, reactor.stop)
        reactor.run()
    finally:
        shutil.rmtree(data, ignore_errors=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
