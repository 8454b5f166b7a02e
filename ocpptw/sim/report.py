# -*- test-case-name: tests.test_sim -*-
"""
The simulator's report: one JSON-ready mapping built from the merged
L{Stats} and the server readings, and its plain-text rendering.
"""

from __future__ import annotations

from typing import Any

from ocpptw.sim.stats import Stats


def _server(samples: dict[str, Any], stats: Stats, pid: int | None) -> dict[str, Any] | None:
    start, booted, end = samples.get("start"), samples.get("booted"), samples.get("end")
    if pid is None or not start:
        return None
    out: dict[str, Any] = {"pid": pid, "rss_kb_start": start["rss_kb"]}
    if booted:
        out["rss_kb_booted"] = booted["rss_kb"]
        held = stats.booted or stats.connected
        if held:
            out["rss_per_connection_kb"] = round((booted["rss_kb"] - start["rss_kb"]) / held, 2)
        cpu = booted["cpu_seconds"] - start["cpu_seconds"]
        out["cpu_seconds_connect"] = round(cpu, 3)
        if stats.connected:
            out["cpu_ms_per_connection"] = round(cpu * 1000 / stats.connected, 3)
    if booted and end:
        out["rss_kb_end"] = end["rss_kb"]
        cpu = end["cpu_seconds"] - booted["cpu_seconds"]
        out["cpu_seconds_load"] = round(cpu, 3)
        if stats.phase_seconds:
            out["cpu_percent_load"] = round(100 * cpu / stats.phase_seconds, 1)
        if stats.latency.total:
            out["cpu_us_per_call"] = round(cpu * 1e6 / stats.latency.total, 1)
    elif not booted and not end:
        out["note"] = "server process not readable"
    return out


def build_report(
    options, stats: Stats, samples: dict[str, Any], wall_seconds: float
) -> dict[str, Any]:
    """
    The report of one run (the shape printed by C{ocpptw-sim --json}).
    """
    load_calls = stats.latency.total
    per_second = (
        load_calls / stats.load_seconds
        if stats.load_seconds and options.mode in ("closed", "open")
        else 0
    )
    report: dict[str, Any] = {
        "url": options.url,
        "mode": options.mode,
        "processes": options.processes,
        "chargers": stats.chargers,
        "connections": {
            "ok": stats.connected,
            "failed": stats.connect_failed,
            "booted": stats.booted,
            "boot_not_accepted": stats.boot_rejected,
            "retries": stats.connect_retries,
            "failures": dict(stats.connect_failures),
            "connect_seconds": stats.connect_seconds,
            "boot_storm_seconds": stats.boot_storm_seconds,
            "first_call_ms": stats.boot_latency.summary(),
        },
        "calls": {
            "sent": stats.sent,
            "answered": stats.answered,
            "results": stats.results,
            "load_answered": load_calls,
            "per_second": round(per_second, 1),
            "load_seconds": stats.load_seconds,
            "errors": dict(stats.errors),
            "timeouts": stats.timeouts,
            "unsent": stats.unsent,
            "lost": stats.lost,
            "disconnects": stats.disconnects,
            "by_action": dict(stats.by_action),
        },
        "latency_ms": stats.latency.summary(),
        "service_ms": stats.service.summary(),
        "server_calls": {"count": stats.server_calls, "by_action": dict(stats.server_actions)},
        "sim": {
            "cpu_seconds": round(stats.cpu_seconds_total, 3),
            "cpu_seconds_load": round(stats.cpu_seconds_load, 3),
            "cpu_percent_load": round(100 * stats.cpu_seconds_load / stats.phase_seconds, 1)
            if stats.phase_seconds
            else 0.0,
        },
        "wall_seconds": round(wall_seconds, 3),
    }
    if options.mode == "open":
        report["offered_rate"] = options.rate
    if options.mode == "storm":
        report["storm"] = {
            "reconnected": stats.reconnected,
            "failed": stats.reconnect_failed,
            "seconds": stats.storm_seconds,
            "first_call": options.storm_call,
            # chargers back (first call answered) in each whole second since the drop
            "reconnected_by_second": {
                str(k): v for k, v in sorted(stats.storm_timeline.items())
            },
        }
    server = _server(samples, stats, options.server_pid)
    if server is not None:
        report["server"] = server
    unanswered = stats.timeouts + stats.lost + stats.unsent
    connect_ok = stats.connect_failed == 0 and stats.boot_rejected == 0
    storm_ok = stats.reconnect_failed == 0
    report["ok"] = bool(connect_ok and storm_ok and unanswered == 0 and stats.disconnects == 0)
    report["problems"] = problems(stats)
    return report


