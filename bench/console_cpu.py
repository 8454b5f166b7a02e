"""
What one open console costs the gateway: 200 chargers (C{ocpptw-sim}, open
loop) send 50 calls a second in all, so 100 frames a second flow through
the gateway; its CPU time (user + system, from C{/proc}) is measured in
alternating windows with no console and with one console open (headless
Chromium on the fleet page, which reads the whole event stream; with
C{--sse} a bare stream reader instead).

Usage::

    .venv/bin/python bench/console_cpu.py [--chargers 200] [--calls 50] [--window 30] [--rounds 2]

Needs /usr/bin/chromium and /usr/bin/chromedriver unless C{--sse}.  Prints
each window and the overhead of the console in percent.

C{--per-frame} measures instead, in process and without sockets, the CPU
time the live feed and one stream add to each frame (what the windows above
measure through the noise of a shared machine).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def gateway_pid(port: int) -> int:
    """The twistd listening on C{port} (its child of ours)."""
    import subprocess

    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True).stdout
    return int(out.split("pid=")[1].split(",")[0])


class SseReader(threading.Thread):
    """A bare stream client: reads and counts events until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.events = 0
        self.stop = False

    def run(self) -> None:
        with urllib.request.urlopen(self.url, timeout=30) as stream:
            while not self.stop:
                line = stream.readline()
                if not line:
                    return
                if line.startswith(b"event:"):
                    self.events += 1


def measure(pid: int, seconds: float) -> float:
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - started)


def per_frame(frames: int = 50_000) -> None:
    """
    CPU time per frame of the live feed alone (no console) and with one
    stream open (events encoded, gathered, flushed every 0.1 s into a
    twisted.web response on a memory transport).
    """
    import json

    from twisted.internet.task import Clock

    from ocpptw.services.live import LiveFeed
    from ocpptw.transport.stream import FLUSH, StreamHub
    from tests.transport.web_support import open_request

    class Session:
        charge_point_id = "CP0001"

    payload = {"connectorId": 1, "transactionId": 4711, "meterValue": [{"timestamp": "2026-12-04T10:00:00Z",
               "sampledValue": [{"value": "4174817", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                                {"value": "11350", "measurand": "Power.Active.Import", "unit": "W"}]}]}
    text = json.dumps(payload)

    class Stream:
        isLeaf = True

        def __init__(self, hub):
            self.hub = hub

        def render(self, request):
            return self.hub.open(request, None)

        def getChildWithDefault(self, name, request):
            return self

    def run(with_stream: bool) -> float:
        clock = Clock()
        feed = LiveFeed(clock, None)
        hub = StreamHub(feed, clock)
        transport = None
        if with_stream:  # the hub listens to the feed only while it runs, as in the gateway
            hub.startService()
            _, transport = open_request(Stream(hub), b"/")
        session = Session()
        started = time.process_time()
        for i in range(frames):
            feed.frame(session, "in", "CALL", str(i), "MeterValues", payload, None, None, text)
            if i % 10 == 9:  # 100 frames a second: ten per flush
                clock.advance(FLUSH)
                if transport is not None:
                    transport.clear()
        elapsed = time.process_time() - started
        if hub.running:
            hub.stopService()
        return elapsed / frames

    alone, streamed = min(run(False) for _ in range(3)), min(run(True) for _ in range(3))
    extra = streamed - alone
    print(f"live feed alone: {alone * 1e6:.1f} µs a frame; with one stream: {streamed * 1e6:.1f} µs"
          f" ({extra * 1e6:.1f} µs more: {extra * 100 * 100:.2f} % of a core at 100 frames/s)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chargers", type=int, default=200)
    ap.add_argument("--calls", type=float, default=50.0, help="calls a second in all (two frames each)")
    ap.add_argument("--window", type=float, default=30.0, help="seconds per measuring window")
    ap.add_argument("--rounds", type=int, default=2, help="pairs of windows (without, with)")
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--sse", action="store_true", help="a bare stream reader instead of the browser")
    ap.add_argument("--per-frame", action="store_true", help="in process: CPU per frame with and without a stream")
    args = ap.parse_args()
    if args.per_frame:
        per_frame()
        return 0

    from tests.browser.support import (
        browser,
        browser_missing,
        gateway,
        simulator,
        wait_for,
    )

    if not args.sse and browser_missing():
        print(browser_missing(), file=sys.stderr)
        return 1
    duration = args.warmup + args.rounds * 2 * (args.window + 5) + 20
    with tempfile.TemporaryDirectory() as tmp, gateway(Path(tmp)) as port:
        pid = gateway_pid(port)
        with simulator(port, chargers=args.chargers, duration=duration, prefix="CPU", rate=args.calls):
            overview = f"http://127.0.0.1:{port}/api/v1/overview"
            wait_for(lambda: urllib.request.urlopen(overview).read().count(b'"online":true') >= args.chargers,
                     seconds=60, what="every charger connected")
            time.sleep(args.warmup)
            without, with_console = [], []
            for round_ in range(args.rounds):
                without.append(measure(pid, args.window))
                print(f"round {round_ + 1}: no console      {without[-1] * 100:6.2f} % of a core", flush=True)
                if args.sse:
                    reader = SseReader(f"http://127.0.0.1:{port}/api/v1/stream")
                    reader.start()
                    time.sleep(5)
                    with_console.append(measure(pid, args.window))
                    reader.stop = True
                    print(f"round {round_ + 1}: one stream      {with_console[-1] * 100:6.2f} % of a core"
                          f" ({reader.events} events read)", flush=True)
                else:
                    with browser() as driver:
                        driver.get(f"http://127.0.0.1:{port}/console/")
                        wait_for(lambda: driver.find_element("id", "live-state").text == "live", what="console live")
                        time.sleep(5)
                        with_console.append(measure(pid, args.window))
                        shown = driver.execute_script("return document.querySelectorAll('#fleet-rows tr').length")
                    print(f"round {round_ + 1}: console open    {with_console[-1] * 100:6.2f} % of a core"
                          f" ({shown} chargers shown)", flush=True)
                time.sleep(5)  # the browser's stream closes
    base = sum(without) / len(without)
    loaded = sum(with_console) / len(with_console)
    print(f"gateway CPU: {base * 100:.2f} % of a core without a console, {loaded * 100:.2f} % with one:"
          f" {(loaded / base - 1) * 100:+.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
