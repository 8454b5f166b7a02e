"""
docs/contract.md section 7: every charger-scoped backend body (ensure, status,
authorize, session start and stop, ocpp-message) carries C{ocppVersion};
the C{ocpp.message} and C{charger.metadataUpdate} event data do too.  Here
for 1.6 chargers (the 2.0.1 bodies: L{tests.ocpp.test_transaction_events},
L{tests.adapters.test_backend_api_doc_v201}).
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ocpptw.ocpp.router import Router
from ocpptw.ocpp.versions import V16, V201
from ocpptw.services.recorder import FrameRecorder
from tests.helpers import success_result_of
from tests.services.support import Rig

CP = "CP-16"


class _Session:
    charge_point_id = CP


def _answer(d):
    return d if isinstance(d, dict) else success_result_of(d)


@pytest.fixture
def rig(clock):
    r = Rig(clock)
    r.router = Router(r.chargers, r.sessions, clock)
    r.add_tag("TAG1", user_id="u1", prepaid="10.00")
    yield r
    r.close()


def test_1_6_bodies_carry_ocpp_version(rig):
    assert _answer(rig.router(_Session(), "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}))["status"] == "Accepted"
    rig.router(_Session(), "StatusNotification", {"connectorId": 1, "status": "Available", "errorCode": "NoError"})
    _answer(rig.router(_Session(), "Authorize", {"idTag": "TAG1"}))
    started = _answer(rig.router(_Session(), "StartTransaction", {"connectorId": 1, "idTag": "TAG1", "meterStart": 0,
                                                                  "timestamp": "2026-09-22T08:00:00Z"}))
    _answer(rig.router(_Session(), "StopTransaction", {"transactionId": started["transactionId"], "meterStop": 1000,
                                                       "timestamp": "2026-09-22T09:00:00Z"}))
    rig.retry()
    [(ensure,)] = rig.backend.called("ensure_charger")
    [(_, status)] = rig.backend.called("update_status")
    [(_, _, authorize)] = rig.backend.called("authorize")
    [(start,)] = rig.backend.called("start_session")
    [(_, stop)] = rig.backend.called("stop_session")
    assert ensure["ocppVersion"] == status["ocppVersion"] == start["ocppVersion"] == stop["ocppVersion"] == "1.6"
    assert authorize == {"extra": {"ocppVersion": "1.6"}}
    assert rig.publisher.of("charger.metadataUpdate")[0]["ocppVersion"] == "1.6"


@pytest.mark.parametrize("version", [V16, V201])
def test_ocpp_message_carries_the_chargers_version(clock, version):
    from tests.services.support import RecordingPublisher

    class Session:
        charge_point_id = CP
        context: dict = {}

    Session.version = version
    publisher = RecordingPublisher()
    FrameRecorder(publisher, clock, "gw").frame(Session(), "in", "CALL", "m1", "Heartbeat", {}, None, None, "{}")
    assert publisher.of("ocpp.message")[0]["ocppVersion"] == version.name


def test_ocpp_message_body_for_the_rest_backend(clock):
    """Without RabbitMQ, the ocpp-message body queued for the REST backend carries the version."""
    from ocpptw.adapters.local_events import LocalEventPublisher

    r = Rig(clock)
    try:
        backend = r.backend  # the outbox delivers to it
        publisher = LocalEventPublisher(r.outbox, object(), clock)

        class Session:
            charge_point_id = CP
            context: dict = {}
            version = V201

        success_result_of(r.chargers.boot(CP, {"chargePointVendor": "V", "chargePointModel": "M"},
                                          datetime.fromtimestamp(clock.seconds(), tz=timezone.utc)))
        FrameRecorder(publisher, clock, "gw").frame(Session(), "in", "CALL", "m1", "Heartbeat", {}, None, None, "{}")
        r.retry()
        [(_, body)] = backend.called("store_message")
        assert body["ocppVersion"] == "2.0.1" and body["messageId"] == "m1"
    finally:
        r.close()
