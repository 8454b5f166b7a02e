"""
Tests for L{ocpptw.services.meter}: MeterValues and transactionData as
C{charging.meterValues} samples.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ocpptw.services.meter import normalise, normalise_sample


def test_energy_in_kwh_becomes_wh_exactly():
    """12.58 kWh is 12580 Wh, an int, with no float noise."""
    [sample] = normalise(
        [{"timestamp": "2026-11-24T10:00:00Z", "sampledValue": [{"value": "12.58", "unit": "kWh"}]}]
    )
    assert sample == {
        "timestamp": "2026-11-24T10:00:00.000Z",
        "measurand": "Energy.Active.Import.Register",
        "value": 12580,
        "unit": "Wh",
    }
    assert type(sample["value"]) is int


def test_defaults_are_energy_import_register_in_wh():
    """A bare value is Energy.Active.Import.Register in Wh."""
    [sample] = normalise([{"timestamp": "2026-11-24T10:00:00Z", "sampledValue": [{"value": "1500"}]}])
    assert (sample["measurand"], sample["value"], sample["unit"]) == ("Energy.Active.Import.Register", 1500, "Wh")


def test_power_and_reactive_units_scale():
    """kW, kvarh, kVA and kvar are scaled by 1000 to W, varh, VA and var."""
    ts = "2026-11-24T10:00:00Z"
    samples = normalise(
        [
            {
                "timestamp": ts,
                "sampledValue": [
                    {"value": "7.4", "unit": "kW", "measurand": "Power.Active.Import", "phase": "L1"},
                    {"value": "0.0015", "unit": "kvarh", "measurand": "Energy.Reactive.Import.Register"},
                    {"value": "11", "unit": "kVA", "measurand": "Power.Offered"},
                    {"value": "0.25", "unit": "kvar", "measurand": "Power.Reactive.Import"},
                    {"value": "16.5", "measurand": "Current.Import"},
                ],
            }
        ]
    )
    assert [(s["value"], s["unit"]) for s in samples] == [
        (7400, "W"),
        (1.5, "varh"),
        (11000, "VA"),
        (250, "var"),
        (16.5, "A"),
    ]
    assert samples[0]["phase"] == "L1"
    assert "phase" not in samples[1]


def test_both_celsius_spellings():
    """The schema's Celcius and Celsius both come out as Celsius; a bare Temperature too."""
    ts = "2026-11-24T10:00:00Z"
    samples = normalise(
        [
            {
                "timestamp": ts,
                "sampledValue": [
                    {"value": "21.5", "unit": "Celcius", "measurand": "Temperature", "location": "Body"},
                    {"value": "22", "unit": "Celsius", "measurand": "Temperature"},
                    {"value": "23", "measurand": "Temperature"},
                ],
            }
        ]
    )
    assert [s["unit"] for s in samples] == ["Celsius"] * 3
    assert samples[0]["location"] == "Body"


def test_signed_data_passes_through():
    """A signed reading keeps its raw value and unit and carries format SignedData."""
    raw = "OCMF|{\"FV\":\"1.0\"}|{\"SA\":\"ECDSA\"}"
    [sample] = normalise(
        [
            {
                "timestamp": "2026-11-24T10:00:00Z",
                "sampledValue": [{"value": raw, "format": "SignedData", "unit": "kWh", "context": "Transaction.End"}],
            }
        ]
    )
    assert sample["value"] == raw
    assert sample["unit"] == "kWh"
    assert sample["format"] == "SignedData"
    assert sample["context"] == "Transaction.End"


def test_raw_format_is_not_echoed():
    """format Raw is the default and is not copied."""
    sample = normalise_sample("t", {"value": "1", "format": "Raw"})
    assert "format" not in sample


