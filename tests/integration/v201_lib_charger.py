"""
A charging station built on the third-party C{ocpp} package's
C{ocpp.v201.ChargePoint} (asyncio + websockets), run as a separate process by
C{tests/integration/test_v201.py}.  The library validates every answer of
the gateway against the official OCPP 2.0.1 schemas.

Phase 1: boot, heartbeat, status, authorize, a transaction (Started with an
idToken, a repeated seqNo, Updated with meter values, Ended with the final
register), then every other charger-to-CSMS action once with its smallest
valid payload.  Prints C{PHASE1 <json>}.

Phase 2: answers every CSMS-to-charger action the gateway sends (with its
smallest valid response); once it has received each one named on the command
line's second argument (comma-separated) it prints C{DONE <json>}, and exits
when the gateway closes the connection.

Usage: python v201_lib_charger.py ws://127.0.0.1:PORT/ocpp/CP-ID ACTION,ACTION,...
"""

import asyncio
import json
import sys

import websockets
from ocpp.charge_point import camel_to_snake_case
from ocpp.v201 import ChargePoint, call, call_result

from ocpptw.ocpp.actions_v201 import CHARGER_TO_SERVER
from ocpptw.ocpp.examples import minimal_request, minimal_response

T0 = "2026-12-04T10:00:00Z"


def register(watts_hours, context=None):
    sampled = {"value": watts_hours / 1000, "measurand": "Energy.Active.Import.Register",
               "unit_of_measure": {"unit": "kWh"}}
    if context:
        sampled["context"] = context
    return [{"timestamp": T0, "sampled_value": [sampled]}]


async def send(cp, name, /, **kwargs):
    return await cp.call(getattr(call, name)(**kwargs))


async def scenario(url, expected):
    cp_id = url.rsplit("/", 1)[1]
    async with websockets.connect(url, subprotocols=["ocpp2.0.1", "ocpp1.6"], open_timeout=10) as ws:
        assert ws.subprotocol == "ocpp2.0.1", ws.subprotocol
        cp = ChargePoint(cp_id, ws, response_timeout=15)
        received = []
        everything = asyncio.Event()

        def handler(action):
            def handle(**kwargs):
                received.append(action)
                if set(expected) <= set(received) and not everything.is_set():
                    everything.set()
                    print("DONE " + json.dumps(sorted(set(received))), flush=True)
                return getattr(call_result, action)(**camel_to_snake_case(minimal_response("2.0.1", action)))
            return handle

        for action in expected:
            cp.route_map[action] = {"_on_action": handler(action)}
        runner = asyncio.ensure_future(cp.start())
        got = {}
        boot = await send(cp, "BootNotification", charging_station={"vendor_name": "ACME", "model": "Two", "serial_number": "SN-2", "firmware_version": "2.0", "modem": {"iccid": "ICC", "imsi": "IMSI"}}, reason="PowerUp")
        got["boot"] = boot.status
        got["interval"] = boot.interval
        got["heartbeat"] = (await send(cp, "Heartbeat")).current_time
        await send(cp, "StatusNotification", timestamp=T0, connector_status="Available", evse_id=1, connector_id=1)
        got["authorize"] = (await send(cp, "Authorize", id_token={"id_token": "TAG201", "type": "ISO14443"})).id_token_info["status"]
        tx = {"transaction_id": "tx-201-a"}
        started = await send(cp, "TransactionEvent", event_type="Started", timestamp=T0, trigger_reason="Authorized", seq_no=0,
                             transaction_info=tx, evse={"id": 1, "connector_id": 1},
                             id_token={"id_token": "TAG201", "type": "ISO14443"}, meter_value=register(1000, "Transaction.Begin"))
        got["started"] = started.id_token_info["status"]
        again = await send(cp, "TransactionEvent", event_type="Started", timestamp=T0, trigger_reason="Authorized", seq_no=0,
                           transaction_info=tx, evse={"id": 1, "connector_id": 1},
                           id_token={"id_token": "TAG201", "type": "ISO14443"}, meter_value=register(1000, "Transaction.Begin"))
        got["repeatSame"] = again.id_token_info == started.id_token_info
        await send(cp, "TransactionEvent", event_type="Updated", timestamp=T0, trigger_reason="MeterValuePeriodic", seq_no=1,
                   transaction_info={**tx, "charging_state": "Charging"}, meter_value=register(3500))
        await send(cp, "MeterValues", evse_id=1, meter_value=register(4000))
        ended = await send(cp, "TransactionEvent", event_type="Ended", timestamp=T0, trigger_reason="StopAuthorized", seq_no=2,
                           transaction_info={**tx, "stopped_reason": "EVDisconnected"}, meter_value=register(13580, "Transaction.End"))
        got["totalCost"] = ended.total_cost
        others = {}
        for action in sorted(CHARGER_TO_SERVER - {"BootNotification", "Heartbeat", "StatusNotification", "Authorize", "TransactionEvent", "MeterValues"}):
            answer = await send(cp, action, **camel_to_snake_case(minimal_request("2.0.1", action)))
            others[action] = getattr(answer, "status", "ok")
        got["others"] = others
        print("PHASE1 " + json.dumps(got), flush=True)
        await asyncio.wait_for(everything.wait(), 60)
        await asyncio.wait_for(ws.wait_closed(), 60)  # the test closes it once every answer is in
        runner.cancel()


if __name__ == "__main__":
    asyncio.run(scenario(sys.argv[1], [a for a in sys.argv[2].split(",") if a]))
