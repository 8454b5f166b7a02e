"""
Security profiles 1-3 for OCPP 2.0.1 charging stations, as for 1.6 (CONTRACT
sections 1 and 7): Basic auth with the identity as username over ws and wss,
client certificates bound to the identity; the right station speaks 2.0.1,
a wrong one is refused at the handshake.
"""

from __future__ import annotations

import pytest_twisted

from tests.helpers import bounded
from tests.integration.test_security import (  # noqa: F401 (fixture)
    KEY,
    basic,
    client_tls,
    free_port,
    pki,
    start,
)
from tests.transport.certs import issue
from tests.wsclient import connect_charger

V201 = ["ocpp2.0.1"]
BOOT = {"chargingStation": {"vendorName": "ACME", "model": "Two"}, "reason": "PowerUp"}


async def speaks_2_0_1(charger):
    assert charger.subprotocol == "ocpp2.0.1", charger.close_reason
    answer = await charger.call("BootNotification", BOOT)
    assert answer[0] == 3 and answer[2]["status"] == "Accepted", answer


@pytest_twisted.ensureDeferred
async def test_profile_1_for_2_0_1(tmp_path):
    port = free_port()
    gateway = await start(tmp_path, {"PORT": str(port), "OCPP_SECURITY_PROFILE": "1"})
    try:
        await speaks_2_0_1(await connect_charger(port, "/ocpp/CP1", V201, headers=basic("CP1", KEY)))
        for headers in (basic("CP1", "wrong-password-123456"), {}, basic("CP2", KEY)):
            refused = await connect_charger(port, "/ocpp/CP1", V201, headers=headers)
            assert "[401]" in (refused.close_reason or ""), refused.close_reason
    finally:
        await bounded(gateway.stopService())


@pytest_twisted.ensureDeferred
async def test_profile_2_for_2_0_1(tmp_path, pki):  # noqa: F811
    plain, secure = free_port(), free_port()
    env = {"PORT": str(plain), "TLS_PORT": str(secure), "TLS_CERT": pki["cert"], "TLS_KEY": pki["key"], "OCPP_SECURITY_PROFILE": "2"}
    gateway = await start(tmp_path, env)
    try:
        await speaks_2_0_1(await connect_charger(secure, "/ocpp/CP1", V201, headers=basic("CP1", KEY), tls=client_tls(pki)))
        wrong = await connect_charger(secure, "/ocpp/CP1", V201, headers=basic("CP1", "nope-nope-nope-nope"), tls=client_tls(pki))
        assert "[401]" in (wrong.close_reason or "")
        cleartext = await connect_charger(plain, "/ocpp/CP1", V201, headers=basic("CP1", KEY))
        assert "[403]" in (cleartext.close_reason or ""), cleartext.close_reason
    finally:
        await bounded(gateway.stopService())


@pytest_twisted.ensureDeferred
async def test_profile_3_for_2_0_1(tmp_path, pki):  # noqa: F811
    port = free_port()
    env = {"PORT": str(port), "TLS_CERT": pki["cert"], "TLS_KEY": pki["key"], "TLS_CA": pki["ca_path"], "OCPP_SECURITY_PROFILE": "3"}
    gateway = await start(tmp_path, env)
    try:
        await speaks_2_0_1(await connect_charger(port, "/ocpp/CP1", V201, tls=client_tls(pki, issue(pki["ca"], "CP1"))))
        refused = await connect_charger(port, "/ocpp/CP1", V201, tls=client_tls(pki, issue(pki["ca"], "CP2")))
        assert "[401]" in (refused.close_reason or ""), refused.close_reason
    finally:
        await bounded(gateway.stopService())
