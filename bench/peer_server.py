"""
The peer: an OCPP 1.6J central system on the C{ocpp} package (asyncio +
websockets), with the same handlers as the gateway's charger-to-server core
actions and no backend.  Runs in its own venv (C{bench/.peer-venv}), made by
C{bench/run.py}.

    bench/.peer-venv/bin/python bench/peer_server.py --port 9002
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import resource
from datetime import datetime, timezone

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as _ChargePoint
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus

_tx = itertools.count(1)
_ACCEPTED = {"status": AuthorizationStatus.accepted}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class ChargePoint(_ChargePoint):
    """
    Answers the charger-to-server core actions; stores nothing.
    """

    @on(Action.boot_notification)
    def on_boot_notification(self, charge_point_vendor, charge_point_model, **kwargs):
        return call_result.BootNotification(
            current_time=_now(), interval=300, status=RegistrationStatus.accepted
        )

    @on(Action.heartbeat)
    def on_heartbeat(self):
        return call_result.Heartbeat(current_time=_now())

    @on(Action.status_notification)
    def on_status_notification(self, connector_id, error_code, status, **kwargs):
        return call_result.StatusNotification()

    @on(Action.meter_values)
    def on_meter_values(self, connector_id, meter_value, **kwargs):
        return call_result.MeterValues()

    @on(Action.authorize)
    def on_authorize(self, id_tag):
        return call_result.Authorize(id_tag_info=_ACCEPTED)

    @on(Action.start_transaction)
    def on_start_transaction(self, connector_id, id_tag, meter_start, timestamp, **kwargs):
        return call_result.StartTransaction(transaction_id=next(_tx), id_tag_info=_ACCEPTED)

    @on(Action.stop_transaction)
    def on_stop_transaction(self, transaction_id, meter_stop, timestamp, **kwargs):
        return call_result.StopTransaction(id_tag_info=_ACCEPTED)

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id, **kwargs):
        return call_result.DataTransfer(status="Accepted")


async def on_connect(connection) -> None:
    if connection.subprotocol != "ocpp1.6":
        await connection.close()
        return
    charge_point_id = connection.request.path.rstrip("/").split("/")[-1]
    cp = ChargePoint(charge_point_id, connection)
    try:
        await cp.start()
    except websockets.exceptions.ConnectionClosed:
        pass


async def serve(host: str, port: int, backlog: int) -> None:
    async with websockets.serve(
        on_connect,
        host,
        port,
        subprotocols=["ocpp1.6"],
        ping_interval=None,
        compression=None,
        backlog=backlog,
    ):
        print(f"peer listening on ws://{host}:{port}/ocpp/", flush=True)
        await asyncio.Future()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9002)
    ap.add_argument("--backlog", type=int, default=1024)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(serve(a.host, a.port, a.backlog))


if __name__ == "__main__":
    main()
