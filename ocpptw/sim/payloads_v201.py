# -*- test-case-name: tests.test_sim -*-
"""
The OCPP 2.0.1 payloads a simulated charging station sends, and its answers
to the CSMS's calls.  A charging session is built from TransactionEvents:
C{Started} (with the idToken and the register at the start), C{Updated}
with meter values, C{Ended} with the final register; the station chooses
the transactionId.
"""

from __future__ import annotations

import json

from ocpptw.ocpp.actions_v201 import SERVER_TO_CHARGER
from ocpptw.ocpp.examples import minimal_response
from ocpptw.sim.payloads import timestamp


def boot_notification(charger_id: str) -> str:
    return json.dumps(
        {
            "chargingStation": {
                "vendorName": "ocpptw-sim",
                "model": "SimStation-22kW",
                "serialNumber": charger_id[-25:],
                "firmwareVersion": "2.0.1-sim",
            },
            "reason": "PowerUp",
        },
        separators=(",", ":"),
    )


def status_notification(evse_id: int, charging: bool) -> str:
    status = "Occupied" if charging else "Available"
    return '{"timestamp":"%s","connectorStatus":"%s","evseId":%d,"connectorId":1}' % (timestamp(), status, max(evse_id, 1))


def authorize(id_tag: str) -> str:
    return '{"idToken":{"idToken":"%s","type":"ISO14443"}}' % id_tag


def _register(energy_wh: int, context: str) -> str:
    return (
        '[{"timestamp":"%s","sampledValue":[{"value":%d,"context":"%s","measurand":"Energy.Active.Import.Register",'
        '"unitOfMeasure":{"unit":"Wh"}},{"value":7200,"context":"%s","measurand":"Power.Active.Import",'
        '"unitOfMeasure":{"unit":"kW","multiplier":-3}}]}]' % (timestamp(), energy_wh, context, context)
    )


def _sv(measurand: str, unit: str, phase: str = "", location: str = "Outlet") -> str:
    extra = (',"phase":"%s"' % phase) if phase else ""
    return (
        '{"value":%s,"context":"Sample.Periodic","measurand":"' + measurand + '"' + extra
        + ',"location":"' + location + '","unitOfMeasure":{"unit":"' + unit + '"}}'
    )


#: the ten sampled values of the 1.6 MeterValues (energy register, power,
#: current and voltage per phase, SoC; frequency for the temperature that
#: 2.0.1 does not name), in 2.0.1 spelling, so
#: that a 2.0.1 meter frame carries what its 1.6 counterpart carries
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
        _sv("Frequency", "Hz"),  # 2.0.1 has no Temperature measurand
    ]
)
_PERIODIC = '[{"timestamp":"%s","sampledValue":[' + _SAMPLED + "]}]"


def _periodic(energy_wh: int, seq: int) -> str:
    """
    One meter value with the ten periodic samples; C{seq} varies the readings
    a little (as the 1.6 payloads do).
    """
    amps = 16.0 + (seq % 7) * 0.1
    volts = 229.0 + (seq % 5) * 0.3
    return _PERIODIC % (
        timestamp(),
        str(energy_wh),
        str(int(amps * volts * 3)),
        "%.1f" % amps,
        "%.1f" % (amps - 0.2),
        "%.1f" % (amps + 0.1),
        "%.1f" % volts,
        "%.1f" % (volts + 0.4),
        "%.1f" % (volts - 0.3),
        str(20 + seq % 80),
        "50",
    )


def transaction_event(kind: str, transaction_id: str, seq_no: int, id_tag: str | None, energy_wh: int) -> str:
    """
    A TransactionEvent: C{kind} is C{Started}, C{Updated} or C{Ended}.
    """
    trigger, context = {
        "Started": ("Authorized", "Transaction.Begin"),
        "Updated": ("MeterValuePeriodic", "Sample.Periodic"),
        "Ended": ("StopAuthorized", "Transaction.End"),
    }[kind]
    info = '{"transactionId":"%s"%s}' % (
        transaction_id,
        ',"stoppedReason":"Local"' if kind == "Ended" else ',"chargingState":"Charging"',
    )
    token = ',"idToken":{"idToken":"%s","type":"ISO14443"}' % id_tag if id_tag else ""
    evse = ',"evse":{"id":1,"connectorId":1}' if kind == "Started" else ""
    meter = _periodic(energy_wh, seq_no) if kind == "Updated" else _register(energy_wh, context)
    return '{"eventType":"%s","timestamp":"%s","triggerReason":"%s","seqNo":%d,"transactionInfo":%s%s%s,"meterValue":%s}' % (
        kind, timestamp(), trigger, seq_no, info, token, evse, meter,
    )


def meter_values(energy_wh: int, seq: int = 0) -> str:
    """
    MeterValues outside a transaction, with the ten periodic samples.
    """
    return '{"evseId":1,"meterValue":%s}' % _periodic(energy_wh, seq)


_ANSWERS = {action: json.dumps(minimal_response("2.0.1", action), separators=(",", ":")) for action in SERVER_TO_CHARGER}


def answer_server_call(message_id: str, action: str) -> str:
    """
    The smallest valid CALLRESULT for a call from the CSMS, or
    C{NotImplemented} for an action 2.0.1 does not send to stations.
    """
    answer = _ANSWERS.get(action)
    if answer is None:
        return json.dumps([4, message_id, "NotImplemented", "not simulated: " + action[:60], {}])
    return '[3,"' + message_id + '",' + answer + "]"
