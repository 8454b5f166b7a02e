# -*- test-case-name: tests.ocpp.test_errors -*-
"""
Tests for L{ocpptw.ocpp.errors}.
"""

from __future__ import annotations

import pytest

from ocpptw.ocpp import errors
from ocpptw.ocpp.errors import CODES, OcppError


def test_exactly_the_ten_codes_of_ocpp_j_1_6():
    """The code set is exactly OCPP-J 1.6's, with its spelling of Occurence."""
    assert CODES == {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    }
    constants = {value for name, value in vars(errors).items() if name.isupper() and isinstance(value, str)}
    assert constants == CODES


def test_error_carries_code_description_details():
    """An OcppError keeps its code, description and details; details default to {}."""
    error = OcppError("GenericError", "broken", {"why": 1})
    assert (error.code, error.description, error.details) == ("GenericError", "broken", {"why": 1})
    bare = OcppError("NotSupported")
    assert (bare.description, bare.details) == ("", {})
    assert bare.details is not OcppError("NotSupported").details


@pytest.mark.parametrize("code", ["OccurrenceConstraintViolation", "FormatViolation", "MessageTypeNotSupported", ""])
def test_other_codes_are_refused(code):
    """Codes of OCPP 2.0.1 or misspellings raise ValueError."""
    with pytest.raises(ValueError):
        OcppError(code, "x")
