# -*- test-case-name: tests.chaos.test_half_open -*-
"""
Scenario 6: a charger vanishes without closing its socket (it stops
reading: no pongs, no answers) while the operator sends it a command.  The
command ends (504 when its own timeout comes first, 404 ChargerOffline once
the keepalive drops the socket), the registry forgets the charger, and the
gateway keeps answering the others meanwhile.
"""

from __future__ import annotations

import json

import pytest_twisted
import treq

from tests.chaos.charger import LedgerCharger
from tests.chaos.ledger import Book
from tests.chaos.support import sleep, start_gateway, stop_gateway, wait_until


async def command(port: int, cp: str, action: str, timeout: float) -> tuple[int, dict, float]:
    from twisted.internet import reactor

    t0 = reactor.seconds()
    url = f"http://127.0.0.1:{port}/api/v1/chargers/{cp}/commands/{action}?timeout={timeout}"
    response = await treq.post(url, data=b"{}", persistent=False).addTimeout(timeout + 10, reactor)
    body = json.loads(await response.content().addTimeout(10, reactor))
    return response.code, body, reactor.seconds() - t0


@pytest_twisted.ensureDeferred
async def test_half_open_charger_is_dropped_and_others_are_served(tmp_path):
    """A silent socket: commands end, the ping drops it, the registry forgets it, others are answered throughout."""
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    gateway = await start_gateway(tmp_path / "data", {"OCPP_PING_INTERVAL": "1", "OCPP_CALL_TIMEOUT": "10"})
    book = Book()
    victim = LedgerCharger("HALF-OPEN", book, gateway.test_port)
    bystander = LedgerCharger("BYSTANDER", book, gateway.test_port)
    latencies: list[float] = []
    running = {"on": True}

    async def keep_calling() -> None:
        while running["on"]:
            t0 = reactor.seconds()
            frame = await bystander.call("Heartbeat", {}, seconds=5)
            assert frame[0] == 3, frame
            latencies.append(reactor.seconds() - t0)
            await sleep(0.1)

    try:
        await victim.connect()
        await victim.boot()
        await bystander.connect()
        await bystander.boot()
        await sleep(1.5)  # keepalive pings are flowing and answered
        assert gateway.registry.get("HALF-OPEN") is not None
        others = Deferred.fromCoroutine(keep_calling())

        victim.socket.transport.pauseProducing()  # gone: reads nothing, answers nothing, never closes
        first = await command(gateway.test_port, "HALF-OPEN", "GetConfiguration", 0.5)
        second = await command(gateway.test_port, "HALF-OPEN", "GetConfiguration", 10)
        forgotten = await wait_until(lambda: gateway.registry.get("HALF-OPEN") is None, 5, what="registry forgets")
        await sleep(0.5)
        running["on"] = False
        await others.addTimeout(10, reactor)
    finally:
        running["on"] = False
        victim.abort()
        await stop_gateway(gateway)

    code, body, took = first
    assert (code, body["error"]["code"]) in ((504, "Timeout"), (404, "ChargerOffline")), first
    assert took < 1.5, first
    code, body, took = second
    assert (code, body["error"]["code"]) == (404, "ChargerOffline"), second  # dropped by the ping, not timed out
    assert took < 4.0, second
    assert forgotten < 4.0
    assert len(latencies) >= 10 and max(latencies) < 1.0, latencies
