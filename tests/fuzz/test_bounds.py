# -*- test-case-name: tests.fuzz.test_bounds -*-
"""
Resource bounds, proven against a running gateway: what one charger can
make the gateway remember or queue is capped, the outbox raises an alarm
long before anything is parked, and a full disk in C{DATA_DIR} refuses
what cannot be recorded (clearly, once in the log) while the process stays
up and recovers by itself.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess

import pytest_twisted
import treq

from ocpptw.ocpp.errors import INTERNAL_ERROR, PROTOCOL_ERROR
from ocpptw.ocpp.recent_ids import RecentIds
from ocpptw.ocpp.session import OcppSession
from ocpptw.store.outbox_alarm import OutboxAlarm
from tests.fuzz.support import WireCharger, fresh_id, start_gateway, stop_gateway
from tests.helpers import bounded, until

T = "2026-11-24T10:00:00Z"


@pytest_twisted.async_yield_fixture
async def gateway(tmp_path):
    service = await start_gateway(str(tmp_path / "data"))
    yield service
    await stop_gateway(service)


def _session(service, charge_point_id):
    return service.registry.get(charge_point_id).session


# -- per-connection caps -------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_remembered_message_ids_are_capped(gateway):
    """A charger sending many ids makes the gateway remember at most RecentIds.size of them."""
    wire = WireCharger(gateway.test_port, "BOUNDS1")
    await wire.connect(boot=True)
    charger = wire.charger
    cap = RecentIds.size
    ids = [f"many-{n}" for n in range(cap + 200)]
    for message_id in ids:
        charger.send_text(json.dumps([2, message_id, "Heartbeat", {}]))
    for message_id in ids:
        assert (await charger.next())[:2] == [3, message_id]
    session = _session(gateway, "BOUNDS1")
    assert len(session._seen) <= cap
    # the most recent ids are still refused as repeats; the oldest were forgotten
    charger.send_text(json.dumps([2, ids[-1], "Heartbeat", {}]))
    assert (await charger.next())[2] == PROTOCOL_ERROR
    charger.send_text(json.dumps([2, ids[0], "Heartbeat", {}]))
    assert (await charger.next())[0] == 3


@pytest_twisted.ensureDeferred
async def test_waiting_calls_from_one_charger_are_capped(gateway):
    """A burst of CALLs in one read: at most max_inbound_queue wait; the rest get ProtocolError; every one is answered once."""
    wire = WireCharger(gateway.test_port, "BOUNDS2")
    await wire.connect(boot=True)
    charger = wire.charger
    cap = OcppSession.max_inbound_queue
    burst = cap * 3
    frames = [
        json.dumps([2, f"b{n}", "StartTransaction", {"connectorId": 1, "idTag": f"T{n}", "meterStart": n, "timestamp": T}])
        for n in range(burst)
    ]
    # written without yielding to the reactor: they leave in one burst and reach the gateway
    # together, while the first StartTransaction is being recorded
    for frame in frames:
        charger.send_text(frame)
    answers = {}
    for _ in range(burst):
        frame = await charger.next()
        assert frame[1] not in answers, frame
        answers[frame[1]] = frame
    refused = [f for f in answers.values() if f[0] == 4]
    assert all(f[2] == PROTOCOL_ERROR for f in refused), refused
    assert len(refused) >= burst - cap - 1, (len(refused), burst, cap)
    assert len(answers) == burst
    assert await wire.exchange(json.dumps([2, fresh_id(), "Heartbeat", {}])) != []


@pytest_twisted.ensureDeferred
async def test_queued_commands_to_one_charger_are_capped(gateway):
    """Commands to a charger that never answers: one in flight, max_outbound_queue waiting, the rest 504 at once; never a 500."""
    from twisted.internet import reactor

    wire = WireCharger(gateway.test_port, "BOUNDS3")
    await wire.connect(boot=True)
    cap = OcppSession.max_outbound_queue
    extra = 20
    url = f"http://127.0.0.1:{gateway.test_port}/api/v1/chargers/BOUNDS3/commands/ClearCache?timeout=4"
    began = reactor.seconds()
    answered_at = []

    async def one():
        response = await bounded(treq.post(url, data=b"{}", persistent=False))
        await bounded(response.content())
        answered_at.append((reactor.seconds() - began, response.code))

    from twisted.internet.defer import ensureDeferred, gatherResults

    everything = gatherResults([ensureDeferred(one()) for _ in range(cap + 1 + extra)])
    await until(lambda: len(answered_at) >= extra, 3)
    session = _session(gateway, "BOUNDS3")
    assert len(session._calls._queue) == cap
    assert all(code == 504 and at < 3 for at, code in answered_at[:extra]), answered_at
    await bounded(everything, 15)
    assert {code for _, code in answered_at} == {504}
    assert len(session._calls._queue) == 0 and session._calls._pending is None


# -- the outbox alarm ------------------------------------------------------------------------------


class _FakeOutbox:
    def __init__(self):
        self.entries, self.age = 0, 0.0

    def depth(self):
        return self.entries

    def oldest_age(self):
        return self.age


def test_outbox_alarm_logs_once_and_clears(clock, fail_on_logged_errors):
    """Depth over the limit, or the oldest entry too old, raises the alarm with one error line; it clears once."""
    outbox = _FakeOutbox()
    alarm = OutboxAlarm(outbox, clock, max_depth=100, max_age=3600, interval=60)
    alarm.startService()
    clock.advance(60)
    assert not alarm.raised
    outbox.entries = 101
    for _ in range(5):
        clock.advance(60)
    assert alarm.raised and "101 entries" in alarm.reason
    assert len(fail_on_logged_errors) == 1
    outbox.entries, outbox.age = 3, 3601
    clock.advance(60)
    assert alarm.raised and "3601 s" in alarm.reason
    assert len(fail_on_logged_errors) == 1
    outbox.age = 10
    clock.advance(60)
    assert not alarm.raised and alarm.reason == ""
    outbox.age = 4000
    clock.advance(60)
    assert len(fail_on_logged_errors) == 2
    fail_on_logged_errors.clear()
    alarm.stopService()


@pytest_twisted.ensureDeferred
async def test_outbox_alarm_is_a_metric(tmp_path):
    """OUTBOX_ALARM_DEPTH and OUTBOX_ALARM_AGE configure the alarm; ocpp_outbox_alarm is in /metrics."""
    service = await start_gateway(str(tmp_path / "data"), OUTBOX_ALARM_DEPTH="7", OUTBOX_ALARM_AGE="9")
    try:
        assert (service.outbox_alarm.max_depth, service.outbox_alarm.max_age) == (7, 9.0)
        response = await bounded(treq.get(f"http://127.0.0.1:{service.test_port}/metrics", persistent=False))
        assert b"ocpp_outbox_alarm 0.0" in await bounded(response.content())
    finally:
        await stop_gateway(service)


# -- a full disk ------------------------------------------------------------------------------------


class _Disk:
    """
    DATA_DIR on a 16 MiB tmpfs that can be filled and freed (needs root to
    mount); elsewhere, or with C{FUZZ_SIMULATE_FULL_DISK=1}, the same failure
    simulated in the gateway's databases (SQLite's own "database or disk is
    full").
    """

    def __init__(self, path):
        self.path = path
        path.mkdir()
        simulate = os.environ.get("FUZZ_SIMULATE_FULL_DISK") == "1"
        mount = ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)]
        self.mounted = not simulate and subprocess.run(mount, capture_output=True).returncode == 0
        self.full = False
        self.service = None

    def attach(self, service):
        self.service = service
        if self.mounted:
            return
        for db in service.databases:
            original = db.write

            def write(fn, original=original):
                if not self.full:
                    return original(fn)

                def refuse(conn):
                    raise sqlite3.OperationalError("database or disk is full")

                return original(refuse)

            db.write = write

    def fill(self):
        self.full = True
        if self.mounted:
            fd = os.open(self.path / "filler", os.O_WRONLY | os.O_CREAT)
            try:
                while True:
                    os.write(fd, b"\0" * 65536)
            except OSError:
                pass
            finally:
                os.close(fd)

    def free(self):
        self.full = False
        if self.mounted:
            os.unlink(self.path / "filler")

    def unmount(self):
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


async def _ready(service):
    response = await bounded(treq.get(f"http://127.0.0.1:{service.test_port}/ready", persistent=False))
    return response.code, json.loads(await bounded(response.content()))


@pytest_twisted.ensureDeferred
async def test_full_disk_refuses_what_cannot_be_recorded_and_recovers(tmp_path, fail_on_logged_errors):
    """DATA_DIR full: transaction messages get InternalError, others are answered, /ready is 503, one error line each; then it recovers unaided."""
    disk = _Disk(tmp_path / "data")
    try:
        service = await start_gateway(str(disk.path))
        disk.attach(service)
        wire = WireCharger(service.test_port, "DISKFULL1")
        await wire.connect(boot=True)
        started = await wire.exchange(json.dumps([2, fresh_id(), "StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": T}]))
        tx = started[0][2]["transactionId"]
        disk.fill()
        transaction_messages = [
            ("StartTransaction", {"connectorId": 2, "idTag": "B", "meterStart": 0, "timestamp": T}),
            ("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [{"timestamp": T, "sampledValue": [{"value": "10"}]}]}),
            ("StopTransaction", {"transactionId": tx, "meterStop": 100, "timestamp": T}),
            ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
        ]
        for _ in range(3):  # again and again: still one error line per component
            for action, payload in transaction_messages:
                answers = await wire.exchange(json.dumps([2, fresh_id(), action, payload]))
                assert len(answers) == 1 and answers[0][0] == 4 and answers[0][2] == INTERNAL_ERROR, (action, answers)
                assert "disk" in answers[0][3]
        heartbeat = await wire.exchange(json.dumps([2, fresh_id(), "Heartbeat", {}]))
        assert heartbeat[0][0] == 3
        code, body = await _ready(service)
        assert code == 503 and any("cannot write" in r for r in body["reasons"]), body
        messages = sorted(e.get("log_format", "") for e in fail_on_logged_errors)
        assert len(messages) <= 2 and all("refuses writes" in m for m in messages), messages
        assert service.running
        disk.free()
        # no traffic needed: /ready probes the disk and comes back by itself
        for _ in range(100):
            code, body = await _ready(service)
            if code == 200:
                break
        assert code == 200, body
        again = await wire.exchange(json.dumps([2, fresh_id(), "StopTransaction", {"transactionId": tx, "meterStop": 100, "timestamp": T}]))
        assert again[0][0] == 3, again
        await until(lambda: service.outbox.depth() == 0, 10)
        fail_on_logged_errors.clear()
        await stop_gateway(service)
    finally:
        disk.unmount()
