# -*- test-case-name: tests.services.test_meter -*-
"""
Meter readings as consumers want them: the samples of C{charging.meterValues}
(docs/contract.md section 5), from MeterValues' C{meterValue} and StopTransaction's
C{transactionData}.

Each OCPP C{sampledValue} becomes one sample::

    {timestamp, measurand, value, unit, phase?, context?, location?, format?}

Choices, for consumers to rely on:

  - C{value} is a JSON number: an C{int} when the normalised value is
    integral (C{"12.58"} kWh -> C{12580} Wh), else a C{float}.  The scaling
    is exact (in L{Decimal}, or by moving the decimal point of a plain
    reading), so C{kWh * 1000} never picks up float noise.
  - Units are normalised: C{kWh} -> C{Wh}, C{kvarh} -> C{varh}, C{kW} -> C{W},
    C{kVA} -> C{VA}, C{kvar} -> C{var} (values times 1000); both spellings of
    Celsius (the 1.6 schema's C{Celcius} and C{Celsius}) -> C{Celsius}.  Other
    units pass through.
  - A missing C{measurand} is C{Energy.Active.Import.Register} (OCPP's
    default); a missing C{unit} is the measurand's natural unit (C{Wh} for
    active energy, as OCPP says; C{varh}, C{W}, C{var}, C{A}, C{V},
    C{Celsius}, C{Percent}, C{Hertz} for the others).
  - Signed readings (C{format: SignedData}) keep the charger's raw value
    (a string), its unit unscaled, and carry C{format: "SignedData"}.  A
    value that is not a number (bad data from a charger), or whose
    magnitude is L{MAX_READING} or more (no meter reads a petawatt-hour; such
    a number could not even be encoded as JSON past 4,300 digits), is kept
    as the charger's string, logged at warn, and its unit is not scaled.
  - C{phase}, C{context} (including C{Transaction.Begin}/C{Transaction.End})
    and C{location} are copied when the charger sent them, never invented.
  - Timestamps are ISO 8601 UTC with a C{Z} (a missing offset is read as
    UTC); samples come out in timestamp order, whatever order they came in
    (stable for equal timestamps; unreadable timestamps go last, verbatim).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

from twisted.logger import Logger

from ocpptw.clock import iso_z, parse_iso

log = Logger()

DEFAULT_MEASURAND = "Energy.Active.Import.Register"
SIGNED = "SignedData"

#: unit -> (normalised unit, factor)
_SCALE: dict[str, tuple[str, int]] = {
    "kWh": ("Wh", 1000),
    "kvarh": ("varh", 1000),
    "kW": ("W", 1000),
    "kVA": ("VA", 1000),
    "kvar": ("var", 1000),
    "Celcius": ("Celsius", 1),
}

#: measurand prefix -> unit when the charger sends none
_NATURAL_UNIT: tuple[tuple[str, str | None], ...] = (
    ("Energy.Active.", "Wh"),
    ("Energy.Reactive.", "varh"),
    ("Power.Active.", "W"),
    ("Power.Offered", "W"),
    ("Power.Reactive.", "var"),
    ("Power.Factor", None),
    ("Current.", "A"),
    ("Voltage", "V"),
    ("Frequency", "Hertz"),
    ("Temperature", "Celsius"),
    ("SoC", "Percent"),
    ("RPM", "RPM"),
)

#: Readings this large or larger are bad data: kept as sent, not scaled.
MAX_READING = Decimal("1e15")

#: L{MAX_READING} as an integer bound.
_MAX_INT = 10**15
_MAX_FLOAT = 1e15

_LAST = datetime.max.replace(tzinfo=timezone.utc)

#: A plain reading: an optional minus, at most 15 integer digits (so below
#: L{MAX_READING}) and 9 decimals (so within L{Decimal}'s 28 digits, which
#: the slow path would round to).  Most readings are; they skip L{Decimal}.
_PLAIN = re.compile(r"(-?)([0-9]{1,15})(?:\.([0-9]{1,9}))?").fullmatch


def _plain(sign: str, whole: str, fraction: str | None, factor: int) -> int | float:
    """
    C{sign whole.fraction} times C{factor} (1 or 1000) as L{number} gives
    it: exact, because scaling by 1000 moves the decimal point.
    """
    fraction = (fraction or "").rstrip("0")
    if factor != 1:
        fraction = fraction.ljust(3, "0")
        whole, fraction = whole + fraction[:3], fraction[3:]
    if not fraction:
        return int(sign + whole)
    return float(sign + whole + "." + fraction)


def natural_unit(measurand: str) -> str | None:
    """
    The unit a reading of C{measurand} has when the charger names none
    (C{None} for the dimensionless power factor).
    """
    for prefix, unit in _NATURAL_UNIT:
        if measurand.startswith(prefix):
            return unit
    return "Wh"


def number(value: Decimal) -> int | float:
    """
    C{value} as a JSON number: C{int} when integral, else C{float}.
    """
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def normalise_sample(timestamp: str, sampled: dict, charge_point_id: str = "") -> dict:
    """
    One OCPP C{sampledValue} taken at C{timestamp} (already normalised) as a
    C{charging.meterValues} sample.
    """
    get = sampled.get
    measurand = get("measurand") or DEFAULT_MEASURAND
    unit = get("unit") or natural_unit(measurand)
    raw = get("value")
    signed = get("format") == SIGNED
    value: object = raw
    plain = None if signed or type(raw) is not str else _PLAIN(raw)
    if plain is not None:
        scale = _SCALE.get(unit) if unit else None
        if scale is None:
            value = int(raw) if plain[3] is None else _plain(plain[1], plain[2], plain[3], 1)  # type: ignore[arg-type]
        else:
            unit = scale[0]
            value = _plain(plain[1], plain[2], plain[3], scale[1])
    elif type(raw) is int and not signed and -_MAX_INT < raw < _MAX_INT:
        # a JSON number (2.0.1 sends numbers): as its decimal text would be
        scale = _SCALE.get(unit) if unit else None
        if scale is not None:
            unit, value = scale[0], raw * scale[1]
    elif type(raw) is float and not signed and -_MAX_FLOAT < raw < _MAX_FLOAT:  # NaN is not
        scale = _SCALE.get(unit) if unit else None
        if scale is None:
            value = int(raw) if raw.is_integer() else raw
        else:
            unit, value = scale[0], number(Decimal(repr(raw)) * scale[1])  # exact, as for its text
    elif not signed:
        try:
            amount = Decimal(str(raw).strip())
            if not amount.is_finite() or abs(amount) >= MAX_READING:
                raise InvalidOperation
        except ArithmeticError:  # decimal's InvalidOperation, and Overflow from abs() of 5E99999999999999999
            log.warn(
                "unreadable meter value {value!r} ({measurand}) from {chargePointId}; kept as sent",
                value=str(raw)[:40],
                measurand=measurand,
                chargePointId=charge_point_id,
            )
        else:
            unit, factor = _SCALE.get(unit, (unit, 1)) if unit else (unit, 1)
            value = number(amount * factor)
    elif unit == "Celcius":
        unit = "Celsius"
    sample: dict = {"timestamp": timestamp, "measurand": measurand, "value": value, "unit": unit}
    phase, context, location = get("phase"), get("context"), get("location")
    if phase:
        sample["phase"] = phase
    if context:
        sample["context"] = context
    if location:
        sample["location"] = location
    if signed:
        sample["format"] = SIGNED
    return sample


#: recent timestamp texts -> (moment, ISO Z text): chargers stamp many readings alike
_STAMPS: dict[object, tuple[datetime, str]] = {}
_STAMPS_MAX = 256


def utc_timestamp(text: object) -> tuple[datetime, str]:
    """
    A charger's timestamp as an aware UTC datetime and as ISO 8601 UTC with
    a C{Z} (L{ocpptw.clock.parse_iso}, then L{ocpptw.clock.iso_z}); recent
    texts are remembered.

    @raise ValueError: when C{text} is not a readable timestamp.
    """
    known = _STAMPS.get(text)
    if known is not None:
        return known
    if type(text) is not str:
        raise ValueError(f"not a timestamp: {text!r}")
    moment = parse_iso(text)
    if len(_STAMPS) >= _STAMPS_MAX:
        _STAMPS.clear()
    known = _STAMPS[text] = (moment, iso_z(moment))
    return known


def _timestamp(text: object, charge_point_id: str) -> tuple[datetime, str]:
    try:
        return utc_timestamp(text)
    except (TypeError, ValueError):
        log.warn(
            "unreadable meter timestamp {timestamp!r} from {chargePointId}; kept as sent",
            timestamp=str(text)[:40],
            chargePointId=charge_point_id,
        )
        return _LAST, str(text)


def normalise(meter_values: list[dict] | None, charge_point_id: str = "") -> list[dict]:
    """
    Every sample of a MeterValues C{meterValue} (or a StopTransaction
    C{transactionData}) list, normalised and in timestamp order.

    @param meter_values: C{[{timestamp, sampledValue: [...]}, ...]}; C{None}
        or empty gives C{[]}.
    @param charge_point_id: for log lines about bad data.
    """
    if meter_values and len(meter_values) == 1:  # one timestamp: already in order
        entry = meter_values[0]
        stamp = _timestamp(entry.get("timestamp"), charge_point_id)[1]
        return [normalise_sample(stamp, sampled, charge_point_id) for sampled in entry.get("sampledValue") or ()]
    keyed: list[tuple[datetime, int, dict]] = []
    for entry in meter_values or ():
        moment, stamp = _timestamp(entry.get("timestamp"), charge_point_id)
        for sampled in entry.get("sampledValue") or ():
            keyed.append((moment, len(keyed), normalise_sample(stamp, sampled, charge_point_id)))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [sample for _, _, sample in keyed]


def energy_registers(meter_values: list) -> list[tuple[int, str | None]]:
    """
    The energy register readings in C{meter_values} (1.6's shape of
    C{meterValue}): sampled values of measurand
    C{Energy.Active.Import.Register} (or of none) without a phase, in Wh,
    as C{(Wh, context)}, in the order sent.
    """
    found = []
    for meter_value in meter_values:
        for sampled in meter_value.get("sampledValue") or ():
            if sampled.get("measurand", DEFAULT_MEASURAND) != DEFAULT_MEASURAND or sampled.get("phase") is not None:
                continue
            try:
                sample = normalise_sample(meter_value.get("timestamp") or "", sampled)
            except (ValueError, TypeError):
                continue
            value = sample.get("value")
            if sample.get("unit") != "Wh" or type(value) not in (int, float):
                continue
            found.append((int(Decimal(str(value))), sampled.get("context")))
    return found
