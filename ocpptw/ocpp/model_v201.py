# -*- test-case-name: tests.ocpp.test_transaction_events -*-
"""
OCPP 2.0.1 payloads in the shapes of the gateway's version-neutral model
(which speaks 1.6's field names), and the model's answers in 2.0.1's shapes.
Pure functions.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

VERSION = "2.0.1"

#: The idToken type that stands for "no idToken" (docs/contract.md section 7).
NO_AUTHORIZATION = "NoAuthorization"


def boot_fields(payload: dict) -> tuple[dict, dict]:
    """
    A 2.0.1 BootNotification as the services' model: the 1.6-named fields
    L{ocpptw.services.chargers.ensure_body} reads, and what 2.0.1 adds to
    the C{ensure} body (C{reason}, C{ocppVersion}).
    """
    station = payload.get("chargingStation") or {}
    modem = station.get("modem") or {}
    fields = {
        "chargePointVendor": station.get("vendorName"),
        "chargePointModel": station.get("model"),
        "chargePointSerialNumber": station.get("serialNumber"),
        "firmwareVersion": station.get("firmwareVersion"),
        "iccid": modem.get("iccid"),
        "imsi": modem.get("imsi"),
    }
    extra = {"reason": payload.get("reason"), "ocppVersion": VERSION}
    return {k: v for k, v in fields.items() if v is not None}, extra


def status_fields(payload: dict) -> tuple[dict, dict]:
    """
    A 2.0.1 StatusNotification as the model's status: C{status} is
    C{connectorStatus} as sent, C{errorCode} C{NoError} (C{OtherError}
    when C{Faulted}); C{evseId} and C{ocppVersion} ride along.
    """
    status = payload["connectorStatus"]
    fields = {
        "connectorId": payload["connectorId"],
        "status": status,
        "errorCode": "OtherError" if status == "Faulted" else "NoError",
        "timestamp": payload.get("timestamp"),
    }
    return fields, {"evseId": payload["evseId"]}


def id_token_info(info: dict) -> dict:
    """
    The model's idTagInfo (1.6 shape) as 2.0.1's C{idTokenInfo}: C{status}
    as is, C{expiryDate} -> C{cacheExpiryDateTime}, C{parentIdTag} ->
    C{groupIdToken {idToken, type: "Central"}}.
    """
    out: dict[str, Any] = {"status": info.get("status", "Invalid")}
    if info.get("expiryDate"):
        out["cacheExpiryDateTime"] = info["expiryDate"]
    if info.get("parentIdTag"):
        out["groupIdToken"] = {"idToken": info["parentIdTag"], "type": "Central"}
    return out


_EXACT = 10**28

#: Numbers below this magnitude (the meter code's MAX_READING) stay numbers.
_READING = 10**15

#: The largest power of ten a C{unitOfMeasure.multiplier} may scale by (the
#: schema sets no bound; SI prefixes go to 30).
MAX_MULTIPLIER = 30


def decimal_text(value: Any, multiplier: Any = None) -> str:
    """
    C{value} times ten to the C{multiplier}, exactly, as a plain decimal
    string without a needless fraction (C{1234.0} is C{"1234"}); what is not
    a number is its C{str}.  Integers and floats written without an
    exponent, the common case, need no L{Decimal}.
    """
    if not multiplier:
        kind = type(value)
        if kind is int and -_EXACT < value < _EXACT:  # Decimal keeps 28 digits
            return str(value)
        if kind is float:
            text = repr(value)
            if "e" not in text and "n" not in text:  # not 1e+16, inf or nan
                return text[:-2] if text.endswith(".0") else text
    if multiplier and not (type(multiplier) is int and -MAX_MULTIPLIER <= multiplier <= MAX_MULTIPLIER):
        # unreadable as sent (the meter code logs and keeps it), never a
        # million-digit text from a one-digit value
        return f"{value!r}E{multiplier!r}"[:64]
    try:
        number = Decimal(repr(value) if isinstance(value, float) else str(value))
        if multiplier:
            number = number.scaleb(int(multiplier))
        return format(number.normalize(), "f") if number == number.to_integral_value() else format(number, "f")
    except (ArithmeticError, ValueError, TypeError):  # decimal's errors are ArithmeticErrors
        return str(value)


def sampled_values(meter_values: list) -> list[dict]:
    """
    2.0.1 C{meterValue}s in the model's (1.6) shape: each C{sampledValue}'s
    numeric C{value} with C{unitOfMeasure.multiplier} applied (exactly, in
    L{Decimal}) becomes a decimal string (a number without a multiplier,
    below L{ocpptw.services.meter.MAX_READING}, stays the number: the meter
    code reads it as it would read its decimal text), C{unitOfMeasure.unit}
    its unit;
    measurand, phase, context and location are copied.
    """
    out = []
    for meter_value in meter_values or ():
        samples = []
        for sampled in meter_value.get("sampledValue") or ():
            unit_of_measure = sampled.get("unitOfMeasure")
            value = sampled.get("value")
            multiplier = unit_of_measure.get("multiplier") if unit_of_measure else None
            kind = type(value)
            if (kind is int or kind is float) and not multiplier and -_READING < value < _READING:
                sample: dict[str, Any] = {"value": value}  # the meter code reads these numbers as they are
            else:
                sample = {"value": decimal_text(value, multiplier)}
            # unrolled: four lookups a sampled value, ten values a meter frame
            field = sampled.get("measurand")
            if field is not None:
                sample["measurand"] = field
            field = sampled.get("phase")
            if field is not None:
                sample["phase"] = field
            field = sampled.get("context")
            if field is not None:
                sample["context"] = field
            field = sampled.get("location")
            if field is not None:
                sample["location"] = field
            if unit_of_measure and unit_of_measure.get("unit") is not None:
                sample["unit"] = unit_of_measure["unit"]
            samples.append(sample)
        out.append({"timestamp": meter_value.get("timestamp"), "sampledValue": samples})
    return out