def test_contexts_and_order():
    """Out-of-order entries come out sorted, contexts kept; offsets become Z."""
    data = [
        {"timestamp": "2026-11-24T11:00:00+01:00", "sampledValue": [{"value": "2000", "context": "Sample.Periodic"}]},
        {"timestamp": "2026-11-24T09:00:00Z", "sampledValue": [{"value": "1000", "context": "Transaction.Begin"}]},
        {"timestamp": "2026-11-24T10:30:00", "sampledValue": [{"value": "3000", "context": "Transaction.End"}]},
    ]
    samples = normalise(data)
    assert [(s["timestamp"], s["context"], s["value"]) for s in samples] == [
        ("2026-11-24T09:00:00.000Z", "Transaction.Begin", 1000),
        ("2026-11-24T10:00:00.000Z", "Sample.Periodic", 2000),
        ("2026-11-24T10:30:00.000Z", "Transaction.End", 3000),
    ]


def test_bad_data_is_kept_and_logged(fail_on_logged_errors):
    """An unreadable value or timestamp is kept verbatim (last), never dropped."""
    samples = normalise(
        [
            {"timestamp": "yesterday", "sampledValue": [{"value": "12"}]},
            {"timestamp": "2026-11-24T10:00:00Z", "sampledValue": [{"value": "n/a", "unit": "kWh"}]},
        ],
        "CP1",
    )
    assert samples[0]["value"] == "n/a"
    assert samples[0]["unit"] == "kWh"
    assert samples[1]["timestamp"] == "yesterday"
    assert samples[1]["value"] == 12


def test_a_reading_beyond_decimals_range_is_kept_as_sent(fail_on_logged_errors):
    """
    A 2.0.1 multiplier out of range is kept as text like C{5E99999999999999999}:
    Decimal reads it, but its magnitude overflows; kept as sent (and warned about), no crash.
    """
    from ocpptw.ocpp.model_v201 import sampled_values

    def read(value, multiplier):
        meter = [{"timestamp": "2026-11-24T10:00:00Z",
                  "sampledValue": [{"value": value, "unitOfMeasure": {"unit": "kWh", "multiplier": multiplier}}]}]
        [sample] = normalise(sampled_values(meter), "CP1")
        return sample

    for value, multiplier in ((5, 99999999999999999), (-5, 999999999999999999)):
        sample = read(value, multiplier)
        assert sample["value"] == f"{value!r}E{multiplier!r}" and sample["unit"] == "kWh"
    assert read(1.5, -99999999999999999)["value"] == 0  # as small as it gets: nothing
    assert not fail_on_logged_errors  # a warning, not an error


def test_empty_and_json_safe():
    """No data gives no samples; samples are plain JSON."""
    assert normalise(None) == []
    assert normalise([{"timestamp": "2026-11-24T10:00:00Z", "sampledValue": []}]) == []
    samples = normalise([{"timestamp": "2026-11-24T10:00:00Z", "sampledValue": [{"value": "0.5", "measurand": "Power.Factor"}]}])
    assert json.loads(json.dumps(samples)) == samples
    assert samples[0]["unit"] is None


def _by_decimal(raw, factor):
    from decimal import Decimal

    from ocpptw.services.meter import number

    return number(Decimal(raw) * factor)


def test_plain_readings_skip_decimal_with_the_same_results():
    """Plain readings (most) are scaled without Decimal: same value, same type, bit for bit."""
    import random

    rnd = random.Random(5)
    cases = ["0", "-0", "-0.0", "0.000", "230", "230.0", "230.000000000", "16.2", "12.58", "12.5801", "0.0015",
             "-3.25", "007.50", "999999999999999", "999999999999999.999999999", "123456789012345.123456789",
             "0.1", "0.3", "2.675", "1.005"]
    for _ in range(5000):
        whole = str(rnd.randrange(10 ** rnd.randint(1, 15)))
        fraction = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(0, 9)))
        cases.append(rnd.choice(["", "-"]) + whole + ("." + fraction if fraction else ""))
    for raw in cases:
        for unit, factor in (("Wh", 1), ("kWh", 1000)):
            [sample] = normalise([{"timestamp": "2026-11-24T10:00:00Z", "sampledValue": [{"value": raw, "unit": unit}]}])
            expected = _by_decimal(raw, factor)
            assert (type(sample["value"]), sample["value"]) == (type(expected), expected), (raw, unit)
            assert sample["unit"] == "Wh"


