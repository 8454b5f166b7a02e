"""
One whole gateway with C{ENABLE_RABBITMQ=true} on the real broker: a
charger session publishes every event type of docs/contract.md section 5 with its
envelope and properties (checked against C{docs/asyncapi.yaml}), commands
round-trip over the command exchange, and C{/ready} and C{/metrics} follow
the broker connection.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest_twisted
import yaml

from tests.helpers import bounded, until
from tests.integration.amqp_support import (
    EVENT_TYPES,
    Names,
    close_from_broker,
    collect,
    open_client,
)
from tests.integration.instances_support import (
    CONNECTION_NAME,
    CommandClient,
    answer_next_call,
    boot,
    broker_gauge,
    clean_broker,
    close_client,
    gateway_config,
    http,
    start_gateway,
    stop_gateway,
)
from tests.integration.test_amqp_asyncapi import DOC, _properties, schema_of
from tests.wsclient import connect_charger


def _validators():
    """Compiled AsyncAPI schemas: the payload per event type, and the event properties."""
    spec = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    by_type = {}
    for message in spec["components"]["messages"].values():
        if message["name"] in EVENT_TYPES:
            by_type[message["name"]] = schema_of(spec, message["payload"]["$ref"].rsplit("/", 1)[1])
    return by_type, schema_of(spec, "EventProperties"), schema_of(spec, "CommandReply")


@pytest_twisted.async_yield_fixture
async def broker_gateway(tmp_path):
    """One gateway on the broker under unique exchange names; the names are C{gateway.names}."""
    names = Names()
    gateway = await start_gateway(gateway_config(tmp_path / "a", names, "a", 11))
    gateway.names = names
    try:
        yield gateway
    finally:
        await stop_gateway(gateway)
        await clean_broker(names, ("a",))


@pytest_twisted.ensureDeferred
async def test_a_charger_session_publishes_every_event_type(broker_gateway):
    """Connect, boot, status, a transaction, a command and a disconnect publish all seven event types, per the contract."""
    from twisted.internet import reactor

    gateway, names = broker_gateway, broker_gateway.names
    by_type, properties, _ = _validators()
    client = await open_client(reactor)
    try:
        _, received = await collect(client, names.events)
        commands = await CommandClient.open(client, names.commands)
        charger = await connect_charger(gateway.test_port, "/ocpp/EV-1")
        sent = []  # (direction, messageType, messageId, action) of every frame, as the gateway sees it

        async def call(action, payload):
            frame = await charger.call(action, payload)
            sent.append(("in", "CALL", frame[1], action))
            sent.append(("out", "CALLRESULT", frame[1], action))
            assert frame[0] == 3, frame
            return frame[2]

        await boot(charger)
        sent += [("in", "CALL", "t1", "BootNotification"), ("out", "CALLRESULT", "t1", "BootNotification")]
        await call("Heartbeat", {})
        await call("StatusNotification", {"connectorId": 1, "status": "Preparing", "errorCode": "NoError"})
        await call("Authorize", {"idTag": "TAG-EV"})
        started = await call(
            "StartTransaction", {"connectorId": 1, "idTag": "TAG-EV", "meterStart": 1000, "timestamp": "2026-11-24T10:00:00Z"}
        )
        tx = started["transactionId"]
        sample = {"value": "1.5", "measurand": "Energy.Active.Import.Register", "unit": "kWh"}
        await call("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [{"timestamp": "2026-11-24T10:30:00Z", "sampledValue": [sample]}]})

        # a command through the command exchange reaches the charger and its answer comes back
        correlation = await commands.publish("EV-1", "ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
        frame = await answer_next_call(charger, {"status": "Scheduled"})
        assert frame[2:] == ["ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}]
        sent += [("out", "CALL", frame[1], "ChangeAvailability"), ("in", "CALLRESULT", frame[1], "ChangeAvailability")]
        assert await commands.reply(correlation) == {"ok": True, "result": {"status": "Scheduled"}}

        await call("StopTransaction", {"transactionId": tx, "meterStop": 2500, "timestamp": "2026-11-24T11:00:00Z", "reason": "Local"})
        for _ in range(3):
            await call("Heartbeat", {})
        charger.sendClose(1000)
        await charger.wait_closed()

        def of(kind):
            return [json.loads(m.body) for m in received if m.method.routing_key == kind]

        await until(lambda: any(e["data"]["status"] == "Disconnected" for e in of("charger.statusUpdate")))
        await until(lambda: len(of("ocpp.message")) >= len(sent))
        for message in received:
            body = json.loads(message.body)
            assert message.method.routing_key == body["type"]
            by_type[body["type"]](body)
            properties(_properties(message.properties))
            assert message.properties.content_type == "application/json"
            assert message.properties.delivery_mode == 2
            assert message.properties.message_id == body["id"]
            assert body["deviceId"] == "EV-1" and body["instance"] == names.instance("a")
            assert body["occurredAt"].endswith("Z")
        assert {m.method.routing_key for m in received} == set(EVENT_TYPES)
        assert len({m.properties.message_id for m in received}) == len(received)

        frames = [(e["data"]["direction"], e["data"]["messageType"], e["data"]["messageId"], e["data"].get("action")) for e in of("ocpp.message")]
        assert Counter(frames) == Counter(sent)
        statuses = [e["data"]["status"] for e in of("charger.statusUpdate")]
        assert statuses == ["Connected", "Preparing", "Disconnected"]
        assert [e["data"]["online"] for e in of("charger.statusUpdate")] == [True, True, False]
        assert len(of("charger.lastSeen")) == 1  # many frames within a minute: one update
        (metadata,) = of("charger.metadataUpdate")
        assert metadata["data"]["vendor"] == "ACME" and metadata["data"]["model"] == "M1"
        (start,) = of("charging.started")
        assert start["data"]["transactionId"] == tx and start["data"]["meterStart"] == 1000 and start["data"]["idTag"] == "TAG-EV"
        (meter,) = of("charging.meterValues")
        assert meter["data"]["transactionId"] == tx
        assert [(s["value"], s["unit"]) for s in meter["data"]["samples"]] == [(1500.0, "Wh")]
        (stop,) = of("charging.stopped")
        assert (stop["data"]["transactionId"], stop["data"]["meterStop"], stop["data"]["energyWh"]) == (tx, 2500, 1500)
    finally:
        await close_client(client)


@pytest_twisted.ensureDeferred
async def test_commands_for_chargers_nobody_holds(broker_gateway):
    """Over AMQP an unheld charger's command is returned to a mandatory publisher; over REST it is 404 quickly; bad ones are InvalidPayload."""
    from twisted.internet import reactor

    gateway, names = broker_gateway, broker_gateway.names
    _, _, reply_schema = _validators()
    client = await open_client(reactor)
    try:
        commands = await CommandClient.open(client, names.commands)
        charger = await connect_charger(gateway.test_port, "/ocpp/EV-2")
        await boot(charger)
        await until(lambda: gateway.command_server._channel is not None)

        await commands.publish("NOBODY", "ClearCache", {}, mandatory=True)
        await until(lambda: len(commands.returned) == 1)
        assert commands.returned[0].method.reply_text == "NO_ROUTE"
        assert commands.returned[0].properties.correlation_id == "cmd-1"

        started = reactor.seconds()
        status, body = await http(gateway.test_port, "POST", "/api/v1/chargers/NOBODY/commands/ClearCache", {})
        assert status == 404 and body["error"]["code"] == "ChargerOffline"
        assert reactor.seconds() - started < 2.0

        # a held charger with an invalid payload: answered, not sent
        correlation = await commands.publish("EV-2", "Reset", {"type": "Sideways"})
        reply = await commands.reply(correlation)
        reply_schema(reply)
        assert reply["ok"] is False and reply["error"]["code"] == "InvalidPayload"
        # the charger answers with a CALLERROR: its code comes back
        correlation = await commands.publish("EV-2", "UnlockConnector", {"connectorId": 1})
        frame = await charger.next()
        charger.send_text(json.dumps([4, frame[1], "NotSupported", "no lock", {}]))
        reply = await commands.reply(correlation)
        reply_schema(reply)
        assert reply["ok"] is False and reply["error"]["code"] == "NotSupported"
        # the charger is gone: the binding leaves with it
        charger.sendClose(1000)
        await charger.wait_closed()
        await until(lambda: gateway.registry.get("EV-2") is None)
        await until(lambda: gateway.command_server._channel is not None)
        returned = len(commands.returned)
        for _ in range(50):  # the unbind is asynchronous: retry until the broker routes nothing
            await commands.publish("EV-2", "ClearCache", {}, mandatory=True)
            try:
                await until(lambda: len(commands.returned) > returned, 0.2)
                break
            except AssertionError:
                pass
        assert len(commands.returned) > returned
    finally:
        await close_client(client)


