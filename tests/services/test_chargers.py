"""
Tests for L{ocpptw.services.chargers}: admission, boot (also with the
backend away), boot gating state, status and throttled last-seen.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from zope.interface.verify import verifyObject

from ocpptw.interfaces import BackendUnavailable, IChargerService
from ocpptw.services.chargers import ChargerService, ensure_body
from ocpptw.store.ledger import SCHEMA, Ledger
from ocpptw.store.sqlite import InlineDatabase
from tests.helpers import failure_result_of, no_result, success_result_of
from tests.services.support import Rig

BOOT = {
    "chargePointVendor": "Acme",
    "chargePointModel": "Fast-22",
    "chargeBoxSerialNumber": "BOX-1",
    "firmwareVersion": "1.2.3",
    "iccid": "8931",
    "meterType": "MID",
}


@pytest.fixture
def rig(clock):
    r = Rig(clock)
    yield r
    r.close()


def now(rig):
    return datetime.fromtimestamp(rig.clock.seconds(), tz=timezone.utc)


def boot(rig, cp="CP-1", payload=BOOT):
    return success_result_of(rig.chargers.boot(cp, payload, now(rig)))


def disable(rig, cp):
    success_result_of(rig.store_db.write(lambda c: c.execute("UPDATE chargers SET enabled = 0 WHERE device_id = ?", (cp,))))


def test_provides_interface(rig):
    """ChargerService provides IChargerService."""
    verifyObject(IChargerService, rig.chargers)


def test_ensure_body_maps_boot_fields():
    """BootNotification fields map onto the ensure body; the old box serial is the fallback serial."""
    assert ensure_body("CP-1", BOOT) == {
        "deviceId": "CP-1", "vendor": "Acme", "model": "Fast-22", "serialNumber": "BOX-1",
        "firmwareVersion": "1.2.3", "iccid": "8931", "meterType": "MID",
    }
    assert ensure_body("CP-1", {**BOOT, "chargePointSerialNumber": "CP-SER"})["serialNumber"] == "CP-SER"


def test_unknown_charger_registers_on_boot(rig):
    """An unknown charger is admitted as None, registered by its boot, then accepted."""
    assert success_result_of(rig.chargers.admit("CP-1")) is None
    assert not rig.chargers.is_accepted("CP-1")
    answer = boot(rig)
    assert answer == {"status": "Accepted", "currentTime": "2026-09-22T00:00:00.000Z", "interval": 300}
    assert rig.chargers.is_accepted("CP-1")
    assert rig.sql("SELECT vendor, model, serial_number FROM chargers") == [("Acme", "Fast-22", "BOX-1")]
    [meta] = rig.publisher.of("charger.metadataUpdate")
    assert meta == ensure_body("CP-1", BOOT)
    event = rig.publisher.events[0]
    assert (event["deviceId"], event["instance"], event["type"]) == ("CP-1", "gw-test", "charger.metadataUpdate")


def test_known_enabled_charger_accepted_without_boot(rig):
    """A charger the backend knows and that is enabled is accepted at once on reconnect."""
    boot(rig)
    other_instance = Ledger(InlineDatabase(schema=SCHEMA), rig.clock)  # never saw the boot
    success_result_of(other_instance.start())
    fresh = ChargerService(rig.backend, rig.outbox, rig.publisher, other_instance, rig.clock)
    assert not fresh.is_accepted("CP-1")
    record = success_result_of(fresh.admit("CP-1"))
    assert record["deviceId"] == "CP-1"
    assert fresh.is_accepted("CP-1")


def test_disabled_charger_rejected(rig):
    """enabled: false gets BootNotification Rejected and no acceptance."""
    boot(rig)
    disable(rig, "CP-1")
    success_result_of(rig.chargers.admit("CP-1"))
    assert not rig.chargers.is_accepted("CP-1")
    assert boot(rig)["status"] == "Rejected"
    assert not rig.chargers.is_accepted("CP-1")


def test_boot_while_backend_down(rig):
    """Backend away: a known charger is Accepted from the ledger, an unknown one too, its ensure queued."""
    rig.backend.mode = "down"
    answer = boot(rig, "CP-NEW")
    assert answer["status"] == "Accepted"
    assert rig.chargers.is_accepted("CP-NEW")
    assert rig.outbox.depth() == 1
    rig.backend.mode = "up"
    rig.retry(5)
    assert rig.outbox.depth() == 0
    assert rig.sql("SELECT device_id FROM chargers") == [("CP-NEW",)]
    assert rig.ledger.charger("CP-NEW")["vendor"] == "Acme"


def test_boot_of_disabled_charger_while_backend_down(rig):
    """Backend away: a charger the ledger knows as disabled stays Rejected."""
    boot(rig)
    disable(rig, "CP-1")
    success_result_of(rig.chargers.admit("CP-1"))
    rig.backend.mode = "down"
    assert boot(rig)["status"] == "Rejected"
    rig.backend.mode = "up"
    rig.retry(5)


def test_boot_deadline(rig):
    """A backend that does not answer the boot in time is treated as away."""
    rig.backend.mode = "hang"
    d = rig.chargers.boot("CP-1", BOOT, now(rig))
    no_result(d)
    rig.clock.advance(10)
    assert success_result_of(d)["status"] == "Accepted"
    rig.backend.mode = "up"
    rig.retry(70)
    assert rig.outbox.depth() == 0


def test_admit_falls_back_to_the_ledger(rig):
    """Backend away: admission uses the last known record; nothing known fails BackendUnavailable."""
    rig.store.ensure_charger({"deviceId": "CP-1", "vendor": "A", "model": "B"})
    rig.backend.modes["charger_by_device"] = "down"
    failure_result_of(rig.chargers.admit("CP-1"), BackendUnavailable)
    del rig.backend.modes["charger_by_device"]
    assert success_result_of(rig.chargers.admit("CP-1"))["deviceId"] == "CP-1"
    rig.backend.modes["charger_by_device"] = "down"
    assert success_result_of(rig.chargers.admit("CP-1"))["deviceId"] == "CP-1"
    assert rig.chargers.is_accepted("CP-1")


def test_charger_deleted_at_the_backend_is_forgotten(rig):
    """A 404 from the backend drops the ledger's record and acceptance."""
    boot(rig)
    success_result_of(rig.store_db.write(lambda c: c.execute("DELETE FROM chargers")))
    assert success_result_of(rig.chargers.admit("CP-1")) is None
    assert not rig.chargers.is_accepted("CP-1")
    assert rig.ledger.charger("CP-1") is None


