"""
A charger built on the third-party C{ocpp} package (asyncio + websockets),
run as a separate process by the end-to-end test: boot, heartbeat, status,
authorize, start, meter values, stop and data transfer against a running
gateway.  Every answer is validated by the library against the official
schemas and checked here; prints one JSON line with what it got.

Usage: python ocpp_lib_charger.py ws://127.0.0.1:PORT/ocpp/CP-ID
"""

import asyncio
import json
import sys
from datetime import datetime, timezone

import websockets
from ocpp.v16 import ChargePoint, call


def now():
    return datetime.now(timezone.utc).isoformat()


async def scenario(url):
    cp_id = url.rsplit("/", 1)[1]
    async with websockets.connect(url, subprotocols=["ocpp1.6"], open_timeout=10) as ws:
        assert ws.subprotocol == "ocpp1.6", ws.subprotocol
        cp = ChargePoint(cp_id, ws, response_timeout=10)
        runner = asyncio.ensure_future(cp.start())
        got = {}
        boot = await cp.call(call.BootNotification(charge_point_vendor="ACME", charge_point_model="Model X", charge_point_serial_number="SN1", firmware_version="1.0"))
        got["boot"] = boot.status
        got["interval"] = boot.interval
        got["heartbeat"] = (await cp.call(call.Heartbeat())).current_time
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available", timestamp=now()))
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing", timestamp=now()))
        got["authorize"] = (await cp.call(call.Authorize(id_tag="TAG1"))).id_tag_info["status"]
        started_at = now()
        start = await cp.call(call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=1000, timestamp=started_at))
        got["start"] = start.id_tag_info["status"]
        tx = start.transaction_id
        got["transactionId"] = tx
        again = await cp.call(call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=1000, timestamp=started_at))
        got["repeatedStartSameId"] = again.transaction_id == tx
        await cp.call(call.MeterValues(connector_id=1, transaction_id=tx, meter_value=[{
            "timestamp": now(),
            "sampledValue": [
                {"value": "1.5", "measurand": "Energy.Active.Import.Register", "unit": "kWh", "context": "Sample.Periodic"},
                {"value": "7200", "measurand": "Power.Active.Import", "unit": "W"},
                {"value": "21.5", "measurand": "Temperature", "unit": "Celsius"},
            ],
        }]))
        stop = await cp.call(call.StopTransaction(meter_stop=6000, timestamp=now(), transaction_id=tx, reason="Local", id_tag="TAG1"))
        got["stop"] = (stop.id_tag_info or {}).get("status")
        await cp.call(call.StopTransaction(meter_stop=6000, timestamp=now(), transaction_id=tx, reason="Local"))
        await cp.call(call.StopTransaction(meter_stop=10, timestamp=now(), transaction_id=-1))
        got["dataTransfer"] = (await cp.call(call.DataTransfer(vendor_id="ACME", message_id="hello", data="{}"))).status
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available", timestamp=now()))
        runner.cancel()
        print(json.dumps(got), flush=True)


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(scenario(sys.argv[1]), 60))
