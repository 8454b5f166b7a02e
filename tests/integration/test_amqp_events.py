"""
Events through the real RabbitMQ: the contract's envelope and properties,
pipelined confirms, the outbox during an outage, order per charger after it.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from types import SimpleNamespace

import pytest
import pytest_twisted

from tests.helpers import bounded, until
from tests.integration.amqp_support import (
    EVENT_TYPES,
    SAMPLE_DATA,
    MemoryOutbox,
    Names,
    collect,
    delete_topology,
    make_connection,
    make_event,
    open_client,
    wait_ready,
)


@pytest.fixture
def outbox_factory(tmp_path):
    """The real durable outbox in a temporary DATA_DIR, retried quickly; stopped and closed after the test."""
    from twisted.internet import reactor

    from ocpptw.store.outbox import SCHEMA, Outbox
    from ocpptw.store.sqlite import Database

    made = []

    def make():
        db = Database(tmp_path / "gateway.sqlite", reactor, schema=SCHEMA)
        db.open()
        outbox = Outbox(db, reactor, max_age=3600, initial_delay=0.05, max_delay=0.3)
        made.append((db, outbox))
        return outbox

    yield make
    for db, outbox in made:
        pytest_twisted.blockon(outbox.stop())
        db.close()


async def _start(reactor, names, outbox, **publisher_options):
    from ocpptw.adapters.amqp_events import AmqpEventPublisher

    connection = make_connection(reactor, names, "pub")
    publisher = AmqpEventPublisher(connection, outbox, reactor, **publisher_options)
    connection.startService()
    await wait_ready(connection)
    await until(lambda: publisher.ready()[0])
    return connection, publisher


@asynccontextmanager
async def publishing(outbox, **publisher_options):
    """
    A started publisher on unique exchanges with a plain client beside it;
    everything is stopped and deleted afterwards.
    """
    from twisted.internet import reactor

    names = Names()
    client = await open_client(reactor)
    connection, publisher = await _start(reactor, names, outbox, **publisher_options)
    try:
        yield SimpleNamespace(names=names, client=client, connection=connection, publisher=publisher)
    finally:
        await bounded(connection.stopService())
        await delete_topology(client, names)
        await bounded(client.close())


@pytest_twisted.async_yield_fixture
async def rig():
    """publishing() with an in-memory outbox (rig.outbox)."""
    from twisted.internet import reactor

    outbox = MemoryOutbox(reactor)
    try:
        async with publishing(outbox) as parts:
            parts.outbox = outbox
            yield parts
    finally:
        outbox.stop()


@pytest_twisted.ensureDeferred
async def test_every_event_type_arrives_with_the_contract_envelope_and_properties(rig):
    """Each of the seven types is routed by its type, with JSON body, persistence and message_id = id."""
    from ocpptw.services.events import EVENT_TYPES as PRODUCT_TYPES

    assert set(PRODUCT_TYPES) == set(EVENT_TYPES)
    _, received = await collect(rig.client, rig.names.events)
    events = [make_event(t, "CP1", SAMPLE_DATA[t], rig.connection.instance) for t in EVENT_TYPES]
    for event in events:
        assert await bounded(rig.publisher.publish(event)) is None
    await until(lambda: len(received) == len(events))
    assert rig.outbox.appended == []
    for event, message in zip(events, received):
        assert message.method.routing_key == event["type"]
        props = message.properties
        assert props.content_type == "application/json"
        assert props.delivery_mode == 2
        assert props.message_id == event["id"]
        body = json.loads(message.body)
        assert body == event
        assert set(body) == {"id", "type", "deviceId", "occurredAt", "instance", "data"}


@pytest_twisted.ensureDeferred
async def test_a_thousand_pipelined_publishes_are_all_confirmed(rig):
    """1,000 events published at once are all confirmed, many in flight together, none to the outbox."""
    from twisted.internet.defer import gatherResults

    publisher = rig.publisher
    _, received = await collect(rig.client, rig.names.events)
    peak = 0
    ds = []
    for n in range(1000):
        ds.append(publisher.publish(make_event("charger.lastSeen", f"CP{n % 10}", {"lastSeen": "x"}, number=n)))
        peak = max(peak, publisher.in_flight)
    assert peak > 100  # pipelined, not one round trip each
    await bounded(gatherResults(ds), 30)
    assert publisher.confirmed == 1000 and publisher.outboxed == 0 and publisher.in_flight == 0
    await until(lambda: len(received) == 1000, 30)


@pytest_twisted.ensureDeferred
async def test_an_event_nobody_listens_for_is_confirmed_and_parked(rig):
    """With no queue bound, an event is still confirmed (no mandatory) and lands in the unroutable queue."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    event = make_event("charger.lastSeen", "CP1", {"lastSeen": "x"})
    await bounded(rig.publisher.publish(event))
    assert rig.outbox.appended == [] and rig.publisher.confirmed == 1
    channel = await bounded(rig.client.channel())
    unroutable = rig.connection.topology.unroutable_queue

    async def parked():
        declared = await bounded(channel.queue_declare(queue=unroutable, passive=True))
        return declared.method.message_count

    for _ in range(100):  # at most about 5 s
        if await parked() == 1:
            break
        await deferLater(reactor, 0.05, lambda: None)
    assert await parked() == 1
    got = await bounded(channel.basic_get(queue=unroutable, auto_ack=True))
    assert json.loads(got.body)["id"] == event["id"]


