#!/usr/bin/env python3
"""
The long forms of the chaos scenarios (C{tests/chaos}): the same code with
bigger numbers, longer outages and the production retry timings, each
checked against the same ledger (every answered transaction message
delivered once, in order; no CALLERROR).

    .venv/bin/python bench/chaos.py                      # every scenario, long form
    .venv/bin/python bench/chaos.py --scenarios outage,broker --chargers 20
    .venv/bin/python bench/chaos.py --outage 120 --broker-outage 60 --storm-chargers 5000
    .venv/bin/python bench/chaos.py --json results.json

Scenarios: C{outage} (backend 503 for C{--outage} s, default 60),
C{hang} and C{refuse} (backend unreachable while sessions start),
C{sigkill} (daemon killed with SIGKILL, restarted), C{broker} (RabbitMQ
stopped for C{--broker-outage} s, default 30: it stops the shared broker,
so run it when nothing else uses it), C{storm} (C{--storm-chargers}
reconnecting at once, default 2,000).  Everything listens on 127.0.0.1 and
every wait is bounded.  Exit status 1 when any ledger has a problem.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCENARIOS = ("outage", "hang", "refuse", "sigkill", "broker", "storm")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench/chaos.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated (%(default)s)")
    ap.add_argument("--chargers", type=int, default=10, help="chargers with sessions per scenario (%(default)s)")
    ap.add_argument("--outage", type=float, default=60.0, help="seconds the backend answers 503 (%(default)s)")
    ap.add_argument("--fault", type=float, default=10.0, help="seconds the backend hangs or refuses (%(default)s)")
    ap.add_argument("--start-deadline", type=float, default=5.0, help="BACKEND_START_DEADLINE (%(default)s)")
    ap.add_argument("--broker-outage", type=float, default=30.0, help="seconds RabbitMQ is stopped (%(default)s)")
    ap.add_argument("--storm-chargers", type=int, default=2000, help="chargers reconnecting at once (%(default)s)")
    ap.add_argument("--storm-processes", type=int, default=1, help="simulator processes for the storm (%(default)s)")
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between a charger's MeterValues (%(default)s)")
    ap.add_argument("--kill-at-once", action="store_true",
                    help="sigkill: kill right after the last answer (shows the known out-frame record gap)")
    ap.add_argument("--fast-retries", action="store_true", help="the CI retry timings instead of production's")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


def _tally(figures: dict) -> dict:
    out = {k: v for k, v in figures.items() if k not in ("tally", "backend", "book", "log", "reconciled", "report")}
    tally = figures.get("tally")
    if tally is not None:
        out["ledger"] = tally.summary()
        out["problems"] = tally.problems[:20]
    return out


async def run(reactor, args: argparse.Namespace) -> int:
    from tests.chaos.backend_scenarios import (
        backend_outage,
        backend_unreachable,
        sigkill,
    )
    from tests.chaos.broker_scenarios import broker_outage
    from tests.chaos.storm_scenario import reconnect_storm

    fast = args.fast_retries
    results: dict[str, dict] = {}
    failed = False
    for name in args.scenarios.split(","):
        work = Path(tempfile.mkdtemp(prefix=f"chaos-{name}-"))
        t0 = time.monotonic()
        print(f"== {name} ...", flush=True)
        if name == "outage":
            figures = await backend_outage(work, args.chargers, args.outage, args.interval, fast=fast,
                                           recovery=args.outage * 3 + 120)
        elif name in ("hang", "refuse"):
            figures = await backend_unreachable(work, name, args.chargers, args.fault, args.start_deadline,
                                                fast=fast, recovery=args.fault * 3 + 120)
            figures["start_answers"] = [t for _, t in figures["start_answers"]]
            figures["reconciled_starts"] = len(figures["reconciled"])
        elif name == "sigkill":
            figures = await sigkill(work, args.chargers, meters=20, recovery=60,
                                    pause_before_kill=0.0 if args.kill_at_once else 0.5)
            figures["daemon_alive_after_restart"] = figures.pop("alive")
        elif name == "broker":
            figures = await broker_outage(work, args.chargers, args.broker_outage, args.interval)
        else:
            figures = await reconnect_storm(work, args.storm_chargers, bystanders=5, processes=args.storm_processes)
            report = figures["report"]
            figures["storm"] = report.get("storm")
            figures["connections"] = {k: report["connections"][k] for k in ("ok", "failed", "booted", "retries")}
            figures["sim_ok"] = report["ok"]
            figures.pop("sim_stderr", None)
        summary = _tally(figures)
        summary["wall_seconds"] = round(time.monotonic() - t0, 1)
        ok = not summary.get("problems") and summary.get("sim_ok", True) and summary.get("alive", True)
        failed = failed or not ok
        results[name] = summary
        print(json.dumps(summary, indent=1, default=str), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print("result:", "FAILED" if failed else "OK: every ledger balanced")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    from twisted.internet import defer, task

    args = parse_args(argv)

    def go(reactor):
        def done(code: int) -> None:
            if code:
                raise SystemExit(code)

        return defer.ensureDeferred(run(reactor, args)).addCallback(done)

    task.react(go)  # exits the process with run()'s status
    return 0


if __name__ == "__main__":
    sys.exit(main())
