"""
End to end: what C{GET /ready} answers while the backend is down (200
degraded: the load balancer keeps sending chargers) and while DATA_DIR is
full (503: this instance cannot keep its promises), with the
C{ocpp_readiness} metric and one log line per change.
"""

from __future__ import annotations

import json
import re

import pytest_twisted
import treq
from twisted.logger import globalLogPublisher

from ocpptw.testing.backend import FakeBackend
from tests.fuzz.support import WireCharger, fresh_id, start_gateway, stop_gateway
from tests.fuzz.test_bounds import _Disk
from tests.helpers import bounded, until


async def _get(port: int, path: str) -> tuple[int, bytes]:
    response = await bounded(treq.get(f"http://127.0.0.1:{port}{path}", persistent=False))
    return response.code, await bounded(response.content())


async def _ready(port: int) -> tuple[int, dict]:
    code, body = await _get(port, "/ready")
    return code, json.loads(body)


async def _gauge(port: int, state: str) -> float:
    _, text = await _get(port, "/metrics")
    match = re.search(rb'^ocpp_readiness\{state="%s"\} (\S+)$' % state.encode(), text, re.M)
    assert match, text[:2000]
    return float(match.group(1))


def _readiness_lines():
    lines: list[str] = []

    def observer(event: dict) -> None:
        if event.get("log_namespace", "").endswith("readiness.Readiness"):
            lines.append(event["log_format"])

    globalLogPublisher.addObserver(observer)
    return lines, lambda: globalLogPublisher.removeObserver(observer)


@pytest_twisted.ensureDeferred
async def test_backend_down_is_degraded_not_unready(tmp_path, fail_on_logged_errors):
    """Backend refusing connections: /ready stays 200 "degraded" naming the backend, chargers are served, metric and one log line each way."""
    from twisted.internet import reactor

    backend = FakeBackend()
    _, url = backend.listen(reactor)
    lines, stop_logs = _readiness_lines()
    service = await start_gateway(str(tmp_path / "data"), BACKEND_API_URL=url, BACKEND_CIRCUIT_COOLDOWN="5", OUTBOX_RETRY_MAX="1")
    try:
        port = service.test_port
        assert await _ready(port) == (200, {"status": "ready"})
        wire = WireCharger(port, "READY-BACKEND")
        await wire.connect(boot=True)
        await bounded(backend.refuse())
        for _ in range(6):  # enough failures in a row to open the circuit
            answers = await wire.exchange(json.dumps([2, fresh_id(), "Authorize", {"idTag": "TAG1"}]))
            assert answers[0][0] == 3, answers  # answered from the cache or Invalid, never an error
        code, body = await _ready(port)
        assert code == 200 and body["status"] == "degraded", body
        assert any(r.startswith("backend circuit open") for r in body["reasons"]), body
        assert await _gauge(port, "degraded") == 1.0 and await _gauge(port, "ready") == 0.0
        # chargers are still served: a status goes to the outbox and is answered
        answers = await wire.exchange(json.dumps([2, fresh_id(), "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}]))
        assert answers[0][0] == 3, answers
        backend.resume()
        await until(lambda: service.outbox.depth() == 0, 20)
        for _ in range(200):
            code, body = await _ready(port)
            if body == {"status": "ready"}:
                break
            await wire.exchange(json.dumps([2, fresh_id(), "Authorize", {"idTag": "TAG1"}]))
        assert (code, body) == (200, {"status": "ready"})
        assert await _gauge(port, "ready") == 1.0
    finally:
        stop_logs()
        await stop_gateway(service)
        await bounded(backend.stop())
    assert lines.count("ready, degraded: {reasons}") == 1, lines
    assert lines.count("ready: serving chargers normally again") == 1, lines
    assert "not ready: {reasons}" not in lines, lines
    # the backend adapter logs its outage as an error; that is expected here
    fail_on_logged_errors[:] = [e for e in fail_on_logged_errors if "circuit" not in str(e.get("log_format", "")) + str(e.get("reason", ""))]


@pytest_twisted.ensureDeferred
async def test_disk_full_is_unready_then_ready_again(tmp_path, fail_on_logged_errors):
    """DATA_DIR full (a real 16 MiB tmpfs when the tests run as root): /ready 503 with the reason, metric and log line; freed: 200 again unaided."""
    disk = _Disk(tmp_path / "data")
    lines, stop_logs = _readiness_lines()
    service = None
    try:
        service = await start_gateway(str(disk.path))
        disk.attach(service)
        port = service.test_port
        assert await _ready(port) == (200, {"status": "ready"})
        wire = WireCharger(port, "READY-DISK")
        await wire.connect(boot=True)
        disk.fill()
        await wire.exchange(json.dumps([2, fresh_id(), "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}]))
        code, body = await _ready(port)
        assert code == 503 and body["status"] == "unavailable", body
        assert any("cannot write" in r or "no room" in r for r in body["reasons"]), body
        if disk.mounted:
            assert any(r.startswith("no room in ") for r in body["reasons"]), body
        assert await _gauge(port, "unavailable") == 1.0
        disk.free()
        for _ in range(200):
            code, body = await _ready(port)
            if code == 200:
                break
        assert (code, body) == (200, {"status": "ready"})
        assert await _gauge(port, "ready") == 1.0
        fail_on_logged_errors[:] = [e for e in fail_on_logged_errors if "refuses writes" not in e.get("log_format", "")]
    finally:
        stop_logs()
        if service is not None:
            await stop_gateway(service)
        disk.unmount()
    assert lines.count("not ready: {reasons}") >= 1 and lines[-1] == "ready: serving chargers normally again", lines
