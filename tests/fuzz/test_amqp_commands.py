# -*- test-case-name: tests.fuzz.test_amqp_commands -*-
"""
Fuzzing the AMQP command path of a running gateway (real RabbitMQ at
127.0.0.1:5672, exchanges unique to this module): malformed command
messages published to the command exchange with the routing key of a
connected charger and a C{reply_to} are each answered
C{{ok: false, error: {code: "InvalidPayload"}}}, acked (never redelivered:
the gateway's command queue is empty afterwards), reach no charger, and log
no error.
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st

from ocpptw.ocpp.actions import SERVER_TO_CHARGER
from tests.fuzz.schemas import fuzz_settings, mutated
from tests.fuzz.support import WireCharger, start_gateway, stop_gateway
from tests.helpers import bounded, until
from tests.integration.amqp_support import (
    BROKER_URL,
    Names,
    delete_topology,
    open_client,
)

CHARGER = "FUZZAMQP1"
_ACTIONS = sorted(SERVER_TO_CHARGER)

#: Messages published by this module, for docs/reliability.md.
TALLY = {"messages": 0}

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


@st.composite
def malformed_commands(draw) -> bytes:
    """A command body that must be refused as InvalidPayload."""
    kind = draw(st.sampled_from([
        "not-json", "not-utf8", "not-object", "no-action", "action-not-string", "empty-action", "unknown-action",
        "payload-not-object", "payload-fault", "bad-timeout", "huge", "deep", "nan",
    ]))  # fmt: skip
    action = draw(st.sampled_from(_ACTIONS))
    if kind == "not-json":
        return draw(st.sampled_from([b"", b"{", b"not json", b"{'action': 'Reset'}", b'{"action":"Reset",}']))
    if kind == "not-utf8":
        return b'{"action": "Reset", "payload": {"type": "\xff\xfe"}}'
    if kind == "not-object":
        return json.dumps(draw(_json_values.filter(lambda v: type(v) is not dict))).encode()
    if kind == "no-action":
        return json.dumps({"payload": {}}).encode()
    if kind == "action-not-string":
        return json.dumps({"action": draw(_json_values.filter(lambda v: type(v) is not str)), "payload": {}}).encode()
    if kind == "empty-action":
        return b'{"action": "", "payload": {}}'
    if kind == "unknown-action":
        name = draw(st.text(min_size=1, max_size=40).filter(lambda a: a not in SERVER_TO_CHARGER))
        return json.dumps({"action": name, "payload": {}}).encode()
    if kind == "payload-not-object":
        return json.dumps({"action": action, "payload": draw(_json_values.filter(lambda v: type(v) is not dict))}).encode()
    if kind == "payload-fault":
        payload, _, _ = draw(mutated(action))
        return json.dumps({"action": action, "payload": payload}).encode()
    if kind == "bad-timeout":
        bad = draw(st.sampled_from([0, -1, "5", True, False, [], {}, 10**9, 1e308, -0.0, -1e-300]))
        return json.dumps({"action": "ClearCache", "payload": {}, "timeoutSeconds": bad}).encode()
    if kind == "huge":
        return json.dumps({"action": "DataTransfer", "payload": {"vendorId": "v" * 300_000}}).encode()
    if kind == "deep":
        depth = draw(st.integers(min_value=40, max_value=200_000))
        return b'{"action": "DataTransfer", "payload": {"vendorId": "v", "data": ' + b"[" * depth + b"]" * depth + b"}}"
    constant = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999"]))
    return b'{"action": "SetChargingProfile", "payload": {"connectorId": 1, "csChargingProfiles": {"chargingProfileId": 1, ' \
           b'"stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute", ' \
           b'"chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": ' \
           + constant + b"}]}}}}"  # fmt: skip


@pytest_twisted.async_yield_fixture(scope="module")
async def amqp(tmp_path_factory):
    from twisted.internet import reactor

    names = Names()
    instance = f"fuzz-{names.tag}"
    service = await start_gateway(
        str(tmp_path_factory.mktemp("fuzz-amqp") / "data"),
        ENABLE_RABBITMQ="true",
        RABBITMQ_URL=BROKER_URL,
        RABBITMQ_EXCHANGE=names.events,
        RABBITMQ_COMMAND_EXCHANGE=names.commands,
        INSTANCE_ID=instance,
    )
    await until(lambda: service.amqp.ready()[0], 15)
    charger = WireCharger(service.test_port, CHARGER)
    await charger.connect(boot=True)
    client = await open_client(reactor)
    channel = await bounded(client.channel())
    replies, _ = await bounded(channel.basic_consume(queue="amq.rabbitmq.reply-to", auto_ack=True))
    charger.names, charger.channel, charger.replies, charger.instance = names, channel, replies, instance
    # the charger's binding is made once it is attached; a valid command proves the route
    await _publish(charger, b'{"action": "ClearCache", "payload": {}, "timeoutSeconds": 5}', "warm-up")
    call = await charger.charger.next()
    charger.charger.send_text(json.dumps([3, call[1], {"status": "Accepted"}]))
    reply = json.loads((await bounded(replies.get())).body)
    assert reply == {"ok": True, "result": {"status": "Accepted"}}, reply
    yield charger
    print("\nfuzz tally amqp:", TALLY)
    await stop_gateway(service)
    await delete_topology(client, names)
    await bounded(client.close())


async def _publish(amqp, body: bytes, correlation_id: str) -> None:
    import pika

    TALLY["messages"] += 1
    props = pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id=correlation_id)
    await bounded(amqp.channel.basic_publish(amqp.names.commands, CHARGER, body, props))


def _queue_depths(prefix: str) -> dict[str, tuple[int, int]]:
    """Ready and unacknowledged messages of the broker's queues named C{prefix}..., from rabbitmqctl."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name", "messages_ready", "messages_unacknowledged"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    depths = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0].startswith(prefix):
            depths[parts[0]] = (int(parts[1]), int(parts[2]))
    return depths


@fuzz_settings(150)
@given(body=malformed_commands())
async def test_malformed_commands_are_invalid_payload_and_acked(amqp, body):
    """Each malformed command is answered InvalidPayload with its correlation id, and reaches no charger."""
    correlation_id = uuid.uuid4().hex
    await _publish(amqp, body, correlation_id)
    reply = await bounded(amqp.replies.get())
    assert reply.properties.correlation_id == correlation_id
    decoded = json.loads(reply.body)
    assert decoded["ok"] is False and decoded["error"]["code"] == "InvalidPayload", (body[:200], decoded)
    assert type(decoded["error"]["description"]) is str
    assert not amqp.charger.received.pending


@pytest_twisted.ensureDeferred
async def test_nothing_is_left_in_the_command_queue(amqp):
    """After the fuzzing, the gateway's command queue holds nothing ready and nothing unacknowledged."""
    for n in range(5):
        await _publish(amqp, b"[1]", f"last-{n}")
    for _ in range(5):
        assert json.loads((await bounded(amqp.replies.get())).body)["ok"] is False
    depths = _queue_depths(amqp.names.commands)
    assert depths, "the gateway's command queue was not found"
    assert all(d == (0, 0) for d in depths.values()), depths
