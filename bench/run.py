#!/usr/bin/env python3
"""
Benchmarks of ocpptw side by side with two peers (an equivalent central
system on the C{ocpp} package, asyncio + websockets, and one on the node
package C{ocpp-ws-io} with strict validation) and the ceiling (a raw
Autobahn/Twisted server that answers without validating), in one run.

    .venv/bin/python bench/run.py                       # every scenario
    .venv/bin/python bench/run.py --scenarios closed100,open2000 --rounds 3
    .venv/bin/python bench/run.py --quick               # a short smoke run
    .venv/bin/python bench/run.py --docs docs/performance.md

Servers run pinned to core 0 (C{taskset -c 0}); the load generator
(C{ocpptw-sim}) and any local backend run on core 1; everything listens on
127.0.0.1 only and every scenario is bounded in time.  The servers take
turns (the order rotates every round) and each run starts a fresh server;
the figure reported is the median over rounds.  The peer gets its own venv
in C{bench/.peer-venv}, made here when missing; the node peer is installed
into C{bench/peers/ocpp-ws-io/node_modules} with C{npm install} on first use.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_report import machine, markdown, median, metrics

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
PEER_VENV = HERE / ".peer-venv"
PEER_PY = PEER_VENV / "bin" / "python"
TWISTD = Path(PY).parent / "twistd"
NODE_PEER = HERE / "peers" / "ocpp-ws-io"
SERVERS = ("ocpptw", "peer", "ocpp-ws-io", "ceiling")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

#: name -> (simulator arguments, kind, rounds, ocpptw-only environment or None, base scenario)
SCENARIOS: dict[str, tuple[list[str], str, int, dict | None, str | None]] = {
    "closed100": (["-n", "100", "--duration", "10"], "closed", 3, None, None),
    "open2000": (
        ["-n", "5000", "--rate", "2000", "--duration", "15", "--connect-rate", "2500"],
        "open",
        3,
        None,
        None,
    ),
    # with open2000, the points of throughput and p99 against offered load (bench/plots.py)
    "open1000": (
        ["-n", "5000", "--rate", "1000", "--duration", "15", "--connect-rate", "2500"],
        "open",
        1,
        None,
        None,
    ),
    "open4000": (
        ["-n", "5000", "--rate", "4000", "--duration", "15", "--connect-rate", "2500"],
        "open",
        1,
        None,
        None,
    ),
    "idle10k": (
        ["-n", "10000", "--idle", "--duration", "3", "--connect-rate", "0"],
        "idle",
        1,
        None,
        None,
    ),
    "idle20k": (
        ["-n", "20000", "--idle", "--duration", "3", "--connect-rate", "0", "--processes", "2"],
        "idle",
        1,
        None,
        None,
    ),
    "storm5k": (["-n", "5000", "--storm", "--connect-rate", "2500"], "storm", 1, None, None),
    # issue 16: idle RSS growth per booted charger at 5,000 (and 10,000: idle10k)
    "idle5k": (
        ["-n", "5000", "--idle", "--duration", "3", "--connect-rate", "0"],
        "idle",
        1,
        None,
        None,
    ),
    # issue 16: the 10,000-charger reconnect storm (bench/storm_latency.py --burst
    # 10000 measures the connected chargers' heartbeat p99 through one)
    "storm10k": (["-n", "10000", "--storm", "--connect-rate", "2500"], "storm", 1, None, None),
    # issue 14: 2.0.1 chargers with the same mix translated, each round beside
    # ocpptw with 1.6 chargers (server "ocpptw-1.6"), for the cost ratio
    "closed100-v201": (["-n", "100", "--duration", "10", "--ocpp", "2.0.1"], "closed", 3, None, None),
    "open2000-v201": (
        ["-n", "5000", "--rate", "2000", "--duration", "15", "--connect-rate", "2500", "--ocpp", "2.0.1"],
        "open",
        3,
        None,
        None,
    ),
    # issue 16: a field mix held: heartbeat every 300 s, a MeterValues every
    # 60 s from 30 % of the chargers (in all N/300 + 0.3 N/60 = N/120 calls/s),
    # sent in open loop; N from --fieldmix-chargers; WORKERS passes through
    "fieldmix": ([], "open", 1, None, None),
    "closed100-amqp": ([], "closed", 3, {"ENABLE_RABBITMQ": "true"}, "closed100"),
    "open2000-amqp": ([], "open", 1, {"ENABLE_RABBITMQ": "true"}, "open2000"),
    "closed100-rest": ([], "closed", 3, {"BACKEND_API_URL": "@backend", "BACKEND_MESSAGE_BATCH": "50"}, "closed100"),
    "open2000-rest": ([], "open", 1, {"BACKEND_API_URL": "@backend", "BACKEND_MESSAGE_BATCH": "50"}, "open2000"),
    # the contract's one request per frame (BACKEND_MESSAGE_BATCH=1, the default)
    "closed100-rest1": ([], "closed", 1, {"BACKEND_API_URL": "@backend"}, "closed100"),
}
QUICK = {
    "closed100": ["-n", "100", "--duration", "3"],
    "open2000": ["-n", "1000", "--rate", "500", "--duration", "4", "--connect-rate", "2500"],
    "open1000": ["-n", "1000", "--rate", "250", "--duration", "4", "--connect-rate", "2500"],
    "open4000": ["-n", "1000", "--rate", "1000", "--duration", "4", "--connect-rate", "2500"],
    "idle10k": ["-n", "1000", "--idle", "--duration", "1", "--connect-rate", "0"],
    "idle20k": [
        "-n",
        "2000",
        "--idle",
        "--duration",
        "1",
        "--connect-rate",
        "0",
        "--processes",
        "2",
    ],
    "storm5k": ["-n", "1000", "--storm", "--connect-rate", "2500"],
    "idle5k": ["-n", "500", "--idle", "--duration", "1", "--connect-rate", "0"],
    "storm10k": ["-n", "1000", "--storm", "--connect-rate", "2500"],
    "closed100-v201": ["-n", "100", "--duration", "3", "--ocpp", "2.0.1"],
    "open2000-v201": ["-n", "1000", "--rate", "500", "--duration", "4", "--connect-rate", "2500", "--ocpp", "2.0.1"],
}

#: 2.0.1 scenario -> its 1.6 counterpart, run by "ocpptw-1.6" in the same rounds
PAIRED = {"closed100-v201": "closed100", "open2000-v201": "open2000"}

#: scenarios that only ocpptw runs (the peers and the bare server speak 1.6 here)
OCPPTW_ONLY = set(PAIRED) | {"fieldmix"}


def fieldmix_args(chargers: int, seconds: float) -> list[str]:
    """
    The field mix as simulator arguments: heartbeat every 300 s and, from
    30 % of the chargers, MeterValues every 60 s, i.e. N/120 calls a second
    with heartbeat:meter = 2:3; over 20,000 chargers the simulator uses one
    process (and one source address 127.0.0.x) per 18,000.
    """
    rate = max(1.0, chargers / 120)
    args = ["-n", str(chargers), "--rate", f"{rate:g}", "--duration", f"{seconds:g}",
            "--mix", "heartbeat=2,meter=3", "--connect-rate", "2500", "--call-timeout", "30"]
    if chargers > 18000:
        k = -(-chargers // 18000)
        args += ["--processes", str(k), "--source-addresses", str(k)]
    return args


def _max_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def ensure_peer_venv() -> None:
    """
    Make C{bench/.peer-venv} with the C{ocpp} package and websockets.
    """
    check = [str(PEER_PY), "-c", "import ocpp, websockets"]
    if PEER_PY.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return
    print(f"setting up the peer in {PEER_VENV} ...", flush=True)
    base = getattr(sys, "_base_executable", PY)
    subprocess.run([base, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run(
        [str(PEER_PY), "-m", "pip", "install", "-q", "ocpp==2.1.0", "websockets>=13"], check=True
    )
    subprocess.run(check, check=True)


def ensure_node_peer() -> None:
    """
    Install the C{ocpp-ws-io} peer's node modules when missing; one line and
    exit 2 when C{node} or C{npm} is not on the PATH or the install fails.
    """
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        sys.exit(
            f"bench/run.py: the ocpp-ws-io peer needs {' and '.join(missing)} on the PATH "
            "(or leave it out with --servers)"
        )
    if (NODE_PEER / "node_modules" / "ocpp-ws-io" / "package.json").exists():
        return
    print(f"setting up the ocpp-ws-io peer in {NODE_PEER} ...", flush=True)
    done = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--no-package-lock"],
        cwd=NODE_PEER,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"bench/run.py: npm install of the ocpp-ws-io peer failed: {last}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port} after {seconds} s")


def stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """
    SIGTERM, then SIGKILL after C{grace} seconds (only our own child).
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def start_server(
    kind: str, port: int, workdir: Path, env_extra: dict, log, cores: str = "0"
) -> subprocess.Popen:
    env = dict(os.environ)
    if kind == "peer":
        cmd = [str(PEER_PY), str(HERE / "peer_server.py"), "--port", str(port)]
    elif kind == "ocpp-ws-io":
        cmd = ["node", str(NODE_PEER / "server.js"), "--port", str(port)]
    elif kind == "ceiling":
        cmd = [PY, str(HERE / "raw_server.py"), "--port", str(port)]
    else:  # ocpptw, or ocpptw-1.6 (the same server, 1.6 chargers beside a 2.0.1 scenario)
        cmd = [str(TWISTD), "-n", "--pidfile=", "ocpp"]
        env.update(
            PORT=str(port),
            WEBSOCKET_HOST="127.0.0.1",
            DATA_DIR=str(workdir / "data"),
            OCPP_PING_INTERVAL="0",
            DRAIN_GRACE="3",
        )
        env.update(env_extra)
    proc = subprocess.Popen(
        ["taskset", "-c", cores, *cmd],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_max_files,
    )
    wait_port(port, proc)
    time.sleep(0.5)
    return proc


