#!/usr/bin/env python3
"""
Pictures of a benchmark run, drawn from its JSON (matplotlib: install the
C{bench} extra, C{pip install -e '.[bench]'}).

    .venv/bin/python bench/plots.py bench/results/run-STAMP.json --out docs/img/
    .venv/bin/python bench/plots.py RUN.json --storm STORM-LATENCY.json --out DIR
    .venv/bin/python bench/plots.py --self-check

Writes into C{--out}:

  - C{load.png}: answered calls/s and p99 latency against offered calls/s
    (every open-loop scenario of the run), one line per server (ocpptw, the
    peers, the bare server); each server's closed-loop calls/s is a dashed
    line for reference;
  - C{storm.png} (when the run has a reconnect storm, or C{--storm} is
    given): chargers booted again against seconds since the drop, one line
    per server, and, from a C{bench/storm_latency.py} JSON, the p99 latency
    of the chargers connected through a storm, per second.

C{--self-check} draws both from a small synthetic run into a temporary
directory and checks that the files are PNG pictures of a sensible size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

#: drawing order and colours, the same in every picture
SERVERS = {
    "ocpptw": "#1f77b4",
    "peer": "#2ca02c",
    "ocpp-ws-io": "#d62728",
    "ceiling": "#7f7f7f",
}
LABELS = {
    "ocpptw": "ocpptw",
    "peer": "peer (ocpp, websockets)",
    "ocpp-ws-io": "ocpp-ws-io (node)",
    "ceiling": "bare Autobahn",
}


def _arg(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def _ok(reports: list[dict]) -> list[dict]:
    return [r for r in reports if "failed" not in r]


def _plain(res: dict) -> bool:
    """
    Whether a scenario is the plain 1.6 mix (not 2.0.1, not the field mix),
    so that its points line up with the other servers'.
    """
    return not res.get("pair_args") and "--mix" not in res["args"] and "--ocpp" not in res["args"]


def load_points(run: dict) -> dict[str, list[tuple[float, float, float]]]:
    """
    Per server, (offered calls/s, answered calls/s, p99 ms) of every
    open-loop scenario without a backend, medians over rounds, by offered rate.
    """
    points: dict[str, list[tuple[float, float, float]]] = {}
    for res in run["results"].values():
        if res["kind"] != "open" or res.get("env") or not _plain(res):
            continue
        rate = _arg(res["args"], "--rate")
        if rate is None:
            continue
        for server, reports in res["reports"].items():
            ok = _ok(reports)
            if not ok:
                continue
            answered = statistics.median(r["calls"]["per_second"] for r in ok)
            p99 = statistics.median(r["latency_ms"]["p99"] for r in ok)
            points.setdefault(server, []).append((float(rate), answered, p99))
    return {s: sorted(p) for s, p in points.items()}


def closed_rates(run: dict) -> dict[str, float]:
    """
    Per server, the median calls/s of the closed-loop scenario without a backend.
    """
    out: dict[str, float] = {}
    for res in run["results"].values():
        if res["kind"] != "closed" or res.get("env") or not _plain(res):
            continue
        for server, reports in res["reports"].items():
            ok = _ok(reports)
            if ok:
                out[server] = statistics.median(r["calls"]["per_second"] for r in ok)
    return out


def storm_timelines(run: dict) -> dict[str, list[tuple[int, int]]]:
    """
    Per server, (second since the drop, chargers booted again so far) of the
    run's largest reconnect storm (the first round that has a timeline).
    """
    out: dict[str, list[tuple[int, int]]] = {}
    storms = [res for res in run["results"].values() if res["kind"] == "storm"]
    storms.sort(key=lambda res: -int(_arg(res["args"], "-n") or 0))
    for res in storms[:1]:
        for server, reports in res["reports"].items():
            for r in _ok(reports):
                by_second = r.get("storm", {}).get("reconnected_by_second")
                if not by_second or server in out:
                    continue
                total, line = 0, [(0, 0)]
                for second in range(max(int(k) for k in by_second) + 1):
                    total += by_second.get(str(second), 0)
                    line.append((second + 1, total))
                out[server] = line
    return out


def resident_p99(storm: dict) -> dict[str, tuple[list[tuple[int, float]], tuple[float, float]]]:
    """
    From a C{bench/storm_latency.py} JSON: per configuration, the connected
    chargers' p99 per second (seconds since the storm began) of its first
    good round, and the storm's span (start, end) on that axis.
    """
    out = {}
    for name, rounds in storm.get("rounds", {}).items():
        for r in _ok(rounds):
            start = r.get("storm_start_after_launch_s", 0.0)
            line = [(s["start"] - start, s["p99"]) for s in r.get("per_second", []) if s["count"]]
            if line:
                span = (0.0, r.get("storm", {}).get("seconds_to_all_booted") or 0.0)
                out[name] = (line, span)
                break
    return out


def _servers(names) -> list[str]:
    known = [s for s in SERVERS if s in names]
    return known + sorted(set(names) - set(known))


def draw_load(run: dict, path: Path) -> bool:
    """
    Write the load picture; False when the run has no open-loop scenario.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points, closed = load_points(run), closed_rates(run)
    if not points:
        return False
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for server in _servers(points):
        colour = SERVERS.get(server)
        xs = [p[0] for p in points[server]]
        label = LABELS.get(server, server)
        top.plot(xs, [p[1] for p in points[server]], "o-", color=colour, label=label)
        bottom.plot(xs, [p[2] for p in points[server]], "o-", color=colour, label=label)
        if server in closed:
            top.axhline(closed[server], color=colour, linestyle="--", linewidth=0.8)
    top.set_ylabel("answered calls/s")
    top.set_title("Throughput and p99 against offered load (dashed: closed-loop calls/s)")
    top.grid(True, alpha=0.3)
    top.legend(loc="upper left", fontsize="small")
    bottom.set_ylabel("p99 latency, ms (from intended send)")
    bottom.set_xlabel("offered calls/s (open loop)")
    _log_ms(bottom)
    bottom.grid(True, which="both", alpha=0.3)
    fig.text(0.01, 0.005, _caption(run), fontsize="x-small", alpha=0.7)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def draw_storm(run: dict | None, storm: dict | None, path: Path) -> bool:
    """
    Write the storm picture; False when there is nothing to draw.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    booted = storm_timelines(run) if run else {}
    residents = resident_p99(storm) if storm else {}
    if not booted and not residents:
        return False
    rows = [x for x in (booted, residents) if x]
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 3.6 * len(rows)), sharex=True, squeeze=False)
    axes = [a[0] for a in axes]
    ax = axes[0]
    if booted:
        for server in _servers(booted):
            xs, ys = zip(*booted[server])
            ax.plot(xs, ys, color=SERVERS.get(server), label=LABELS.get(server, server))
        ax.set_ylabel("chargers booted again")
        ax.set_title("Reconnect storm: every charger dropped at 0 s")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
        ax = axes[-1]
    if residents:
        for name, (line, span) in residents.items():
            xs, ys = zip(*line)
            ax.plot(xs, ys, ".-", label=f"connected chargers' p99 ({name})")
            ax.axvspan(span[0], span[1], alpha=0.1)
        ax.set_ylabel("p99 latency, ms")
        _log_ms(ax)
        ax.set_title("Chargers already connected, through a connection storm (shaded)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
    axes[-1].set_xlabel("seconds since the storm began")
    if run:
        fig.text(0.01, 0.005, _caption(run), fontsize="x-small", alpha=0.7)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _log_ms(ax) -> None:
    """
    A logarithmic axis of milliseconds labelled in plain numbers.
    """
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())


def _caption(run: dict) -> str:
    m = run.get("machine", {})
    return f"{m.get('cores', '?')} cores, {m.get('cpu', '?')}; {run.get('command', '')}"[:160]


def draw(run: dict | None, storm: dict | None, out: Path) -> list[Path]:
    """
    Draw every picture the inputs allow into C{out}; the files written.
    """
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if run is not None and draw_load(run, out / "load.png"):
        written.append(out / "load.png")
    if draw_storm(run, storm, out / "storm.png"):
        written.append(out / "storm.png")
    return written


def _report(kind: str, args: list[str], **figures) -> dict:
    """
    A small simulator report with just what the pictures read.
    """
    r = {
        "calls": {"per_second": figures.get("rate", 0.0)},
        "latency_ms": {"p99": figures.get("p99", 0.0)},
    }
    if kind == "storm":
        r["storm"] = {"reconnected_by_second": figures["timeline"]}
    return r


def _spread(total: int, per_second: int) -> dict[str, int]:
    """
    C{total} chargers back at C{per_second}, as a storm timeline.
    """
    out, second = {}, 0
    while total > 0:
        out[str(second)] = min(total, per_second)
        total -= out[str(second)]
        second += 1
    return out


def synthetic() -> tuple[dict, dict]:
    """
    A small made-up run and storm-latency result (shapes as the runners write them).
    """
    results = {}
    speed = {"ocpptw": 5000, "peer": 1700, "ocpp-ws-io": 16000, "ceiling": 14000}
    results["closed100"] = {
        "kind": "closed",
        "args": ["-n", "100"],
        "env": None,
        "reports": {s: [_report("closed", [], rate=v, p99=3.0)] for s, v in speed.items()},
    }
    for rate in (500, 2000, 4000):
        results[f"open{rate}"] = {
            "kind": "open",
            "args": ["-n", "1000", "--rate", str(rate), "--duration", "4"],
            "env": None,
            "reports": {
                s: [_report("open", [], rate=min(rate, v), p99=2 + 50 * max(0, rate - v) / rate)]
                for s, v in speed.items()
            },
        }
    results["storm5k"] = {
        "kind": "storm",
        "args": ["-n", "1000", "--storm"],
        "env": None,
        "reports": {
            s: [_report("storm", [], timeline=_spread(1000, v // 20))] for s, v in speed.items()
        },
    }
    run = {
        "machine": {"cores": "2", "cpu": "synthetic"},
        "command": "bench/plots.py --self-check",
        "results": results,
    }
    per_second = [
        {"start": k, "count": 200, "p50": 1.0, "p99": 23.0 if 0 <= k < 5 else 3.0, "max": 30.0}
        for k in range(-10, 15)
    ]
    one_round = {
        "storm_start_after_launch_s": 0.0,
        "per_second": per_second,
        "storm": {"seconds_to_all_booted": 5.0},
    }
    storm = {"rounds": {"default": [one_round]}}
    return run, storm


def self_check() -> int:
    """
    Draw from the synthetic run into a temporary directory and check the files.
    """
    run, storm = synthetic()
    with tempfile.TemporaryDirectory(prefix="bench-plots-") as tmp:
        written = draw(run, storm, Path(tmp))
        names = sorted(p.name for p in written)
        if names != ["load.png", "storm.png"]:
            print(f"plots self-check: FAILED, wrote {names}")
            return 1
        for p in written:
            data = p.read_bytes()
            if not data.startswith(b"\x89PNG\r\n\x1a\n") or len(data) < 10_000:
                print(f"plots self-check: FAILED, {p.name} is no sensible PNG ({len(data)} bytes)")
                return 1
        load = load_points(run)
        if [p[0] for p in load["ocpptw"]] != [500.0, 2000.0, 4000.0]:
            print(f"plots self-check: FAILED, offered rates {load['ocpptw']}")
            return 1
        if storm_timelines(run)["ocpptw"][-1][1] != 1000:
            print("plots self-check: FAILED, the storm timeline does not reach every charger")
            return 1
    print("plots self-check: ok (load.png and storm.png drawn from a synthetic run)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", nargs="?", help="a bench/run.py JSON (bench/results/run-*.json)")
    ap.add_argument("--storm", help="a bench/storm_latency.py JSON: connected chargers' p99")
    ap.add_argument("--out", default="bench/results/img", help="PNG directory (%(default)s)")
    ap.add_argument("--self-check", action="store_true", help="draw from a synthetic run and check")
    a = ap.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("bench/plots.py: matplotlib is missing; pip install -e '.[bench]'", file=sys.stderr)
        return 2
    if a.self_check:
        return self_check()
    if not a.run and not a.storm:
        ap.error("give a run's JSON (or --storm, or --self-check)")
    try:
        run = json.loads(Path(a.run).read_text()) if a.run else None
        storm = json.loads(Path(a.storm).read_text()) if a.storm else None
    except (OSError, ValueError) as e:
        print(f"bench/plots.py: cannot read the JSON: {e}", file=sys.stderr)
        return 2
    written = draw(run, storm, Path(a.out))
    if not written:
        print("bench/plots.py: nothing to draw (no open loop, no storm)", file=sys.stderr)
        return 1
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
