"""
Unit tests for L{ocpptw.observability.readiness}: what /ready answers for
which failing check, the metric and one log line per change, the periodic
evaluation on a L{Clock}, and the room check.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from ocpptw.observability.metrics import Metrics
from ocpptw.observability.readiness import MIN_FREE_BYTES, Readiness, room_check


class Switch:
    def __init__(self, reason: str) -> None:
        self.ok = True
        self.reason = reason

    def __call__(self) -> tuple[bool, str]:
        return self.ok, "" if self.ok else self.reason


def gauge(metrics: Metrics, state: str) -> float:
    return metrics.registry.get_sample_value("ocpp_readiness", {"state": state})


def collect_logs():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    return events, lambda: globalLogPublisher.removeObserver(events.append)


def test_a_backend_or_broker_outage_degrades_but_stays_200():
    """Degrading checks failing: 200 with status degraded and the reasons."""
    backend, broker, disk = Switch("backend circuit open: refused"), Switch("RabbitMQ down"), Switch("cannot write")
    readiness = Readiness([disk], [backend, broker])
    assert readiness.answer() == (200, {"status": "ready"})
    backend.ok = broker.ok = False
    assert readiness.answer() == (200, {"status": "degraded", "reasons": ["backend circuit open: refused", "RabbitMQ down"]})


def test_a_blocking_check_makes_it_503_with_every_reason():
    """A blocking check failing: 503 unavailable, its reason first, then the degrading ones."""
    backend, disk = Switch("backend circuit open"), Switch("cannot write to /data")
    readiness = Readiness([disk], [backend])
    disk.ok = backend.ok = False
    assert readiness.answer() == (503, {"status": "unavailable", "reasons": ["cannot write to /data", "backend circuit open"]})


def test_one_log_line_and_the_gauge_per_change():
    """Repeated answers in the same state log nothing more; each change logs once and moves the gauge."""
    metrics = Metrics()
    backend, disk = Switch("backend circuit open"), Switch("cannot write")
    readiness = Readiness([disk], [backend], observer=metrics)
    events, stop = collect_logs()
    try:
        for _ in range(3):
            readiness.answer()
        assert gauge(metrics, "ready") == 1.0 and gauge(metrics, "degraded") == 0.0
        backend.ok = False
        for _ in range(3):
            readiness.answer()
        assert gauge(metrics, "degraded") == 1.0 and gauge(metrics, "ready") == 0.0
        disk.ok = False
        readiness.answer()
        assert gauge(metrics, "unavailable") == 1.0
        disk.ok = backend.ok = True
        readiness.answer()
        readiness.answer()
    finally:
        stop()
    lines = [e["log_format"] for e in events if e.get("log_namespace", "").endswith("readiness.Readiness")]
    assert lines == [
        "ready, degraded: {reasons}",
        "not ready: {reasons}",
        "ready: serving chargers normally again",
    ]
    assert gauge(metrics, "ready") == 1.0


def test_the_state_is_evaluated_without_probes_while_running():
    """Started, it evaluates every interval on its clock (log and metric need no probe); stopped, it does not."""
    clock = Clock()
    metrics = Metrics()
    backend = Switch("backend circuit open")
    readiness = Readiness([], [backend], clock=clock, observer=metrics, interval=1.0)
    readiness.startService()
    clock.advance(1)
    assert gauge(metrics, "ready") == 1.0
    backend.ok = False
    clock.advance(1)
    assert gauge(metrics, "degraded") == 1.0
    readiness.stopService()
    assert not clock.getDelayedCalls()


def test_room_check():
    """The room check fails under the minimum, and names an unreadable path."""
    assert room_check("/x", measure=lambda p: MIN_FREE_BYTES)() == (True, "")
    ok, reason = room_check("/x", measure=lambda p: 10)()
    assert not ok and reason == "no room in /x: 10 bytes free"

    def missing(path):
        raise FileNotFoundError(2, "No such file or directory")

    ok, reason = room_check("/x", measure=missing)()
    assert not ok and "cannot inspect /x" in reason
