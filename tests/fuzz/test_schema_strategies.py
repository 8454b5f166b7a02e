# -*- test-case-name: tests.fuzz.test_schema_strategies -*-
"""
The fuzzers' own model, checked against the validator without a network:
payloads generated from a schema pass it, and each single mutation is
refused with exactly the code the contract names for it.  If these disagree,
the wire fuzzers would report the model's mistakes as the gateway's.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocpptw.ocpp.actions import ALL_ACTIONS
from ocpptw.ocpp.errors import OcppError
from ocpptw.ocpp.validation import Validator
from tests.fuzz.schemas import fuzz_settings, mutated, valid_payload, valid_response

_VALIDATOR = Validator()
_ACTIONS = sorted(ALL_ACTIONS)


# no pytest.mark.parametrize: pytest-twisted wraps a @given test's inner function once per item,
# so parametrized hypothesis tests nest its greenlet calls; the action is drawn instead.
@fuzz_settings(300)
@given(action=st.sampled_from(_ACTIONS), data=st.data())
def test_generated_payloads_are_valid(action, data):
    """Every generated request and response payload passes the official schema."""
    _VALIDATOR.check_request(action, data.draw(valid_payload(action)))
    _VALIDATOR.check_response(action, data.draw(valid_response(action)))


@fuzz_settings(400)
@given(action=st.sampled_from(_ACTIONS), data=st.data())
def test_each_mutation_gets_its_contract_code(action, data):
    """One fault in a payload is refused with the code docs/contract.md section 1 names for that fault."""
    for response in (False, True):
        payload, code, what = data.draw(mutated(action, response))
        check = _VALIDATOR.check_response if response else _VALIDATOR.check_request
        with pytest.raises(OcppError) as raised:
            check(action, payload)
        assert raised.value.code == code, (what, raised.value.description)