@pytest_twisted.ensureDeferred
async def test_ready_and_metrics_follow_the_broker_connection(broker_gateway, fail_on_logged_errors):
    """/ready stays 200 "degraded" with the reason and the broker gauge is 0 while the connection is down; both recover when it is back."""
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.threads import deferToThread

    gateway = broker_gateway
    assert (await http(gateway.test_port, "GET", "/ready"))[0] == 200
    assert broker_gauge((await http(gateway.test_port, "GET", "/metrics"))[1]) == 1.0

    seen = []  # (ready status, ready body, broker gauge) while the connection goes and comes back
    polling = {"on": True}

    async def poll():
        while polling["on"]:
            status, body = await http(gateway.test_port, "GET", "/ready")
            _, text = await http(gateway.test_port, "GET", "/metrics")
            seen.append((status, body, broker_gauge(text)))

    poller = ensureDeferred(poll())
    try:
        closed = await bounded(deferToThread(close_from_broker, CONNECTION_NAME.format(instance=gateway.config.instance_id)), 30)
        assert closed == 1
        await until(lambda: gateway.amqp.connects == 2, 15)
        await until(lambda: seen and seen[-1][1]["status"] == "ready", 5)
    finally:
        polling["on"] = False
        await bounded(poller)
    assert all(status == 200 for status, _, _ in seen), seen  # a broker outage never takes the instance out
    down = [(body, gauge) for status, body, gauge in seen if body["status"] != "ready"]
    assert down, seen
    body, gauge = down[0]
    assert body["status"] == "degraded" and any("RabbitMQ" in reason for reason in body["reasons"]), body
    assert 0.0 in [g for _, g in down]
    assert seen[-1][1] == {"status": "ready"} and seen[-1][2] == 1.0
    assert [e for e in fail_on_logged_errors if "RabbitMQ connection lost" in e.get("reason", "")]
    fail_on_logged_errors.clear()
