#!/usr/bin/env python3
# -*- test-case-name: tests.test_soak_short -*-
"""
Soak: a C{twistd -n ocpp} subprocess under a steady, realistic load for a
long time, sampled every minute, so that slow leaks show.

    .venv/bin/python bench/soak.py                          # 30 min, 2,000 chargers
    .venv/bin/python bench/soak.py --minutes 60 --chargers 5000 --rate 500
    .venv/bin/python bench/soak.py --minutes 2 --interval 10 --chargers 200

The simulated chargers (C{ocpptw.sim.cli}, open loop, the default action mix:
heartbeats, status, meter values, whole charging sessions) connect once and
stay connected for the whole run.  Every C{--interval} seconds the server's
resident memory, open file descriptors (C{/proc/PID/fd}), connected
chargers, outbox depth and the percentiles of its answer time (from the
C{ocpp_call_handle_seconds} histogram of C{/metrics}, over the interval) are
recorded.  When the load ends the chargers leave and the descriptors must
come back to the baseline.

Growth is flagged from a least-squares fit over the second half of the
samples (the first half includes warm-up: connections, caches, the
allocator's arenas): RSS growing by more than C{--rss-limit} MiB per hour,
or descriptors by more than C{--fd-limit} per hour.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
TWISTD = Path(PY).parent / "twistd"
HISTOGRAM = "ocpp_call_handle_seconds"
PAGE = os.sysconf("SC_PAGE_SIZE")


def _max_files() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of C{pid} in MiB."""
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return round(pages * PAGE / 2**20, 1)


def open_fds(pid: int) -> int:
    """Open file descriptors of C{pid}."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_targets(pid: int) -> list[str]:
    """What each open descriptor of C{pid} points at (sockets as C{socket:[inode]})."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return sorted(out)


