"""
Security profiles through the whole gateway, with real TLS handshakes on
loopback and certificates made in the test: wss works; profiles 1, 2 and 3
accept the right charger and refuse a wrong or missing password, plain ws
under profile 2, a certificate for another identity and one from another CA.
"""

from __future__ import annotations

import base64
import socket

import pytest
import pytest_twisted
from twisted.internet import ssl

from ocpptw.admin import main as admin
from ocpptw.app.gateway import make_gateway
from ocpptw.config import load_config
from tests.helpers import bounded
from tests.transport.certs import issue, make_ca
from tests.wsclient import connect_charger

KEY = "a-long-charger-key-0123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def pki(tmp_path):
    ca = make_ca("Charger CA")
    server = issue(ca, "localhost", kind="rsa", server=True)
    cert, key = server.write(tmp_path, "server")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    other_ca = make_ca("Other CA")
    return {
        "ca": ca,
        "other_ca": other_ca,
        "cert": cert,
        "key": key,
        "ca_path": str(tmp_path / "ca.pem"),
        "trust": ssl.Certificate.loadPEM(ca.cert_pem),
    }


def client_tls(pki, client=None):
    kwargs = {"trustRoot": pki["trust"]}
    if client is not None:
        kwargs["clientCertificate"] = ssl.PrivateCertificate.loadPEM(client.key_pem + client.cert_pem)
    return ssl.optionsForClientTLS("localhost", **kwargs)


async def start(tmp_path, env):
    from twisted.internet import reactor

    data = tmp_path / "data"
    admin(["--data-dir", str(data), "charger", "set-key", "CP1", "--key", KEY])
    base = {"DATA_DIR": str(data), "WEBSOCKET_HOST": "127.0.0.1", "OCPP_PING_INTERVAL": "0", "DRAIN_GRACE": "2"}
    config = load_config("", {**base, **env}, {}, hostname="sec")
    gateway = make_gateway(config, reactor)
    gateway.startService()
    await bounded(gateway.started)
    return gateway


@pytest_twisted.ensureDeferred
async def test_profile_1_basic_auth_over_ws(tmp_path, capsys):
    """Profile 1: the right key connects; a wrong, missing or another charger's password is 401."""
    port = free_port()
    gateway = await start(tmp_path, {"PORT": str(port), "OCPP_SECURITY_PROFILE": "1"})
    try:
        ok = await connect_charger(port, "/ocpp/CP1", headers=basic("CP1", KEY))
        assert ok.subprotocol == "ocpp1.6"
        for headers in (basic("CP1", "wrong-password-123456"), {}, basic("CP2", KEY)):
            refused = await connect_charger(port, "/ocpp/CP1", headers=headers)
            assert "[401]" in (refused.close_reason or ""), refused.close_reason
        refused = await connect_charger(port, "/ocpp/CP2", headers=basic("CP2", KEY))
        assert "[401]" in (refused.close_reason or "")
    finally:
        await bounded(gateway.stopService())
    assert KEY not in capsys.readouterr().out


@pytest_twisted.ensureDeferred
async def test_profile_2_basic_auth_over_tls(tmp_path, pki):
    """Profile 2: wss with the right key connects; plain ws and a wrong key are refused."""
    plain, secure = free_port(), free_port()
    env = {"PORT": str(plain), "TLS_PORT": str(secure), "TLS_CERT": pki["cert"], "TLS_KEY": pki["key"], "OCPP_SECURITY_PROFILE": "2"}
    gateway = await start(tmp_path, env)
    try:
        ok = await connect_charger(secure, "/ocpp/CP1", headers=basic("CP1", KEY), tls=client_tls(pki))
        assert (await ok.call("Heartbeat", {}))[0] == 3  # a known, enabled charger is accepted without a boot
        wrong = await connect_charger(secure, "/ocpp/CP1", headers=basic("CP1", "nope-nope-nope-nope"), tls=client_tls(pki))
        assert "[401]" in (wrong.close_reason or "")
        cleartext = await connect_charger(plain, "/ocpp/CP1", headers=basic("CP1", KEY))
        assert "[403]" in (cleartext.close_reason or ""), cleartext.close_reason
    finally:
        await bounded(gateway.stopService())


@pytest_twisted.ensureDeferred
async def test_profile_3_client_certificates(tmp_path, pki, fail_on_logged_errors):
    """Profile 3: a certificate for the identity connects; another identity's or another CA's is refused."""
    port = free_port()
    env = {"PORT": str(port), "TLS_CERT": pki["cert"], "TLS_KEY": pki["key"], "TLS_CA": pki["ca_path"], "OCPP_SECURITY_PROFILE": "3"}
    gateway = await start(tmp_path, env)
    try:
        mine = issue(pki["ca"], "CP1")
        ok = await connect_charger(port, "/ocpp/CP1", tls=client_tls(pki, mine))
        assert ok.subprotocol == "ocpp1.6"
        theirs = issue(pki["ca"], "CP2")
        refused = await connect_charger(port, "/ocpp/CP1", tls=client_tls(pki, theirs))
        assert "[401]" in (refused.close_reason or ""), refused.close_reason
        foreign = issue(pki["other_ca"], "CP1")
        failed = await connect_charger(port, "/ocpp/CP1", tls=client_tls(pki, foreign))
        assert failed.subprotocol is None and gateway.registry.get("CP1") is not None
        # The test client itself logs the TLS alert it got: expected here.
        client_side = [e for e in fail_on_logged_errors if "WebSocketClientProtocol" in e.get("log_namespace", "")]
        assert client_side and all("unknown ca" in str(e.get("log_format", "")) + str(e) for e in client_side)
        for event in client_side:
            fail_on_logged_errors.remove(event)
        assert len(gateway.registry) == 1
    finally:
        await bounded(gateway.stopService())
