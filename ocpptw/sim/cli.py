# -*- test-case-name: tests.test_sim -*-
"""
C{ocpptw-sim}: a charger simulator and load generator for any OCPP 1.6J or
OCPP 2.0.1 central system.

N chargers (Autobahn WebSocket clients offering C{ocpp1.6}, or C{ocpp2.0.1}
with C{--ocpp 2.0.1}; C{--ocpp mixed} makes every other one a 2.0.1
station whose sessions are TransactionEvents) connect at a
bounded rate, each sends its BootNotification, then one load phase runs:

  - closed loop (default): every charger sends its next CALL as soon as the
    last one is answered, for C{--duration} seconds or C{--calls} calls;
  - open loop (C{--rate R}): R calls a second in all, each due at a fixed
    instant; latency counts from that instant, so a stalled server cannot
    hide behind the chargers waiting for it (coordinated omission);
  - idle (C{--idle}): connect, boot and hold, for memory per connection;
  - reconnect storm (C{--storm}): drop every connection at once and let all
    chargers reconnect.

C{--processes K} forks K workers, each with its own reactor, and adds up
their figures.  On a terminal (stderr), a progress line is rewritten every
second (connected, calls/s, p99 so far); C{--json} keeps quiet.
Everything is bounded in time; only the given URL is used.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ocpptw.sim.charger import DEFAULT_MIX, parse_mix
from ocpptw.sim.progress import PROGRESS_INTERVAL, ProgressLine, wanted
from ocpptw.sim.report import build_report, format_report
from ocpptw.sim.stats import Stats, raise_fd_limit, read_process
from ocpptw.sim.worker import ramp_deadline

DEFAULT_URL = "ws://127.0.0.1:9000/ocpp/"


@dataclass
class SimOptions:
    """
    Everything one simulation run needs (see C{ocpptw-sim --help}).
    """

    url: str = DEFAULT_URL
    chargers: int = 10
    prefix: str = "SIM"
    start: int = 1
    mode: str = "closed"  # closed, open, idle, storm
    duration: float = 10.0
    calls: int = 0
    rate: float = 0.0
    connect_rate: float = 500.0
    connect_concurrency: int = 500
    connect_timeout: float = 10.0
    connect_retries: int = 5
    call_timeout: float = 10.0
    storm_rate: float = 0.0
    storm_call: str = "BootNotification"
    mix: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MIX))
    session_meters: int = 3
    processes: int = 1
    server_pid: int | None = None
    settle: float = 1.0
    seed: int = 1
    #: Basic auth password (security profiles 1 and 2); C{{id}} in it is
    #: replaced by the charger's id, for per-charger keys.
    password: str | None = None
    #: PEM CA bundle that signed the gateway's certificate (wss).
    cafile: str | None = None
    #: PEM file with a client certificate and its key (security profile 3).
    client_cert: str | None = None
    ocpp: str = "1.6"
    #: connect from 127.0.0.1 .. 127.0.0.K (loopback URLs only)
    source_addresses: int = 1


def parse_args(argv: list[str] | None) -> tuple[SimOptions, bool]:
    """
    The command line as L{SimOptions}, and whether to print JSON.
    """
    ap = argparse.ArgumentParser(prog="ocpptw-sim", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--url", default=DEFAULT_URL, help="base URL; the charger id is appended (%(default)s)"
    )
    ap.add_argument(
        "-n", "--chargers", type=int, default=10, help="number of chargers (%(default)s)"
    )
    ap.add_argument("--prefix", default="SIM", help="charger id prefix (%(default)s)")
    ap.add_argument("--start", type=int, default=1, help="first charger number (%(default)s)")
    ap.add_argument(
        "--duration", type=float, default=10.0, help="seconds of load or hold (%(default)s)"
    )
    ap.add_argument(
        "--calls", type=int, default=0, help="stop after this many calls in all (0: duration only)"
    )
    ap.add_argument("--rate", type=float, default=0.0, help="open loop: calls per second in all")
    ap.add_argument("--idle", action="store_true", help="connect, boot and hold for --duration")
    ap.add_argument(
        "--storm", action="store_true", help="drop every connection, then all reconnect"
    )
    ap.add_argument(
        "--storm-rate", type=float, default=0.0, help="reconnects per second (0: unlimited)"
    )
    ap.add_argument(
        "--storm-call",
        default="BootNotification",
        choices=["BootNotification", "StatusNotification", "Heartbeat"],
        help="first call after a reconnect (%(default)s)",
    )
    ap.add_argument(
        "--connect-rate", type=float, default=500.0, help="new connections per second, 0: unlimited"
    )
    ap.add_argument(
        "--connect-concurrency", type=int, default=500, help="handshakes + boots under way at once"
    )
    ap.add_argument(
        "--connect-timeout", type=float, default=10.0, help="seconds for TCP connect and handshake"
    )
    ap.add_argument(
        "--connect-retries",
        type=int,
        default=5,
        help="retries of a failed connection (%(default)s)",
    )
    ap.add_argument(
        "--call-timeout", type=float, default=10.0, help="seconds a CALL waits for its answer"
    )
    ap.add_argument(
        "--mix", default="heartbeat=1,status=1,meter=6,session=2", help="weights (%(default)s)"
    )
    ap.add_argument(
        "--session-meters", type=int, default=3, help="MeterValues per charging session"
    )
    ap.add_argument(
        "--processes", type=int, default=1, help="worker processes, each with its own reactor"
    )
    ap.add_argument(
        "--server-pid", type=int, default=None, help="report this process's RSS and CPU"
    )
    ap.add_argument(
        "--settle", type=float, default=1.0, help="idle: seconds before reading the server's RSS"
    )
    ap.add_argument("--seed", type=int, default=1, help="seed of the action mix")
    ap.add_argument(
        "--password",
        help="security profiles 1-2: Basic auth password (the charger's AuthorizationKey); "
        "{id} is replaced by the charger id, for per-charger keys",
    )
    ap.add_argument("--cafile", help="wss: PEM CA bundle that signed the gateway's certificate")
    ap.add_argument(
        "--client-cert", help="security profile 3: PEM file with the charger's certificate and key"
    )
    ap.add_argument(
        "--ocpp",
        default="1.6",
        choices=["1.6", "2.0.1", "mixed"],
        help="OCPP version of the chargers; mixed: every other one speaks 2.0.1 (%(default)s)",
    )
    ap.add_argument(
        "--source-addresses",
        type=int,
        default=1,
        help="connect from 127.0.0.1 .. 127.0.0.K, charger n from 127.0.0.(1 + n %% K), "
        "for more connections than one address has ports; loopback URLs only (%(default)s)",
    )
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    a = ap.parse_args(argv)
    if not 1 <= a.source_addresses <= 254:
        ap.error("--source-addresses must be between 1 and 254")
    if a.source_addresses > 1 and urlsplit(a.url).hostname not in ("127.0.0.1", "localhost"):
        ap.error("--source-addresses needs a ws://127.0.0.1 URL (the 127.0.0.x addresses are loopback)")
    if not a.url.startswith(("ws://", "wss://")):
        ap.error("--url must start with ws:// or wss://")
    if (a.cafile or a.client_cert) and not a.url.startswith("wss://"):
        ap.error("--cafile and --client-cert need a wss:// --url")
    for name in ("cafile", "client_cert"):
        path = getattr(a, name)
        if path is not None and not os.path.isfile(path):
            ap.error(f"--{name.replace('_', '-')}: no such file {path!r}")
    if a.chargers < 1 or a.processes < 1 or a.duration <= 0:
        ap.error("--chargers, --processes and --duration must be positive")
    try:
        mix = parse_mix(a.mix)
    except ValueError as e:
        ap.error(str(e))
    mode = "idle" if a.idle else "storm" if a.storm else "open" if a.rate > 0 else "closed"
    options = SimOptions(
        url=a.url,
        chargers=a.chargers,
        prefix=a.prefix,
        start=a.start,
        mode=mode,
        duration=a.duration,
        calls=a.calls,
        rate=a.rate,
        connect_rate=a.connect_rate,
        connect_concurrency=a.connect_concurrency,
        connect_timeout=a.connect_timeout,
        connect_retries=a.connect_retries,
        call_timeout=a.call_timeout,
        storm_rate=a.storm_rate,
        storm_call=a.storm_call,
        mix=mix,
        session_meters=a.session_meters,
        processes=min(a.processes, a.chargers),
        server_pid=a.server_pid,
        settle=a.settle,
        seed=a.seed,
        password=a.password,
        cafile=a.cafile,
        client_cert=a.client_cert,
        ocpp=a.ocpp,
        source_addresses=a.source_addresses,
    )
    return options, a.json


def _sample(options: SimOptions) -> dict[str, float] | None:
    if options.server_pid is None:
        return None
    reading = read_process(options.server_pid)
    if reading is not None:
        reading["t"] = time.monotonic()
    return reading


async def run_simulation(reactor, options: SimOptions, progress_to=None) -> dict[str, Any]:
    """
    Run one simulation in this process on a running C{reactor}; the report.
    With C{progress_to} (a text stream), a progress line is rewritten on it
    every second (L{ocpptw.sim.progress}).
    """
    from twisted.internet.task import deferLater

    from ocpptw.sim.progress import Progress
    from ocpptw.sim.worker import SimWorker

    wall0 = time.monotonic()
    samples: dict[str, Any] = {"start": _sample(options)}
    worker = SimWorker(reactor, options)
    progress = None
    if progress_to is not None:
        progress = Progress(
            reactor, progress_to, worker.stats, lambda: worker.open_count, time.monotonic
        )
        progress.start()
    try:
        await worker.connect_all()
        if options.mode == "idle" and options.settle > 0:
            await deferLater(reactor, options.settle, lambda: None)
        samples["booted"] = _sample(options)
        await worker.run_load()
        samples["end"] = _sample(options)
    finally:
        if progress is not None:
            progress.stop()
        await worker.close_all()
    return build_report(options, worker.finalise(), samples, time.monotonic() - wall0)


def _run_here(options: SimOptions, progress_to=None) -> dict[str, Any]:
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    out: list[Any] = []
    d = ensureDeferred(run_simulation(reactor, options, progress_to))
    d.addBoth(out.append)
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    if not out or not isinstance(out[0], dict):
        if out and hasattr(out[0], "raiseException"):
            out[0].raiseException()
        raise RuntimeError("the simulation did not finish")
    return out[0]


def _child(options: SimOptions, index: int, sock: socket.socket, progress: bool = False) -> int:
    """
    A forked worker: connect, say ready, wait for go, load, close, report;
    with C{progress}, its figures so far every second.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred, ensureDeferred
    from twisted.internet.task import LoopingCall

    from ocpptw.sim.worker import SimWorker

    sock.setblocking(False)

    def send(obj: dict) -> None:
        sock.setblocking(True)
        sock.sendall(json.dumps(obj).encode() + b"\n")
        sock.setblocking(False)

    def wait_go() -> Deferred[None]:
        d: Deferred[None] = Deferred()

        def poll() -> None:
            try:
                data = sock.recv(64)
            except BlockingIOError:
                return
            poller.stop()
            d.callback(None) if data.startswith(b"go") else d.errback(RuntimeError("parent gone"))

        poller = LoopingCall(poll)
        poller.start(0.005)
        return d

    async def flow() -> None:
        worker = SimWorker(reactor, options, index, options.processes)
        ticker = None
        if progress:
            ticker = LoopingCall(
                lambda: send(
                    {
                        "event": "progress",
                        "open": worker.open_count,
                        "stats": worker.stats.to_dict(),
                    }
                )
            )
            ticker.start(PROGRESS_INTERVAL, now=False)
        try:
            await worker.connect_all()
            send({"event": "ready"})
            await wait_go()
            await worker.run_load()
        finally:
            if ticker is not None and ticker.running:
                ticker.stop()
            await worker.close_all()
        send({"event": "done", "stats": worker.finalise().to_dict()})

    failed: list[Any] = []
    d = ensureDeferred(flow())
    d.addErrback(failed.append)
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    return 1 if failed else 0


