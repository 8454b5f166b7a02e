"""
Where the gateway's CPU goes with real sockets: the whole gateway (Autobahn,
twisted.web, the handshake, the services, the embedded store) in this
process under cProfile, driven by C{ocpptw-sim} in a child process over
loopback.  Use it for what bench/pipeline.py leaves out: the transport and
new connections.

    python bench/profile_call.py --idle -n 1000              # connections and boots
    python bench/profile_call.py -n 100 --duration 8          # closed loop
    python bench/profile_call.py -n 100 --ocpp 2.0.1 --top 40
    python bench/profile_call.py --idle -n 1000 --cpu      # CPU time, not wall time

It prints the simulator's summary, then the functions with the most own
time (cProfile's C{tottime}; on the reactor thread only: the database
threads' work shows up as the time the reactor thread waits for the GIL,
attributed to whatever it was running; with C{--cpu} the reactor thread's
CPU time instead, which a busy machine does not inflate).  C{DATA_DIR} is a fresh temporary
directory, removed at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import shutil
import subprocess
import sys
import tempfile
import time

from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from ocpptw.app.gateway import make_gateway
from ocpptw.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("-n", "--chargers", type=int, default=100)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--idle", action="store_true", help="connect, boot and hold (no calls)")
    parser.add_argument("--ocpp", default="1.6", choices=["1.6", "2.0.1", "mixed"])
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--out", default=None, help="also save the raw profile here")
    parser.add_argument("--cpu", action="store_true",
                        help="time with the reactor thread's CPU clock instead of the wall clock: waits for "
                             "the GIL, the network and other processes then count nothing")
    options = parser.parse_args()
    data = tempfile.mkdtemp(prefix="ocpptw-profile-")
    profile = cProfile.Profile(time.thread_time) if options.cpu else cProfile.Profile()
    summary: dict = {}
    try:
        config = load_config(environ={"DATA_DIR": data, "OCPP_PING_INTERVAL": "0", "PORT": "0",
                                      "WEBSOCKET_HOST": "127.0.0.1"})
        gateway = make_gateway(config, reactor)

        def simulate(port: int) -> str:
            command = [sys.executable, "-m", "ocpptw.sim.cli", "--url", f"ws://127.0.0.1:{port}/ocpp/",
                       "-n", str(options.chargers), "--duration", str(options.duration),
                       "--ocpp", options.ocpp, "--json"]
            if options.idle:
                command.append("--idle")
            return subprocess.run(command, capture_output=True, text=True, timeout=600).stdout

        def go(_: object) -> None:
            port = gateway.parts.listeners.chargers.port.getHost().port
            profile.enable()
            d = deferToThread(simulate, port)

            def done(out: str) -> None:
                profile.disable()
                summary.update(json.loads(out) if out.strip() else {"note": "no report"})
                reactor.stop()

            d.addCallback(done)
            d.addErrback(lambda f: (print(f), reactor.stop()))

        gateway.startService()
        gateway.started.addCallback(go)
        reactor.run()
    finally:
        shutil.rmtree(data, ignore_errors=True)
    connections = summary.get("connections", {})
    calls = summary.get("calls", {})
    print(f"connections ok {connections.get('ok')} in {connections.get('connect_seconds')} s; "
          f"calls answered {calls.get('answered')} ({calls.get('per_second')}/s)")
    if options.out:
        profile.dump_stats(options.out)
    pstats.Stats(profile).sort_stats("tottime").print_stats(options.top)


if __name__ == "__main__":
    main()
