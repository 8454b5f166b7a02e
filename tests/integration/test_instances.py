"""
Several gateway instances behind one RabbitMQ, sharing one REST backend
(C{ocpptw.testing.backend.FakeBackend} on loopback), as a deployment runs
them: commands reach the instance that holds the charger, the newest
connection wins across instances and commands follow it, and boot
acceptance lives in the shared charger record.

The newest-wins case runs two C{twistd ocpp} processes; the others run two
gateways in this process, which is faster and shows the same wiring.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.defer import ensureDeferred

from ocpptw.testing.backend import FakeBackend
from tests.helpers import bounded, until
from tests.integration.amqp_support import Names, open_client
from tests.integration.instances_support import (
    CommandClient,
    GatewayProcess,
    answer_next_call,
    boot,
    clean_broker,
    close_client,
    gateway_config,
    gateway_env,
    http,
    start_gateway,
    stop_gateway,
)
from tests.wsclient import connect_charger


@pytest_twisted.async_yield_fixture
async def backend():
    """The operator's backend, shared by every instance of a test, on a loopback port."""
    from twisted.internet import reactor

    fake = FakeBackend(clock=reactor)
    _, fake.url = fake.listen(reactor)
    try:
        yield fake
    finally:
        await bounded(fake.stop())


@pytest_twisted.async_yield_fixture
async def pair(tmp_path, backend):
    """Gateways "a" and "b" in this process: own data directories and slots, one broker, one backend."""
    names = Names()
    started = []
    try:
        for name, slot in (("a", 21), ("b", 22)):
            config = gateway_config(tmp_path / name, names, name, slot, BACKEND_API_URL=backend.url)
            started.append(await start_gateway(config))
        yield started[0], started[1]
    finally:
        for gateway in started:
            await stop_gateway(gateway)
        await clean_broker(names, ("a", "b"))


async def _bound(gateway, charge_point_id):
    """Wait until C{gateway} holds C{charge_point_id} and its command binding is in place."""
    await until(lambda: gateway.registry.get(charge_point_id) is not None)
    await until(lambda: gateway.command_server._channel is not None)
    channel = gateway.command_server._channel
    await bounded(channel.basic_qos(prefetch_count=32))  # after the queue_bind on the same channel


@pytest_twisted.ensureDeferred
async def test_rest_commands_on_the_other_instance_go_through_the_broker(pair):
    """The REST API of the instance that does not hold a charger forwards to the one that does, with every outcome."""
    a, b = pair
    charger = await connect_charger(b.test_port, "/ocpp/MI-1")
    await boot(charger)
    await _bound(b, "MI-1")
    assert a.registry.get("MI-1") is None

    request = ensureDeferred(http(a.test_port, "POST", "/api/v1/chargers/MI-1/commands/Reset", {"type": "Soft"}))
    frame = await answer_next_call(charger, {"status": "Accepted"})
    assert frame[2:] == ["Reset", {"type": "Soft"}]
    assert await request == (200, {"result": {"status": "Accepted"}})

    request = ensureDeferred(http(a.test_port, "POST", "/api/v1/chargers/MI-1/commands/UnlockConnector", {"connectorId": 1}))
    frame = await charger.next()
    charger.send_text(json.dumps([4, frame[1], "NotSupported", "no lock", {"why": "none"}]))
    status, body = await request
    assert status == 502 and body["error"] == {"code": "NotSupported", "description": "no lock", "details": {"why": "none"}}

    status, body = await http(a.test_port, "POST", "/api/v1/chargers/MI-1/commands/ClearCache?timeout=0.3", {})
    assert status == 504 and body["error"]["code"] == "Timeout"
    assert (await charger.next())[2] == "ClearCache"  # it did reach the charger on b

    status, body = await http(a.test_port, "POST", "/api/v1/chargers/MI-1/commands/Reset", {"type": "Sideways"})
    assert status == 400 and body["error"]["code"] == "InvalidPayload"
    status, body = await http(a.test_port, "POST", "/api/v1/chargers/MI-NONE/commands/ClearCache", {})
    assert status == 404 and body["error"]["code"] == "ChargerOffline"

    status, body = await http(b.test_port, "GET", "/api/v1/chargers")
    assert [(c["chargePointId"], c["instance"]) for c in body["chargers"]] == [("MI-1", b.config.instance_id)]


