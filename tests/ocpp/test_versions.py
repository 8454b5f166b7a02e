"""
Tests for L{ocpptw.ocpp.versions} and the one RPC core parameterised by a
version: the 2.0.1 schema set, action tables, CALLERROR spellings, and the
session's answers on a 2.0.1 conversation (no socket).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import ocpp
import pytest
from twisted.internet.task import Clock

from ocpptw.ocpp import actions_v201
from ocpptw.ocpp.errors import CODES as CODES_V16
from ocpptw.ocpp.examples import minimal_request, minimal_response
from ocpptw.ocpp.session import OcppSession
from ocpptw.ocpp.validation import Validator
from ocpptw.ocpp.versions import (
    BY_SUBPROTOCOL,
    CODES_V201,
    V16,
    V201,
    choose,
    request_schema,
    response_schema,
    version,
)
from tests.ocpp.support import RecordingSink

SCHEMAS_V201 = Path(__file__).resolve().parents[2] / "ocpptw" / "ocpp" / "schemas_v201"


def test_the_twelve_codes_of_ocpp_j_2_0_1():
    """Exactly Part 4's twelve codes, with its spellings."""
    assert CODES_V201 == {
        "FormatViolation", "GenericError", "InternalError", "MessageTypeNotSupported", "NotImplemented", "NotSupported",
        "OccurrenceConstraintViolation", "PropertyConstraintViolation", "ProtocolError", "RpcFrameworkError",
        "SecurityError", "TypeConstraintViolation",
    }
    assert not CODES_V201 & {"FormationViolation", "OccurenceConstraintViolation"}


@pytest.mark.parametrize("code", sorted(CODES_V16))
def test_every_internal_code_is_spelled_for_each_version(code):
    """1.6 keeps its own codes; 2.0.1 gets one of its twelve for each of them."""
    assert V16.wire_code(code) == code
    assert V201.wire_code(code) in CODES_V201
    assert V16.wire_code(code, rpc=True) == "FormationViolation"
    assert V201.wire_code(code, rpc=True) == "RpcFrameworkError"


def test_schema_set_is_the_official_one_shipped_by_the_ocpp_package():
    """128 files, two per action, identical to the ocpp package's v201 schemas; provenance recorded."""
    theirs = Path(ocpp.__file__).parent / "v201" / "schemas"
    ours = sorted(p.name for p in SCHEMAS_V201.glob("*.json"))
    assert ours == sorted(p.name for p in theirs.glob("*.json")) and len(ours) == 128
    for name in ours:
        assert hashlib.sha256((SCHEMAS_V201 / name).read_bytes()).digest() == hashlib.sha256((theirs / name).read_bytes()).digest()
    source = (SCHEMAS_V201 / "SOURCE.md").read_text()
    assert "MIT License" in source and "mobilityhouse/ocpp" in source
    names = {n.removesuffix(".json").removesuffix("Request").removesuffix("Response") for n in ours}
    assert names == actions_v201.ALL_ACTIONS
    assert len(actions_v201.CHARGER_TO_SERVER) == 25 and len(actions_v201.SERVER_TO_CHARGER) == 40
    assert actions_v201.CHARGER_TO_SERVER & actions_v201.SERVER_TO_CHARGER == {"DataTransfer"}


def test_validators_compile_once_per_version():
    """Validators of one version share the compiled schemas; versions do not mix."""
    a, b = Validator(V201), Validator(V201)
    assert a._requests is b._requests and len(a._requests) == 64 and len(a._responses) == 64
    assert Validator()._requests is not a._requests and Validator().version is V16
    assert a.knows("TransactionEvent") and not Validator().knows("TransactionEvent")
    assert Validator().knows("StartTransaction") and not a.knows("StartTransaction")


@pytest.mark.parametrize("action", sorted(actions_v201.ALL_ACTIONS))
def test_schemas_addressable_by_version_and_action(action):
    """request_schema/response_schema give the raw official schema of (version, action)."""
    request = request_schema("2.0.1", action)
    assert request == json.loads((SCHEMAS_V201 / f"{action}Request.json").read_text())
    assert request_schema("ocpp2.0.1", action) == request
    assert response_schema("2.0.1", action) == json.loads((SCHEMAS_V201 / f"{action}Response.json").read_text())
    request["mutated"] = True
    assert "mutated" not in request_schema("2.0.1", action)
    Validator(V201).check_request(action, minimal_request("2.0.1", action))
    Validator(V201).check_response(action, minimal_response("2.0.1", action))


