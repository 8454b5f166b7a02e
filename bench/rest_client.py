#!/usr/bin/env python3
"""
The REST adapter's own cost, before and after a change, in one run: the
C{HttpBackend} of a git revision (default C{main}) and the one in this tree
take turns against the same loopback backend (C{bench/backend_server.py}).

    .venv/bin/python bench/rest_client.py                       # main against this tree
    .venv/bin/python bench/rest_client.py --before e3d5afb --rounds 6 --calls 6000

Each round starts one client process per build, pinned to core 0, with the
backend pinned to core 1.  A client keeps C{--concurrency} calls in flight
(the outbox delivers up to 64 at once) and runs the call mix of a charger
session as the gateway makes it: PATCH last-seen, PATCH status, POST
ocpp-message (the message log, the most frequent request), GET by-device,
POST authorize.  It reports its own CPU per call (user + system, the whole
process: Twisted's HTTP client, treq or not, and the adapter), after a
warm-up.  The builds alternate every round; the figures are the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import free_port, wait_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

SEEN = {"lastSeen": "2026-11-24T10:00:00.000Z"}
STATUS = {"connectorId": 1, "status": "Charging", "errorCode": "NoError", "timestamp": "2026-11-24T10:00:00.000Z"}
MESSAGE = {
    "direction": "in",
    "messageType": "CALL",
    "messageId": "19223201",
    "action": "MeterValues",
    "payload": {"connectorId": 1, "transactionId": 7, "meterValue": [{"timestamp": "2026-11-24T10:00:00.000Z",
                "sampledValue": [{"value": "1234.5", "measurand": "Energy.Active.Import.Register"}]}]},
    "timestamp": "2026-11-24T10:00:00.000Z",
}


def client(url: str, calls: int, concurrency: int, warmup: int) -> None:
    """
    Run in a child process: C{calls} calls through C{HttpBackend}, printing
    one JSON line with the CPU and time they took.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import DeferredSemaphore, gatherResults

    from ocpptw.adapters import backend_http
    from ocpptw.adapters.backend_http import HttpBackend

    backend = HttpBackend(url, reactor, timeout=10.0, retries=1)
    mix = [
        lambda: backend.update_last_seen("CP1", SEEN),
        lambda: backend.update_status("CP1", STATUS),
        lambda: backend.store_message("CP1", MESSAGE),
        lambda: backend.store_message("CP1", MESSAGE),
        lambda: backend.charger_by_device("CP1"),
        lambda: backend.authorize("CP1", "TAG1"),
    ]
    semaphore = DeferredSemaphore(concurrency)
    result: dict = {}

    def batch(n: int):
        return gatherResults([semaphore.run(mix[i % len(mix)]) for i in range(n)], consumeErrors=True)

    async def run() -> None:
        await backend.ensure_charger({"deviceId": "CP1", "vendor": "V", "model": "M"})
        await batch(warmup)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        await batch(calls)
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
        result.update(cpu_us_per_call=cpu / calls * 1e6, calls_per_s=calls / elapsed, treq="treq" in sys.modules,
                      module=backend_http.__file__)
        await backend.close()

    def done(outcome):
        reactor.stop()
        return outcome

    from twisted.internet.defer import Deferred

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(run()).addBoth(done))
    reactor.run()
    if "cpu_us_per_call" not in result:
        raise SystemExit("the client did not finish")
    print(json.dumps(result), flush=True)


def _tree(revision: str, into: Path) -> Path:
    """
    The C{ocpptw} package of C{revision}, unpacked under C{into}.
    """
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "ocpptw"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def _instructions(port: int, tree: str, a: argparse.Namespace, scratch: Path) -> dict:
    """
    Instructions per call of one build under callgrind: the difference
    between a run of C{--calls} calls and one of a fifth as many, so that
    start-up and warm-up cancel out.
    """
    counts = {}
    for calls in (a.calls // 5, a.calls):
        out = scratch / f"callgrind-{os.getpid()}-{calls}.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
             "--client", f"http://127.0.0.1:{port}", "--calls", str(calls), "--concurrency", str(a.concurrency),
             "--warmup", str(a.warmup)],
            env={**os.environ, "PYTHONPATH": tree},
            capture_output=True,
            timeout=1800,
            check=True,
        )
        totals = [line for line in out.read_text().splitlines() if line.startswith(("summary:", "totals:"))]
        counts[calls] = int(totals[-1].split()[1])
        out.unlink()
    low, high = sorted(counts)
    return {"instructions_per_call": (counts[high] - counts[low]) / (high - low)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default="main", help="git revision of the build to compare with (default main)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--callgrind", action="store_true",
                    help="count instructions per call under valgrind instead (steady under load; about 50x slower)")
    ap.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.client:
        client(a.client, a.calls, a.concurrency, a.warmup)
        return

    taskset = shutil.which("taskset")
    pin = (lambda core: [taskset, "-c", str(core)]) if taskset else (lambda core: [])
    port = free_port()
    backend = subprocess.Popen(
        [*pin(1), sys.executable, str(HERE / "backend_server.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    figures: dict[str, list[dict]] = {"before": [], "after": []}
    try:
        wait_port(port, backend)
        with tempfile.TemporaryDirectory() as scratch:
            trees = {"before": str(_tree(a.before, Path(scratch))), "after": str(ROOT)}
            for round_ in range(a.rounds):
                order = ["before", "after"] if round_ % 2 == 0 else ["after", "before"]
                for build in order:
                    if a.callgrind:
                        figures[build].append(_instructions(port, trees[build], a, Path(scratch)))
                        print(build, figures[build][-1], flush=True)
                        continue
                    out = subprocess.run(
                        [*pin(0), sys.executable, __file__, "--client", f"http://127.0.0.1:{port}",
                         "--calls", str(a.calls), "--concurrency", str(a.concurrency), "--warmup", str(a.warmup)],
                        env={**os.environ, "PYTHONPATH": trees[build]},
                        capture_output=True,
                        text=True,
                        timeout=300,
                        check=True,
                    )
                    figures[build].append(json.loads(out.stdout.strip().splitlines()[-1]))
                    print(build, figures[build][-1], flush=True)
    finally:
        backend.terminate()
        backend.wait(10)
    if a.callgrind:
        per = {build: statistics.median(f["instructions_per_call"] for f in rows) for build, rows in figures.items()}
        print(f"before ({a.before}): {per['before']:.0f} instructions a call")
        print(f"after (this tree): {per['after']:.0f} instructions a call")
        print(f"after / before: {per['after'] / per['before']:.3f}")
        return
    cpu = {build: statistics.median(f["cpu_us_per_call"] for f in rows) for build, rows in figures.items()}
    rate = {build: statistics.median(f["calls_per_s"] for f in rows) for build, rows in figures.items()}
    print(f"before ({a.before}): {cpu['before']:.0f} us CPU a call, {rate['before']:.0f} calls/s")
    print(f"after (this tree): {cpu['after']:.0f} us CPU a call, {rate['after']:.0f} calls/s")
    print(f"after / before: CPU {cpu['after'] / cpu['before']:.2f}, calls/s {rate['after'] / rate['before']:.2f}")


if __name__ == "__main__":
    main()
