#!/usr/bin/env python3
# -*- test-case-name: tests.test_sim -*-
"""
A connection storm against the chargers already connected: does a burst of
new connection attempts raise the heartbeat latency of the residents?

    .venv/bin/python bench/storm_latency.py                        # defaults, 3 rounds
    .venv/bin/python bench/storm_latency.py --config default \\
        --config c32:HANDSHAKE_CONCURRENCY=32 --rounds 3           # compare settings
    .venv/bin/python bench/storm_latency.py --reconnect --burst 10000 --storm-window 300 \\
        --config ocpptw: --config peer:BENCH_SERVER=peer             # a reconnect storm

One round: C{twistd -n ocpp} starts fresh, pinned to core 0 (C{taskset -c
0}, as C{bench/run.py} starts it: embedded store, no pings).  This process,
pinned to core 1, connects the residents (200 chargers) and sends their
Heartbeats in open loop (200 calls/s in all, each due at a fixed instant;
latency counts from that instant).  After a warm-up and a quiet baseline
(10 s), a second process, C{ocpptw-sim} at nice 19 on core 1, makes 2,000
connection attempts at once (C{--connect-rate 0}, every charger boots;
refused attempts retry with the simulator's backoff).  The residents' p99
is taken over the quiet baseline and over the storm (from the first
connection attempt until the last new charger's BootNotification is
answered, read from the storm process's clock: both use the system's
monotonic clock), and the ratio is reported.  The median over rounds is the
figure.  Everything listens on 127.0.0.1 only and every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from run import (  # noqa: E402
    _max_files,
    ensure_node_peer,
    ensure_peer_venv,
    free_port,
    start_server,
    stop,
    wait_port,
    wait_quiet,
)

from ocpptw.sim.cli import SimOptions  # noqa: E402
from ocpptw.sim.stats import Histogram, read_process  # noqa: E402

PY = sys.executable
perf = time.perf_counter

#: Every process this run started, killed at exit if still running.
CHILDREN: list[subprocess.Popen] = []

#: Runs C{ocpptw-sim} and reports on stderr, as lines of JSON, the instant
#: its connection ramp starts and, once every charger is booted or has
#: failed, the instant the last one finished with the counts
#: (C{perf_counter} is the system's monotonic clock on Linux, so the two
#: processes' instants compare).
STORM_WRAPPER = """
import json, sys
from ocpptw.sim import ramp as sim_ramp
_init, _finish = sim_ramp.Ramp.__init__, sim_ramp.Ramp._finish
def _announce(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    print(json.dumps({"ramp_t0": self.t0}), file=sys.stderr, flush=True)
def _done(self):
    _finish(self)
    s = self.worker.stats
    print(json.dumps({"ramp_done": self.last_done, "last_open": self.last_open, "booted": s.booted,
                      "failed": s.connect_failed, "retries": s.connect_retries}), file=sys.stderr, flush=True)
sim_ramp.Ramp.__init__, sim_ramp.Ramp._finish = _announce, _done
from ocpptw.sim.cli import main
sys.exit(main(sys.argv[1:]))
"""


#: C{twistd} changed for what-if runs (C{BENCH_*} variables): no cyclic
#: garbage collection, or every slow reactor callback named in the log.
TWISTD_WHAT_IF = """
import os, sys
if os.environ.get("BENCH_GC_OFF"):  # no cyclic garbage collection (what-if: its pauses)
    import gc
    gc.disable()
if os.environ.get("BENCH_SWITCH_MS"):  # what-if: the GIL's switch interval
    sys.setswitchinterval(float(os.environ["BENCH_SWITCH_MS"]) / 1000)
slow_ms = float(os.environ.get("BENCH_SLOW_MS") or 0)
if slow_ms:  # what-if: name every reactor callback slower than this, on stderr
    import time as _time
    from twisted.internet import base, epollreactor
    def _name(fn):
        fn = getattr(fn, "__func__", fn)
        return getattr(fn, "__qualname__", repr(fn))
    _rw, _ruc = epollreactor.EPollReactor._doReadOrWrite, base.ReactorBase.runUntilCurrent
    def _doReadOrWrite(self, selectable, fd, event):
        t = _time.perf_counter()
        proto = getattr(selectable, 'protocol', None)
        proto = getattr(proto, 'wrappedProtocol', proto)
        state = getattr(proto, 'state', None)
        try:
            return _rw(self, selectable, fd, event)
        finally:
            ms = (_time.perf_counter() - t) * 1000
            if ms > slow_ms:
                print(f"slow io {ms:.1f} ms {type(selectable).__name__} {type(proto).__name__} state={state} ev={event}", file=sys.stderr, flush=True)
    import gc
    def _gc(phase, info, _t=[0.0]):
        if phase == "start":
            _t[0] = _time.perf_counter()
        elif (_time.perf_counter() - _t[0]) * 1000 > slow_ms / 2:
            print(f"slow gc gen{info['generation']} {(_time.perf_counter() - _t[0]) * 1000:.1f} ms collected={info['collected']}", file=sys.stderr, flush=True)
    gc.callbacks.append(_gc)
    _dc_init = base.DelayedCall.__init__
    def runUntilCurrent(self):
        t = _time.perf_counter()
        calls = [(_name(c[0])) for c in self.threadCallQueue] if self.threadCallQueue else []
        try:
            return _ruc(self)
        finally:
            ms = (_time.perf_counter() - t) * 1000
            if ms > slow_ms:
                print(f"slow timers {ms:.1f} ms threadcalls={calls[:5]} n={len(calls)}", file=sys.stderr, flush=True)
    epollreactor.EPollReactor._doReadOrWrite = _doReadOrWrite
    base.ReactorBase.runUntilCurrent = runUntilCurrent
from twisted.scripts.twistd import run
sys.argv[0] = "twistd"
run()
"""


def start_what_if(port: int, workdir: Path, env_extra: dict, log: Any) -> Any:
    """
    Like C{run.start_server("ocpptw", ...)}, with L{TWISTD_WHAT_IF}.
    """
    env = dict(os.environ)
    env.update(
        PORT=str(port),
        WEBSOCKET_HOST="127.0.0.1",
        DATA_DIR=str(workdir / "data"),
        OCPP_PING_INTERVAL="0",
        DRAIN_GRACE="3",
    )
    env.update({k: v for k, v in env_extra.items() if k.startswith("BENCH_")})
    env.update(env_extra)
    cmd = ["taskset", "-c", "0", PY, "-c", TWISTD_WHAT_IF, "-n", "--pidfile=", "ocpp"]
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_max_files)
    CHILDREN.append(proc)
    wait_port(port, proc)
    time.sleep(0.5)
    return proc


class SlicedLatency:
    """
    Stands in for the worker's latency histogram: one L{Histogram} per
    C{width} seconds of intended send time, so that any window can be read
    afterwards.
    """

    def __init__(self, width: float = 0.1) -> None:
        self.width = width
        self.slices: dict[int, Histogram] = {}
        self.total = 0

    def record(self, seconds: float) -> None:
        intended = perf() - seconds
        key = int(intended / self.width)
        h = self.slices.get(key)
        if h is None:
            h = self.slices[key] = Histogram()
        h.record(seconds)
        self.total += 1

    def window(self, start: float, end: float) -> Histogram:
        """
        The calls due in [C{start}, C{end}).
        """
        out = Histogram()
        for key, h in self.slices.items():
            if start <= key * self.width < end:
                out.merge(h)
        return out


def _metrics(port: int) -> dict[str, float]:
    """
    The gateway's handshake counters (C{ocpp_handshakes_total}) by outcome.
    """
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("ocpp_handshakes_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            out[outcome] = float(line.rsplit(" ", 1)[1])
    return out


async def one_round(
    reactor: Any, a: argparse.Namespace, env: dict[str, str], log: Any
) -> dict[str, Any]:
    from twisted.internet.task import deferLater

    from ocpptw.sim.worker import SimWorker

    def sleep(seconds: float) -> Any:
        return deferLater(reactor, seconds, lambda: None)

    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="bench-storm-latency-"))
    busy = wait_quiet(a.quiet_below, a.quiet_wait)
    loadavg = os.getloadavg()
    server_env = {k: v for k, v in env.items() if not k.startswith("BENCH_")}
    kind = env.get("BENCH_SERVER", "ocpptw")
    storm_core = env.get("BENCH_STORM_CORE", "1")
    what_if = {k for k in env if k.startswith("BENCH_")} - {"BENCH_SERVER", "BENCH_STORM_CORE", "BENCH_STORM_SINK"}
    if kind != "ocpptw":
        if kind == "peer":
            ensure_peer_venv()
        if kind == "ocpp-ws-io":
            ensure_node_peer()
        server = start_server(kind, port, workdir, {}, log)
    elif what_if:
        server_env.update({k: v for k, v in env.items() if k.startswith("BENCH_")})
        server = start_what_if(port, workdir, server_env, log)
    else:
        server = start_server("ocpptw", port, workdir, server_env, log)
    CHILDREN.append(server)
    result: dict[str, Any] = {
        "env": env,
        "loadavg_before": [round(x, 2) for x in loadavg],
        "machine_busy_percent_before": busy,
    }
    storm = None
    worker = None
    try:
        url = f"ws://127.0.0.1:{port}/ocpp/"
        window = a.warmup + a.baseline + a.storm_window
        options = SimOptions(
            url=url,
            chargers=a.residents,
            prefix="RES",
            mode="open",
            duration=window + a.after,
            rate=a.rate,
            mix={"heartbeat": 1},
            connect_rate=500,
        )
        worker = SimWorker(reactor, options)
        await worker.connect_all()
        if worker.stats.booted != a.residents:
            raise RuntimeError(f"only {worker.stats.booted} of {a.residents} residents booted")
        sliced, service = SlicedLatency(), SlicedLatency()
        worker.stats.latency, worker.stats.service = sliced, service
        load = worker.run_load()
        t0 = worker.load_t0
        await sleep(a.warmup + a.baseline)
        cpu0 = read_process(server.pid)
        storm_url = url
        if env.get("BENCH_STORM_SINK"):
            # What-if: the storm connects to a socket nobody accepts from, so
            # only the kernel's and the generator's part of a storm is seen.
            import socket

            sink = socket.create_server(("127.0.0.1", 0), backlog=a.burst * 2)
            storm_url = f"ws://127.0.0.1:{sink.getsockname()[1]}/ocpp/"
        # --reconnect: the storm process connects and boots its chargers
        # (itself a storm), drops them all at once and they reconnect and
        # boot again; the window measured is that second ramp
        phase = ["--storm", "--connect-rate", str(a.connect_rate)] if a.reconnect else ["--idle"]
        storm_cmd = [
            "taskset", "-c", storm_core, "nice", "-n", "19", PY, "-c", STORM_WRAPPER,
            "--url", storm_url, "-n", str(a.burst), "--prefix", "STORM", *phase,
            "--duration", str(a.storm_window + a.after + 30), "--settle", "0",
            *([] if a.reconnect else ["--connect-rate", "0"]), "--connect-concurrency", str(a.burst),
            "--connect-retries", "30", "--connect-timeout", "30", "--call-timeout", "30", "--json",
        ]  # fmt: skip
        launched = perf()
        storm = subprocess.Popen(
            storm_cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        await load
        cpu1 = read_process(server.pid)
        stats = worker.stats
        handshakes = _metrics(port)
        # The residents are done: the storm's later life (holding, closing)
        # is not measured.
        storm.terminate()
        out, err = storm.communicate(timeout=30)
        lines = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
        # the last ramp: with --reconnect the reconnection, else the only one
        ramp_t0 = [line["ramp_t0"] for line in lines if "ramp_t0" in line][-1]
        done = next((line for line in reversed(lines) if "ramp_done" in line and line["ramp_done"] >= ramp_t0), None)
        try:
            storm_report = json.loads(out.decode()) if out.strip() else None
        except ValueError:
            storm_report = None
        storm_end = done["ramp_done"] if done else perf()
        clipped = storm_end > t0 + window
        storm_end = min(storm_end, t0 + window)
        base = sliced.window(t0 + a.warmup, t0 + a.warmup + a.baseline).summary()
        during = sliced.window(ramp_t0, storm_end).summary()
        # From the actual send: the server's part, when the generator's own
        # core is busy too (latency from the intended send minus this is
        # the residents' sending delay).
        during_service = service.window(ramp_t0, storm_end).summary()
        after = sliced.window(storm_end + 1.0, t0 + window + a.after).summary()
        seconds = []
        for k in range(int(-a.baseline), int(window + a.after - a.warmup - a.baseline) + 1):
            h = sliced.window(launched + k, launched + k + 1).summary()
            seconds.append(
                {"start": k, "count": h["count"], "p50": h["p50"], "p99": h["p99"], "max": h["max"]}
            )
        result.update(
            {
                "baseline_ms": base,
                "storm_ms": during,
                "after_ms": after,
                "storm_service_ms": during_service,
                "p99_ratio": round(during["p99"] / base["p99"], 2) if base["p99"] else None,
                "storm_clipped_to_window": clipped,
                "worst_second_p99_ms": max(
                    (
                        s["p99"]
                        for s in seconds
                        if s["start"] >= ramp_t0 - launched - 1 and s["count"]
                    ),
                    default=None,
                ),
                "per_second": seconds,
                "storm_start_after_launch_s": round(ramp_t0 - launched, 3),
                "storm": {
                    "attempts": a.burst,
                    "finished_in_window": done is not None,
                    "booted": done["booted"] if done else None,
                    "failed": done["failed"] if done else None,
                    "retries": done["retries"] if done else None,
                    "seconds_to_all_open": round(done["last_open"] - ramp_t0, 3) if done else None,
                    "seconds_to_all_booted": round(storm_end - ramp_t0, 3),
                    "reconnect": bool(a.reconnect),
                    # chargers back in each second since the drop (when the storm process finished)
                    "reconnected_by_second": (storm_report or {}).get("storm", {}).get("reconnected_by_second"),
                },
                "gateway_handshakes": handshakes,
                "server_cpu_seconds_storm_window": round(
                    cpu1["cpu_seconds"] - cpu0["cpu_seconds"], 2
                )
                if cpu0 and cpu1
                else None,
                "residents": {
                    "sent": stats.sent,
                    "answered": stats.answered,
                    "timeouts": stats.timeouts,
                    "lost": stats.lost,
                    "errors": dict(stats.errors),
                    "disconnects": stats.disconnects,
                },
                "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            }
        )
        return result
    finally:
        if worker is not None:
            await worker.close_all()
        if storm is not None and storm.poll() is None:
            storm.kill()
            storm.wait(10)
        stop(server)


def parse_config(text: str) -> tuple[str, dict[str, str]]:
    name, _, rest = text.partition(":")
    env = dict(item.split("=", 1) for item in rest.split(",") if item)
    return name, env


def summarise(name: str, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rounds if "failed" not in r]

    def med(get: Any) -> float | None:
        values = [get(r) for r in ok if get(r) is not None]
        return round(statistics.median(values), 3) if values else None

    return {
        "config": name,
        "env": rounds[0]["env"] if rounds else {},
        "rounds": len(ok),
        "failed_rounds": len(rounds) - len(ok),
        "baseline_p99_ms": med(lambda r: r["baseline_ms"]["p99"]),
        "storm_p99_ms": med(lambda r: r["storm_ms"]["p99"]),
        "ratio": med(lambda r: r["p99_ratio"]),
        "baseline_p50_ms": med(lambda r: r["baseline_ms"]["p50"]),
        "storm_p50_ms": med(lambda r: r["storm_ms"]["p50"]),
        "storm_max_ms": med(lambda r: r["storm_ms"]["max"]),
        "storm_service_p99_ms": med(lambda r: r.get("storm_service_ms", {}).get("p99")),
        "worst_second_p99_ms": med(lambda r: r["worst_second_p99_ms"]),
        "clipped_rounds": sum(1 for r in ok if r["storm_clipped_to_window"]),
        "after_p99_ms": med(lambda r: r["after_ms"]["p99"]),
        "storm_seconds": med(lambda r: r["storm"]["seconds_to_all_booted"]),
        "storm_booted": med(lambda r: r["storm"]["booted"]),
        "storm_retries": med(lambda r: r["storm"]["retries"]),
        "refused_503": med(lambda r: r["gateway_handshakes"].get("throttled", 0)),
        "resident_failures": med(
            lambda r: (
                r["residents"]["timeouts"]
                + r["residents"]["lost"]
                + sum(r["residents"]["errors"].values())
            )
        ),
        "loadavg_1min": med(lambda r: r["loadavg_before"][0]),
        "machine_busy_percent": med(lambda r: r["machine_busy_percent_before"]),
    }


def table(summaries: list[dict[str, Any]]) -> str:
    head = (
        "| config | settings | baseline p99 ms | storm p99 ms | ratio | worst 1 s p99 ms | storm s | 503s "
        "| retries | resident failures | load avg |"
    )
    lines = [head, "|" + " --- |" * 11]
    for s in summaries:
        settings = ", ".join(f"{k}={v}" for k, v in s["env"].items()) or "defaults"
        lines.append(
            f"| {s['config']} | {settings} | {s['baseline_p99_ms']} | {s['storm_p99_ms']} | {s['ratio']} "
            f"| {s['worst_second_p99_ms']} | {s['storm_seconds']} | {s['refused_503']} | {s['storm_retries']} | {s['resident_failures']} "
            f"| {s['loadavg_1min']} |"
        )
    return "\n".join(lines)


async def run_all(
    reactor: Any, a: argparse.Namespace, configs: list[tuple[str, dict[str, str]]]
) -> dict:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in configs}
    with open(out / "storm-latency-servers.log", "ab") as log:
        for rnd in range(a.rounds):
            order = configs[rnd % len(configs) :] + configs[: rnd % len(configs)]
            for name, env in order:
                try:
                    r = await one_round(reactor, a, env, log)
                except Exception as e:  # one failed round must not lose the others
                    r = {"env": env, "failed": f"{type(e).__name__}: {e}"}
                    print(f"  {name} round {rnd + 1}: FAILED {r['failed']}", flush=True)
                else:
                    print(
                        f"  {name} round {rnd + 1}: baseline p99 {r['baseline_ms']['p99']} ms, "
                        f"storm p99 {r['storm_ms']['p99']} ms (x{r['p99_ratio']}), "
                        f"worst second p99 {r['worst_second_p99_ms']} ms, "
                        f"storm {r['storm']['seconds_to_all_booted']} s, "
                        f"{r['storm']['booted']}/{a.burst} booted, "
                        f"503s {r['gateway_handshakes'].get('throttled', 0):.0f}, "
                        f"load avg {r['loadavg_before'][0]}, machine {r['machine_busy_percent_before']} % busy before",
                        flush=True,
                    )
                results[name].append(r)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--residents",
        type=int,
        default=200,
        help="chargers connected before the storm (%(default)s)",
    )
    ap.add_argument(
        "--rate",
        type=float,
        default=200.0,
        help="residents' Heartbeats per second in all (%(default)s)",
    )
    ap.add_argument(
        "--burst", type=int, default=2000, help="connection attempts at once (%(default)s)"
    )
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds not measured (%(default)s)")
    ap.add_argument(
        "--baseline", type=float, default=10.0, help="quiet seconds measured (%(default)s)"
    )
    ap.add_argument(
        "--storm-window", type=float, default=40.0, help="seconds the storm may take (%(default)s)"
    )
    ap.add_argument(
        "--after", type=float, default=3.0, help="seconds measured after it (%(default)s)"
    )
    ap.add_argument("--rounds", type=int, default=3, help="rounds per configuration (%(default)s)")
    ap.add_argument(
        "--reconnect",
        action="store_true",
        help="a reconnect storm: the --burst chargers connect and boot first (at --connect-rate), "
        "then all drop at once and reconnect; the storm measured is the reconnection",
    )
    ap.add_argument(
        "--connect-rate", type=float, default=2500.0, help="--reconnect: first connections per second (%(default)s)"
    )
    ap.add_argument(
        "--config",
        action="append",
        default=[],
        help="NAME:VAR=VALUE,VAR=VALUE gateway settings to compare (default: the gateway's defaults); "
        "BENCH_GC_OFF=1 disables the cyclic garbage collector, BENCH_SLOW_MS=N "
        "logs every reactor callback and garbage collection slower than N ms to the server log, "
        "BENCH_SWITCH_MS=N sets the interpreter's thread switch interval (what-if runs); "
        "BENCH_SERVER=ceiling|peer measures bench/raw_server.py or the peer instead, "
        "BENCH_STORM_CORE=0 runs the storm on the server's core, BENCH_STORM_SINK=1 sends the "
        "storm to a socket nobody accepts from (the kernel's and the generator's part alone)",
    )
    ap.add_argument("--out", default=str(HERE / "results"), help="results directory (%(default)s)")
    ap.add_argument(
        "--quiet-below",
        type=float,
        default=10.0,
        help="before each round, wait until the machine is less busy than this %% (%(default)s)",
    )
    ap.add_argument(
        "--quiet-wait", type=float, default=30.0, help="but at most this many seconds (%(default)s)"
    )
    a = ap.parse_args()
    configs = [parse_config(c) for c in a.config] or [("default", {})]
    command = " ".join([os.path.relpath(PY, ROOT), os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {1})

    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    got: list[Any] = []
    d = ensureDeferred(run_all(reactor, a, configs))
    d.addBoth(got.append)
    d.addBoth(lambda _: reactor.stop())
    try:
        reactor.run()
    finally:
        for child in CHILDREN:
            if child.poll() is None:
                child.kill()
                child.wait(10)
    if not got or not isinstance(got[0], dict):
        if got and hasattr(got[0], "raiseException"):
            got[0].raiseException()
        return 1
    results = got[0]
    summaries = [summarise(name, results[name]) for name, _ in configs]
    text = table(summaries)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    Path(a.out, f"storm-latency-{stamp}.json").write_text(
        json.dumps({"command": command, "summaries": summaries, "rounds": results}, indent=1)
    )
    print()
    print(text)
    print(f"\nreproduce: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
