"""
Tests for C{HTTP_PORT}: probes, scrapes and the API on a listener of their
own, answered while the chargers' listen queue is held up.
"""

from __future__ import annotations

import pytest
import pytest_twisted
import treq

from ocpptw.config import ConfigError, load_config
from tests.helpers import bounded


async def _get(port: int, path: str) -> tuple[int, bytes]:
    response = await bounded(treq.get(f"http://127.0.0.1:{port}{path}", persistent=False), 5)
    return response.code, await bounded(response.content(), 5)


@pytest_twisted.ensureDeferred
async def test_probes_answer_on_their_own_port_while_chargers_wait(tmp_path):
    from twisted.internet import reactor

    from ocpptw.app.gateway import make_gateway

    settings = {
        "DATA_DIR": str(tmp_path),
        "PORT": "0",
        "HTTP_PORT": "0",
        "WEBSOCKET_HOST": "127.0.0.1",
        "DRAIN_GRACE": "0.5",
    }
    gateway = make_gateway(load_config("", settings, {}, hostname="test"), reactor)
    gateway.startService()
    await bounded(gateway.started)
    try:
        (probes,) = gateway.extra_ports
        port = probes.getHost().port
        assert port != gateway.port.getHost().port
        gateway.port.stopReading()  # a storm: nothing is accepted on PORT
        assert (await _get(port, "/health"))[0] == 200
        assert (await _get(port, "/ready"))[0] == 200
        code, body = await _get(port, "/metrics")
        assert code == 200 and b"ocpp_accept_rate" in body
        assert (await _get(port, "/ocpp/CP1"))[0] == 404  # no chargers here
        gateway.port.startReading()
    finally:
        await bounded(gateway.stopService())


def test_http_port_must_be_a_port_of_its_own():
    with pytest.raises(ConfigError, match="HTTP_PORT must differ from PORT"):
        load_config("", {"PORT": "9000", "HTTP_PORT": "9000"}, {})
    assert load_config("", {}, {}).http_port is None
    assert load_config("", {"HTTP_PORT": "9100"}, {}).http_port == 9100