def scrape(port: int, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
        return r.read().decode()


def parse_metrics(text: str) -> dict:
    """
    The figures the soak follows from a C{/metrics} page: connected chargers,
    outbox depth, oldest outbox age, and the answer-time histogram summed
    over actions (C{le} -> cumulative count).
    """
    out = {"connected": 0.0, "outbox_depth": 0.0, "outbox_age": 0.0, "buckets": {}, "errors": 0.0}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name, _, value = line.rpartition(" ")
        try:
            number = float(value)
        except ValueError:
            continue
        if name == "ocpp_connected_chargers":
            out["connected"] = number
        elif name == "ocpp_outbox_depth":
            out["outbox_depth"] = number
        elif name == "ocpp_outbox_oldest_age_seconds":
            out["outbox_age"] = number
        elif name.startswith("ocpp_call_errors_total"):
            out["errors"] += number
        elif name.startswith(HISTOGRAM + "_bucket{"):
            le = name.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            out["buckets"][bound] = out["buckets"].get(bound, 0.0) + number
    return out


def percentiles(before: dict, after: dict, points=(0.5, 0.99)) -> dict:
    """
    Percentiles (ms, the upper bound of the bucket that holds them) of the
    answers given between two histogram readings, and their count.
    """
    bounds = sorted(after)
    delta = [after[b] - before.get(b, 0.0) for b in bounds]
    total = delta[-1] if delta else 0.0
    result = {"count": int(total)}
    for p in points:
        key = f"p{int(p * 100)}"
        result[key] = None
        if total <= 0:
            continue
        for bound, cumulative in zip(bounds, delta):
            if cumulative >= p * total:
                result[key] = None if bound == float("inf") else round(bound * 1000, 1)
                break
    return result


def slope_per_hour(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of C{ys} over C{xs} (seconds), per hour."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx * 3600


def wait_for(predicate, seconds: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def start_server(port: int, workdir: Path, log, env_extra: dict | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCPP_", "BACKEND_", "RABBITMQ_", "ENABLE_"))}
    env.update(
        PORT=str(port), WEBSOCKET_HOST="127.0.0.1", DATA_DIR=str(workdir / "data"), DRAIN_GRACE="5", LOG_FORMAT="json"
    )
    env.update(env_extra or {})
    proc = subprocess.Popen(
        [str(TWISTD), "-n", "--pidfile=", "ocpp"],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_max_files,
    )

    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    if not wait_for(listening, 30.0):
        proc.kill()
        raise RuntimeError("the server did not answer /health within 30 s")
    return proc


def stop_server(proc: subprocess.Popen, grace: float = 30.0) -> int:
    """SIGTERM our own child, SIGKILL after C{grace}; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def sample(pid: int, port: int, started: float, previous: dict | None) -> dict:
    # descriptors first: the scrape's own connection must not be counted
    fds, rss = open_fds(pid), rss_mib(pid)
    metrics = parse_metrics(scrape(port))
    latency = percentiles(previous["buckets"] if previous else {}, metrics["buckets"])
    return {
        "t": round(time.monotonic() - started, 1),
        "rss_mib": rss,
        "fds": fds,
        "connected": int(metrics["connected"]),
        "outbox_depth": int(metrics["outbox_depth"]),
        "outbox_age_s": round(metrics["outbox_age"], 1),
        "answers": latency["count"],
        "p50_ms": latency["p50"],
        "p99_ms": latency["p99"],
        "call_errors": int(metrics["errors"]),
        "buckets": metrics["buckets"],
    }


def run_soak(
    seconds: float = 1800.0,
    interval: float = 60.0,
    chargers: int = 2000,
    rate: float = 300.0,
    processes: int = 2,
    connect_rate: float = 500.0,
    workdir: Path | None = None,
    env_extra: dict | None = None,
    progress=None,
    mix: str | None = None,
) -> dict:
    """
    Run one soak and return its report: C{baseline}, C{samples}, C{after}
    (the server once the chargers left), C{sim} (the simulator's own report),
    C{fits} and C{flags}, C{server_exit}, C{crashed}.
    """
    workdir = Path(workdir or tempfile.mkdtemp(prefix="soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    report: dict = {
        "chargers": chargers,
        "rate": rate,
        "seconds": seconds,
        "interval": interval,
        "mix": mix or "simulator default (heartbeat=1,status=1,meter=6,session=2)",
        "workdir": str(workdir),
    }
    with open(workdir / "server.log", "wb") as log:
        proc = start_server(port, workdir, log, env_extra)
        try:
            started = time.monotonic()
            baseline = sample(proc.pid, port, started, None)
            report["baseline"] = {k: v for k, v in baseline.items() if k != "buckets"}
            base_targets = fd_targets(proc.pid)
            sim_cmd = [
                PY, "-m", "ocpptw.sim.cli", "--url", f"ws://127.0.0.1:{port}/ocpp/", "--json",
                "-n", str(chargers), "--prefix", "SOAK", "--rate", str(rate), "--duration", str(seconds),
                "--connect-rate", str(connect_rate), "--processes", str(processes), "--call-timeout", "30",
            ] + (["--mix", mix] if mix else [])  # fmt: skip
            sim_out = open(workdir / "sim.json", "w+")
            sim_err = open(workdir / "sim.err", "w+")
            sim = subprocess.Popen(sim_cmd, cwd=ROOT, stdout=sim_out, stderr=sim_err, preexec_fn=_max_files)
            samples: list[dict] = []
            previous = baseline
            sim_bound = seconds + 120 + chargers / max(connect_rate, 1)
            # Samples describe the load: from the moment every charger is
            # connected (the simulator's load runs `seconds` from a little
            # after that) until a second before the load can end, never
            # while the simulator is still connecting or already leaving.
            steady_from: float | None = None
            next_at = sample_until = 0.0
            while sim.poll() is None and time.monotonic() - started < sim_bound:
                if proc.poll() is not None:
                    break
                now = time.monotonic()
                if steady_from is None:
                    if parse_metrics(scrape(port))["connected"] >= chargers:
                        steady_from = now
                        next_at, sample_until = now + interval, now + seconds - 1.0
                elif next_at <= sample_until and now >= next_at:
                    row = sample(proc.pid, port, started, previous)
                    previous = row
                    samples.append(row)
                    next_at += interval
                    if progress:
                        progress(row)
                time.sleep(0.2)
            if sim.poll() is None:
                sim.kill()
            sim.wait(10)
            sim_out.seek(0)
            text = sim_out.read()
            report["sim"] = json.loads(text) if text.strip() else {"stderr": sim_err.read()[-2000:]}
            sim_out.close()
            sim_err.close()
            report["crashed"] = proc.poll() is not None
            if not report["crashed"]:
                wait_for(lambda: parse_metrics(scrape(port))["connected"] == 0, 60.0, 0.5)
                # closing handshakes and their records finish a little after the count drops
                wait_for(lambda: open_fds(proc.pid) <= baseline["fds"], 30.0, 0.5)
                after = sample(proc.pid, port, started, previous)
                report["after"] = {k: v for k, v in after.items() if k != "buckets"}
                now_targets = fd_targets(proc.pid)  # (after the scrape: may list its socket)
                report["fds_gained"] = sorted(set(now_targets) - set(base_targets))
                report["fds_released"] = sorted(set(base_targets) - set(now_targets))
        finally:
            report["server_exit"] = stop_server(proc)
    report["samples"] = [{k: v for k, v in row.items() if k != "buckets"} for row in samples]
    report["fits"], report["flags"] = judge(report)
    return report


def judge(report: dict, rss_limit: float = 20.0, fd_limit: float = 50.0) -> tuple[dict, list[str]]:
    """
    Fit RSS and descriptors over the second half of the samples and list
    what looks wrong.
    """
    rows = report["samples"]
    half = rows[len(rows) // 2 :]
    xs = [r["t"] for r in half]
    fits = {
        "rss_mib_per_hour": round(slope_per_hour(xs, [r["rss_mib"] for r in half]), 1),
        "fds_per_hour": round(slope_per_hour(xs, [r["fds"] for r in half]), 1),
        "outbox_per_hour": round(slope_per_hour(xs, [r["outbox_depth"] for r in half]), 1),
    }
    flags = []
    if report.get("crashed"):
        flags.append(f"server exited during the run (code {report.get('server_exit')})")
    if len(half) >= 3:
        if fits["rss_mib_per_hour"] > rss_limit:
            flags.append(f"RSS grows {fits['rss_mib_per_hour']} MiB/h over the second half")
        if fits["fds_per_hour"] > fd_limit:
            flags.append(f"descriptors grow {fits['fds_per_hour']}/h over the second half")
    after = report.get("after")
    if after is not None and after["fds"] > report["baseline"]["fds"]:
        flags.append(f"descriptors after the chargers left: {after['fds']} > baseline {report['baseline']['fds']}")
    if after is not None and after["connected"] != 0:
        flags.append(f"{after['connected']} chargers still counted as connected after they left")
    return fits, flags


def table(report: dict) -> str:
    """The samples as a markdown table, then the fits and flags."""
    cols = ["t", "rss_mib", "fds", "connected", "outbox_depth", "outbox_age_s", "answers", "p50_ms", "p99_ms"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    rows = [dict(report["baseline"], t="base")] + report["samples"]
    if report.get("after"):
        rows.append(dict(report["after"], t="after"))
    for row in rows:
        lines.append("| " + " | ".join("-" if row.get(c) is None else str(row.get(c)) for c in cols) + " |")
    sim = report.get("sim", {})
    lat = sim.get("latency_ms", {})
    calls = sim.get("calls", {})
    lines.append("")
    lines.append(
        f"simulator: {calls.get('load_answered', '?')} answered, errors {calls.get('errors', '?')}, "
        f"timeouts {calls.get('timeouts', '?')}, lost {calls.get('lost', '?')}, "
        f"disconnects {calls.get('disconnects', '?')}; latency p50 {lat.get('p50', '?')} ms, "
        f"p99 {lat.get('p99', '?')} ms, max {lat.get('max', '?')} ms"
    )
    lines.append(f"fits over the second half: {report['fits']}")
    lines.append("flags: " + ("; ".join(report["flags"]) if report["flags"] else "none"))
    lines.append(f"server exit code: {report['server_exit']}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="length of the load (%(default)s)")
    ap.add_argument("--interval", type=float, default=60.0, help="seconds between samples (%(default)s)")
    ap.add_argument("--chargers", type=int, default=2000, help="simulated chargers (%(default)s)")
    ap.add_argument("--rate", type=float, default=300.0, help="calls per second in all (%(default)s)")
    ap.add_argument("--processes", type=int, default=2, help="simulator processes (%(default)s)")
    ap.add_argument("--connect-rate", type=float, default=500.0, help="connections per second (%(default)s)")
    ap.add_argument("--mix", default=None, help="the simulator's action weights (its default: heartbeat=1,status=1,meter=6,session=2)")
    ap.add_argument("--workdir", default=None, help="data, logs and the report go here (a new temp dir)")
    ap.add_argument("--json", default=None, help="also write the report to this file")
    a = ap.parse_args()
    print(f"soak: {a.chargers} chargers, {a.rate} calls/s, {a.minutes} min, sample every {a.interval} s", flush=True)

    def progress(row: dict) -> None:
        print(
            f"  t={row['t']}s rss={row['rss_mib']}MiB fds={row['fds']} connected={row['connected']} "
            f"outbox={row['outbox_depth']} answers={row['answers']} p50={row['p50_ms']}ms p99={row['p99_ms']}ms",
            flush=True,
        )

    report = run_soak(
        seconds=a.minutes * 60,
        interval=a.interval,
        chargers=a.chargers,
        rate=a.rate,
        processes=a.processes,
        connect_rate=a.connect_rate,
        workdir=Path(a.workdir) if a.workdir else None,
        progress=progress,
        mix=a.mix,
    )
    text = table(report)
    print(text)
    out = Path(a.json) if a.json else Path(report["workdir"]) / "soak.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"report: {out}")
    return 1 if report["flags"] else 0


if __name__ == "__main__":
    sys.exit(main())
