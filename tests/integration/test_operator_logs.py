"""
End to end: what an operator reads at the default level.  One line per
charger connect, boot and disconnect (identity, address, version,
instance); no Twisted factory or port chatter; the start-up settings as
fields with the values an operator writes; a warning for security profile
1 without TLS; static words such as "credentials" left alone by the
redaction.
"""

from __future__ import annotations

import io
import json

import pytest_twisted
from twisted.logger import globalLogPublisher

from ocpptw.observability.logs import observer_for
from tests.fuzz.support import start_gateway, stop_gateway
from tests.integration.instances_support import boot
from tests.wsclient import connect_charger


def _capture(log_format: str):
    stream = io.StringIO()
    observer = observer_for(log_format, level="info", stream=stream)
    globalLogPublisher.addObserver(observer)
    return stream, lambda: globalLogPublisher.removeObserver(observer)


@pytest_twisted.ensureDeferred
async def test_connect_boot_disconnect_lines_and_no_chatter(tmp_path):
    """Text at info: one line each for connect, boot and disconnect, nothing from Twisted about factories or ports."""
    stream, stop = _capture("text")
    try:
        service = await start_gateway(str(tmp_path / "data"), INSTANCE_ID="gw-a")
        charger = await connect_charger(service.test_port, "/ocpp/LOG-1")
        await boot(charger, vendor="ACME", model="M1")
        charger.sendClose(1000, "bye")
        await charger.wait_closed()
        await stop_gateway(service)
    finally:
        stop()
    text = stream.getvalue()
    lines = text.splitlines()
    about = [line for line in lines if "LOG-1" in line]
    assert len(about) == 3, about
    connected, booted, disconnected = about
    assert "LOG-1 connected from 127.0.0.1 speaking ocpp1.6 to instance gw-a" in connected
    assert "LOG-1 booted on instance gw-a: ACME M1" in booted and "Accepted" in booted
    assert "LOG-1 disconnected from 127.0.0.1 (ocpp1.6) on instance gw-a" in disconnected
    assert all("#info]" in line for line in about)
    assert "Starting factory" not in text and "Stopping factory" not in text and " at 0x" not in text, text
    assert "starting on" not in text and "Port" not in text.replace("PORT", ""), text


@pytest_twisted.ensureDeferred
async def test_start_up_settings_are_fields_with_real_defaults(tmp_path):
    """JSON: the start line carries each setting as a field, ACCEPT_RATE auto, secrets masked; profile 1 without TLS warns."""
    stream, stop = _capture("json")
    try:
        service = await start_gateway(
            str(tmp_path / "data"), ADMIN_API_TOKEN="Zx81-real-token-value", OCPP_SECURITY_PROFILE="1", INSTANCE_ID="gw-b"
        )
        await stop_gateway(service)
    finally:
        stop()
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    [start] = [e for e in events if e["message"].startswith("ocpptw ")]
    assert start["ACCEPT_RATE"] == "auto" and start["BACKEND_API_URL"] == "unset" and start["PORT"] == "0"
    assert start["ENABLE_RABBITMQ"] == "false" and start["OCPP_CALL_TIMEOUT"] == "30"
    assert start["ADMIN_API_TOKEN"] == "***" and "Zx81" not in json.dumps(events)
    assert start["version"] and start["instance"] == "gw-b"
    assert "None" not in start["message"]
    warnings = [e["message"] for e in events if e["level"] == "warn"]
    assert any(w.startswith("OCPP_SECURITY_PROFILE=1 without TLS") for w in warnings), warnings


def test_redaction_keeps_static_words():
    """'Basic credentials' and 'bearer token' in a message are words, not secrets; real ones are masked."""
    from ocpptw.observability.logs import format_text

    event = {"log_format": "refused {chargePointId}: {reason}", "chargePointId": "CP1",
             "reason": "missing or malformed Basic credentials", "log_level": None, "log_time": 0}
    assert format_text(event).endswith("refused CP1: missing or malformed Basic credentials")
    event["reason"] = "missing Basic credentials."
    assert format_text(event).endswith("missing Basic credentials.")
    event["reason"] = "header was Basic Q1AxOnNlY3JldA=="
    assert format_text(event).endswith("header was Basic ***")