@pytest_twisted.ensureDeferred
async def test_boot_acceptance_is_shared_through_the_backend(pair, backend):
    """A charger that booted on a and reconnects to b without booting is accepted there at once."""
    a, b = pair
    stranger = await connect_charger(b.test_port, "/ocpp/MI-2")
    assert (await stranger.call("Heartbeat", {}))[2] == "SecurityError"  # nobody knows it yet
    stranger.sendClose(1000)
    await stranger.wait_closed()

    first = await connect_charger(a.test_port, "/ocpp/MI-2")
    await boot(first)
    assert backend.chargers["MI-2"]["vendor"] == "ACME"
    first.sendClose(1000)
    await first.wait_closed()

    again = await connect_charger(b.test_port, "/ocpp/MI-2")
    frame = await again.call("Heartbeat", {})
    assert frame[0] == 3, frame
    frame = await again.call("StatusNotification", {"connectorId": 1, "status": "Available", "errorCode": "NoError"})
    assert frame[0] == 3, frame
    await until(lambda: [s for d, s in backend.statuses if d == "MI-2"] != [])


@pytest_twisted.ensureDeferred
async def test_amqp_command_reaches_the_instance_holding_the_charger(pair):
    """A command published on the command exchange is served by the instance holding the charger, whichever it is."""
    from twisted.internet import reactor

    a, b = pair
    on_a = await connect_charger(a.test_port, "/ocpp/MI-3")
    on_b = await connect_charger(b.test_port, "/ocpp/MI-4")
    await boot(on_a)
    await boot(on_b)
    await _bound(a, "MI-3")
    await _bound(b, "MI-4")
    client = await open_client(reactor)
    try:
        commands = await CommandClient.open(client, a.config.rabbitmq_command_exchange)
        for charger, cp in ((on_a, "MI-3"), (on_b, "MI-4")):
            correlation = await commands.publish(cp, "GetConfiguration", {"key": ["HeartbeatInterval"]})
            result = {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]}
            frame = await answer_next_call(charger, result)
            assert frame[2] == "GetConfiguration"
            assert await commands.reply(correlation) == {"ok": True, "result": result}
        assert (a.command_server.handled, b.command_server.handled) == (1, 1)
    finally:
        await close_client(client)


