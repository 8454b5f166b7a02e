#!/usr/bin/env python3
"""
CPU per new connection (incl. BootNotification) of two builds, measured in
interleaved rounds on the same machine, reported as a ratio.

    .venv/bin/python bench/connect_cpu.py --before ../base --rounds 4 -n 2000
    .venv/bin/python bench/connect_cpu.py --rounds 3 -n 2000      # this build only

C{--before} is a checkout of the other build (e.g. C{git worktree add
--detach ../base <commit>}); it runs on this venv's packages with that
checkout first on C{PYTHONPATH}.  Every round starts each build fresh as
C{twistd -n ocpp} (embedded store, no pings) pinned to core 0 with a new
C{DATA_DIR}, and runs C{ocpptw-sim --idle} pinned to core 1 against it; the
order alternates every round.  The figure is the server process's CPU time
(all threads, user + system, read by the simulator from C{/proc}) from the
first connection until the last charger booted, divided by the chargers;
beside it the share of the reactor thread and of the other threads (the
database threads), read from C{/proc/PID/task} before and after the
simulator.  Extra C{KEY=VALUE} settings for the gateway: C{--env}.

With C{--callgrind} each gateway runs under valgrind's callgrind, which
counts instructions only while the simulator runs (C{callgrind_control
-i on/off}), and the figure is instructions per connection: every thread's,
hardly moved by how busy the machine is.  The gateway is then some 50
times slower, so give it few chargers at a low rate and no accept pace:

    .venv/bin/python bench/connect_cpu.py --before ../base --callgrind --rounds 1 \\
        -n 150 --connect-rate 3 --env ACCEPT_RATE=0
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
TWISTD = Path(PY).parent / "twistd"
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen, bound: float = 30.0) -> None:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not listen")


def threads_cpu(pid: int) -> dict[int, float]:
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def callgrind_collected(log: Path) -> int:
    """The instructions callgrind collected (its closing C{Collected : N} line)."""
    for line in log.read_text(errors="replace").splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1].replace(",", "").strip())
    return 0


def one_run(tree: Path | None, chargers: int, env_extra: dict[str, str], log, callgrind: bool = False,
            connect_rate: float = 0.0) -> dict:
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="connect-cpu-"))
    env = dict(os.environ)
    env.update(PORT=str(port), WEBSOCKET_HOST="127.0.0.1", DATA_DIR=str(work / "data"),
               OCPP_PING_INTERVAL="0", DRAIN_GRACE="3")
    env.update(env_extra)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    out = work / "callgrind.out"
    command = [str(TWISTD), "-n", "--pidfile=", "ocpp"]
    if callgrind:
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                   f"--log-file={work / 'valgrind.log'}", *command]
    proc = subprocess.Popen(["taskset", "-c", "0", *command],
                            cwd=tree or ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc, 300.0 if callgrind else 30.0)
        time.sleep(1.0)
        if callgrind:
            subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
        before = threads_cpu(proc.pid)
        sim = subprocess.run(
            ["taskset", "-c", "1", PY, "-m", "ocpptw.sim.cli", "--url", f"ws://127.0.0.1:{port}/ocpp/",
             "--json", "--server-pid", str(proc.pid), "-n", str(chargers), "--idle", "--duration", "0.5",
             "--connect-rate", str(connect_rate)],
            capture_output=True, text=True, timeout=900, cwd=ROOT,
        )
        after = threads_cpu(proc.pid)
        if callgrind:
            subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True, capture_output=True)
    finally:
        proc.terminate()
        try:
            proc.wait(120 if callgrind else 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        instructions = callgrind_collected(work / "valgrind.log") if callgrind else 0
        shutil.rmtree(work, ignore_errors=True)
    report = json.loads(sim.stdout)
    server = report.get("server") or {}
    main = after.get(proc.pid, 0.0) - before.get(proc.pid, 0.0)
    others = sum(v - before.get(k, 0.0) for k, v in after.items() if k != proc.pid)
    booted = report.get("connections", {}).get("ok") or chargers
    return {
        "cpu_ms": server.get("cpu_ms_per_connection"),
        "reactor_ms": round(main * 1000 / booted, 3),
        "threads_ms": round(others * 1000 / booted, 3),
        "ok": report.get("connections", {}).get("ok"),
        **({"instructions": round(instructions / booted)} if callgrind else {}),
        "connect_s": report.get("connections", {}).get("connect_seconds"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--before", default=None, help="a checkout of the build to compare with")
    ap.add_argument("--after", default=None, help="a checkout to run instead of this one (an A/A check)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-n", "--chargers", type=int, default=2000)
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for both gateways")
    ap.add_argument("--callgrind", action="store_true",
                    help="run the gateways under callgrind and report instructions per connection (every "
                         "thread, from the simulator's start to its end; slow: use -n 150 --connect-rate 3)")
    ap.add_argument("--connect-rate", type=float, default=0.0, help="the simulator's connections a second (0: all)")
    a = ap.parse_args()
    env = dict(item.split("=", 1) for item in a.env)
    builds: list[tuple[str, Path | None]] = [("after", Path(a.after).resolve() if a.after else None)]
    if a.before:
        builds.insert(0, ("before", Path(a.before).resolve()))
    results: dict[str, list[dict]] = {name: [] for name, _ in builds}
    with open(HERE / "results" / "connect-cpu.log", "ab") if (HERE / "results").is_dir() else open(os.devnull, "wb") as log:
        for rnd in range(a.rounds):
            order = builds if rnd % 2 == 0 else builds[::-1]
            for name, tree in order:
                r = one_run(tree, a.chargers, env, log, a.callgrind, a.connect_rate)
                results[name].append(r)
                print(f"round {rnd + 1} {name}: {r}", flush=True)
    summary = {}
    for name, runs in results.items():
        summary[name] = {k: statistics.median(r[k] for r in runs if r[k] is not None)
                         for k in ("cpu_ms", "reactor_ms", "threads_ms", *(("instructions",) if a.callgrind else ()))}
    if a.before:
        key = "instructions" if a.callgrind else "cpu_ms"
        ratios = [a_[key] / b[key] for a_, b in zip(results["after"], results["before"])]
        summary["after/before per round"] = [round(x, 3) for x in ratios]
        summary["after/before median"] = round(statistics.median(ratios), 3)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