def run_sim(port: int, pid: int, args: list[str], bound: float) -> dict:
    cmd = [
        "taskset",
        "-c",
        "1",
        PY,
        "-m",
        "ocpptw.sim.cli",
        "--url",
        f"ws://127.0.0.1:{port}/ocpp/",
        "--json",
        "--server-pid",
        str(pid),
        *args,
    ]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=bound, cwd=ROOT, preexec_fn=_max_files
    )
    if not done.stdout.strip():
        raise RuntimeError(
            f"simulator printed nothing (exit {done.returncode}): {done.stderr[-500:]}"
        )
    return json.loads(done.stdout)


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]


def busy_percent(seconds: float = 1.0) -> float:
    """
    How busy the whole machine is (all cores, %), over C{seconds}.
    """
    t0, i0 = _cpu_times()
    time.sleep(seconds)
    t1, i1 = _cpu_times()
    return round(100 * (1 - (i1 - i0) / max(1, t1 - t0)), 1)


def wait_quiet(limit: float, seconds: float) -> float:
    """
    Wait (at most C{seconds}) until other work uses under C{limit} % of the
    machine; the last reading.
    """
    deadline = time.monotonic() + seconds
    busy = busy_percent()
    while busy >= limit and time.monotonic() < deadline:
        busy = busy_percent()
    return busy


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _outbox_depth(port: int) -> float | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("ocpp_outbox_depth "):
            return float(line.split()[1])
    return None


