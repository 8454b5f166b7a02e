"""
Figures and tables of the benchmark runner (L{run}): what each scenario is
judged on, medians over rounds, the machine, and the markdown table.
"""

from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path


def metrics(kind: str, r: dict, args: list[str]) -> dict[str, float | None]:
    """
    The figures a scenario is judged on, from one simulator report.
    """
    c, k, lat, srv = r["connections"], r["calls"], r["latency_ms"], r.get("server", {})
    unanswered = k["timeouts"] + k["lost"] + k.get("unsent", 0) + sum(k["errors"].values())
    drain = r.get("outbox_drain") or {}
    with_drain = None
    if drain and srv.get("cpu_us_per_call") and srv.get("cpu_seconds_load"):
        with_drain = round(srv["cpu_us_per_call"] * (1 + drain["cpu_seconds"] / srv["cpu_seconds_load"]), 1)
    if kind == "closed":
        return {
            "calls/s ↑": k["per_second"],
            "server CPU µs/call ↓": srv.get("cpu_us_per_call"),
            "… with the outbox drained after ↓": with_drain,
            "outbox left after 120 s ↓": drain.get("left"),
            "latency p50 ms ↓": lat["p50"],
            "latency p99 ms ↓": lat["p99"],
            "errors + timeouts ↓": unanswered,
            "simulator CPU %": r["sim"]["cpu_percent_load"],
        }
    if kind == "open":
        rate, duration = float(_arg(args, "--rate")), float(_arg(args, "--duration"))
        return {
            "answered % of offered ↑": round(100 * k["load_answered"] / (rate * duration), 2),
            "latency p50 ms ↓": lat["p50"],
            "latency p99 ms ↓": lat["p99"],
            "latency max ms ↓": lat["max"],
            "errors + timeouts ↓": unanswered,
            "server CPU % ↓": srv.get("cpu_percent_load"),
            "server CPU µs/call ↓": srv.get("cpu_us_per_call"),
            "outbox left after 120 s ↓": drain.get("left"),
            "boot storm s ↓": c["boot_storm_seconds"],
            "simulator CPU %": r["sim"]["cpu_percent_load"],
        }
    if kind == "idle":
        storm = c["boot_storm_seconds"] or None
        return {
            "connections held ↑": c["booted"],
            "connections failed ↓": c["failed"],
            "boot storm s ↓": c["boot_storm_seconds"],
            "connections/s ↑": round(c["booted"] / storm, 1) if storm else None,
            "RSS kB/connection ↓": srv.get("rss_per_connection_kb"),
            "server CPU ms/connection ↓": srv.get("cpu_ms_per_connection"),
            "server RSS MB ↓": round(srv.get("rss_kb_booted", 0) / 1024, 1),
        }
    s = r.get("storm", {})
    secs = s.get("seconds") or None
    return {
        "reconnected ↑": s.get("reconnected"),
        "reconnect failed ↓": s.get("failed"),
        "storm s ↓": s.get("seconds"),
        "reconnects/s ↑": round(s.get("reconnected", 0) / secs, 1) if secs else None,
    }


def _arg(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def machine() -> dict[str, str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{int(mem) / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def _ratio(a, b) -> str:
    if a is None or b in (None, 0):
        return "–"
    return f"{a / b:.2f}"


def markdown(results: dict, command: str, info: dict, started: str) -> str:
    lines = [
        f"Run of {started} UTC; command: `{command}`",
        "",
        f"Machine: {info['cores']} cores, {info['cpu']}, {info['memory']}, Linux {info['kernel']}, "
        f"Python {info['python']}. Servers on core 0, load generator on core 1.",
        "",
    ]
    present = {server for res in results.values() for server in res["medians"]}
    others = [s for s in ("peer", "ocpp-ws-io", "ceiling") if s in present] or ["peer", "ceiling"]
    lines.append("| scenario | metric | ocpptw | " + " | ".join(others) + " | "
                 + " | ".join(f"ocpptw/{s}" for s in others) + " |")
    lines.append("| --- | --- | ---: | " + " | ".join("---:" for _ in others * 2) + " |")
    for name, res in results.items():
        med = res["medians"]
        base = results.get(res["base"], {}).get("medians", {}) if res["base"] else med
        busy = [r.get("other_busy_percent_before") for rs in res["reports"].values() for r in rs]
        busy = [b for b in busy if b is not None]
        label = f"{name} ({res['rounds']} round{'s' if res['rounds'] > 1 else ''}"
        label += f"; machine ≤ {max(busy):g} % busy before)" if busy else ")"
        ours = med.get("ocpptw", {})
        keys = list(ours) or next((list(base[s]) for s in others if base.get(s)), [])
        cell = lambda v: "–" if v is None else f"{v:g}"  # noqa: E731
        for key in keys:
            o = ours.get(key)
            theirs = [base.get(s, {}).get(key) for s in others]
            lines.append(
                f"| {label} | {key} | {cell(o) if ours else 'pending'} | "
                + " | ".join(cell(v) for v in theirs)
                + " | "
                + " | ".join(_ratio(o, v) for v in theirs)
                + " |"
            )
            label = ""
    lines += _versions(results) + _rest(results)
    return "\n".join(lines) + "\n"


def _versions(results: dict) -> list[str]:
    """
    2.0.1 chargers against 1.6 ones on ocpptw, in the same rounds.
    """
    paired = {n: r for n, r in results.items() if r.get("pair_args") and "ocpptw-1.6" in r["medians"]}
    if not paired:
        return []
    out = ["", "2.0.1 against 1.6 (ocpptw, the same mix translated, each round both):", "",
           "| scenario | metric | 1.6 | 2.0.1 | 2.0.1 / 1.6 |", "| --- | --- | ---: | ---: | ---: |"]
    for name, res in paired.items():
        v16, v201 = res["medians"]["ocpptw-1.6"], res["medians"].get("ocpptw", {})
        label = name
        for key in v16:
            if key.startswith(("simulator", "outbox", "…")):
                continue
            cell = lambda v: "–" if v is None else f"{v:g}"  # noqa: E731
            out.append(f"| {label} | {key} | {cell(v16[key])} | {cell(v201.get(key))} | {_ratio(v201.get(key), v16[key])} |")
            label = ""
    return out


def _rest(results: dict) -> list[str]:
    """
    REST-backed closed100 as a share of the embedded store's, in the same run.
    """
    base = results.get("closed100", {}).get("medians", {}).get("ocpptw", {})
    rows = []
    for name in ("closed100-rest", "closed100-rest1"):
        rest = results.get(name, {}).get("medians", {}).get("ocpptw", {})
        if rest and base.get("calls/s ↑"):
            calls = _ratio(rest.get("calls/s ↑"), base.get("calls/s ↑"))
            cpu = _ratio(base.get("server CPU µs/call ↓"), rest.get("… with the outbox drained after ↓"))
            rows.append(f"| {name} | {calls} | {cpu} |")
    if not rows:
        return []
    return ["", "REST-backed against the embedded store (closed100, ocpptw):", "",
            "| scenario | calls/s, REST / embedded | CPU per call, embedded / REST (outbox drained) |",
            "| --- | ---: | ---: |", *rows]
