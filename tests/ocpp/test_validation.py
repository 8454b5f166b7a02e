# -*- test-case-name: tests.ocpp.test_validation -*-
"""
Tests for L{ocpptw.ocpp.validation}.
"""

from __future__ import annotations

import pytest

from ocpptw.ocpp import validation
from ocpptw.ocpp.errors import OcppError
from ocpptw.ocpp.validation import Validator, is_date_time


@pytest.fixture(scope="module")
def validator() -> Validator:
    """One validator for the module (compiling is done once per process anyway)."""
    return Validator()


def _code(check, action, payload) -> str:
    with pytest.raises(OcppError) as info:
        check(action, payload)
    assert "Traceback" not in info.value.description
    assert len(info.value.description) <= validation.MAX_DESCRIPTION
    return info.value.code


def _meter(unit="Wh", timestamp="2026-11-23T10:00:00Z") -> dict:
    return {
        "connectorId": 1,
        "transactionId": 7,
        "meterValue": [{"timestamp": timestamp, "sampledValue": [{"value": "12", "unit": unit}]}],
    }


def _profile(limit) -> dict:
    return {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
            },
        },
    }


def test_compiled_once_and_shared():
    """Several validators share the module-level compiled schemas."""
    first, second = Validator(), Validator()
    assert first._requests is second._requests is validation._requests
    assert len(validation._requests) == 39 and len(validation._responses) == 39


def test_knows_actions(validator):
    """knows() is true for 1.6 actions only."""
    assert validator.knows("BootNotification") and validator.knows("SignedUpdateFirmware")
    assert not validator.knows("BootNotificationResponse") and not validator.knows("NotifyReport")


def test_valid_request_and_response(validator):
    """Valid CALL and CALLRESULT payloads pass."""
    validator.check_request("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    validator.check_response(
        "BootNotification", {"status": "Accepted", "currentTime": "2026-11-23T10:00:00.000Z", "interval": 300}
    )
    validator.check_request("MeterValues", _meter())


def test_request_and_response_use_their_own_schema(validator):
    """A response payload is not accepted as the request, and vice versa."""
    assert _code(validator.check_request, "Heartbeat", {"currentTime": "2026-11-23T10:00:00Z"}) == "FormationViolation"
    assert _code(validator.check_response, "Heartbeat", {}) == "OccurenceConstraintViolation"


def test_unknown_action_is_not_implemented(validator):
    """Checking an action without a schema raises NotImplemented."""
    assert _code(validator.check_request, "Foo", {}) == "NotImplemented"
    assert _code(validator.check_response, "Foo", {}) == "NotImplemented"


@pytest.mark.parametrize(
    "action, payload, code",
    [
        ("StatusNotification", {"connectorId": 1, "errorCode": "NoError"}, "OccurenceConstraintViolation"),
        ("MeterValues", {"connectorId": 1, "meterValue": []}, "OccurenceConstraintViolation"),
        ("StatusNotification", {"connectorId": "1", "errorCode": "NoError", "status": "Available"},
         "TypeConstraintViolation"),
        ("StatusNotification", {"connectorId": True, "errorCode": "NoError", "status": "Available"},
         "TypeConstraintViolation"),
        ("Authorize", {"idTag": 5}, "TypeConstraintViolation"),
        ("Authorize", {"idTag": "x" * 21}, "PropertyConstraintViolation"),
        ("StatusNotification", {"connectorId": 1, "errorCode": "Broken", "status": "Available"},
         "PropertyConstraintViolation"),
        ("MeterValues", _meter(unit="Kelvin"), "PropertyConstraintViolation"),
        ("MeterValues", _meter(timestamp="yesterday"), "PropertyConstraintViolation"),
        ("Heartbeat", {"extra": 1}, "FormationViolation"),
        ("Authorize", {"idTag": "A", "idtag": "A"}, "FormationViolation"),
    ],
)
def test_failures_map_to_contract_codes(validator, action, payload, code):
    """Each kind of schema failure gets the CALLERROR code docs/contract.md section 1 names."""
    assert _code(validator.check_request, action, payload) == code


def test_description_names_the_field(validator):
    """The description is fastjsonschema's message, naming the path."""
    with pytest.raises(OcppError) as info:
        validator.check_request("MeterValues", _meter(unit="Kelvin"))
    assert info.value.description.startswith("data.meterValue[0].sampledValue[0].unit must be one of [")


def test_multiple_of_on_plain_floats(validator):
    """SetChargingProfile limit (multipleOf 0.1) accepts 21.4, 0.3 and 16, refuses 21.45."""
    for limit in (21.4, 0.3, 16, 16.0, 1e300):
        validator.check_request("SetChargingProfile", _profile(limit))
    assert _code(validator.check_request, "SetChargingProfile", _profile(21.45)) == "PropertyConstraintViolation"


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-23T10:00:00Z",
        "2026-11-23T10:00:00.123Z",
        "2026-11-23T10:00:00.1Z",
        "2026-11-23T10:00:00.123456789Z",
        "2026-11-23T10:00:00",
        "2026-11-23T10:00:00.5",
        "2026-11-23T10:00:00+01:00",
        "2026-11-23T10:00:00-0530",
        "2026-11-23 10:00:00",
        "2024-02-29T23:59:59z",
    ],
)
def test_loosened_date_time_accepts_what_chargers_send(validator, text):
    """No offset, any fraction length, a space or a compact offset are accepted."""
    assert is_date_time(text)
    validator.check_request("MeterValues", _meter(timestamp=text))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2026-11-23",
        "2026-11-23T10:00",
        "20261123T100000Z",
        "2026-02-30T10:00:00Z",
        "2026-11-23T24:00:00Z",
        "2026-11-23T10:00:00.Z",
        "2026-11-23T10:00:00ZZ",
        "2026-11-23T10:00:00+1",
        "2026-W47-1T10:00:00",
        " 2026-11-23T10:00:00Z",
        "2026-11-23T10:00:00Z\n",
    ],
)
def test_loosened_date_time_still_refuses_garbage(validator, text):
    """Non-timestamps and impossible dates are still PropertyConstraintViolation."""
    assert not is_date_time(text)
    assert _code(validator.check_request, "MeterValues", _meter(timestamp=text)) == "PropertyConstraintViolation"