def test_other_readings_still_go_through_decimal():
    """Exponents, a plus sign, spaces and long fractions keep the exact Decimal path."""
    for raw, expected in [("1e3", 1000), ("+5", 5), (" 12 ", 12), ("1.0000000001234", 1.0000000001234),
                          ("0.1234567890123456789", 0.1234567890123456789)]:
        [sample] = normalise([{"timestamp": "2026-11-24T10:00:00Z", "sampledValue": [{"value": raw}]}])
        assert sample["value"] == expected and type(sample["value"]) is type(expected)
        assert sample["value"] == _by_decimal(raw.strip(), 1)


def test_timestamps_are_remembered_within_bounds():
    """utc_timestamp gives parse_iso and iso_z's results, remembers recent texts and forgets beyond its bound."""
    from datetime import datetime, timezone

    import pytest

    from ocpptw.services import meter

    moment, text = meter.utc_timestamp("2026-11-24T11:00:00+01:00")
    assert (moment, text) == (datetime(2026, 11, 24, 10, tzinfo=timezone.utc), "2026-11-24T10:00:00.000Z")
    assert meter.utc_timestamp("2026-11-24T11:00:00+01:00") is meter.utc_timestamp("2026-11-24T11:00:00+01:00")
    for n in range(meter._STAMPS_MAX * 2):
        meter.utc_timestamp(f"2026-11-24T10:{n // 60 % 60:02d}:{n % 60:02d}Z")
    assert len(meter._STAMPS) <= meter._STAMPS_MAX
    for bad in ("yesterday", 12, None, "9999-12-31T23:59:59-05:00"):
        with pytest.raises(ValueError):
            meter.utc_timestamp(bad)


_UNITS = ("Wh", "kWh", "A", "V", "kW", "Celcius", "Percent", None)


@settings(max_examples=3000, deadline=None)
@given(
    raw=st.one_of(
        st.integers(min_value=-(10**17), max_value=10**17),
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(min_value=-1e16, max_value=1e16),
        st.decimals(min_value=-(10**6), max_value=10**6, places=3, allow_nan=False).map(float),
        st.sampled_from([0.0, -0.0, 16.3, 229.9, 1e-05, 0.30000000000000004, 1e15, -1e15, 999999999999999.9]),
    ),
    unit=st.sampled_from(_UNITS),
)
def test_a_number_reads_as_its_decimal_text(raw, unit):
    """
    2.0.1 sends readings as JSON numbers: a number read as it is gives the
    same sample (value, its type, unit) as its exact decimal text would.
    """
    from ocpptw.ocpp.model_v201 import decimal_text, sampled_values

    sampled = {"value": raw, "measurand": "Energy.Active.Import.Register"}
    if unit:
        sampled["unit"] = unit
    text = dict(sampled, value=decimal_text(raw))
    as_number = normalise_sample("T", sampled)
    as_text = normalise_sample("T", text)
    if type(as_text["value"]) is not str:  # what is kept as sent stays what was sent
        assert (type(as_number["value"]), as_number["value"], as_number["unit"]) == (
            type(as_text["value"]),
            as_text["value"],
            as_text["unit"],
        ), (raw, unit)
    # and through the 2.0.1 translation, which keeps such numbers as they are
    v201 = {"value": raw, "measurand": "Energy.Active.Import.Register"}
    if unit:
        v201["unitOfMeasure"] = {"unit": unit}
    [translated] = normalise([{"timestamp": "2026-11-24T10:00:00Z", "sampledValue": sampled_values([{"timestamp": "x", "sampledValue": [v201]}])[0]["sampledValue"]}])
    assert (type(translated["value"]), translated["value"]) == (type(as_text["value"]), as_text["value"]), (raw, unit)
