# -*- test-case-name: tests.ocpp.test_actions -*-
"""
Which OCPP 1.6 actions travel in which direction: every profile of 1.6 (Core,
Firmware Management, Local Auth List Management, Reservation, Smart Charging,
Remote Trigger) and the 1.6 security extension.  DataTransfer goes both ways.
"""

from __future__ import annotations

#: Actions a charger may CALL; the gateway answers them.
CHARGER_TO_SERVER: frozenset[str] = frozenset(
    (
        "Authorize",
        "BootNotification",
        "DataTransfer",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StartTransaction",
        "StatusNotification",
        "StopTransaction",
        # security extension
        "SecurityEventNotification",
        "SignCertificate",
        "LogStatusNotification",
        "SignedFirmwareStatusNotification",
    )
)

#: Actions the gateway may CALL on a charger (the command API).
SERVER_TO_CHARGER: frozenset[str] = frozenset(
    (
        "CancelReservation",
        "ChangeAvailability",
        "ChangeConfiguration",
        "ClearCache",
        "ClearChargingProfile",
        "DataTransfer",
        "GetCompositeSchedule",
        "GetConfiguration",
        "GetDiagnostics",
        "GetLocalListVersion",
        "RemoteStartTransaction",
        "RemoteStopTransaction",
        "ReserveNow",
        "Reset",
        "SendLocalList",
        "SetChargingProfile",
        "TriggerMessage",
        "UnlockConnector",
        "UpdateFirmware",
        # security extension
        "CertificateSigned",
        "DeleteCertificate",
        "ExtendedTriggerMessage",
        "GetInstalledCertificateIds",
        "GetLog",
        "InstallCertificate",
        "SignedUpdateFirmware",
    )
)

#: Every OCPP 1.6 action.
ALL_ACTIONS: frozenset[str] = CHARGER_TO_SERVER | SERVER_TO_CHARGER
