"""
The simulator speaking OCPP 2.0.1 (C{ocpptw-sim --ocpp 2.0.1}) and a mixed
fleet (C{--ocpp mixed}) against the real gateway in process: every call
answered without a CALLERROR, sessions built from TransactionEvents reach
the embedded store as stopped sessions, and every payload the 2.0.1 station
sends is valid against the official 2.0.1 schemas.
"""

from __future__ import annotations

import json

import pytest_twisted
from twisted.internet.defer import ensureDeferred

from ocpptw.ocpp.actions_v201 import SERVER_TO_CHARGER
from ocpptw.ocpp.validation import Validator
from ocpptw.ocpp.versions import V201
from ocpptw.sim import payloads_v201 as p201
from ocpptw.sim.cli import SimOptions, parse_args, run_simulation
from tests.helpers import bounded
from tests.integration.test_v201 import start


def _options(port, **kw):
    base = dict(url=f"ws://127.0.0.1:{port}/ocpp/", chargers=4, prefix="S", duration=5.0, call_timeout=5.0,
                connect_timeout=5.0, mix={"session": 1}, session_meters=2)
    base.update(kw)
    return SimOptions(**base)


async def _sessions(gateway):
    rows = await bounded(gateway.backend._db.read(lambda conn: conn.execute(
        "SELECT t.station_transaction_id, s.stopped, s.energy_wh FROM sessions s "
        "LEFT JOIN station_transactions t ON t.transaction_id = s.transaction_id").fetchall()))
    return rows


@pytest_twisted.ensureDeferred
async def test_sim_speaks_2_0_1(tmp_path):
    from twisted.internet import reactor

    gateway = await start(tmp_path)
    try:
        report = await bounded(ensureDeferred(run_simulation(reactor, _options(gateway.test_port, ocpp="2.0.1", calls=40))), 30)
        assert report["ok"], json.dumps(report)[:3000]
        assert report["connections"]["booted"] == 4
        assert report["calls"]["errors"] == {} and report["calls"]["timeouts"] == 0
        assert report["calls"]["by_action"]["TransactionEvent"] >= 20
        rows = await _sessions(gateway)
        assert rows and all(station is not None for station, _, _ in rows)
        assert any(stopped == 1 and energy > 0 for _, stopped, energy in rows)
    finally:
        await bounded(gateway.stopService())


@pytest_twisted.ensureDeferred
async def test_sim_mixed_fleet(tmp_path):
    from twisted.internet import reactor

    gateway = await start(tmp_path)
    try:
        report = await bounded(ensureDeferred(run_simulation(reactor, _options(gateway.test_port, ocpp="mixed", calls=40))), 30)
        assert report["ok"], json.dumps(report)[:3000]
        assert report["calls"]["errors"] == {}
        by_action = report["calls"]["by_action"]
        assert by_action.get("TransactionEvent", 0) > 0 and by_action.get("StartTransaction", 0) > 0
        rows = await _sessions(gateway)
        assert {station is None for station, _, _ in rows} == {True, False}
    finally:
        await bounded(gateway.stopService())


def test_the_option_and_its_default():
    assert parse_args(["--ocpp", "2.0.1"])[0].ocpp == "2.0.1"
    assert parse_args([])[0].ocpp == "1.6"


def test_every_simulated_2_0_1_payload_is_schema_valid():
    v = Validator(V201)
    v.check_request("BootNotification", json.loads(p201.boot_notification("SIM-000123")))
    v.check_request("StatusNotification", json.loads(p201.status_notification(1, True)))
    v.check_request("Authorize", json.loads(p201.authorize("TAG123")))
    v.check_request("MeterValues", json.loads(p201.meter_values(123456)))
    for kind, token in (("Started", "TAG123"), ("Updated", None), ("Ended", None)):
        v.check_request("TransactionEvent", json.loads(p201.transaction_event(kind, "tx-1", 3, token, 5000)))
    for action in SERVER_TO_CHARGER:
        frame = json.loads(p201.answer_server_call("m1", action))
        assert frame[:2] == [3, "m1"]
        v.check_response(action, frame[2])
    assert json.loads(p201.answer_server_call("m2", "RemoteStartTransaction"))[2] == "NotImplemented"
