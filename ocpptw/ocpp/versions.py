# -*- test-case-name: tests.ocpp.test_versions -*-
"""
The OCPP versions the gateway speaks, as values the one RPC core
(L{ocpptw.ocpp.session}, L{ocpptw.ocpp.outbound},
L{ocpptw.ocpp.validation}) takes as a parameter: the WebSocket subprotocol,
the schema directory, the action tables and the CALLERROR vocabulary.

Inside the gateway a fault is an L{ocpptw.ocpp.errors.OcppError} with one of
the ten OCPP-J 1.6 codes; L{ProtocolVersion.wire_code} spells it for the
charger's version when the CALLERROR is written.  OCPP 2.0.1 (Part 4,
section 4.3) renames two of them (C{FormatViolation},
C{OccurrenceConstraintViolation}) and adds C{RpcFrameworkError} (a frame
that is not a valid RPC message) and C{MessageTypeNotSupported} (an
unknown MessageTypeId, which 1.6 ignores).  A 1.6 charger never sees a
2.0.1 spelling, nor a 2.0.1 charger a 1.6 one.

L{request_schema} and L{response_schema} give the raw schema of
C{(version, action)} (for forms built from them).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from ocpptw.ocpp import actions as actions_v16
from ocpptw.ocpp import actions_v201
from ocpptw.ocpp.errors import CODES as CODES_V16
from ocpptw.ocpp.errors import FORMATION_VIOLATION, OCCURENCE_CONSTRAINT_VIOLATION

_HERE = Path(__file__).parent

#: The twelve CALLERROR codes of OCPP-J 2.0.1 (Part 4, section 4.3), as spelled there.
CODES_V201: frozenset[str] = frozenset(
    (
        "FormatViolation",
        "GenericError",
        "InternalError",
        "MessageTypeNotSupported",
        "NotImplemented",
        "NotSupported",
        "OccurrenceConstraintViolation",
        "PropertyConstraintViolation",
        "ProtocolError",
        "RpcFrameworkError",
        "SecurityError",
        "TypeConstraintViolation",
    )
)

RPC_FRAMEWORK_ERROR = "RpcFrameworkError"
MESSAGE_TYPE_NOT_SUPPORTED = "MessageTypeNotSupported"


class ProtocolVersion:
    """
    One OCPP version.

    @ivar name: C{"1.6"} or C{"2.0.1"}, as in C{ocppVersion} of the charger
        list, the backend bodies and the events.
    @ivar subprotocol: the WebSocket subprotocol that selects it.
    @ivar schema_dir: where its official JSON schemas live.
    @ivar request_suffix: what follows the action in a request schema's
        file name (C{""} for 1.6, C{"Request"} for 2.0.1).
    @ivar charger_to_server: actions a charger may CALL.
    @ivar server_to_charger: actions the gateway may CALL.
    @ivar codes: the CALLERROR codes of this version.
    @ivar answers_unknown_type: whether an unknown MessageTypeId is answered
        (C{MessageTypeNotSupported}) instead of ignored.
    """

    def __init__(
        self,
        name: str,
        subprotocol: str,
        schema_dir: Path,
        request_suffix: str,
        charger_to_server: frozenset[str],
        server_to_charger: frozenset[str],
        codes: frozenset[str],
        spellings: dict[str, str],
        rpc_error: str,
        answers_unknown_type: bool,
    ) -> None:
        self.name = name
        self.subprotocol = subprotocol
        self.schema_dir = schema_dir
        self.request_suffix = request_suffix
        self.charger_to_server = charger_to_server
        self.server_to_charger = server_to_charger
        self.actions = charger_to_server | server_to_charger
        self.codes = codes
        self._spellings = spellings
        self._rpc_error = rpc_error
        self.answers_unknown_type = answers_unknown_type

    def wire_code(self, code: str, rpc: bool = False) -> str:
        """
        The CALLERROR code this version sends for the internal (1.6) code
        C{code}; C{rpc} marks a frame that is not a valid RPC message.
        """
        if rpc:
            return self._rpc_error
        return self._spellings.get(code, code)

    def schema_file(self, action: str, response: bool) -> Path:
        """
        The schema file of C{action}'s request or response.
        """
        suffix = "Response" if response else self.request_suffix
        return self.schema_dir / f"{action}{suffix}.json"

    def __repr__(self) -> str:
        return f"<OCPP {self.name}>"


V16 = ProtocolVersion(
    name="1.6",
    subprotocol="ocpp1.6",
    schema_dir=_HERE / "schemas",
    request_suffix="",
    charger_to_server=actions_v16.CHARGER_TO_SERVER,
    server_to_charger=actions_v16.SERVER_TO_CHARGER,
    codes=CODES_V16,
    spellings={},
    rpc_error=FORMATION_VIOLATION,
    answers_unknown_type=False,
)

V201 = ProtocolVersion(
    name="2.0.1",
    subprotocol="ocpp2.0.1",
    schema_dir=_HERE / "schemas_v201",
    request_suffix="Request",
    charger_to_server=actions_v201.CHARGER_TO_SERVER,
    server_to_charger=actions_v201.SERVER_TO_CHARGER,
    codes=CODES_V201,
    spellings={
        FORMATION_VIOLATION: "FormatViolation",
        OCCURENCE_CONSTRAINT_VIOLATION: "OccurrenceConstraintViolation",
    },
    rpc_error=RPC_FRAMEWORK_ERROR,
    answers_unknown_type=True,
)

#: Every version, newest first.
VERSIONS: tuple[ProtocolVersion, ...] = (V201, V16)

#: Subprotocol -> version.
BY_SUBPROTOCOL: dict[str, ProtocolVersion] = {v.subprotocol: v for v in VERSIONS}

#: C{ocppVersion} name -> version.
BY_NAME: dict[str, ProtocolVersion] = {v.name: v for v in VERSIONS}


def choose(offered: list[str], enabled: list[str] | tuple[str, ...]) -> ProtocolVersion | None:
    """
    The version of the first subprotocol in the charger's C{offered} list
    (its order of preference) that is C{enabled}, or C{None}.
    """
    for subprotocol in offered:
        if subprotocol in enabled and subprotocol in BY_SUBPROTOCOL:
            return BY_SUBPROTOCOL[subprotocol]
    return None


def version(name: str) -> ProtocolVersion:
    """
    The version called C{name} (C{"1.6"}, C{"2.0.1"}) or with that
    subprotocol (C{"ocpp2.0.1"}).

    @raise KeyError: no such version.
    """
    found = BY_NAME.get(name) or BY_SUBPROTOCOL.get(name)
    if found is None:
        raise KeyError(name)
    return found


@lru_cache(maxsize=None)
def _schema_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def request_schema(version_name: str, action: str) -> dict[str, Any] | None:
    """
    The official JSON schema of C{action}'s CALL payload in version
    C{version_name} (C{"1.6"}, C{"2.0.1"} or a subprotocol), a fresh copy,
    or C{None} when that version has no such action.
    """
    return _schema(version_name, action, False)


def response_schema(version_name: str, action: str) -> dict[str, Any] | None:
    """
    Like L{request_schema}, for the CALLRESULT payload.
    """
    return _schema(version_name, action, True)


def _schema(version_name: str, action: str, response: bool) -> dict[str, Any] | None:
    try:
        found = version(version_name)
    except KeyError:
        return None
    if action not in found.actions:
        return None
    return json.loads(_schema_text(found.schema_file(action, response)))
