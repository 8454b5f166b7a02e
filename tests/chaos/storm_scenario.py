# -*- test-case-name: tests.chaos.test_reconnect_storm -*-
"""
Scenario 7: thousands of chargers reconnecting at once.  The daemon runs
as its own process; C{ocpptw-sim --storm} (another process) connects N
chargers, drops every connection at once and lets all reconnect and boot
again, while a few chargers connected before keep calling Heartbeat.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.chaos.charger import LedgerCharger
from tests.chaos.ledger import Book
from tests.chaos.support import SIM, Daemon, sleep


async def reconnect_storm(workdir: Path, chargers: int = 500, bystanders: int = 3, processes: int = 1,
                          seconds: float = 120.0) -> dict[str, Any]:
    """
    Run the storm; the simulator's report, the bystanders' latencies and
    whether the daemon survived.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred, gatherResults
    from twisted.internet.utils import getProcessOutputAndValue

    daemon = Daemon(workdir, {"DATA_DIR": str(workdir / "data"), "OCPP_PING_INTERVAL": "60"})
    book = Book()
    latencies: list[float] = []
    running = {"on": True}
    calls: Any = None
    try:
        await daemon.start()
        watchers = [LedgerCharger(f"WATCH-{i}", book, daemon.port) for i in range(bystanders)]
        for w in watchers:
            await w.connect()
            await w.boot()

        async def keep_calling(w: LedgerCharger) -> None:
            while running["on"]:
                t0 = reactor.seconds()
                frame = await w.call("Heartbeat", {}, seconds=10)
                assert frame[0] == 3, frame
                latencies.append(reactor.seconds() - t0)
                await sleep(0.1)

        calls = gatherResults([Deferred.fromCoroutine(keep_calling(w)) for w in watchers])
        argv = [
            "--url", f"ws://127.0.0.1:{daemon.port}/ocpp/", "-n", str(chargers), "--prefix", "STORM",
            "--storm", "--duration", str(seconds), "--processes", str(processes), "--json",
        ]
        out, err, code = await getProcessOutputAndValue(str(SIM), argv, env={"PATH": str(Path(sys.executable).parent)}).addTimeout(
            seconds + 60, reactor
        )
        running["on"] = False
        await calls.addTimeout(20, reactor)
        report = json.loads(out.decode())
        return {
            "chargers": chargers,
            "report": report,
            "sim_exit": code,
            "sim_stderr": err.decode(errors="replace")[-2000:],
            "bystander_calls": len(latencies),
            "bystander_max_seconds": round(max(latencies), 3) if latencies else None,
            "bystander_errors": sum(1 for s in book.sent if s.call_error or not s.answered),
            "alive": daemon.alive(),
            "log": daemon.log_text(),
        }
    finally:
        running["on"] = False
        if calls is not None and not calls.called:
            calls.addErrback(lambda _: None)
        await daemon.terminate()
