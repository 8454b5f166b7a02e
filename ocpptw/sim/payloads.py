# -*- test-case-name: tests.test_sim -*-
"""
The OCPP 1.6J payloads a simulated charger sends, and its answers to the
calls a central system sends it.

Frames are built from string templates rather than C{json.dumps} so that the
load generator spends its CPU on the wire, not on serialising: a MeterValues
frame with ten sampled values costs a few microseconds to make.
"""

from __future__ import annotations

import json
import time
from typing import Any

_last_second = -1
_last_stamp = ""


def timestamp() -> str:
    """
    The current UTC time as ISO 8601 with a C{Z}, at one-second resolution
    (cached: chargers stamp many messages within one second).
    """
    global _last_second, _last_stamp
    now = int(time.time())
    if now != _last_second:
        _last_second = now
        _last_stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    return _last_stamp


def call_frame(message_id: str, action: str, payload_json: str) -> str:
    """
    A CALL frame around an already serialised payload.
    """
    return '[2,"' + message_id + '","' + action + '",' + payload_json + "]"


def boot_notification(charger_id: str) -> str:
    return json.dumps(
        {
            "chargePointVendor": "ocpptw-sim",
            "chargePointModel": "SimCharger-22kW",
            "chargePointSerialNumber": charger_id[-25:],
            "firmwareVersion": "1.6.0-sim",
            "meterType": "SimMeter 3P",
            "meterSerialNumber": "M-" + charger_id[-23:],
        },
        separators=(",", ":"),
    )


HEARTBEAT = "{}"


def status_notification(connector_id: int, status: str) -> str:
    return '{"connectorId":%d,"errorCode":"NoError","status":"%s","timestamp":"%s"}' % (
        connector_id,
        status,
        timestamp(),
    )


def authorize(id_tag: str) -> str:
    return '{"idTag":"%s"}' % id_tag


def start_transaction(connector_id: int, id_tag: str, meter_start: int) -> str:
    return '{"connectorId":%d,"idTag":"%s","meterStart":%d,"timestamp":"%s"}' % (
        connector_id,
        id_tag,
        meter_start,
        timestamp(),
    )


def stop_transaction(transaction_id: int, id_tag: str, meter_stop: int) -> str:
    return '{"transactionId":%d,"idTag":"%s","meterStop":%d,"timestamp":"%s","reason":"Local"}' % (
        transaction_id,
        id_tag,
        meter_stop,
        timestamp(),
    )


def _sv(measurand: str, unit: str, phase: str = "", location: str = "Outlet") -> str:
    extra = (',"phase":"%s"' % phase) if phase else ""
    return (
        '{"value":"%s","context":"Sample.Periodic","format":"Raw","measurand":"'
        + measurand
        + '"'
        + extra
        + ',"location":"'
        + location
        + '","unit":"'
        + unit
        + '"}'
    )


#: ten sampled values: energy register, power, current and voltage per phase, SoC, temperature
_SAMPLED = ",".join(
    [
        _sv("Energy.Active.Import.Register", "Wh"),
        _sv("Power.Active.Import", "W"),
        _sv("Current.Import", "A", "L1"),
        _sv("Current.Import", "A", "L2"),
        _sv("Current.Import", "A", "L3"),
        _sv("Voltage", "V", "L1-N"),
        _sv("Voltage", "V", "L2-N"),
        _sv("Voltage", "V", "L3-N"),
        _sv("SoC", "Percent", location="EV"),
        _sv("Temperature", "Celsius", location="Body"),
    ]
)
_METER_TX = (
    '{"connectorId":%d,"transactionId":%d,"meterValue":[{"timestamp":"%s","sampledValue":['
    + _SAMPLED
    + "]}]}"
)
_METER_NO_TX = (
    '{"connectorId":%d,"meterValue":[{"timestamp":"%s","sampledValue":[' + _SAMPLED + "]}]}"
)


def meter_values(connector_id: int, transaction_id: int | None, energy_wh: int, seq: int) -> str:
    """
    MeterValues with ten sampled values; C{seq} varies the readings a little.
    """
    amps = 16.0 + (seq % 7) * 0.1
    volts = 229.0 + (seq % 5) * 0.3
    watts = int(amps * volts * 3)
    readings = (
        str(energy_wh),
        str(watts),
        "%.1f" % amps,
        "%.1f" % (amps - 0.2),
        "%.1f" % (amps + 0.1),
        "%.1f" % volts,
        "%.1f" % (volts + 0.4),
        "%.1f" % (volts - 0.3),
        str(20 + seq % 80),
        str(30 + seq % 15),
    )
    if transaction_id is None:
        return _METER_NO_TX % ((connector_id, timestamp()) + readings)
    return _METER_TX % ((connector_id, transaction_id, timestamp()) + readings)


_ACCEPTED = {"status": "Accepted"}

#: answers to the calls a central system makes, by action
_ANSWERS: dict[str, dict[str, Any]] = {
    "CancelReservation": _ACCEPTED,
    "ChangeAvailability": _ACCEPTED,
    "ChangeConfiguration": _ACCEPTED,
    "ClearCache": _ACCEPTED,
    "ClearChargingProfile": _ACCEPTED,
    "DataTransfer": _ACCEPTED,
    "GetCompositeSchedule": {"status": "Rejected"},
    "GetConfiguration": {
        "configurationKey": [
            {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
            {"key": "MeterValueSampleInterval", "readonly": False, "value": "60"},
        ],
        "unknownKey": [],
    },
    "GetDiagnostics": {},
    "GetLocalListVersion": {"listVersion": 0},
    "RemoteStartTransaction": _ACCEPTED,
    "RemoteStopTransaction": _ACCEPTED,
    "ReserveNow": _ACCEPTED,
    "Reset": _ACCEPTED,
    "SendLocalList": _ACCEPTED,
    "SetChargingProfile": _ACCEPTED,
    "TriggerMessage": _ACCEPTED,
    "UnlockConnector": {"status": "Unlocked"},
    "UpdateFirmware": {},
    "ExtendedTriggerMessage": _ACCEPTED,
    "CertificateSigned": _ACCEPTED,
    "InstallCertificate": _ACCEPTED,
    "DeleteCertificate": _ACCEPTED,
    "GetInstalledCertificateIds": {"status": "NotFound"},
    "GetLog": {"status": "Rejected"},
    "SignedUpdateFirmware": _ACCEPTED,
}


def answer_server_call(message_id: str, action: str) -> str:
    """
    The CALLRESULT (or C{NotImplemented} CALLERROR) for a call from the
    central system.
    """
    answer = _ANSWERS.get(action)
    if answer is None:
        return json.dumps([4, message_id, "NotImplemented", "not simulated: " + action, {}])
    return json.dumps([3, message_id, answer], separators=(",", ":"))