def test_validation_does_not_change_the_payload(validator):
    """Validation never fills in defaults or otherwise mutates the payload."""
    payload = _meter()
    before = repr(payload)
    validator.check_request("MeterValues", payload)
    assert repr(payload) == before


def test_every_response_schema_compiles_and_refuses_junk(validator):
    """Every action has a compiled response check that refuses an unknown property."""
    for action in validator.actions():
        assert _code(validator.check_response, action, {"surelyNotAField": 1}) in {
            "FormationViolation",
            "OccurenceConstraintViolation",
        }


@pytest.mark.parametrize("limit", [float("nan"), float("inf"), -float("inf")])
def test_non_json_numbers_are_refused_not_crashing(validator, limit):
    """NaN or infinity (possible only in our own payloads) is a TypeConstraintViolation, not a crash."""
    assert _code(validator.check_request, "SetChargingProfile", _profile(limit)) == "TypeConstraintViolation"


def _plain_validators() -> dict[str, object]:
    """Every schema compiled by fastjsonschema itself (with the integer bounds), the reference."""
    import json as json_module

    import fastjsonschema

    plain = {}
    for path in sorted(validation.SCHEMA_DIR.glob("*.json")):
        schema = json_module.loads(path.read_text(encoding="utf-8"))
        validation._bound_integers(schema)
        plain[path.stem] = fastjsonschema.compile(schema, formats=validation._FORMATS, use_default=False)
    return plain


_PLAIN = None


def _outcome(check, payload):
    import fastjsonschema

    try:
        check(payload)
    except fastjsonschema.JsonSchemaValueException as e:
        return e.rule, e.message
    return None


def test_set_lookups_accept_and_refuse_as_fastjsonschema():
    """Enums as set lookups, dead additionalProperties dropped: every outcome (rule, message) is fastjsonschema's own."""
    from hypothesis import given
    from hypothesis import strategies as st

    from ocpptw.ocpp.actions import ALL_ACTIONS
    from tests.fuzz.schemas import fuzz_settings, mutated, valid_payload, valid_response

    global _PLAIN
    if _PLAIN is None:
        _PLAIN = _plain_validators()
    Validator()
    ours = {**validation._requests, **{name + "Response": check for name, check in validation._responses.items()}}
    assert set(ours) == set(_PLAIN)

    @fuzz_settings(300)
    @given(action=st.sampled_from(sorted(ALL_ACTIONS)), data=st.data())
    def agree(action, data):
        for response in (False, True):
            name = action + ("Response" if response else "")
            good = data.draw(valid_response(action) if response else valid_payload(action))
            bad = data.draw(mutated(action, response))[0]
            odd = {"status": {"nested": 1}, "idTag": ["x"], "unit": {}, "connectorId": True}
            for payload in (good, bad, odd, {}):
                assert _outcome(ours[name], payload) == _outcome(_PLAIN[name], payload), (name, payload)

    agree()


def test_valid_timestamps_are_remembered_within_bounds():
    """is_date_time remembers the timestamps it accepted, up to a bound, and never a refused one."""
    validation._VALID_TIMES.clear()
    assert is_date_time("2026-11-24T10:00:00Z") and "2026-11-24T10:00:00Z" in validation._VALID_TIMES
    assert not is_date_time("2026-02-30T10:00:00Z") and "2026-02-30T10:00:00Z" not in validation._VALID_TIMES
    for n in range(validation._VALID_TIMES_MAX * 2):
        assert is_date_time(f"2026-11-24T10:{n // 60 % 60:02d}:{n % 60:02d}Z")
    assert len(validation._VALID_TIMES) <= validation._VALID_TIMES_MAX


def test_definitions_are_inlined_with_the_same_verdicts():
    """
    The 2.0.1 schemas' definitions are checked in place (no function per
    definition), and a nested violation fails exactly as through the
    reference: same rule, same message.
    """
    import json

    import fastjsonschema

    from ocpptw.ocpp.validation import _inline_definitions
    from ocpptw.ocpp.versions import V201

    schema = json.loads((V201.schema_dir / "TransactionEventRequest.json").read_text())
    inlined = _inline_definitions(schema)
    assert '"$ref"' not in json.dumps({k: v for k, v in inlined.items() if k != "definitions"})
    event = {
        "eventType": "Updated",
        "timestamp": "2026-12-04T10:00:00Z",
        "triggerReason": "MeterValuePeriodic",
        "seqNo": 3,
        "transactionInfo": {"transactionId": "TX-1"},
        "meterValue": [
            {"timestamp": "2026-12-04T10:00:00Z", "sampledValue": [{"value": 1.5, "unitOfMeasure": {"multiplier": "3"}}]}
        ],
    }
    verdicts = []
    for variant in (schema, inlined):
        with pytest.raises(fastjsonschema.JsonSchemaValueException) as caught:
            fastjsonschema.compile(variant)(event)
        verdicts.append((caught.value.rule, caught.value.message))
    assert verdicts[0] == verdicts[1] and verdicts[0][0] == "type"
