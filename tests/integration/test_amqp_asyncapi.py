"""
docs/asyncapi.yaml describes what really crosses the broker: events and
command bodies captured from the real RabbitMQ validate against it.
"""

from __future__ import annotations

import json
from pathlib import Path

import fastjsonschema
import pytest
import pytest_twisted
import yaml

from tests.helpers import bounded, until
from tests.integration.amqp_support import (
    EVENT_TYPES,
    SAMPLE_DATA,
    FakeConnection,
    MemoryOutbox,
    Names,
    collect,
    delete_topology,
    make_connection,
    make_event,
    open_client,
    wait_ready,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


@pytest.fixture(scope="module")
def spec():
    """The AsyncAPI document, loaded once."""
    return yaml.safe_load(DOC.read_text(encoding="utf-8"))


def schema_of(spec, name):
    """A compiled validator for components.schemas.C{name}, $refs resolved inside the document."""
    definition = dict(spec)
    definition["$ref"] = f"#/components/schemas/{name}"
    return fastjsonschema.compile(definition)


def _properties(props):
    return {
        name: getattr(props, name)
        for name in ("content_type", "delivery_mode", "message_id", "type", "app_id", "reply_to", "correlation_id", "expiration")
        if getattr(props, name) is not None
    }


def _resolve(spec, ref):
    node = spec
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def test_document_is_asyncapi_3_with_every_event_type(spec):
    """The document is AsyncAPI 3.0, names all seven event types, and every $ref resolves."""
    assert spec["asyncapi"].startswith("3.0")
    names = {_resolve(spec, m["$ref"])["name"] for m in spec["channels"]["events"]["messages"].values()}
    assert names == set(EVENT_TYPES)
    refs = []

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    assert refs
    for ref in refs:
        _resolve(spec, ref)


def test_schemas_reject_what_the_contract_forbids(spec):
    """The envelope schema refuses a missing id, a wrong type, a numeric money amount and unknown fields."""
    check = schema_of(spec, "ChargingStoppedEvent")
    good = make_event("charging.stopped", "CP1", SAMPLE_DATA["charging.stopped"])
    check(good)
    for bad in (
        {k: v for k, v in good.items() if k != "id"},
        dict(good, type="charging.started"),
        dict(good, data=dict(good["data"], cost=0.45)),
        dict(good, extra=True),
    ):
        with pytest.raises(fastjsonschema.JsonSchemaException):
            check(bad)


@pytest_twisted.ensureDeferred
async def test_published_events_match_the_document(spec):
    """Every event type, as captured from the broker, matches its message schema and the event properties."""
    from twisted.internet import reactor

    from ocpptw.adapters.amqp_events import AmqpEventPublisher

    by_type = {}
    for message in spec["components"]["messages"].values():
        if message["name"] in EVENT_TYPES:
            by_type[message["name"]] = schema_of(spec, message["payload"]["$ref"].rsplit("/", 1)[1])
    properties = schema_of(spec, "EventProperties")
    names = Names()
    outbox = MemoryOutbox(reactor)
    client = await open_client(reactor)
    connection = make_connection(reactor, names, "doc")
    publisher = AmqpEventPublisher(connection, outbox, reactor)
    try:
        connection.startService()
        await wait_ready(connection)
        await until(lambda: publisher.ready()[0])
        _, received = await collect(client, names.events)
        for event_type in EVENT_TYPES:
            await bounded(publisher.publish(make_event(event_type, "CP1", SAMPLE_DATA[event_type], connection.instance)))
        await until(lambda: len(received) == len(EVENT_TYPES))
        for message in received:
            body = json.loads(message.body)
            by_type[message.method.routing_key](body)
            properties(_properties(message.properties))
    finally:
        await bounded(connection.stopService())
        outbox.stop()
        await delete_topology(client, names)
        await bounded(client.close())


@pytest_twisted.ensureDeferred
async def test_commands_and_replies_match_the_document(spec):
    """A command sent by the gateway and the replies it gets (ok, CALLERROR, malformed) match the document."""
    import pika
    from twisted.internet import reactor

    from ocpptw.adapters.amqp_commands import AmqpCommandBus, AmqpCommandServer
    from ocpptw.interfaces import CallErrorReceived
    from ocpptw.services.registry import ChargerRegistry
    from tests.integration.amqp_support import FakeLocalBus, FakeSession

    command, command_props = schema_of(spec, "Command"), schema_of(spec, "CommandProperties")
    reply, reply_props = schema_of(spec, "CommandReply"), schema_of(spec, "ReplyProperties")
    names = Names()
    client = await open_client(reactor)
    holder = make_connection(reactor, names, "holder")
    registry = ChargerRegistry(holder.instance, reactor)
    AmqpCommandServer(holder, registry, FakeLocalBus(registry))
    caller = make_connection(reactor, names, "caller")
    caller_registry = ChargerRegistry(caller.instance, reactor)
    bus = AmqpCommandBus(caller, FakeLocalBus(caller_registry), caller_registry, reactor)
    try:
        holder.startService()
        caller.startService()
        await wait_ready(holder)
        await wait_ready(caller)
        registry.attach("CPD", FakeConnection(FakeSession({"UnlockConnector": CallErrorReceived("NotSupported", "no", {})})))
        _, seen = await collect(client, names.commands, "CPD")  # a copy of what the gateway publishes
        await bounded(bus.send("CPD", "ClearCache", {}, 3.0))
        await until(lambda: len(seen) == 1)
        command(json.loads(seen[0].body))
        command_props(_properties(seen[0].properties))

        channel = await bounded(client.channel())
        replies, _ = await bounded(channel.basic_consume(queue="amq.rabbitmq.reply-to", auto_ack=True))
        for n, body in enumerate(
            [b'{"action": "ClearCache", "payload": {}}', b'{"action": "UnlockConnector", "payload": {"connectorId": 1}}', b"nope"]
        ):
            props = pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id=f"r{n}", content_type="application/json")
            await bounded(channel.basic_publish(names.commands, "CPD", body, props))
            answer = await bounded(replies.get())
            assert answer.properties.correlation_id == f"r{n}"
            reply(json.loads(answer.body))
            reply_props(_properties(answer.properties))
    finally:
        await bounded(holder.stopService())
        await bounded(caller.stopService())
        await delete_topology(client, names, (holder.instance, caller.instance))
        await bounded(client.close())
