"""
One whole gateway with C{ENABLE_RABBITMQ=true} on the real broker and an
OCPP 2.0.1 charging station: its session publishes the events of CONTRACT
sections 5 and 7, each valid against C{docs/asyncapi.yaml}, with the
station's string transactionId and its evseId; a 2.0.1 command goes through
the command exchange, and one of 1.6 is refused as InvalidPayload naming the
version.
"""

from __future__ import annotations

import json

import pytest_twisted

from tests.helpers import until
from tests.integration.amqp_support import collect, open_client
from tests.integration.instances_support import (
    CommandClient,
    answer_next_call,
    close_client,
)
from tests.integration.test_broker_gateway import (  # noqa: F401 (fixture)
    _properties,
    _validators,
    broker_gateway,
)
from tests.wsclient import connect_charger

T0 = "2026-12-04T10:00:00Z"


def register(wh, context=None):
    sampled = {"value": wh, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}}
    if context:
        sampled["context"] = context
    return [{"timestamp": T0, "sampledValue": [sampled]}]


@pytest_twisted.ensureDeferred
async def test_a_2_0_1_session_publishes_documented_events(broker_gateway):  # noqa: F811
    from twisted.internet import reactor

    gateway, names = broker_gateway, broker_gateway.names
    by_type, properties, reply_schema = _validators()
    client = await open_client(reactor)
    try:
        _, received = await collect(client, names.events)
        commands = await CommandClient.open(client, names.commands)
        charger = await connect_charger(gateway.test_port, "/ocpp/EV-201", ["ocpp2.0.1", "ocpp1.6"])
        assert charger.subprotocol == "ocpp2.0.1"

        async def call(action, payload):
            frame = await charger.call(action, payload)
            assert frame[0] == 3, frame
            return frame[2]

        assert (await call("BootNotification", {"chargingStation": {"vendorName": "ACME", "model": "Two"}, "reason": "PowerUp"}))["status"] == "Accepted"
        await call("StatusNotification", {"timestamp": T0, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1})
        tx = {"transactionId": "EV201-tx"}
        token = {"idToken": "TAG-201", "type": "ISO14443"}
        started = await call("TransactionEvent", {"eventType": "Started", "timestamp": T0, "triggerReason": "Authorized", "seqNo": 0,
                                                  "transactionInfo": tx, "idToken": token, "evse": {"id": 1, "connectorId": 1},
                                                  "meterValue": register(1000, "Transaction.Begin")})
        assert started["idTokenInfo"]["status"] == "Accepted"
        await call("MeterValues", {"evseId": 1, "meterValue": register(1500)})

        correlation = await commands.publish("EV-201", "GetVariables", {"getVariableData": [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]})
        frame = await answer_next_call(charger, {"getVariableResult": [{"attributeStatus": "Accepted", "attributeValue": "300", "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]})
        assert frame[2] == "GetVariables"
        answer = await commands.reply(correlation)
        assert answer["ok"] is True and answer["result"]["getVariableResult"][0]["attributeValue"] == "300"
        correlation = await commands.publish("EV-201", "RemoteStartTransaction", {"idTag": "T"})
        refused = await commands.reply(correlation)
        reply_schema(refused)
        assert refused["ok"] is False and refused["error"]["code"] == "InvalidPayload" and "2.0.1" in refused["error"]["description"]

        ended = await call("TransactionEvent", {"eventType": "Ended", "timestamp": T0, "triggerReason": "EVDeparted", "seqNo": 1,
                                                "transactionInfo": dict(tx, stoppedReason="EVDisconnected"),
                                                "meterValue": register(2500, "Transaction.End")})
        assert "idTokenInfo" not in ended
        charger.sendClose(1000)
        await charger.wait_closed()

        def of(kind):
            return [json.loads(m.body) for m in received if m.method.routing_key == kind]

        await until(lambda: any(e["data"]["status"] == "Disconnected" for e in of("charger.statusUpdate")))
        await until(lambda: len(of("charging.stopped")) == 1)
        for message in received:
            body = json.loads(message.body)
            by_type[body["type"]](body)
            properties(_properties(message.properties))
        (metadata,) = of("charger.metadataUpdate")
        assert metadata["data"]["ocppVersion"] == "2.0.1" and metadata["data"]["reason"] == "PowerUp"
        assert [e["data"].get("evseId") for e in of("charger.statusUpdate")] == [None, 1, None]
        (start,) = of("charging.started")
        assert start["data"]["transactionId"] == "EV201-tx" and start["data"]["evseId"] == 1 and start["data"]["meterStart"] == 1000
        assert all(e["data"]["evseId"] == 1 for e in of("charging.meterValues"))
        assert [e["data"].get("transactionId") for e in of("charging.meterValues")] == ["EV201-tx", None, "EV201-tx"]
        (stop,) = of("charging.stopped")
        assert (stop["data"]["transactionId"], stop["data"]["evseId"], stop["data"]["energyWh"], stop["data"]["reason"]) == (
            "EV201-tx", 1, 1500, "EVDisconnected")
    finally:
        await close_client(client)
