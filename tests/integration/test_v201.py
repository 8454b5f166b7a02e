"""
OCPP 2.0.1 on the gateway's one endpoint (docs/contract.md section 7), in process
(embedded store with a tariff, no broker) on loopback:

  - the C{ocpp} package's C{v201.ChargePoint} (a separate process, it
    validates every answer against the official schemas) runs a whole
    session and every charger-to-CSMS action once, then receives every
    CSMS-to-charger action sent through the command API;
  - raw frames for the CALLERROR codes of 2.0.1, and no 1.6-only spelling
    on a 2.0.1 connection (nor a 2.0.1 one on a 1.6 connection);
  - the subprotocol chosen by the charger's order of preference, and
    OCPP_VERSIONS disabling either version;
  - commands checked against the charger's version (400 naming it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import pytest_twisted
import treq
from twisted.internet import protocol
from twisted.internet.defer import Deferred

from ocpptw.app.gateway import make_gateway
from ocpptw.config import load_config
from ocpptw.ocpp.actions_v201 import SERVER_TO_CHARGER
from ocpptw.ocpp.examples import minimal_request
from ocpptw.ocpp.versions import CODES_V201
from tests.helpers import bounded, until
from tests.wsclient import connect_charger

HERE = Path(__file__).resolve().parent

BOOT_201 = {"chargingStation": {"vendorName": "ACME", "model": "Two"}, "reason": "PowerUp"}


async def start(tmp_path, **settings):
    from twisted.internet import reactor

    env = {"DATA_DIR": str(tmp_path / "data"), "PORT": "0", "WEBSOCKET_HOST": "127.0.0.1", "OCPP_PING_INTERVAL": "0",
           "DRAIN_GRACE": "5", "EMBEDDED_PRICE_PER_KWH": "0.50"}
    env.update(settings)
    service = make_gateway(load_config("", env, {}, hostname="v201-1"), reactor)
    service.startService()
    await bounded(service.started)
    service.test_port = service.port.getHost().port
    return service


@pytest_twisted.async_yield_fixture
async def gateway(tmp_path):
    service = await start(tmp_path)
    yield service
    if service.running:
        await bounded(service.stopService())


async def request(gateway, method, path, body=None):
    url = f"http://127.0.0.1:{gateway.test_port}{path}"
    data = None if body is None else json.dumps(body).encode()
    response = await bounded(treq.request(method, url, data=data, persistent=False))
    return response.code, json.loads(await bounded(response.content()) or b"null")


class _Lines(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.lines: list[str] = []
        self.ended: Deferred = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data
        *done, self.out = self.out.split(b"\n")
        self.lines.extend(line.decode() for line in done)

    def errReceived(self, data: bytes) -> None:
        self.err = (self.err + data)[-20000:]

    def processEnded(self, reason) -> None:
        self.ended.callback(reason.value.exitCode)

    def line(self, prefix: str) -> dict | list | None:
        for line in self.lines:
            if line.startswith(prefix + " "):
                return json.loads(line[len(prefix) + 1:])
        return None


@pytest_twisted.ensureDeferred
async def test_third_party_v201_station_runs_a_session_and_takes_every_command(gateway):
    """ocpp.v201.ChargePoint: a whole session, every charger-to-CSMS action, every CSMS-to-charger command."""
    from twisted.internet import reactor

    lines = _Lines()
    actions = sorted(SERVER_TO_CHARGER)
    url = f"ws://127.0.0.1:{gateway.test_port}/ocpp/LIB201"
    reactor.spawnProcess(lines, sys.executable, [sys.executable, str(HERE / "v201_lib_charger.py"), url, ",".join(actions)],
                         env=None)
    try:
        await until(lambda: lines.line("PHASE1") is not None or lines.ended.called, 60)
        got = lines.line("PHASE1")
        assert got is not None, lines.err.decode()[-3000:]
        assert got["boot"] == "Accepted" and got["interval"] == 300
        assert got["authorize"] == "Accepted" and got["started"] == "Accepted" and got["repeatSame"] is True
        # 12,580 Wh at 0.50 a kWh
        assert got["totalCost"] == 6.29
        assert got["others"]["DataTransfer"] == "UnknownVendorId"
        assert got["others"]["SignCertificate"] == "Rejected"
        code, listed = await request(gateway, "GET", "/api/v1/chargers/LIB201")
        assert code == 200 and listed["ocppVersion"] == "2.0.1"
        for action in actions:
            code, answer = await request(gateway, "POST", f"/api/v1/chargers/LIB201/commands/{action}", minimal_request("2.0.1", action))
            assert code == 200, (action, answer)
        code, answer = await request(gateway, "POST", "/api/v1/chargers/LIB201/commands/RemoteStartTransaction",
                                     {"connectorId": 1, "idTag": "T"})
        assert code == 400 and "2.0.1" in answer["error"]["description"]
        assert lines.line("DONE") == actions, lines.err.decode()[-3000:]
        gateway.registry.get("LIB201").close(1000, "test over")
        assert await bounded(lines.ended, 30) == 0, lines.err.decode()[-3000:]
    finally:
        if not lines.ended.called:
            lines.transport.signalProcess("KILL")
            await bounded(lines.ended)


async def booted_201(gateway, name):
    charger = await connect_charger(gateway.test_port, f"/ocpp/{name}", ["ocpp2.0.1"])
    assert charger.subprotocol == "ocpp2.0.1"
    frame = await charger.call("BootNotification", BOOT_201)
    assert frame[0] == 3 and frame[2]["status"] == "Accepted", frame
    return charger


RAW_201 = [
    ('not json', "RpcFrameworkError", "-1"),
    ('{"a": 1}', "RpcFrameworkError", "-1"),
    ('[2, "r1", "Heartbeat"]', "RpcFrameworkError", "r1"),
    ('[2, "r2", 7, {}]', "RpcFrameworkError", "r2"),
    ('[2, "r3", "Heartbeat", []]', "FormatViolation", "r3"),
    ('[9, "r4", "Heartbeat", {}]', "MessageTypeNotSupported", "r4"),
    ('[9]', "MessageTypeNotSupported", "-1"),
    ('[2, "r5", "Nope", {}]', "NotImplemented", "r5"),
    ('[2, "r6", "Reset", {"type": "Immediate"}]', "NotSupported", "r6"),
    ('[2, "r7", "StatusNotification", {"timestamp": "2026-12-04T10:00:00Z", "evseId": 1, "connectorId": 1}]',
     "OccurrenceConstraintViolation", "r7"),
    ('[2, "r8", "Heartbeat", {"x": 1}]', "FormatViolation", "r8"),
    ('[2, "r9", "StatusNotification", {"timestamp": "2026-12-04T10:00:00Z", "connectorStatus": "On", "evseId": 1, "connectorId": 1}]',
     "PropertyConstraintViolation", "r9"),
    ('[2, "r10", "StatusNotification", {"timestamp": "2026-12-04T10:00:00Z", "connectorStatus": "Available", "evseId": "1", "connectorId": 1}]',
     "TypeConstraintViolation", "r10"),
    ('[2, "r10", "Heartbeat", {}]', "ProtocolError", "r10"),
]


@pytest_twisted.ensureDeferred
async def test_raw_frames_get_2_0_1_codes(gateway):
    """Each fault gets 2.0.1's code and spelling; the connection stays open."""
    unbooted = await connect_charger(gateway.test_port, "/ocpp/RAW0", ["ocpp2.0.1"])
    gated = await unbooted.call("Heartbeat", {})
    assert gated[:3] == [4, "t1", "SecurityError"]
    charger = await booted_201(gateway, "RAW1")
    for text, code, message_id in RAW_201:
        charger.send_text(text)
        frame = await charger.next()
        assert frame[0] == 4 and frame[2] == code and frame[1] == message_id, (text, frame)
        assert frame[2] in CODES_V201 and isinstance(frame[4], dict)
    assert (await charger.call("Heartbeat", {}))[0] == 3