def test_unknown_refused_when_unknown_not_allowed(clock):
    """With OCPP_ALLOW_UNKNOWN_CHARGERS=false an unknown charger's boot is Rejected and not registered."""
    rig = Rig(clock, allow_unknown=False)
    try:
        assert boot(rig, "CP-X")["status"] == "Rejected"
        assert rig.backend.called("ensure_charger") == []
        assert not rig.chargers.is_accepted("CP-X")
    finally:
        rig.close()


def test_status_outboxed_and_published(rig):
    """StatusNotification reaches the backend through the outbox and is published online."""
    boot(rig)
    payload = {"connectorId": 1, "status": "Charging", "errorCode": "NoError", "info": "ok",
               "timestamp": "2026-09-22T10:00:00+02:00"}
    assert success_result_of(rig.chargers.status("CP-1", payload, now(rig))) is None
    assert rig.sql("SELECT connector_id, status, error_code, info, timestamp FROM connector_status") == [
        (1, "Charging", "NoError", "ok", "2026-09-22T08:00:00.000Z")
    ]
    assert rig.publisher.of("charger.statusUpdate") == [
        {"connectorId": 1, "status": "Charging", "errorCode": "NoError", "info": "ok", "online": True}
    ]


def test_connected_and_disconnected(rig):
    """Connect and disconnect publish Connected/Disconnected with the online flag."""
    success_result_of(rig.chargers.connected("CP-1", now(rig)))
    success_result_of(rig.chargers.disconnected("CP-1", now(rig)))
    assert rig.publisher.of("charger.statusUpdate") == [
        {"status": "Connected", "online": True},
        {"status": "Disconnected", "online": False},
    ]


def test_last_seen_throttled_to_once_a_minute(rig):
    """Traffic updates last-seen at most once a minute per charger."""
    boot(rig)
    for _ in range(5):
        rig.chargers.seen("CP-1", now(rig))
        rig.clock.advance(10)
    rig.chargers.seen("CP-2", now(rig))  # not registered: nothing to update
    assert [e["lastSeen"] for e in rig.publisher.of("charger.lastSeen")] == ["2026-09-22T00:00:00.000Z"]
    rig.clock.advance(10)
    rig.chargers.seen("CP-1", now(rig))
    assert [e["lastSeen"] for e in rig.publisher.of("charger.lastSeen")] == [
        "2026-09-22T00:00:00.000Z", "2026-09-22T00:01:00.000Z"
    ]
    assert rig.sql("SELECT last_seen FROM chargers WHERE device_id = 'CP-1'") == [("2026-09-22T00:01:00.000Z",)]
