# -*- test-case-name: tests.ocpp.test_errors -*-
"""
The CALLERROR codes of OCPP-J 1.6 (section 4.2.3) and the exception that
carries one.

Exactly the ten codes of 1.6, spelled as 1.6 spells them (including
C{OccurenceConstraintViolation}); the 2.0.1 codes are refused.
"""

from __future__ import annotations

NOT_IMPLEMENTED = "NotImplemented"
NOT_SUPPORTED = "NotSupported"
INTERNAL_ERROR = "InternalError"
PROTOCOL_ERROR = "ProtocolError"
SECURITY_ERROR = "SecurityError"
FORMATION_VIOLATION = "FormationViolation"
PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation"
OCCURENCE_CONSTRAINT_VIOLATION = "OccurenceConstraintViolation"
TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation"
GENERIC_ERROR = "GenericError"

#: The ten CALLERROR codes of OCPP-J 1.6.
CODES: frozenset[str] = frozenset(
    (
        NOT_IMPLEMENTED,
        NOT_SUPPORTED,
        INTERNAL_ERROR,
        PROTOCOL_ERROR,
        SECURITY_ERROR,
        FORMATION_VIOLATION,
        PROPERTY_CONSTRAINT_VIOLATION,
        OCCURENCE_CONSTRAINT_VIOLATION,
        TYPE_CONSTRAINT_VIOLATION,
        GENERIC_ERROR,
    )
)


class OcppError(Exception):
    """
    A fault to be answered with a CALLERROR.  Handlers raise it; the session
    turns it into C{[4, id, code, description, details]}.

    @ivar code: one of L{CODES}.
    @ivar description: a short human-readable text, never a traceback.
    @ivar details: a JSON object with more information (C{{}} by default).
    """

    def __init__(self, code: str, description: str = "", details: dict | None = None) -> None:
        """
        @raise ValueError: when C{code} is not one of the ten 1.6 codes.
        """
        if code not in CODES:
            raise ValueError(f"not an OCPP-J 1.6 error code: {code!r}")
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description
        self.details = {} if details is None else details

    def __repr__(self) -> str:
        return f"OcppError({self.code!r}, {self.description!r}, {self.details!r})"
