# -*- test-case-name: tests.integration.test_amqp_events -*-
"""
Event publishing throughput with publisher confirms against the local
RabbitMQ: pipelined (a window of publishes in flight) against one at a time
(each publish waits for its confirm), through L{AmqpEventPublisher}.

Usage::

    .venv/bin/python bench/amqp_bench.py [--count 20000] [--window 1000] [--serial 2000]
        [--url amqp://guest:guest@127.0.0.1:5672/%2F]

Uses exchanges with a unique name (deleted afterwards) and one bound queue,
so every event is routed, stored and confirmed; the queue is purged between
runs.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = {
    "direction": "in",
    "messageType": "CALL",
    "messageId": "19223201",
    "action": "MeterValues",
    "payload": {
        "connectorId": 1,
        "transactionId": 1234567,
        "meterValue": [
            {
                "timestamp": "2026-11-24T10:00:00Z",
                "sampledValue": [{"value": "12345.6", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}],
            }
        ],
    },
}


class CountingOutbox:
    """
    An outbox that only counts: the benchmark expects it to stay empty.
    """

    def __init__(self) -> None:
        self.appended = 0

    def register(self, operation, deliver):
        pass

    def append(self, key, operation, body):
        from twisted.internet.defer import succeed

        self.appended += 1
        return succeed(self.appended)

    def pending(self, key):
        return 0

    def depth(self):
        return 0

    def flush(self, timeout):
        from twisted.internet.defer import succeed

        return succeed(True)


def event(n: int) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "type": "ocpp.message",
        "deviceId": f"CP-{n % 500:05d}",
        "occurredAt": "2026-11-24T10:00:00.000Z",
        "instance": "bench",
        "data": DATA,
    }


async def pipelined(publisher, count: int, window: int) -> float:
    from twisted.internet.defer import DeferredSemaphore, gatherResults

    semaphore = DeferredSemaphore(window)
    started = time.perf_counter()
    await gatherResults([semaphore.run(publisher.publish, event(n)) for n in range(count)])
    return time.perf_counter() - started


async def serial(publisher, count: int) -> float:
    started = time.perf_counter()
    for n in range(count):
        await publisher.publish(event(n))
    return time.perf_counter() - started


async def main(reactor, args) -> None:
    from twisted.internet.task import deferLater

    from ocpptw.adapters.amqp import AmqpConnection
    from ocpptw.adapters.amqp_events import AmqpEventPublisher, encode_event

    tag = uuid.uuid4().hex[:8]
    connection = AmqpConnection(reactor, args.url, f"bench-{tag}", events_exchange=f"bench.{tag}.events",
                                command_exchange=f"bench.{tag}.commands")
    outbox = CountingOutbox()
    publisher = AmqpEventPublisher(connection, outbox, reactor, confirm_timeout=30)
    connection.startService()
    for _ in range(200):
        if publisher.ready()[0]:
            break
        await deferLater(reactor, 0.05, lambda: None)
    else:
        raise SystemExit(f"broker not ready: {connection.ready()[1]}")
    t = connection.topology
    channel = await connection.connection.channel()
    queue = f"bench.{tag}.sink"
    await channel.queue_declare(queue=queue, durable=True)
    await channel.queue_bind(queue=queue, exchange=t.events_exchange, routing_key="#")
    size = len(encode_event(event(0)))
    print(f"command: {' '.join(sys.argv)}")
    print(f"broker: {connection.url.describe()}  body: {size} bytes, persistent, durable queue, confirms")
    try:
        await serial(publisher, min(200, args.serial))  # warm-up
        await channel.queue_purge(queue=queue)
        seconds = await serial(publisher, args.serial)
        print(f"one at a time : {args.serial:>6} events in {seconds:6.2f} s = {args.serial / seconds:8.0f} events/s")
        await channel.queue_purge(queue=queue)
        seconds = await pipelined(publisher, args.count, args.window)
        print(f"pipelined {args.window:>4}: {args.count:>6} events in {seconds:6.2f} s = {args.count / seconds:8.0f} events/s")
        print(f"confirmed: {publisher.confirmed}  to the outbox: {outbox.appended}")
    finally:
        await channel.queue_delete(queue=queue)
        for exchange in (t.events_exchange, t.unroutable_exchange, t.command_exchange, t.claims_exchange):
            await channel.exchange_delete(exchange=exchange)
        await channel.queue_delete(queue=t.unroutable_queue)
        await connection.stopService()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=20000, help="events in the pipelined run")
    ap.add_argument("--window", type=int, default=1000, help="publishes in flight at once in the pipelined run")
    ap.add_argument("--serial", type=int, default=2000, help="events in the one-at-a-time run")
    ap.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    arguments = ap.parse_args()
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    react(lambda reactor: Deferred.fromCoroutine(main(reactor, arguments)))