def problems(stats: Stats) -> list[str]:
    """
    Why a run is INCOMPLETE, one short phrase per cause, the most telling
    failure reasons named.
    """
    out = []
    if stats.connect_failed:
        top = sorted(stats.connect_failures.items(), key=lambda item: -item[1])[:3]
        out.append(f"{stats.connect_failed} connections failed (" + ", ".join(f"{n}x {why}" for why, n in top) + ")")
    if stats.boot_rejected:
        out.append(f"{stats.boot_rejected} boots not accepted")
    if stats.reconnect_failed:
        out.append(f"{stats.reconnect_failed} reconnects failed")
    for count, what in ((stats.timeouts, "calls timed out"), (stats.lost, "calls lost with their connection"),
                        (stats.unsent, "calls never sent"), (stats.disconnects, "unexpected disconnects")):
        if count:
            out.append(f"{count} {what}")
    return out


def format_report(r: dict[str, Any]) -> str:
    """
    The report for a person.
    """
    c, k, lat, svc = r["connections"], r["calls"], r["latency_ms"], r["service_ms"]
    lines = [
        f"ocpptw-sim {r['mode']} loop against {r['url']} ({r['chargers']} chargers, "
        f"{r['processes']} process(es), {r['wall_seconds']} s)"
        if r["mode"] in ("closed", "open")
        else f"ocpptw-sim {r['mode']} against {r['url']} ({r['chargers']} chargers, "
        f"{r['processes']} process(es), {r['wall_seconds']} s)",
        f"connections: {c['ok']} ok, {c['failed']} failed, {c['booted']} booted, "
        f"{c['boot_not_accepted']} not accepted; connect {c['connect_seconds']} s, "
        f"boot storm {c['boot_storm_seconds']} s",
    ]
    if c["failures"]:
        lines.append(
            f"connect failures ({c['retries']} retries): "
            + ", ".join(f"{n}x {why}" for why, n in c["failures"].items())
        )
    if r["mode"] in ("closed", "open"):
        lines += [
            f"calls: {k['load_answered']} answered in {k['load_seconds']} s "
            f"= {k['per_second']} calls/s"
            + (f" (offered {r['offered_rate']}/s)" if "offered_rate" in r else ""),
            f"latency ms (from intended send): p50 {lat['p50']} p90 {lat['p90']} p99 {lat['p99']} "
            f"p99.9 {lat['p999']} max {lat['max']}",
            f"service ms (from actual send):   p50 {svc['p50']} p90 {svc['p90']} "
            f"p99 {svc['p99']} max {svc['max']}",
        ]
    lines.append(
        f"CALLERRORs: {k['errors'] or 'none'}; timeouts {k['timeouts']}; lost {k['lost']}; "
        f"unsent {k['unsent']}; "
        f"disconnects {k['disconnects']}; server calls {r['server_calls']['count']}"
    )
    if "storm" in r:
        s = r["storm"]
        lines.append(
            f"storm: {s['reconnected']} reconnected, {s['failed']} failed, in {s['seconds']} s"
        )
    lines.append(
        f"simulator CPU: {r['sim']['cpu_seconds']} s in all, "
        f"{r['sim']['cpu_percent_load']} % during load"
    )
    if "server" in r:
        s = r["server"]
        lines.append(
            "server: "
            + ", ".join(f"{key} {value}" for key, value in s.items() if key != "pid")
            + f" (pid {s['pid']})"
        )
    lines.append("result: " + ("OK" if r["ok"] else "INCOMPLETE: " + ("; ".join(r.get("problems") or []) or "see above")))
    return "\n".join(lines)
