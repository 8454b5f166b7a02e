# -*- test-case-name: tests.ocpp.test_schemas -*-
"""
Tests for the shipped OCPP 1.6 schemas (C{ocpptw/ocpp/schemas}).
"""

from __future__ import annotations

import json

from ocpptw.ocpp.validation import SCHEMA_DIR


def _load(name: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))


def test_all_78_schemas_present_with_their_drafts():
    """56 draft-04 core schemas and 22 draft-06 security extension schemas ship."""
    drafts = [_load(p.stem)["$schema"] for p in SCHEMA_DIR.glob("*.json")]
    assert len(drafts) == 78
    assert drafts.count("http://json-schema.org/draft-04/schema#") == 56
    assert drafts.count("http://json-schema.org/draft-06/schema#") == 22
    assert (SCHEMA_DIR / "SOURCE.md").read_text(encoding="utf-8").count("MIT") >= 1


def test_errata_stop_transaction_reason_optional():
    """2019-12 errata: StopTransaction's reason is not required."""
    schema = _load("StopTransaction")
    assert "reason" in schema["properties"]
    assert sorted(schema["required"]) == ["meterStop", "timestamp", "transactionId"]


def test_errata_both_celsius_spellings():
    """2019-12 errata: the unit enums accept both Celsius and Celcius."""
    for name in ("MeterValues", "StopTransaction"):
        text = json.dumps(_load(name))
        assert '"Celsius"' in text and '"Celcius"' in text, name


def test_errata_boot_interval_is_integer():
    """2019-12 errata: BootNotification.conf interval is an integer."""
    assert _load("BootNotificationResponse")["properties"]["interval"] == {"type": "integer"}
