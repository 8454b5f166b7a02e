# -*- test-case-name: tests.adapters.test_backend_api_doc -*-
"""
C{docs/backend-api.yaml} describes exactly what L{HttpBackend} sends: every
request of a run of every method matches a documented operation, and its
body has the documented required properties and no undocumented ones.  The
test backend's answers match the documented answers too.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest
import yaml
from treq.testing import RequestTraversalAgent

from ocpptw.adapters.backend_http import HttpBackend
from ocpptw.interfaces import IBackend
from ocpptw.testing.backend import FakeBackend
from tests.helpers import success_result_of

DOC = Path(__file__).resolve().parents[2] / "docs" / "backend-api.yaml"
NOW = "2026-11-24T10:00:00.000Z"


def _resolve(node: Any, doc: dict) -> Any:
    """
    Inline every local C{$ref}, keeping sibling keys (OpenAPI 3.1 allows them).
    """
    if isinstance(node, list):
        return [_resolve(item, doc) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        merged = {**_resolve(copy.deepcopy(target), doc), **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, doc)
    return {key: _resolve(value, doc) for key, value in node.items()}


@pytest.fixture(scope="module")
def operations() -> dict[tuple[str, str], dict]:
    """
    The documented operations by (METHOD, path template), refs resolved.
    """
    doc = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    assert doc["openapi"].startswith("3.1")
    result = {}
    for template, item in doc["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                result[(method.upper(), template)] = _resolve(operation, doc)
    return result


def _match(operations: dict, method: str, path: str) -> tuple[str, dict]:
    """
    The documented operation for a request, by method and percent-encoded path.
    """
    found = []
    for (documented_method, template), operation in operations.items():
        pattern = "^" + re.sub(r"\\\{[A-Za-z]+\\\}", "[^/]+", re.escape(template)) + "$"
        if documented_method == method and re.match(pattern, path):
            found.append((template, operation))
    assert found, f"undocumented request {method} {path}"
    # a literal segment beats a parameter (POST /api/charger/ensure)
    found.sort(key=lambda item: item[0].count("{"))
    return found[0]


def _full_run(backend: HttpBackend, fake: FakeBackend) -> list[tuple[str, Any]]:
    """
    Call every IBackend method, with every optional property and without any.
    """
    fake.add_id_tag("TAG1", user_id="user-1", prepaid_amount="20.00", price_per_kwh="0.30", currency="EUR",
                    expiry_date="2027-01-01T00:00:00.000Z", parent_id_tag="PARENT")
    ensure_full = {"deviceId": "CP 1/A", "vendor": "ACME", "model": "W22", "serialNumber": "SN1", "firmwareVersion": "1.0",
                   "iccid": "8931", "imsi": "2620", "meterType": "M", "meterSerialNumber": "MS1"}
    results = [
        ("ensure_charger", success_result_of(backend.ensure_charger(ensure_full))),
        ("ensure_charger", success_result_of(backend.ensure_charger({"deviceId": "CP2", "vendor": "V", "model": "M"}))),
        ("charger_by_device", success_result_of(backend.charger_by_device("CP 1/A"))),
        ("charger_by_device", success_result_of(backend.charger_by_device("unknown"))),
    ]
    success_result_of(backend.update_status("CP 1/A", {"connectorId": 1, "status": "Faulted", "errorCode": "GroundFailure",
                                                        "info": "ground", "vendorErrorCode": "E12", "timestamp": NOW}))
    success_result_of(backend.update_status("CP2", {"connectorId": 0, "status": "Available", "errorCode": "NoError",
                                                     "info": None, "timestamp": NOW}))
    success_result_of(backend.update_last_seen("CP 1/A", {"lastSeen": NOW}))
    results.append(("authorize", success_result_of(backend.authorize("CP 1/A", "TAG1"))))
    start_min = {"deviceId": "CP 1/A", "connectorId": 1, "idTag": "TAG1", "meterStart": 100, "timestamp": NOW}
    started = success_result_of(backend.start_session(start_min))
    results.append(("start_session", started))
    start_full = {**start_min, "connectorId": 2, "reservationId": 5, "transactionId": 0x40000001}
    results.append(("start_session", success_result_of(backend.start_session(start_full))))
    results.append(("active_sessions", success_result_of(backend.active_sessions("CP 1/A"))))
    stop_full = {"transactionId": started["transactionId"], "meterStop": 2100, "energyWh": 2000, "stoppedAt": NOW,
                 "reason": "EVDisconnected", "cost": "0.60", "refund": "19.40"}
    success_result_of(backend.stop_session(started["sessionId"], stop_full))
    stop_min = {"transactionId": 0x40000001, "meterStop": 50, "energyWh": 0, "stoppedAt": NOW, "reason": "Local"}
    success_result_of(backend.stop_session("session-2", stop_min))
    refund = {"sessionId": started["sessionId"], "userId": "user-1", "amount": "19.40", "currency": "EUR",
              "idempotencyKey": started["sessionId"]}
    success_result_of(backend.refund(refund))
    message_full = {"direction": "out", "messageType": "CALLERROR", "messageId": "m1", "action": "Reset",
                    "payload": {"type": "Soft"}, "errorCode": "NotSupported", "timestamp": NOW}
    success_result_of(backend.store_message("CP 1/A", message_full))
    success_result_of(backend.store_message("CP2", {"direction": "in", "messageType": "CALL", "messageId": "m2", "timestamp": NOW}))
    minimal = {"direction": "out", "messageType": "CALLRESULT", "messageId": "m2", "timestamp": NOW}
    success_result_of(backend.store_messages([("CP 1/A", message_full), ("CP 1/A", minimal)]))
    return results


def test_every_request_is_documented_exactly(operations, clock):
    """Each request's method, path and body match docs/backend-api.yaml; every operation is exercised."""
    fake = FakeBackend(clock=clock)
    backend = HttpBackend("http://backend.invalid", clock, agent=RequestTraversalAgent(fake))
    answers = _full_run(backend, fake)
    used = set()
    for request in fake.requests:
        template, operation = _match(operations, request.method, request.path)
        used.add(operation["operationId"])
        schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            assert request.body is None, (request.method, request.path)
            continue
        body = request.body
        if schema.get("type") == "array":  # the batch form of the message log
            assert isinstance(body, list) and body, request
            items, item_schema = body, schema["items"]
        else:
            items, item_schema = [body], schema
        for item in items:
            assert isinstance(item, dict), request
            missing = set(item_schema["required"]) - set(item)
            undocumented = set(item) - set(item_schema["properties"])
            assert not missing and not undocumented, (template, missing, undocumented)
        fastjsonschema.compile(schema)(body)
    assert used == set(IBackend.names()) - {"ready"} | {"store_messages"}

    answered = {}
    for operation_id, answer in answers:
        if answer is None:
            continue
        [operation] = [op for op in operations.values() if op["operationId"] == operation_id]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        fastjsonschema.compile(schema)(answer)
        answered[operation_id] = answer
    assert set(answered) == {"ensure_charger", "charger_by_device", "authorize", "start_session", "active_sessions"}