class _Parent:
    """
    The parent's side of the forked workers: lines of JSON over socket pairs.
    """

    def __init__(self, options: SimOptions, progress_to=None):
        self.options = options
        self.children: list[tuple[int, socket.socket]] = []
        self.buffers: dict[int, bytes] = {}
        #: each worker's latest figures, fd -> (open connections, stats)
        self.latest: dict[int, tuple[int, Stats]] = {}
        self.line = ProgressLine(progress_to, time.monotonic()) if progress_to else None
        self.next_line = time.monotonic() + PROGRESS_INTERVAL

    def fork(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        for index in range(self.options.processes):
            mine, theirs = socket.socketpair()
            pid = os.fork()
            if pid == 0:  # the worker
                mine.close()
                for _, other in self.children:
                    other.close()
                code = 1
                try:
                    code = _child(self.options, index, theirs, self.line is not None)
                finally:
                    os._exit(code)
            theirs.close()
            self.children.append((pid, mine))
            self.buffers[mine.fileno()] = b""

    def collect(self, event: str, seconds: float) -> list[dict]:
        """
        One C{event} message from every worker, within C{seconds}.
        """
        got: dict[int, dict] = {}
        deadline = time.monotonic() + seconds
        socks = {s.fileno(): s for _, s in self.children}
        while len(got) < len(socks):
            now = time.monotonic()
            left = deadline - now
            if left <= 0:
                raise TimeoutError(f"workers did not report {event!r} within {seconds:.0f} s")
            if self.line is not None:
                if now >= self.next_line:
                    self.show_progress(now)
                left = min(left, max(0.0, self.next_line - now))
            ready, _, _ = select.select(
                [s for fd, s in socks.items() if fd not in got], [], [], left
            )
            for s in ready:
                chunk = s.recv(1 << 20)
                if not chunk:
                    raise RuntimeError(f"a worker exited before {event!r}")
                self.buffers[s.fileno()] += chunk
                while b"\n" in self.buffers[s.fileno()]:
                    line, _, rest = self.buffers[s.fileno()].partition(b"\n")
                    self.buffers[s.fileno()] = rest
                    msg = json.loads(line)
                    if msg.get("event") == event:
                        got[s.fileno()] = msg
                    elif msg.get("event") == "progress":
                        self.latest[s.fileno()] = (msg["open"], Stats.from_dict(msg["stats"]))
        return list(got.values())

    def show_progress(self, now: float) -> None:
        """
        Rewrite the progress line with every worker's latest figures.
        """
        total, connected = Stats(), 0
        for open_count, stats in self.latest.values():
            total.merge(stats)
            connected += open_count
        total.chargers = self.options.chargers
        if self.latest and self.line is not None:
            self.line.show(total, connected, now)
        self.next_line = now + PROGRESS_INTERVAL

    def go(self) -> None:
        for _, s in self.children:
            s.sendall(b"go\n")

    def reap(self, seconds: float = 10.0) -> None:
        deadline = time.monotonic() + seconds
        for pid, s in self.children:
            s.close()
            while True:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.02)


