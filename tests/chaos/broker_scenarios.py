# -*- test-case-name: tests.chaos.test_zz_broker_outage -*-
"""
Scenario 5: the broker is stopped (C{rabbitmqctl stop_app}) in the middle
of charging traffic and started again; the chargers keep sending.  Every
event of that period must reach a consumer queue afterwards, in order per
charger, none lost (duplicates only with the same C{id}).

The consumer queue is durable and bound before the traffic starts, so it
holds what the gateway publishes across the restart; it is drained at the
end.  The broker is always started again and awaited before returning:
other tests share it.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from tests.chaos.backend_scenarios import as_deferred, stamp
from tests.chaos.charger import (
    LedgerCharger,
    meter_payload,
    start_payload,
    stop_payload,
)
from tests.chaos.ledger import Book, Tally, check_events
from tests.chaos.support import (
    rabbitmqctl,
    sleep,
    start_gateway,
    stop_gateway,
    wait_for_broker,
    wait_until,
)

BROKER = "amqp://guest:guest@127.0.0.1:5672/%2F"


async def _client() -> Any:
    import pika
    from pika.adapters.twisted_connection import TwistedProtocolConnection
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    protocol = TwistedProtocolConnection(pika.ConnectionParameters(), custom_reactor=reactor)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", 5672, timeout=5), protocol).addTimeout(10, reactor)
    return await protocol.ready.addTimeout(10, reactor)


async def _declare_consumer(exchange: str, queue: str) -> None:
    from twisted.internet import reactor

    client = await _client()
    channel = await client.channel().addTimeout(10, reactor)
    await channel.queue_declare(queue=queue, durable=True).addTimeout(10, reactor)
    await channel.queue_bind(queue=queue, exchange=exchange, routing_key="#").addTimeout(10, reactor)
    client.close()


async def _drain(queue: str, quiet: float = 1.0) -> list[dict]:
    """
    Every message in C{queue}, in queue order, until none came for
    C{quiet} seconds.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import TimeoutError

    client = await _client()
    channel = await client.channel().addTimeout(10, reactor)
    messages, _ = await channel.basic_consume(queue=queue, auto_ack=True).addTimeout(10, reactor)
    events = []
    while True:
        try:
            _, _, properties, body = await messages.get().addTimeout(quiet, reactor)
        except TimeoutError:
            break
        event = json.loads(body)
        assert properties.message_id == event["id"] and properties.delivery_mode == 2
        events.append(event)
    client.close()
    return events


async def _delete(names: dict[str, str]) -> None:
    from twisted.internet import reactor

    client = await _client()
    channel = await client.channel().addTimeout(10, reactor)
    for queue in (names["consumer"], f"{names['events']}.unroutable"):
        await channel.queue_delete(queue=queue).addTimeout(10, reactor)
    for exchange in (names["events"], f"{names['events']}.unroutable", names["commands"], f"{names['commands']}.claims"):
        await channel.exchange_delete(exchange=exchange).addTimeout(10, reactor)
    client.close()


async def broker_outage(workdir: Path, chargers: int = 3, outage: float = 5.0, interval: float = 0.2,
                        recovery: float = 60.0) -> dict[str, Any]:
    """
    Run the scenario; C{outage} counts from C{stop_app} returning to
    C{start_app} being issued.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import gatherResults
    from twisted.internet.threads import deferToThread

    tag = uuid.uuid4().hex[:10]
    names = {"events": f"chaos.{tag}.events", "commands": f"chaos.{tag}.commands", "consumer": f"chaos.{tag}.consumer"}
    env = {
        "ENABLE_RABBITMQ": "true",
        "RABBITMQ_URL": BROKER,
        "RABBITMQ_EXCHANGE": names["events"],
        "RABBITMQ_COMMAND_EXCHANGE": names["commands"],
        "INSTANCE_ID": f"chaos-{tag}",
    }
    gateway = await start_gateway(workdir / "data", env)
    book = Book()
    stopped = False
    figures: dict[str, Any] = {"chargers": chargers, "outage_seconds": outage}
    running = {"on": True}
    flows: Any = None
    try:
        await wait_until(lambda: gateway.publisher.ready()[0], 20, what="broker connected")
        await _declare_consumer(names["events"], names["consumer"])
        cs = [LedgerCharger(f"MQ-{i:03d}", book, gateway.test_port) for i in range(chargers)]
        txs = []
        for c in cs:
            await c.connect()
            await c.boot()
            await c.call("Authorize", {"idTag": "T1"})
            frame = await c.call("StartTransaction", start_payload(1, "T1", 1000, stamp(1)))
            txs.append(frame[2]["transactionId"])
        readings = {c.cp: 1000 for c in cs}

        # While the broker is down each charger also starts and stops a
        # second session (connector 2): charging.started/stopped of the
        # outage itself.
        state = {"down": False, "closing": False}
        second_done: dict[str, bool] = {}

        async def traffic(c: LedgerCharger, tx: int) -> None:
            n, second = 2, None
            while running["on"]:
                n += 1
                readings[c.cp] += 1
                await c.call("MeterValues", meter_payload(1, tx, readings[c.cp], stamp(n)))
                if n % 10 == 0:
                    await c.call("StatusNotification", {"connectorId": 1, "status": "Charging", "errorCode": "NoError"})
                if state["down"] and second is None and c.cp not in second_done:
                    frame = await c.call("StartTransaction", start_payload(2, "T2", 5000, stamp(n)))
                    second = frame[2]["transactionId"]
                if state["closing"] and second is not None:
                    await c.call("StopTransaction", stop_payload(second, 5100, stamp(n + 1)))
                    second, second_done[c.cp] = None, True
                await sleep(interval)
            await c.call("StopTransaction", stop_payload(tx, readings[c.cp] + 1, stamp(3540)))

        flows = gatherResults([as_deferred(traffic(c, tx)) for c, tx in zip(cs, txs)])
        await sleep(1.0)
        t0 = reactor.seconds()
        stopped = True
        await deferToThread(rabbitmqctl, "stop_app")
        figures["stop_app_seconds"] = round(reactor.seconds() - t0, 2)
        t1 = reactor.seconds()
        before = len(book.answered())
        state["down"] = True
        await sleep(max(0.0, outage - 1.0))
        state["closing"] = True
        await wait_until(lambda: len(second_done) == chargers, 5 + 2 * interval, what="second sessions stopped")
        await sleep(max(0.0, outage - (reactor.seconds() - t1)))
        figures["answered_during_outage"] = len(book.answered()) - before
        await deferToThread(rabbitmqctl, "start_app")
        assert await deferToThread(wait_for_broker, 60), "the broker did not come back"
        stopped = False
        figures["broker_down_seconds"] = round(reactor.seconds() - t1, 2)
        await sleep(1.0)
        running["on"] = False
        await flows
        t2 = reactor.seconds()
        await wait_until(lambda: gateway.publisher.ready()[0] and gateway.outbox.depth() == 0, recovery,
                         what="outbox delivered to the broker")
        figures["recovery_seconds"] = round(reactor.seconds() - t2, 2)
        figures["outboxed"] = gateway.publisher.outboxed
        events = await _drain(names["consumer"])
        tally: Tally = check_events(book, events)
        figures.update({"tally": tally, "events": len(events), "book": book})
        return figures
    finally:
        running["on"] = False
        if flows is not None and not flows.called:
            flows.addErrback(lambda _: None)  # the failure being raised says enough
        if stopped:
            await deferToThread(rabbitmqctl, "start_app")
        await deferToThread(wait_for_broker, 60)
        await stop_gateway(gateway)
        await _delete(names)
