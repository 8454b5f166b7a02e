# -*- test-case-name: tests.ocpp.test_actions -*-
"""
Tests for L{ocpptw.ocpp.actions}.
"""

from __future__ import annotations

from ocpptw.ocpp.actions import ALL_ACTIONS, CHARGER_TO_SERVER, SERVER_TO_CHARGER
from ocpptw.ocpp.validation import SCHEMA_DIR


def _schema_actions() -> set[str]:
    return {p.stem for p in SCHEMA_DIR.glob("*.json") if not p.stem.endswith("Response")}


def test_every_schema_has_a_direction_and_every_action_a_schema():
    """The two direction sets together cover exactly the actions with schemas."""
    assert ALL_ACTIONS == _schema_actions()
    assert len(ALL_ACTIONS) == 39


def test_only_data_transfer_goes_both_ways():
    """DataTransfer is the one action in both directions."""
    assert CHARGER_TO_SERVER & SERVER_TO_CHARGER == {"DataTransfer"}


def test_security_extension_directions():
    """The security extension's notifications come from the charger, its commands go to it."""
    assert {"SecurityEventNotification", "SignCertificate", "LogStatusNotification",
            "SignedFirmwareStatusNotification"} <= CHARGER_TO_SERVER
    assert {"CertificateSigned", "DeleteCertificate", "ExtendedTriggerMessage", "GetInstalledCertificateIds",
            "GetLog", "InstallCertificate", "SignedUpdateFirmware"} <= SERVER_TO_CHARGER
