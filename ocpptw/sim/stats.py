# -*- test-case-name: tests.test_sim -*-
"""
Counters and latency histograms for the charger simulator, mergeable across
worker processes, and readings of a server process from C{/proc}.

Latencies are kept in microseconds in a log-linear histogram (exact below
1,024 µs, then ten significant bits, so every reading is within 0.2 %):
merging two workers is adding counts, and nothing grows with the number of
calls.
"""

from __future__ import annotations

import os
import resource
from collections import Counter
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class Histogram:
    """
    Latencies in microseconds, bucketed to ten significant bits.
    """

    __slots__ = ("counts", "total", "sum_us", "max_us")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0
        self.sum_us = 0
        self.max_us = 0

    def record(self, seconds: float) -> None:
        """
        Count one latency given in seconds.
        """
        us = int(seconds * 1e6 + 0.5)
        if us < 0:
            us = 0
        shift = us.bit_length() - 10
        key = (us >> shift) << shift if shift > 0 else us
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        self.total += 1
        self.sum_us += us
        if us > self.max_us:
            self.max_us = us

    def merge(self, other: "Histogram") -> None:
        """
        Add C{other}'s counts to this one.
        """
        for key, count in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + count
        self.total += other.total
        self.sum_us += other.sum_us
        self.max_us = max(self.max_us, other.max_us)

    def percentile(self, fraction: float) -> float:
        """
        The latency in milliseconds below which C{fraction} of the calls fall.
        """
        if not self.total:
            return 0.0
        rank = max(1, int(round(fraction * self.total + 0.4999999)))
        seen = 0
        for key in sorted(self.counts):
            seen += self.counts[key]
            if seen >= rank:
                return key / 1000.0
        return self.max_us / 1000.0

    def summary(self) -> dict[str, float]:
        """
        p50, p90, p99, p99.9, max and mean in milliseconds.
        """
        return {
            "count": self.total,
            "p50": round(self.percentile(0.50), 3),
            "p90": round(self.percentile(0.90), 3),
            "p99": round(self.percentile(0.99), 3),
            "p999": round(self.percentile(0.999), 3),
            "max": round(self.max_us / 1000.0, 3),
            "mean": round(self.sum_us / self.total / 1000.0, 3) if self.total else 0.0,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": {str(k): v for k, v in self.counts.items()},
            "total": self.total,
            "sum_us": self.sum_us,
            "max_us": self.max_us,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Histogram":
        h = cls()
        h.counts = {int(k): v for k, v in data["counts"].items()}
        h.total = data["total"]
        h.sum_us = data["sum_us"]
        h.max_us = data["max_us"]
        return h


class Stats:
    """
    What one worker saw: connections, calls, errors, latencies, its own CPU.
    """

    #: integer counters, summed on merge
    COUNTERS = (
        "chargers",
        "connected",
        "connect_failed",
        "booted",
        "boot_rejected",
        "sent",
        "answered",
        "results",
        "timeouts",
        "lost",
        "disconnects",
        "server_calls",
        "reconnected",
        "reconnect_failed",
        "connect_retries",
        "unsent",
    )
    #: durations in seconds, the largest wins on merge (workers run side by side)
    SPANS = (
        "connect_seconds",
        "boot_storm_seconds",
        "load_seconds",
        "phase_seconds",
        "storm_seconds",
    )
    #: CPU seconds, summed on merge
    CPU = ("cpu_seconds_total", "cpu_seconds_load")

    # the attributes set from the tuples above, declared for the type checker
    chargers: int
    connected: int
    connect_failed: int
    booted: int
    boot_rejected: int
    sent: int
    answered: int
    results: int
    timeouts: int
    lost: int
    disconnects: int
    server_calls: int
    reconnected: int
    reconnect_failed: int
    connect_retries: int
    unsent: int
    connect_seconds: float
    boot_storm_seconds: float
    load_seconds: float
    phase_seconds: float
    storm_seconds: float
    cpu_seconds_total: float
    cpu_seconds_load: float

    def __init__(self) -> None:
        for name in self.COUNTERS:
            setattr(self, name, 0)
        for name in self.SPANS + self.CPU:
            setattr(self, name, 0.0)
        self.errors: Counter[str] = Counter()
        self.connect_failures: Counter[str] = Counter()
        self.by_action: Counter[str] = Counter()
        self.server_actions: Counter[str] = Counter()
        #: reconnect storm: chargers whose first call was answered, by whole
        #: seconds since the storm began (as long as the storm: bounded)
        self.storm_timeline: Counter[int] = Counter()
        self.latency = Histogram()
        self.service = Histogram()
        self.boot_latency = Histogram()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {n: getattr(self, n) for n in self.COUNTERS + self.SPANS + self.CPU}
        for name in ("errors", "connect_failures", "by_action", "server_actions"):
            out[name] = dict(getattr(self, name))
        out["storm_timeline"] = {str(k): v for k, v in self.storm_timeline.items()}
        for name in ("latency", "service", "boot_latency"):
            out[name] = getattr(self, name).to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Stats":
        s = cls()
        for name in cls.COUNTERS + cls.SPANS + cls.CPU:
            setattr(s, name, data[name])
        for name in ("errors", "connect_failures", "by_action", "server_actions"):
            setattr(s, name, Counter(data[name]))
        s.storm_timeline = Counter({int(k): v for k, v in data.get("storm_timeline", {}).items()})
        for name in ("latency", "service", "boot_latency"):
            setattr(s, name, Histogram.from_dict(data[name]))
        return s

    def merge(self, other: "Stats") -> None:
        """
        Fold another worker's figures into these.
        """
        for name in self.COUNTERS + self.CPU:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in self.SPANS:
            setattr(self, name, max(getattr(self, name), getattr(other, name)))
        for name in ("errors", "connect_failures", "by_action", "server_actions"):
            getattr(self, name).update(getattr(other, name))
        self.storm_timeline.update(other.storm_timeline)
        for name in ("latency", "service", "boot_latency"):
            getattr(self, name).merge(getattr(other, name))


def own_cpu_seconds() -> float:
    """
    User plus system CPU seconds this process has used.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def read_process(pid: int) -> dict[str, float] | None:
    """
    A process's resident memory (kB) and CPU seconds (user + system, all
    threads) from C{/proc}, or C{None} when it cannot be read.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS
    rss = 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
            break
    return {"rss_kb": rss, "cpu_seconds": cpu}


def raise_fd_limit(wanted: int) -> int:
    """
    Raise this process's soft limit on open files towards C{wanted} (never
    above the hard limit); the limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft
