"""
End to end: C{ocpptw-sim} against the gateway with security profiles 2 and
3 (C{--password} with per-charger keys, C{--cafile}, C{--client-cert}); a
4xx refusal is not retried, and an INCOMPLETE result names its cause.
"""

from __future__ import annotations

import pytest_twisted
from twisted.internet.defer import ensureDeferred

from ocpptw.admin import main as admin
from ocpptw.sim.cli import SimOptions, parse_args, run_simulation
from ocpptw.sim.report import format_report
from tests.helpers import bounded
from tests.integration.test_security import free_port, pki, start  # noqa: F401 - pki is a fixture
from tests.transport.certs import issue


def _options(url: str, **kw) -> SimOptions:
    base = dict(url=url, chargers=2, prefix="SIM", mode="idle", duration=0.2, settle=0, connect_retries=3)
    base.update(kw)
    return SimOptions(**base)


@pytest_twisted.ensureDeferred
async def test_profile_2_with_per_charger_keys_and_a_cafile(tmp_path, pki, fail_on_logged_errors):
    """The right per-charger keys boot over wss; a wrong one is refused once (no retry) and the result says why."""
    from twisted.internet import reactor

    port = free_port()
    gateway = await start(tmp_path, {"PORT": str(port), "TLS_CERT": pki["cert"], "TLS_KEY": pki["key"], "OCPP_SECURITY_PROFILE": "2"})
    for n in (1, 2):
        assert admin(["--data-dir", str(tmp_path / "data"), "charger", "set-key", f"SIM{n}", "--key", f"key-of-SIM{n}-0123456"]) == 0
    url = f"wss://localhost:{port}/ocpp/"
    try:
        options, _ = parse_args(["--url", url, "-n", "2", "--idle", "--duration", "0.2", "--settle", "0",
                                 "--password", "key-of-{id}-0123456", "--cafile", pki["ca_path"]])
        report = await bounded(ensureDeferred(run_simulation(reactor, options)), 30)
        assert report["ok"] and report["connections"]["booted"] == 2, report

        wrong = _options(url, password="not-the-key-0123456", cafile=pki["ca_path"])
        report = await bounded(ensureDeferred(run_simulation(reactor, wrong)), 30)
        assert not report["ok"]
        assert report["connections"]["retries"] == 0, report  # a 401 is not tried again
        assert report["problems"] == ["2 connections failed (2x refused 401 (wrong or missing password: --password))"]
        assert format_report(report).endswith("result: INCOMPLETE: 2 connections failed (2x refused 401 (wrong or missing password: --password))")
    finally:
        await bounded(gateway.stopService())
    fail_on_logged_errors.clear()


@pytest_twisted.ensureDeferred
async def test_profile_3_with_a_client_certificate(tmp_path, pki):
    """--client-cert presents the charger's certificate; the gateway admits it by its CN."""
    from twisted.internet import reactor

    port = free_port()
    env = {"PORT": str(port), "TLS_CERT": pki["cert"], "TLS_KEY": pki["key"], "TLS_CA": pki["ca_path"], "OCPP_SECURITY_PROFILE": "3"}
    gateway = await start(tmp_path, env)
    client = issue(pki["ca"], "SIM1", kind="ec")
    pem = tmp_path / "sim1.pem"
    pem.write_bytes(client.key_pem + client.cert_pem)
    try:
        opts = _options(f"wss://localhost:{port}/ocpp/", chargers=1, cafile=pki["ca_path"], client_cert=str(pem))
        report = await bounded(ensureDeferred(run_simulation(reactor, opts)), 30)
        assert report["ok"] and report["connections"]["booted"] == 1, report
    finally:
        await bounded(gateway.stopService())


def test_cafile_needs_wss(capsys):
    import pytest

    with pytest.raises(SystemExit):
        parse_args(["--url", "ws://localhost:9000/ocpp/", "--cafile", "/etc/hostname"])
    assert "need a wss://" in capsys.readouterr().err
