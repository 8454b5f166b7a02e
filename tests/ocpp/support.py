"""
Test support for the OCPP core: a recording sink and observer, schema-valid
answers for every charger-to-server action, and a session factory.
"""

from __future__ import annotations

import json
from typing import Any

from zope.interface import implementer

from ocpptw.interfaces import IFrameSink
from ocpptw.ocpp.session import OcppSession
from ocpptw.ocpp.validation import Validator

NOW = "2026-11-24T10:00:00.000Z"

#: A schema-valid CALLRESULT payload for every charger-to-server action.
ANSWERS: dict[str, dict] = {
    "Authorize": {"idTagInfo": {"status": "Accepted"}},
    "BootNotification": {"status": "Accepted", "currentTime": NOW, "interval": 300},
    "DataTransfer": {"status": "Accepted"},
    "DiagnosticsStatusNotification": {},
    "FirmwareStatusNotification": {},
    "Heartbeat": {"currentTime": NOW},
    "MeterValues": {},
    "StartTransaction": {"transactionId": 1, "idTagInfo": {"status": "Accepted"}},
    "StatusNotification": {},
    "StopTransaction": {},
    "SecurityEventNotification": {},
    "SignCertificate": {"status": "Accepted"},
    "LogStatusNotification": {},
    "SignedFirmwareStatusNotification": {},
}

BOOT = {"chargePointVendor": "Acme", "chargePointModel": "One"}


@implementer(IFrameSink)
class RecordingSink:
    """
    An L{IFrameSink} that keeps what was sent.
    """

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: list[tuple[int, str]] = []

    def send_text(self, text: str) -> None:
        self.sent.append(text)

    def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))

    @property
    def frames(self) -> list[list]:
        """Every frame sent, decoded."""
        return [json.loads(text) for text in self.sent]

    def take(self) -> list[list]:
        """The frames sent since the last take, decoded."""
        frames = self.frames
        self.sent.clear()
        return frames


class RecordingObserver:
    """
    A session observer that keeps every call.
    """

    def __init__(self) -> None:
        self.frames: list[tuple] = []
        self.payload_texts: list[str | None] = []
        self.violations: list[tuple] = []

    def frame(self, session, direction, message_type, message_id, action, payload, error_code, error_description,
              payload_text):
        self.frames.append((direction, message_type, message_id, action, payload, error_code, error_description))
        self.payload_texts.append(payload_text)

    def violation(self, session, action, error):
        self.violations.append((action, error.code, error.description))


def answer(session: OcppSession, action: str, payload: dict) -> dict:
    """A handler that answers every charger-to-server action validly."""
    return dict(ANSWERS[action])


def make_session(clock: Any, handler: Any = answer, **kwargs: Any) -> tuple[OcppSession, RecordingSink, RecordingObserver]:
    """A session for C{CP1} on C{clock}, with a recording sink and observer."""
    sink = RecordingSink()
    observer = RecordingObserver()
    session = OcppSession("CP1", sink, handler, clock, Validator(), observer=observer, **kwargs)
    return session, sink, observer


def call_frame(message_id: str, action: str, payload: dict) -> str:
    """A CALL frame as a charger sends it."""
    return json.dumps([2, message_id, action, payload])
