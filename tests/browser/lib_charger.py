"""
A charger built on the third-party C{ocpp} package for the console's browser
tests: boots, reports connector 1 Available, then sends a Heartbeat every
second for the given time.  It accepts Reset (its own handler), answers
UnlockConnector after 3 s, and leaves every other command to the library,
which answers C{NotImplemented}.

Usage: python -m tests.browser.lib_charger ws://127.0.0.1:PORT/ocpp/CP-ID SECONDS
"""

import asyncio
import sys
from datetime import datetime, timezone

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result


class Charger(ChargePoint):
    @on("Reset")
    def on_reset(self, type, **kwargs):
        return call_result.Reset(status="Accepted")

    @on("UnlockConnector")
    async def on_unlock(self, connector_id, **kwargs):
        await asyncio.sleep(3)  # slower than the console's 1 s wait: a 504
        return call_result.UnlockConnector(status="Unlocked")


async def run(url, seconds):
    async with websockets.connect(url, subprotocols=["ocpp1.6"], open_timeout=10) as ws:
        cp = Charger(url.rsplit("/", 1)[1], ws, response_timeout=10)
        runner = asyncio.ensure_future(cp.start())
        await cp.call(call.BootNotification(charge_point_vendor="ACME", charge_point_model="Console Test"))
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available",
                                              timestamp=datetime.now(timezone.utc).isoformat()))
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            await cp.call(call.Heartbeat())
            await asyncio.sleep(1)
        runner.cancel()


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(run(sys.argv[1], float(sys.argv[2])), float(sys.argv[2]) + 30))
