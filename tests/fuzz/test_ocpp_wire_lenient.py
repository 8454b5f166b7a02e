# -*- test-case-name: tests.fuzz.test_ocpp_wire_lenient -*-
"""
The same faults against a gateway in lenient validation
(C{OCPP_VALIDATION=lenient}), which handles what it can of a payload that
breaks its schema: each faulty CALL gets a schema-valid CALLRESULT, or the
CALLERROR code named for its fault when the data it needs is missing or
unusable; never C{InternalError}, never an error in the log (except the
dead letter of what the backend then refuses with 400: by design, parked
with a log line), and the connection stays usable.
"""

from __future__ import annotations

import json

import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st

from ocpptw.ocpp.actions import CHARGER_TO_SERVER
from ocpptw.ocpp.validation import Validator
from tests.fuzz.schemas import fuzz_settings, mutated
from tests.fuzz.support import WireCharger, fresh_id, start_gateway, stop_gateway
from tests.helpers import until

_VALIDATOR = Validator()
_INBOUND = sorted(CHARGER_TO_SERVER - {"BootNotification"})

#: Frames sent by this module, for docs/reliability.md.
TALLY = {"frames": 0}


@pytest_twisted.async_yield_fixture(scope="module")
async def lenient(tmp_path_factory):
    service = await start_gateway(str(tmp_path_factory.mktemp("fuzz-lenient") / "data"), OCPP_VALIDATION="lenient")
    charger = WireCharger(service.test_port, "FUZZLENIENT1")
    await charger.connect(boot=True)
    charger.service = service
    yield charger
    print("\nfuzz tally lenient:", TALLY)
    await stop_gateway(service)


@fuzz_settings(300)
@given(action=st.sampled_from(_INBOUND), data=st.data())
async def test_lenient_faults_are_handled_or_refused_with_their_code(lenient, action, data, fail_on_logged_errors):
    """A faulty payload is answered with a valid CALLRESULT or its fault's code; never InternalError."""
    payload, code, what = data.draw(mutated(action))
    message_id = fresh_id()
    TALLY["frames"] += 2
    answers = await lenient.exchange(json.dumps([2, message_id, action, payload]))
    assert len(answers) == 1 and answers[0][1] == message_id, (what, answers)
    answer = answers[0]
    if answer[0] == 3:
        _VALIDATOR.check_response(action, answer[2])
    else:
        assert answer[2] == code, (what, payload, answer)
    # what was let through and then refused by the backend (400) is parked, with its error line: by design
    await until(lambda: lenient.service.outbox.depth() == 0, 10)
    fail_on_logged_errors[:] = [e for e in fail_on_logged_errors if not _refused_and_parked(e)]


def _refused_and_parked(event) -> bool:
    return event.get("log_format", "").startswith("outbox: parked") and "rejected" in str(event.get("reason", ""))