def _run_forked(options: SimOptions, progress_to=None) -> dict[str, Any]:
    o = options
    wall0 = time.monotonic()
    samples: dict[str, Any] = {"start": _sample(o)}
    parent = _Parent(o, progress_to)
    parent.fork()
    connect_bound = ramp_deadline(o.chargers, o.connect_rate, o) + 30
    load_bound = o.duration + o.call_timeout + 30
    if o.mode == "storm":
        load_bound += ramp_deadline(o.chargers, o.storm_rate, o)
    try:
        parent.collect("ready", connect_bound)
        if o.mode == "idle" and o.settle > 0:
            time.sleep(o.settle)
        samples["booted"] = _sample(o)
        parent.go()
        done = parent.collect("done", load_bound + 10)
        samples["end"] = _sample(o)
    finally:
        if parent.line is not None:
            parent.line.end()
        parent.reap()
    total = Stats()
    for msg in done:
        total.merge(Stats.from_dict(msg["stats"]))
    return build_report(o, total, samples, time.monotonic() - wall0)


def main(argv: list[str] | None = None) -> int:
    """
    Run the simulator from the command line; 0 when every charger connected
    and every call was answered.
    """
    options, as_json = parse_args(argv)
    per_process = -(-options.chargers // options.processes)
    limit = raise_fd_limit(per_process + 256)
    if limit < per_process + 32:
        print(
            f"ocpptw-sim: warning: open-file limit {limit} is below "
            f"{per_process} connections a process",
            file=sys.stderr,
        )
    progress_to = sys.stderr if wanted(sys.stderr, as_json) else None
    if options.processes == 1:
        report = _run_here(options, progress_to)
    else:
        report = _run_forked(options, progress_to)
    print(json.dumps(report, indent=2) if as_json else format_report(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
