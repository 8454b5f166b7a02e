"""
The command lines as an operator runs them: C{twistd ocpp --version},
C{ocpptw-admin}; and one command timeout limit for REST and RabbitMQ.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.web.test.requesthelper import DummyRequest

import ocpptw
from ocpptw.adapters.amqp_commands import MalformedCommand, parse_command
from ocpptw.services.commands import MAX_COMMAND_TIMEOUT
from ocpptw.services.registry import ChargerRegistry
from ocpptw.transport.api import CommandApi

BIN = Path(sys.executable).parent


def test_twistd_ocpp_version_names_ocpptw():
    """twistd ocpp --version prints ocpptw's version (and Twisted's) and exits 0."""
    done = subprocess.run([str(BIN / "twistd"), "ocpp", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ocpptw {ocpptw.__version__} (Twisted "), done.stdout


def test_admin_disable_of_an_unknown_charger_is_refused(tmp_path):
    """ocpptw-admin charger disable NOPE: exit 1, one line, nothing registered."""
    env = {"PATH": str(BIN), "DATA_DIR": str(tmp_path)}
    run = lambda *argv: subprocess.run([str(BIN / "ocpptw-admin"), *argv], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)  # noqa: E731
    assert run("charger", "set-key", "CP1", "--key", "k" * 16 + "Z9").returncode == 0
    refused = run("charger", "disable", "NOPE")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "no charger NOPE" in refused.stderr
    assert "NOPE" not in run("charger", "list").stdout


def test_one_command_timeout_limit_for_rest_and_amqp(clock):
    """The REST ?timeout= and the AMQP timeoutSeconds share MAX_COMMAND_TIMEOUT."""
    assert parse_command(json.dumps({"action": "Reset", "payload": {}, "timeoutSeconds": MAX_COMMAND_TIMEOUT}).encode())[2] == MAX_COMMAND_TIMEOUT
    with pytest.raises(MalformedCommand, match="300"):
        parse_command(json.dumps({"action": "Reset", "payload": {}, "timeoutSeconds": MAX_COMMAND_TIMEOUT + 1}).encode())
    api = CommandApi(bus=None, registry=ChargerRegistry("gw", clock), token=None, call_timeout=30)
    request = DummyRequest([b"chargers", b"CP1", b"commands", b"Reset"])
    request.method = b"POST"
    from twisted.internet.address import IPv4Address

    request.client = IPv4Address("TCP", "127.0.0.1", 40000)
    request.requestHeaders.setRawHeaders(b"host", [b"127.0.0.1:9000"])
    request.args = {b"timeout": [str(MAX_COMMAND_TIMEOUT + 1).encode()]}
    from io import BytesIO

    request.content = BytesIO(b"{}")
    body = json.loads(api.render(request))
    assert request.responseCode == 400 and "(0, 300]" in body["error"]["description"]