@pytest_twisted.ensureDeferred
async def test_broker_outage_sends_events_to_the_outbox_then_delivers_them_in_order(outbox_factory, fail_on_logged_errors):
    """Events published across a dropped connection all arrive after it, in order per charger, none lost."""
    from twisted.internet.defer import gatherResults

    outbox = outbox_factory()
    await bounded(outbox.start())
    async with publishing(outbox) as rig:
        publisher, connection = rig.publisher, rig.connection
        _, received = await collect(rig.client, rig.names.events)
        chargers = ["CPA", "CPB", "CPC"]
        sent = {cp: [] for cp in chargers}
        ds = []

        def burst(n0, n1):
            for n in range(n0, n1):
                cp = chargers[n % 3]
                event = make_event("ocpp.message", cp, {"n": n}, number=n)
                sent[cp].append(event["id"])
                ds.append(publisher.publish(event))

        burst(0, 150)
        # drop the TCP connection under the publishes in flight
        connection.connection.transport.abortConnection()
        burst(150, 300)  # the broker is gone: these wait in the outbox
        await bounded(gatherResults(ds), 20)
        assert publisher.outboxed >= 150
        await until(lambda: connection.connects == 2, 15)
        burst(300, 450)  # back: behind whatever still waits, per charger
        await bounded(gatherResults(ds), 20)
        await until(lambda: outbox.depth() == 0, 20)
        await until(lambda: len({json.loads(m.body)["id"] for m in received}) == 450, 20)
        for cp in chargers:
            ids = [json.loads(m.body)["id"] for m in received if json.loads(m.body)["deviceId"] == cp]
            # at least once: duplicates allowed, but first arrivals keep the order
            first_seen = list(dict.fromkeys(ids))
            assert first_seen == sent[cp]
        assert [e for e in fail_on_logged_errors if "connection lost" in e.get("reason", "")]
        fail_on_logged_errors.clear()


@pytest_twisted.ensureDeferred
async def test_publish_while_never_connected_goes_to_the_outbox():
    """Before the broker connection is ready, publish() fires once the event is in the outbox."""
    from twisted.internet import reactor

    from ocpptw.adapters.amqp_events import OPERATION, AmqpEventPublisher

    names = Names()
    outbox = MemoryOutbox(reactor, retry=60)
    connection = make_connection(reactor, names, "idle")
    publisher = AmqpEventPublisher(connection, outbox, reactor)
    event = make_event("charger.lastSeen", "CP9", {"lastSeen": "x"})
    assert await bounded(publisher.publish(event)) is None
    assert outbox.appended == [event] and outbox.pending("CP9") == 1
    assert publisher.ready()[0] is False
    assert OPERATION == "amqp.publish"
    outbox.stop()