def test_unknown_version_or_action_has_no_schema():
    assert request_schema("2.0.1", "StartTransaction") is None
    assert request_schema("1.6", "TransactionEvent") is None
    assert response_schema("3.0", "Heartbeat") is None
    assert request_schema("1.6", "Heartbeat") == json.loads((SCHEMAS_V201.parent / "schemas" / "Heartbeat.json").read_text())
    with pytest.raises(KeyError):
        version("ocpp2.0")


@pytest.mark.parametrize(
    "offered, enabled, chosen",
    [
        (["ocpp2.0.1", "ocpp1.6"], ("ocpp2.0.1", "ocpp1.6"), V201),
        (["ocpp1.6", "ocpp2.0.1"], ("ocpp2.0.1", "ocpp1.6"), V16),
        (["ocpp2.0.1", "ocpp1.6"], ("ocpp1.6",), V16),
        (["ocpp2.0", "ocpp1.5"], ("ocpp2.0.1", "ocpp1.6"), None),
        ([], ("ocpp1.6",), None),
    ],
)
def test_choice_follows_the_chargers_order(offered, enabled, chosen):
    assert choose(offered, enabled) is chosen
    assert set(BY_SUBPROTOCOL) == {"ocpp1.6", "ocpp2.0.1"}


def _session(handler=None):
    sink = RecordingSink()
    session = OcppSession("CP", sink, handler or (lambda s, a, p: {"currentTime": "2026-12-04T10:00:00Z"}), Clock(), Validator(V201))
    return session, sink


@pytest.mark.parametrize(
    "text, code, message_id",
    [
        ("]", "RpcFrameworkError", "-1"),
        ("[2]", "RpcFrameworkError", "-1"),
        ('[2, "", "Heartbeat", {}]', "RpcFrameworkError", "-1"),
        ('[2, "a", "Heartbeat", {}, 1]', "RpcFrameworkError", "a"),
        ('[2, "a", "Heartbeat", "x"]', "FormatViolation", "a"),
        ('[5, "a", "Heartbeat", {}]', "MessageTypeNotSupported", "a"),
        ('[5, 7]', "MessageTypeNotSupported", "-1"),
        ('[2, "a", "Heartbeat", {"y": 1}]', "FormatViolation", "a"),
        ('[2, "a", "StartTransaction", {}]', "NotImplemented", "a"),
        ('[2, "a", "GetVariables", {"getVariableData": []}]', "NotSupported", "a"),
        ('[2, "a", "Authorize", {}]', "OccurrenceConstraintViolation", "a"),
    ],
)
def test_session_answers_in_2_0_1_spelling(text, code, message_id):
    """The same session code answers a 2.0.1 charger in 2.0.1's vocabulary."""
    session, sink = _session()
    session.frame_received(text)
    assert sink.frames == [[4, message_id, code, sink.frames[0][3], {}]]


def test_binary_frame_is_an_rpc_framework_error():
    session, sink = _session()
    session.binary_received()
    assert sink.frames[0][:3] == [4, "-1", "RpcFrameworkError"]


def test_outbound_refuses_actions_of_the_other_version():
    """The session's call() knows only its version's CSMS-to-charger actions."""
    session, sink = _session()
    failure = []
    session.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "T"}).addErrback(failure.append)
    assert "OCPP 2.0.1" in str(failure[0].value) and sink.sent == []
    session.call("Reset", {"type": "Immediate"})
    assert json.loads(sink.sent[0])[2:] == ["Reset", {"type": "Immediate"}]


def test_openapi_lists_the_commands_of_both_versions():
    """docs/openapi.yaml's command actions are exactly the server-to-charger actions of 1.6 and 2.0.1."""
    import yaml

    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml").read_text())
    [action] = [p for p in doc["paths"]["/api/v1/chargers/{chargePointId}/commands/{action}"]["post"]["parameters"]
                if p["name"] == "action"]
    assert set(action["schema"]["enum"]) == V16.server_to_charger | V201.server_to_charger
