"""
Tests for L{ocpptw.observability.metrics}: what the gateway's hooks record, read back
through the Prometheus text format as a scraper would.
"""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families

from ocpptw.observability.metrics import Metrics, known_actions


def scrape(metrics: Metrics) -> dict[str, dict[tuple, float]]:
    """
    Parse C{/metrics} into {sample name: {sorted label items: value}}.
    """
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples[name][tuple(sorted(labels.items()))]


def test_registries_are_independent():
    """Two Metrics never share counts (tests build many)."""
    first, second = Metrics(process=False), Metrics(process=False)
    first.handshake("accepted")
    assert value(scrape(first), "ocpp_handshakes_total", outcome="accepted") == 1
    assert "ocpp_handshakes_total" not in scrape(second) or not scrape(second)["ocpp_handshakes_total"]


def test_chargers_and_handshakes():
    """The connected gauge and handshake outcomes are exported."""
    metrics = Metrics(process=False)
    metrics.connected(3)
    metrics.handshake("accepted")
    metrics.handshake("accepted")
    metrics.handshake("unauthorized")
    samples = scrape(metrics)
    assert value(samples, "ocpp_connected_chargers") == 3
    assert value(samples, "ocpp_handshakes_total", outcome="accepted") == 2
    assert value(samples, "ocpp_handshakes_total", outcome="unauthorized") == 1


def test_frames_by_direction_type_and_action():
    """Frames count by direction, message type and action; unknown actions fold into other."""
    metrics = Metrics(process=False)
    metrics.frame("in", "CALL", "Heartbeat")
    metrics.frame("in", "CALL", "Heartbeat")
    metrics.frame("out", "CALLRESULT", "Heartbeat")
    metrics.frame("out", "CALLRESULT", None)
    for i in range(50):
        metrics.frame("in", "CALL", f"Made-Up-{i}")
    samples = scrape(metrics)
    frames = "ocpp_frames_total"
    assert value(samples, frames, direction="in", message_type="CALL", action="Heartbeat") == 2
    assert value(samples, frames, direction="out", message_type="CALLRESULT", action="Heartbeat") == 1
    assert value(samples, frames, direction="out", message_type="CALLRESULT", action="") == 1
    assert value(samples, frames, direction="in", message_type="CALL", action="other") == 50
    assert len(samples[frames]) == 4


def test_call_errors_and_violations():
    """CALLERRORs count by OCPP 1.6 code; other codes and actions are bounded."""
    metrics = Metrics(process=False)
    metrics.call_error("FormationViolation")
    metrics.call_error("FormatViolation")  # a 2.0.1 code from a confused charger
    metrics.violation("MeterValues")
    metrics.violation("NoSuchAction")
    samples = scrape(metrics)
    assert value(samples, "ocpp_call_errors_total", code="FormationViolation") == 1
    assert value(samples, "ocpp_call_errors_total", code="other") == 1
    assert value(samples, "ocpp_schema_violations_total", action="MeterValues") == 1
    assert value(samples, "ocpp_schema_violations_total", action="other") == 1


def test_latency_histograms():
    """Handle times and outbound round trips land in their buckets."""
    metrics = Metrics(process=False)
    metrics.handled("Authorize", 0.003)
    metrics.handled("Authorize", 0.2)
    metrics.outbound_call("Reset", "result", 0.4)
    metrics.outbound_call("Reset", "timeout")
    samples = scrape(metrics)
    assert value(samples, "ocpp_call_handle_seconds_count", action="Authorize") == 2
    assert value(samples, "ocpp_call_handle_seconds_bucket", action="Authorize", le="0.005") == 1
    assert math.isclose(value(samples, "ocpp_call_handle_seconds_sum", action="Authorize"), 0.203)
    assert value(samples, "ocpp_outbound_call_seconds_count", action="Reset") == 1
    assert value(samples, "ocpp_outbound_calls_total", action="Reset", outcome="result") == 1
    assert value(samples, "ocpp_outbound_calls_total", action="Reset", outcome="timeout") == 1


def test_backend_observer_hook():
    """request(endpoint, outcome, seconds) records attempts and latency."""
    metrics = Metrics(process=False)
    metrics.request("authorize", "ok", 0.02)
    metrics.request("authorize", "unavailable", 5.0)
    metrics.request("authorize", "circuit_open", 0.0)
    samples = scrape(metrics)
    assert value(samples, "ocpp_backend_requests_total", endpoint="authorize", outcome="ok") == 1
    assert value(samples, "ocpp_backend_requests_total", endpoint="authorize", outcome="unavailable") == 1
    assert value(samples, "ocpp_backend_requests_total", endpoint="authorize", outcome="circuit_open") == 1
    assert value(samples, "ocpp_backend_request_seconds_count", endpoint="authorize") == 2


def test_broker_hooks_and_connected_gauge():
    """Publish confirms, failures and the connection state are exported."""
    metrics = Metrics(process=False)
    metrics.broker_published(0.004)
    metrics.broker_failed("connection lost")
    state = {"ok": False}
    metrics.watch_broker(lambda: (state["ok"], "down"))
    samples = scrape(metrics)
    assert value(samples, "ocpp_broker_publish_seconds_count") == 1
    assert value(samples, "ocpp_broker_publish_failures_total") == 1
    assert value(samples, "ocpp_broker_connected") == 0
    state["ok"] = True
    assert value(scrape(metrics), "ocpp_broker_connected") == 1


def test_outbox_gauges_read_at_scrape_time():
    """Outbox depth, oldest age and dead letters are read when scraped; a broken reader gives NaN."""

    class Outbox:
        size = 0

        def depth(self):
            return self.size

        def oldest_age(self):
            return 12.5

        def dead_letters(self):
            raise RuntimeError("database gone")

    outbox = Outbox()
    metrics = Metrics(process=False)
    metrics.watch_outbox(outbox)
    outbox.size = 7
    samples = scrape(metrics)
    assert value(samples, "ocpp_outbox_depth") == 7
    assert value(samples, "ocpp_outbox_oldest_age_seconds") == 12.5
    assert math.isnan(value(samples, "ocpp_outbox_dead_letters"))
    metrics.delivered("refund", 0.1)
    metrics.failed("refund", RuntimeError("503"))
    metrics.parked("refund")
    samples = scrape(metrics)
    assert value(samples, "ocpp_outbox_deliveries_total", operation="refund", outcome="delivered") == 1
    assert value(samples, "ocpp_outbox_deliveries_total", operation="refund", outcome="failed") == 1
    assert value(samples, "ocpp_dead_letters_total", operation="refund") == 1


def test_process_metrics_and_version():
    """The process collectors and the version info are on by default."""
    from ocpptw import __version__

    samples = scrape(Metrics())
    assert "process_resident_memory_bytes" in samples
    assert value(samples, "ocpp_gateway_info", version=__version__) == 1


def test_known_actions_are_the_ocpp_16_actions():
    """The action label set comes from the shipped schemas."""
    actions = known_actions()
    assert {"BootNotification", "Heartbeat", "RemoteStartTransaction", "SignedUpdateFirmware"} <= actions
    assert not any(a.endswith("Response") for a in actions)


def test_frame_hook_is_cheap():
    """A frame hook costs microseconds, not tens of them (measured loosely, CPU time)."""
    import time

    metrics = Metrics(process=False)
    metrics.frame("in", "CALL", "MeterValues")
    start = time.process_time()
    for _ in range(20_000):
        metrics.frame("in", "CALL", "MeterValues")
    per_call = (time.process_time() - start) / 20_000
    assert per_call < 20e-6, per_call