def drain_outbox(port: int, pid: int, bound: float = 120.0) -> dict:
    """
    After the load, wait (at most C{bound} seconds) until the gateway's
    outbox is empty, and measure the server CPU that took: with a REST
    backend, deliveries still queued when the load stops are work the load
    caused, and leaving them out would flatter the CPU per call.
    """
    began, cpu = time.monotonic(), _cpu_seconds(pid)
    depth = _outbox_depth(port)
    while depth and time.monotonic() - began < bound:
        time.sleep(0.5)
        depth = _outbox_depth(port)
    return {"left": depth, "seconds": round(time.monotonic() - began, 2), "cpu_seconds": _cpu_seconds(pid) - cpu}


def run_scenario(
    name: str,
    servers: list[str],
    rounds: int,
    quick: bool,
    out: Path,
    log,
    quiet,
    cores: str = "0",
    fieldmix: tuple[int, float] = (2000, 60.0),
) -> dict:
    args, kind, default_rounds, env_extra, base = SCENARIOS[name]
    base_args = SCENARIOS[base][0] if base else args
    if quick:
        base_args = QUICK.get(base or name, base_args)
    if name == "fieldmix":
        base_args = fieldmix_args(*((300, 10.0) if quick else (fieldmix[0], fieldmix[1])))
    pair_args = None
    if name in PAIRED:
        pair = PAIRED[name]
        pair_args = QUICK.get(pair, SCENARIOS[pair][0]) if quick else SCENARIOS[pair][0]
    rounds = rounds or default_rounds
    servers = ["ocpptw"] if env_extra or name in OCPPTW_ONLY else servers
    if pair_args is not None:
        servers = ["ocpptw", "ocpptw-1.6"]
    results: dict[str, list[dict]] = {s: [] for s in servers}
    bound = 600.0
    backend = None
    for rnd in range(rounds):
        order = servers[rnd % len(servers) :] + servers[: rnd % len(servers)]
        for server in order:
            port = free_port()
            workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-{server}-"))
            extra = dict(env_extra or {})
            try:
                if extra.get("BACKEND_API_URL") == "@backend":
                    bport = free_port()
                    backend = subprocess.Popen(
                        [
                            "taskset",
                            "-c",
                            "1",
                            PY,
                            str(HERE / "backend_server.py"),
                            "--port",
                            str(bport),
                        ],
                        cwd=ROOT,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                    wait_port(bport, backend)
                    extra["BACKEND_API_URL"] = f"http://127.0.0.1:{bport}"
                other_busy = wait_quiet(*quiet)
                with open(out / f"{name}-{server}-{rnd}.log", "wb") as slog:
                    proc = start_server(server, port, workdir, extra, slog, cores)
                    try:
                        load = Path("/proc/loadavg").read_text().split()[0]
                        sim_args = pair_args if server == "ocpptw-1.6" else base_args
                        report = run_sim(port, proc.pid, sim_args, bound)
                        if server.startswith("ocpptw") and kind in ("closed", "open"):
                            report["outbox_drain"] = drain_outbox(port, proc.pid)
                    finally:
                        stop(proc)
                report["loadavg_before"] = float(load)
                report["other_busy_percent_before"] = other_busy
                report["server_exit"] = proc.returncode
                results[server].append(report)
                m = metrics(kind, report, sim_args)
                print(
                    f"  {name} round {rnd + 1} {server} (machine {other_busy} % busy before): "
                    + ", ".join(f"{k} {v}" for k, v in m.items()),
                    flush=True,
                )
            except Exception as e:  # one failed run must not lose the others
                print(f"  {name} round {rnd + 1} {server}: FAILED {e}", flush=True)
                results[server].append({"failed": str(e)})
            finally:
                if backend is not None:
                    stop(backend, 5)
                    backend = None
    if pair_args is not None:
        args_of = {"ocpptw": base_args, "ocpptw-1.6": pair_args}
    table: dict[str, dict[str, float | None]] = {}
    for server, reports in results.items():
        used = args_of[server] if pair_args is not None else base_args
        ok = [metrics(kind, r, used) for r in reports if "failed" not in r]
        keys = list(ok[0]) if ok else []
        table[server] = {key: median([m[key] for m in ok]) for key in keys}
    return {
        "kind": kind,
        "args": base_args,
        "pair_args": pair_args,
        "env": env_extra,
        "base": base,
        "rounds": rounds,
        "medians": table,
        "reports": results,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated, NAME:ROUNDS for a scenario's own rounds (%(default)s)",
    )
    ap.add_argument("--servers", default=",".join(SERVERS), help="comma-separated (%(default)s)")
    ap.add_argument(
        "--rounds", type=int, default=0, help="rounds per scenario (0: each scenario's default)"
    )
    ap.add_argument(
        "--quick", action="store_true", help="short, small versions of the base scenarios"
    )
    ap.add_argument("--out", default=str(HERE / "results"), help="results directory (%(default)s)")
    ap.add_argument(
        "--quiet-below",
        type=float,
        default=10.0,
        help="before each run, wait until the machine is less busy than this %% (%(default)s)",
    )
    ap.add_argument(
        "--quiet-wait", type=float, default=60.0, help="but at most this many seconds (%(default)s)"
    )
    ap.add_argument(
        "--docs", default=None, help="rewrite the results section of this markdown file"
    )
    ap.add_argument(
        "--server-cores",
        default="0",
        help="cores the servers are pinned to (taskset -c; %(default)s); with WORKERS=N in the "
        "environment (passed through to ocpptw), e.g. 0,1",
    )
    ap.add_argument(
        "--fieldmix-chargers", type=int, default=2000, help="chargers of the fieldmix scenario (%(default)s)"
    )
    ap.add_argument(
        "--fieldmix-seconds", type=float, default=60.0, help="seconds of fieldmix load (%(default)s)"
    )
    a = ap.parse_args()
    # NAME:ROUNDS sets one scenario's rounds
    wanted = [n.partition(":") for n in a.scenarios.split(",") if n]
    names = [n for n, _, _ in wanted]
    own_rounds = {n: int(r) for n, _, r in wanted if r}
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    servers = [s for s in a.servers.split(",") if s]
    command = " ".join(
        [
            os.path.relpath(PY, ROOT) if PY.startswith(str(ROOT)) else PY,
            os.path.relpath(__file__, ROOT),
            *sys.argv[1:],
        ]
    )
    unknown = [s for s in servers if s not in SERVERS]
    if unknown:
        ap.error(f"unknown servers {unknown}; known: {', '.join(SERVERS)}")
    if "peer" in servers:
        ensure_peer_venv()
    if "ocpp-ws-io" in servers:
        ensure_node_peer()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    info = machine()
    results = {}
    with open(out / "support.log", "ab") as log:
        for name in names:
            print(f"{name}:", flush=True)
            results[name] = run_scenario(
                name,
                servers,
                own_rounds.get(name, a.rounds),
                a.quick,
                out,
                log,
                (a.quiet_below, a.quiet_wait),
                a.server_cores,
                (a.fieldmix_chargers, a.fieldmix_seconds),
            )
    text = markdown(results, command, info, started)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    (out / f"run-{stamp}.json").write_text(
        json.dumps({"machine": info, "command": command, "results": results})
    )
    (out / f"run-{stamp}.md").write_text(text)
    if a.docs:
        doc = Path(a.docs)
        body = doc.read_text() if doc.exists() else f"{BEGIN}\n{END}\n"
        head, _, rest = body.partition(BEGIN)
        _, _, tail = rest.partition(END)
        doc.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")
    print()
    print(text)
    print(f"reproduce: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
