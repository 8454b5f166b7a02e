# -*- test-case-name: tests.test_sim -*-
"""
A fast local operator backend for the benchmarks: the in-memory
L{ocpptw.testing.backend.FakeBackend} on a loopback port, keeping no record
of requests or messages (flat memory, less CPU per request).  It serves
both forms of the message log (C{ocpp-message} and the batch form
C{ocpp-messages}).

    python bench/backend_server.py --port 9050
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=9050)
    a = ap.parse_args()
    from twisted.internet import reactor

    from ocpptw.testing.backend import FakeBackend

    backend = FakeBackend(clock=reactor, record=False)
    _, url = backend.listen(reactor, a.port, "127.0.0.1")
    print(f"backend listening on {url}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
