"""
Commands through the real RabbitMQ between two instances: RPC round trips,
ChargerOffline, malformed commands, returns to a mandatory publisher, and
"newest wins" claims.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted

from ocpptw.interfaces import (
    CallErrorReceived,
    ChargerOffline,
    CommandTimeout,
    InvalidPayload,
)
from tests.helpers import bounded, until
from tests.integration.amqp_support import (
    FakeConnection,
    FakeSession,
    Names,
    collect,
    delete_topology,
    make_connection,
    open_client,
    wait_ready,
)


class Instance:
    """
    One gateway instance's broker side: connection, registry, local bus,
    command server and command bus.
    """

    def __init__(self, reactor, names, name, prefetch=32):
        from ocpptw.adapters.amqp_commands import AmqpCommandBus, AmqpCommandServer
        from ocpptw.ocpp.validation import Validator
        from ocpptw.services.commands import LocalCommandBus
        from ocpptw.services.registry import ChargerRegistry

        self.connection = make_connection(reactor, names, name)
        self.registry = ChargerRegistry(self.connection.instance, reactor)
        self.local = LocalCommandBus(self.registry, Validator(), 5.0)
        self.server = AmqpCommandServer(self.connection, self.registry, self.local, self.connection.instance, prefetch=prefetch)
        self.bus = AmqpCommandBus(self.connection, self.local, self.registry, reactor, default_timeout=5.0, margin=1.0)

    async def start(self):
        self.connection.startService()
        await wait_ready(self.connection)

    def attach(self, charge_point_id, answers=None):
        connection = FakeConnection(FakeSession(answers))
        self.registry.attach(charge_point_id, connection)
        return connection


@pytest_twisted.async_yield_fixture
async def two_instances():
    """Instances "a" and "b" on one broker with unique names; stopped and cleaned up after the test."""
    from twisted.internet import reactor

    names = Names()
    made = []

    async def make(prefetch=32):
        a, b = Instance(reactor, names, "a", prefetch), Instance(reactor, names, "b", prefetch)
        made.extend([a, b])
        await a.start()
        await b.start()
        return a, b

    yield names, make
    for instance in made:
        await bounded(instance.connection.stopService())
    client = await open_client(reactor)
    await delete_topology(client, names, tuple(i.connection.instance for i in made))
    await bounded(client.close())


async def _bound(instance):
    """Wait until the bindings asked of C{instance} so far are in place (they are asynchronous)."""
    await until(lambda: instance.server._channel is not None)
    # a queue_bind on the same channel completes after the earlier one: wait for a no-op round trip
    channel = instance.server._channel
    await bounded(channel.basic_qos(prefetch_count=instance.server._prefetch))


@pytest_twisted.ensureDeferred
async def test_command_round_trips_between_two_instances(two_instances):
    """A command sent on one instance reaches the charger held by the other and its answer comes back."""
    names, make = two_instances
    a, b = await make()
    charger_a = a.attach("CPA", {"Reset": {"status": "Accepted"}, "ChangeAvailability": {"status": "Scheduled"}})
    charger_b = b.attach("CPB", {"ClearCache": {"status": "Rejected"}})
    await _bound(a)
    await _bound(b)
    assert await bounded(b.bus.send("CPA", "Reset", {"type": "Soft"}, 3.0)) == {"status": "Accepted"}
    assert charger_a.session.calls == [("Reset", {"type": "Soft"}, 3.0)]
    assert await bounded(a.bus.send("CPB", "ClearCache", {})) == {"status": "Rejected"}
    assert charger_b.session.calls == [("ClearCache", {}, 5.0)]
    # a charger held locally is called directly, not through the broker
    handled = a.server.handled
    assert await bounded(a.bus.send("CPA", "ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})) == {"status": "Scheduled"}
    assert a.server.handled == handled


@pytest_twisted.ensureDeferred
async def test_charger_errors_cross_the_broker_as_their_own_kinds(two_instances):
    """CALLERROR, timeout and offline answers on the holding instance fail the remote caller with the same errors."""
    names, make = two_instances
    a, b = await make()
    a.attach(
        "CPA",
        {
            "UnlockConnector": CallErrorReceived("NotSupported", "no lock here", {"hint": 1}),
            "Reset": CommandTimeout("no answer"),
            "ClearCache": ChargerOffline("went away"),
        },
    )
    await _bound(a)
    with pytest.raises(CallErrorReceived) as called:
        await bounded(b.bus.send("CPA", "UnlockConnector", {"connectorId": 1}))
    assert (called.value.code, called.value.description, called.value.details) == ("NotSupported", "no lock here", {"hint": 1})
    with pytest.raises(CommandTimeout):
        await bounded(b.bus.send("CPA", "Reset", {"type": "Hard"}))
    with pytest.raises(ChargerOffline):
        await bounded(b.bus.send("CPA", "ClearCache", {}))
    # an invalid payload is refused before it leaves the calling instance
    with pytest.raises(InvalidPayload):
        await bounded(b.bus.send("CPA", "Reset", {"type": "Bogus"}))
    assert a.server.handled == 3


@pytest_twisted.ensureDeferred
async def test_charger_nobody_holds_is_offline_at_once(two_instances):
    """A command for a charger no instance holds comes back (mandatory) as ChargerOffline, well before the timeout."""
    from twisted.internet import reactor

    names, make = two_instances
    a, b = await make()
    charger = a.attach("CPA")
    await _bound(a)
    started = reactor.seconds()
    with pytest.raises(ChargerOffline):
        await bounded(b.bus.send("NOBODY", "ClearCache", {}, 5.0))
    assert reactor.seconds() - started < 2.0
    # the binding leaves with the charger
    a.registry.detach("CPA", charger)
    await _bound(a)
    with pytest.raises(ChargerOffline):
        await bounded(b.bus.send("CPA", "ClearCache", {}, 5.0))


@pytest_twisted.ensureDeferred
async def test_unroutable_command_is_returned_to_a_plain_mandatory_publisher(two_instances):
    """A third-party publisher that sets mandatory gets Basic.Return NO_ROUTE for an unheld charger, a reply for a held one."""
    import pika
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    names, make = two_instances
    a, _ = await make()
    a.attach("CPA")
    await _bound(a)
    client = await open_client(reactor)
    try:
        channel = await bounded(client.channel())
        returned: Deferred = Deferred()
        channel.add_on_return_callback(lambda message: returned.callback(message) if not returned.called else None)
        replies, _ = await bounded(channel.basic_consume(queue="amq.rabbitmq.reply-to", auto_ack=True))
        body = json.dumps({"action": "ClearCache", "payload": {}}).encode()
        props = pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="c-1", content_type="application/json")
        await bounded(channel.basic_publish(names.commands, "NOBODY", body, props, mandatory=True))
        message = await bounded(returned)
        assert message.method.reply_text == "NO_ROUTE"
        assert message.properties.correlation_id == "c-1"
        props = pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="c-2", content_type="application/json")
        await bounded(channel.basic_publish(names.commands, "CPA", body, props, mandatory=True))
        reply = await bounded(replies.get())
        assert reply.properties.correlation_id == "c-2"
        assert json.loads(reply.body) == {"ok": True, "result": {"status": "Accepted"}}
    finally:
        await bounded(client.close())


@pytest_twisted.ensureDeferred
async def test_malformed_commands_are_answered_invalid_payload_and_acked(two_instances, fail_on_logged_errors):
    """Non-JSON, missing action and non-object payload get InvalidPayload and are acked (prefetch 1 keeps flowing)."""
    import pika
    from twisted.internet import reactor

    names, make = two_instances
    a, _ = await make(prefetch=1)
    a.attach("CPA")
    await _bound(a)
    client = await open_client(reactor)
    try:
        channel = await bounded(client.channel())
        replies, _ = await bounded(channel.basic_consume(queue="amq.rabbitmq.reply-to", auto_ack=True))
        bodies = [b"not json", b'{"payload": {}}', b'{"action": "Reset", "payload": [1]}', b'{"action": "Reset", "payload": {}, "timeoutSeconds": -1}', b'[1]']
        for n, body in enumerate(bodies):
            props = pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id=f"m-{n}")
            await bounded(channel.basic_publish(names.commands, "CPA", body, props))
        # a valid one after them: with prefetch 1 it is delivered only if every earlier one was acked
        props = pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="ok")
        await bounded(channel.basic_publish(names.commands, "CPA", b'{"action": "ClearCache", "payload": {}}', props))
        answers = {}
        for _ in range(len(bodies) + 1):
            reply = await bounded(replies.get())
            answers[reply.properties.correlation_id] = json.loads(reply.body)
        for n in range(len(bodies)):
            assert answers[f"m-{n}"]["ok"] is False
            assert answers[f"m-{n}"]["error"]["code"] == "InvalidPayload"
        assert answers["ok"] == {"ok": True, "result": {"status": "Accepted"}}
        assert a.server.malformed == len(bodies)
        # an invalid OCPP payload in a well-formed command is InvalidPayload too (schema check on the holder)
        props = pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="schema")
        await bounded(channel.basic_publish(names.commands, "CPA", b'{"action": "Reset", "payload": {"type": "Nope"}}', props))
        reply = await bounded(replies.get())
        assert json.loads(reply.body)["error"]["code"] == "InvalidPayload"
    finally:
        await bounded(client.close())


@pytest_twisted.ensureDeferred
async def test_newest_connection_wins_across_instances(two_instances):
    """A charger connecting to b makes a close its older connection with 4001; b's stays open."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    names, make = two_instances
    a, b = await make()
    older = a.attach("CPX")
    await deferLater(reactor, 0.02, lambda: None)  # a later connectedAt
    newer = b.attach("CPX")
    await until(lambda: older.closed == [(4001, "connected to another instance")])
    await deferLater(reactor, 0.2, lambda: None)
    assert newer.closed == []
    assert a.server.claims_lost == 1 and b.server.claims_lost == 0