def test_doc_rejects_what_the_contract_forbids(operations):
    """The documented schemas are strict: an unknown property or a float amount fails."""
    _, refund = _match(operations, "POST", "/api/wallet/refund")
    validate = fastjsonschema.compile(refund["requestBody"]["content"]["application/json"]["schema"])
    good = {"sessionId": "s", "userId": "u", "amount": "1.00", "currency": "EUR", "idempotencyKey": "s"}
    validate(good)
    for bad in ({**good, "extra": 1}, {**good, "amount": 1.0}, {**good, "amount": "1.5"}, {**good, "currency": ""}):
        with pytest.raises(fastjsonschema.JsonSchemaException):
            validate(bad)
    template, _ = _match(operations, "POST", "/api/charger/ensure")
    assert template == "/api/charger/ensure"


def test_the_test_backend_serves_exactly_the_documented_operations(operations):
    """FakeBackend's routes are the documented operations, under the same names."""
    from ocpptw.testing.backend import ROUTES

    routes = set()
    for method, pattern, endpoint in ROUTES:
        path = "/" + "/".join("x" if segment is None else segment for segment in pattern)
        _, operation = _match(operations, method, path)
        assert operation["operationId"] == endpoint, (method, path)
        routes.add(endpoint)
    assert routes == {operation["operationId"] for operation in operations.values()}


def test_batch_of_messages_is_documented_as_an_array_of_message_bodies(operations):
    """ocpp-messages takes a non-empty array of exactly the ocpp-message bodies."""
    _, single = _match(operations, "POST", "/api/charger/CP1/ocpp-message")
    _, batch = _match(operations, "POST", "/api/charger/CP1/ocpp-messages")
    single_schema = single["requestBody"]["content"]["application/json"]["schema"]
    batch_schema = batch["requestBody"]["content"]["application/json"]["schema"]
    assert batch_schema["items"] == single_schema
    validate = fastjsonschema.compile(batch_schema)
    message = {"direction": "in", "messageType": "CALL", "messageId": "1", "timestamp": NOW}
    validate([message, {**message, "direction": "out", "messageType": "CALLRESULT"}])
    for bad in ([], message, [{**message, "extra": 1}], [message] * 1001):
        with pytest.raises(fastjsonschema.JsonSchemaException):
            validate(bad)


def _success(operation: dict) -> dict:
    for status in ("200", "2XX"):
        if status in operation["responses"]:
            return operation["responses"][status]["content"]["application/json"]
    raise AssertionError(operation["operationId"])


def test_every_endpoint_has_a_request_and_an_answer_example_that_fit(operations):
    """Each operation shows a request body (when it takes one) and a success answer, each valid against its schema."""
    for (method, template), operation in operations.items():
        body = operation.get("requestBody")
        if body is not None:
            media = body["content"]["application/json"]
            assert "example" in media, (method, template)
            fastjsonschema.compile(media["schema"])(media["example"])
        answer = _success(operation)
        assert "example" in answer, (method, template)
        fastjsonschema.compile(answer["schema"])(answer["example"])


def test_the_answer_table_covers_every_endpoint():
    """The description's table says what each answer class does, per endpoint, and how to run the fake backend."""
    doc = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    text = doc["info"]["description"]
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert rows[0] and "| endpoint | when | 2xx | 404 | other 4xx | unreachable |" in text
    named = " ".join(row.split("|")[1] for row in rows)
    for template, item in doc["paths"].items():
        for method in item:
            if method == "parameters":
                continue
            last = template.rstrip("/").split("/")[-1]
            word = "by-device" if "by-device" in template else last
            assert word in named, (method, template)
    assert all(len(row.split("|")) == 8 for row in rows), rows
    assert "python -m ocpptw.testing.backend" in text
