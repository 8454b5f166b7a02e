# -*- test-case-name: tests.test_sim -*-
"""
The ceiling: a bare Autobahn/Twisted central system that answers OCPP 1.6J
CALLs with canned payloads and validates nothing.  What ocpptw costs on top
of the transport is measured against this.

    python bench/raw_server.py --port 9001
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

_tx = itertools.count(1)
_last = [-1, ""]


def _now() -> str:
    sec = int(time.time())
    if sec != _last[0]:
        _last[0], _last[1] = sec, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec))
    return _last[1]


_ACCEPTED_TAG = {"idTagInfo": {"status": "Accepted"}}


def answer(action: str) -> dict:
    """
    The canned CALLRESULT payload for C{action}.
    """
    if action == "BootNotification":
        return {"status": "Accepted", "currentTime": _now(), "interval": 300}
    if action == "Heartbeat":
        return {"currentTime": _now()}
    if action in ("Authorize", "StopTransaction"):
        return _ACCEPTED_TAG
    if action == "StartTransaction":
        return {"transactionId": next(_tx), "idTagInfo": {"status": "Accepted"}}
    if action == "DataTransfer":
        return {"status": "Accepted"}
    return {}


class RawOcpp(WebSocketServerProtocol):
    """
    One charger: any CALL gets its canned answer, nothing is checked.
    """

    def connectionMade(self):
        super().connectionMade()
        self.transport.setTcpNoDelay(True)  # Autobahn leaves Nagle on (see docs/performance.md)

    def onConnect(self, request):
        if "ocpp1.6" in request.protocols:
            return "ocpp1.6"
        return None

    def onMessage(self, payload, isBinary):
        try:
            msg = json.loads(payload)
        except ValueError:
            return
        if msg[0] == 2:
            self.sendMessage(
                json.dumps([3, msg[1], answer(msg[2])], separators=(",", ":")).encode()
            )


def make_factory() -> WebSocketServerFactory:
    factory = WebSocketServerFactory()
    factory.protocol = RawOcpp
    factory.setProtocolOptions(
        autoPingInterval=0, webStatus=False, perMessageCompressionAccept=lambda offers: None
    )
    return factory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9001)
    ap.add_argument("--backlog", type=int, default=1024)
    a = ap.parse_args()
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    from twisted.internet import reactor

    reactor.listenTCP(a.port, make_factory(), backlog=a.backlog, interface=a.host)
    print(f"raw ceiling listening on ws://{a.host}:{a.port}/ocpp/", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