@pytest_twisted.ensureDeferred
async def test_newest_connection_wins_across_two_processes(tmp_path, backend):
    """Two twistd instances: reconnecting to b closes the socket on a with 4001, b accepts it unbooted, commands follow it."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    names = Names()
    processes = [
        GatewayProcess(tmp_path / name, gateway_env(tmp_path / name / "data", names, name, slot, BACKEND_API_URL=backend.url))
        for name, slot in (("a", 31), ("b", 32))
    ]
    a, b = processes
    client = await open_client(reactor)
    try:
        await a.ready()
        await b.ready()
        older = await connect_charger(a.port, "/ocpp/MI-5")
        await boot(older)
        assert (await older.call("Heartbeat", {}))[0] == 3
        # a command through b reaches the charger on a
        request = ensureDeferred(http(b.port, "POST", "/api/v1/chargers/MI-5/commands/ClearCache", {}))
        await answer_next_call(older, {"status": "Accepted"})
        assert await request == (200, {"result": {"status": "Accepted"}})

        await deferLater(reactor, 0.01, lambda: None)  # a later connectedAt, at millisecond resolution
        newer = await connect_charger(b.port, "/ocpp/MI-5")
        code, reason = await older.wait_closed()
        assert code == 4001 and reason, (code, reason)
        frame = await newer.call("Heartbeat", {})  # accepted without booting again: the record is shared
        assert frame[0] == 3, frame

        # commands follow the charger: REST on a, and AMQP, both reach the socket on b
        status, body = await http(a.port, "GET", "/api/v1/chargers/MI-5")
        assert status == 200 and body["instance"] == names.instance("b"), body  # found on b, through the broker
        request = ensureDeferred(http(a.port, "POST", "/api/v1/chargers/MI-5/commands/Reset", {"type": "Hard"}))
        frame = await answer_next_call(newer, {"status": "Accepted"})
        assert frame[2:] == ["Reset", {"type": "Hard"}]
        assert await request == (200, {"result": {"status": "Accepted"}})
        commands = await CommandClient.open(client, names.commands)
        correlation = await commands.publish("MI-5", "ClearCache", {})
        await answer_next_call(newer, {"status": "Rejected"})
        assert await commands.reply(correlation) == {"ok": True, "result": {"status": "Rejected"}}
        status, body = await http(b.port, "GET", "/api/v1/chargers/MI-5")
        assert status == 200 and body["instance"] == names.instance("b")
        assert newer.close_code is None
        newer.sendClose(1000)
        await newer.wait_closed()
    finally:
        codes = [await p.stop() for p in processes]
        await close_client(client)
        await clean_broker(names, ("a", "b"))
    assert codes == [0, 0], [p.text()[-3000:] for p in processes]
    for p in processes:
        assert "Traceback" not in p.text(), p.text()[-3000:]



@pytest_twisted.ensureDeferred
async def test_commands_during_a_handover_reach_the_new_connection_once(pair):
    """Commands sent as a charger moves from a to b are answered once, by the new connection; a publishes no Disconnected for it."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    from tests.integration.amqp_support import collect

    a, b = pair
    client = await open_client(reactor)
    try:
        _, events = await collect(client, a.config.rabbitmq_exchange, "charger.statusUpdate")
        commands = await CommandClient.open(client, a.config.rabbitmq_command_exchange)
        outcomes = []
        for n in range(6):
            cp = f"MI-H{n}"
            older = await connect_charger(a.test_port, f"/ocpp/{cp}")
            await boot(older)
            await _bound(a, cp)
            await deferLater(reactor, 0.01, lambda: None)  # a later connectedAt
            newer = await connect_charger(b.test_port, f"/ocpp/{cp}")
            await _bound(b, cp)
            sent = [await commands.publish(cp, "ClearCache", {}, mandatory=True) for _ in range(3)]
            calls = {"older": 0, "newer": 0}

            async def serve(charger, name, calls=calls):
                while True:
                    try:
                        frame = await charger.next(0.5)
                    except Exception:
                        return
                    if frame[0] == 2 and charger.close_code is None:
                        calls[name] += 1
                        charger.send_text(json.dumps([3, frame[1], {"status": "Accepted" if name == "newer" else "Rejected"}]))

            serving = [ensureDeferred(serve(older, "older")), ensureDeferred(serve(newer, "newer"))]
            replies = await commands.replies_within(0.6)
            for d in serving:
                await bounded(d)
            await older.wait_closed()
            outcomes.append((calls, sorted(replies, key=lambda reply: reply[0]), sent))
            assert newer.close_code is None
            newer.sendClose(1000)
            await newer.wait_closed()
        newest = {"ok": True, "result": {"status": "Accepted"}}
        summary = [(calls, [(c, r.get("result") or r.get("error", {}).get("code")) for c, r in replies]) for calls, replies, _ in outcomes]
        for calls, replies, sent in outcomes:
            assert (calls, replies) == ({"older": 0, "newer": 3}, [(c, newest) for c in sent]), "\n".join(map(str, summary))
        assert commands.returned == []
        await until(lambda: sum(json.loads(m.body)["data"]["status"] == "Disconnected" for m in events) >= 6)
        await deferLater(reactor, 0.2, lambda: None)
        disconnected = [json.loads(m.body) for m in events if json.loads(m.body)["data"]["status"] == "Disconnected"]
        assert [e["instance"] for e in disconnected] == [b.config.instance_id] * 6
    finally:
        await close_client(client)


@pytest_twisted.ensureDeferred
async def test_a_command_routed_to_the_old_instance_is_forwarded_and_runs_once(pair):
    """A command that still reaches a after the handover (stale binding) is forwarded to b, which runs it once."""
    from twisted.internet import reactor

    a, b = pair
    older = await connect_charger(a.test_port, "/ocpp/MI-F")
    await boot(older)
    await _bound(a, "MI-F")
    newer = await connect_charger(b.test_port, "/ocpp/MI-F")
    assert (await older.wait_closed())[0] == 4001
    await _bound(b, "MI-F")
    # the binding a had until it unbound: a copy of every command now reaches a and b
    t = a.amqp.topology
    await bounded(a.command_server._channel.queue_bind(queue=t.command_queue, exchange=t.command_exchange, routing_key="MI-F"))
    client = await open_client(reactor)
    try:
        commands = await CommandClient.open(client, t.command_exchange)
        correlation = await commands.publish("MI-F", "TriggerMessage", {"requestedMessage": "Heartbeat"})
        frame = await answer_next_call(newer, {"status": "Accepted"})
        assert frame[2] == "TriggerMessage"
        assert await commands.replies_within(0.5) == [(correlation, {"ok": True, "result": {"status": "Accepted"}})]
        with pytest.raises(DeferredTimeout):
            await newer.next(0.3)  # no second CALL
        assert (a.command_server.forwarded, a.command_server.handled, b.command_server.handled) == (1, 0, 1)
    finally:
        await close_client(client)