@pytest_twisted.ensureDeferred
async def test_no_spelling_crosses_versions(gateway):
    """A 2.0.1 charger never sees FormationViolation/OccurenceConstraintViolation; a 1.6 one never a 2.0.1-only code."""
    new = await booted_201(gateway, "X201")
    old = await connect_charger(gateway.test_port, "/ocpp/X16", ["ocpp1.6"])
    assert old.subprotocol == "ocpp1.6"
    await old.call("BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "M1"})
    faults = ['[2, "a", "Heartbeat", {"x": 1}]', '[2, "b", "StatusNotification", {}]', "nope", '[2, "c", "Heartbeat", 5]',
              '[2, "d"]']
    seen_new, seen_old = set(), set()
    for text in faults:
        new.send_text(text)
        old.send_text(text)
        seen_new.add((await new.next())[2])
        seen_old.add((await old.next())[2])
    new.send_text('[9, "e", "Heartbeat", {}]')
    old.send_text('[9, "e", "Heartbeat", {}]')
    seen_new.add((await new.next())[2])
    assert seen_new <= CODES_V201 and not seen_new & {"FormationViolation", "OccurenceConstraintViolation"}
    assert seen_new >= {"FormatViolation", "OccurrenceConstraintViolation", "RpcFrameworkError", "MessageTypeNotSupported"}
    assert seen_old == {"FormationViolation", "OccurenceConstraintViolation"}
    # the unknown MessageTypeId was ignored on 1.6: the next answer is the Heartbeat's
    assert (await old.call("Heartbeat", {}))[0] == 3


@pytest.mark.parametrize(
    "offered, chosen",
    [
        (["ocpp2.0.1", "ocpp1.6"], "ocpp2.0.1"),
        (["ocpp1.6", "ocpp2.0.1"], "ocpp1.6"),
        (["ocpp2.0", "ocpp1.6"], "ocpp1.6"),
        (["ocpp2.0.1"], "ocpp2.0.1"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_subprotocol_follows_the_chargers_preference(gateway, offered, chosen):
    """The first offered subprotocol that is enabled wins; the session speaks it."""
    charger = await connect_charger(gateway.test_port, "/ocpp/PREF", offered)
    assert charger.subprotocol == chosen
    code, listed = await request(gateway, "GET", "/api/v1/chargers/PREF")
    assert listed["ocppVersion"] == chosen[4:]


@pytest.mark.parametrize("enabled, offered, chosen", [
    ("ocpp1.6", ["ocpp2.0.1", "ocpp1.6"], "ocpp1.6"),
    ("ocpp1.6", ["ocpp2.0.1"], None),
    ("ocpp2.0.1", ["ocpp1.6"], None),
    ("ocpp2.0.1", ["ocpp1.6", "ocpp2.0.1"], "ocpp2.0.1"),
])
@pytest_twisted.ensureDeferred
async def test_ocpp_versions_disables_a_version(tmp_path, enabled, offered, chosen):
    """OCPP_VERSIONS: a disabled version is never chosen; nothing in common -> no header, then closed."""
    service = await start(tmp_path, OCPP_VERSIONS=enabled)
    try:
        charger = await connect_charger(service.test_port, "/ocpp/ONLY", offered)
        assert charger.subprotocol == chosen
        if chosen is None:
            code, _ = await charger.wait_closed()
            assert code == 1000
    finally:
        await bounded(service.stopService())


@pytest_twisted.ensureDeferred
async def test_newest_connection_wins_and_drain_closes_with_1001(tmp_path):
    """As for 1.6: a second 2.0.1 connection replaces the first (4000); the drain closes with 1001."""
    service = await start(tmp_path)
    try:
        first = await booted_201(service, "NEWEST")
        second = await connect_charger(service.test_port, "/ocpp/NEWEST", ["ocpp2.0.1"])
        code, _ = await first.wait_closed()
        assert code == 4000
        assert (await second.call("Heartbeat", {}))[0] == 3  # accepted without booting again
        await bounded(service.stopService())
        code, _ = await second.wait_closed()
        assert code == 1001
    finally:
        if service.running:
            await bounded(service.stopService())