@pytest_twisted.ensureDeferred
async def test_a_late_older_claim_does_not_close_the_newer_connection(two_instances):
    """A claim older than the local connection is answered with a fresh claim instead of a close."""
    import pika
    from twisted.internet import reactor

    names, make = two_instances
    a, _ = await make()
    client = await open_client(reactor)
    try:
        _, claims = await collect(client, f"{names.commands}.claims", "")
        held = a.attach("CPY")
        await until(lambda: any(json.loads(m.body)["chargePointId"] == "CPY" for m in claims))
        channel = await bounded(client.channel())
        stale = {"chargePointId": "CPY", "instance": "elsewhere", "connectedAt": "2000-01-01T00:00:00.000Z"}
        await bounded(channel.basic_publish(f"{names.commands}.claims", "", json.dumps(stale).encode(), pika.BasicProperties()))
        await until(lambda: sum(json.loads(m.body).get("instance") == a.connection.instance for m in claims) >= 2)
        assert held.closed == []
    finally:
        await bounded(client.close())


@pytest_twisted.ensureDeferred
async def test_bindings_come_back_after_a_reconnect(two_instances, fail_on_logged_errors):
    """After the holder's broker connection drops and returns, its chargers are routable again."""
    names, make = two_instances
    a, b = await make()
    a.attach("CPA")
    await _bound(a)
    a.connection.connection.transport.abortConnection()
    await until(lambda: a.connection.connects == 2, 15)
    await _bound(a)
    assert await bounded(b.bus.send("CPA", "ClearCache", {})) == {"status": "Accepted"}
    fail_on_logged_errors.clear()
