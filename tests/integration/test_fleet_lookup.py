"""
End to end, two gateways behind one RabbitMQ: C{GET /api/v1/chargers/{id}}
on the instance that does not hold the charger finds it on the other (with
its C{instance}); "not connected to any instance" only when none holds it;
C{?scope=fleet} lists every instance's chargers; a wrong method on an API
path is 405.
"""

from __future__ import annotations

import pytest_twisted

from tests.integration.instances_support import boot, http
from tests.integration.test_instances import _bound, backend, pair  # noqa: F401 - fixtures
from tests.wsclient import connect_charger


@pytest_twisted.ensureDeferred
async def test_a_charger_on_another_instance_is_found_with_its_instance(pair):
    a, b = pair
    on_b = await connect_charger(b.test_port, "/ocpp/FL-B")
    on_a = await connect_charger(a.test_port, "/ocpp/FL-A")
    try:
        await boot(on_b)
        await boot(on_a)
        await _bound(b, "FL-B")
        await _bound(a, "FL-A")
        status, body = await http(a.test_port, "GET", "/api/v1/chargers/FL-B")
        assert status == 200 and body["chargePointId"] == "FL-B" and body["instance"] == b.config.instance_id, body
        status, body = await http(a.test_port, "GET", "/api/v1/chargers/NOWHERE")
        assert status == 404 and body["error"]["description"] == "NOWHERE is not connected to any instance", body
        status, local = await http(a.test_port, "GET", "/api/v1/chargers")
        assert [c["chargePointId"] for c in local["chargers"]] == ["FL-A"]
        status, fleet = await http(a.test_port, "GET", "/api/v1/chargers?scope=fleet")
        ia, ib = a.config.instance_id, b.config.instance_id
        assert status == 200 and set(fleet["instances"]) >= {ia, ib}, fleet
        assert {(c["chargePointId"], c["instance"]) for c in fleet["chargers"]} >= {("FL-A", ia), ("FL-B", ib)}
    finally:
        on_a.dropConnection(abort=True)
        on_b.dropConnection(abort=True)


@pytest_twisted.ensureDeferred
async def test_wrong_methods_are_405_and_without_a_broker_the_answer_says_so(tmp_path):
    """405 with Allow on known API paths, 404 elsewhere; without RabbitMQ the lookup names its limit."""
    import treq

    from tests.fuzz.support import start_gateway, stop_gateway
    from tests.helpers import bounded

    service = await start_gateway(str(tmp_path / "data"), INSTANCE_ID="solo")
    port = service.test_port
    try:
        for method, path, allow in (
            ("POST", "/api/v1/chargers", "GET"),
            ("DELETE", "/api/v1/chargers/CP1", "GET"),
            ("GET", "/api/v1/chargers/CP1/commands/Reset", "POST"),
            ("PUT", "/api/v1/chargers/CP1/commands/Reset", "POST"),
        ):
            response = await bounded(treq.request(method, f"http://127.0.0.1:{port}{path}", persistent=False))
            body = await bounded(response.json())
            assert response.code == 405 and response.headers.getRawHeaders("allow") == [allow], (method, path)
            assert body["error"]["code"] == "MethodNotAllowed" and allow in body["error"]["description"]
        status, _ = await http(port, "PUT", "/api/v1/elsewhere")
        assert status == 404
        status, body = await http(port, "GET", "/api/v1/chargers/NOPE")
        assert status == 404 and "not connected to this instance (without RabbitMQ" in body["error"]["description"]
        status, body = await http(port, "GET", "/api/v1/chargers?scope=fleet")
        assert (status, body) == (200, {"chargers": [], "instances": ["solo"]})
    finally:
        await stop_gateway(service)
