# -*- test-case-name: tests.ocpp.test_frames -*-
"""
OCPP-J 1.6 framing: parse one text frame into a L{Call}, L{CallResult} or
L{CallError}, and encode the three kinds back to compact JSON.

Shapes (OCPP-J 1.6 section 4)::

    CALL        [2, messageId, action, {payload}]
    CALLRESULT  [3, messageId, {payload}]
    CALLERROR   [4, messageId, errorCode, errorDescription, {errorDetails}]

A message id is a non-empty string of at most 36 characters.  A frame that
breaks these rules raises L{FrameError} (code C{FormationViolation}) carrying
the message id when it is usable, else C{"-1"}, so the caller can answer
C{[4, id, "FormationViolation", ...]}.  A well-formed array with an unknown
MessageTypeId parses to C{None}: the caller logs and ignores it.

JSON is parsed once per frame and strictly: C{NaN} and C{Infinity}, numbers
that overflow a float, integers of more than 4300 digits and nesting deeper
than L{MAX_DEPTH} are all L{FrameError}s, and so are escapes that decode
to a lone UTF-16 surrogate (it could not be re-encoded as UTF-8 in an
event or an answer).
"""

from __future__ import annotations

import json
import re
from json.decoder import scanstring  # type: ignore[attr-defined]  # public since 2.6, untyped
from json.encoder import encode_basestring
from math import isinf
from typing import Any, TypeGuard

import msgspec

from ocpptw.ocpp.errors import FORMATION_VIOLATION, OcppError
from ocpptw.ocpp.jsontext import compact

CALL = 2
CALLRESULT = 3
CALLERROR = 4

#: The name of each MessageTypeId, as in metrics and C{ocpp.message} events.
MESSAGE_TYPES = {CALL: "CALL", CALLRESULT: "CALLRESULT", CALLERROR: "CALLERROR"}

#: The id used in a CALLERROR when the offending frame's id is unusable.
UNKNOWN_ID = "-1"

#: Longest message id OCPP-J 1.6 allows.
MAX_ID_LENGTH = 36

#: Deepest nesting of arrays and objects accepted in a frame.  The deepest
#: OCPP 1.6 message (SetChargingProfile) nests 6 levels; the limit keeps
#: whatever later walks or re-encodes a payload (events, logs) far from
#: Python's recursion limit.
MAX_DEPTH = 32


class FrameError(OcppError):
    """
    A frame that is not a well-formed OCPP-J message: C{FormationViolation}.

    @ivar message_id: the frame's message id when it is usable, else C{"-1"}.
    @ivar message_type: the frame's MessageTypeId (2, 3 or 4) when it could be
        read, else C{None}.  The session answers only frames that are not
        responses (C{None} or C{CALL}).
    @ivar rpc: C{True} when the frame is not a valid RPC message at all (not
        JSON, not an array of the right shape, no usable id), C{False} when
        only its payload is malformed.  OCPP 1.6 answers both
        C{FormationViolation}; OCPP 2.0.1 answers the first
        C{RpcFrameworkError} and the second C{FormatViolation}.
    """

    def __init__(self, message_id: str, description: str, message_type: int | None = None, rpc: bool = True) -> None:
        super().__init__(FORMATION_VIOLATION, description)
        self.message_id = message_id
        self.message_type = message_type
        self.rpc = rpc


class Call:
    """
    C{[2, message_id, action, payload]}.
    """

    __slots__ = ("action", "message_id", "payload")
    message_type = CALL

    def __init__(self, message_id: str, action: str, payload: dict) -> None:
        self.message_id = message_id
        self.action = action
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return type(other) is Call and (self.message_id, self.action, self.payload) == (
            other.message_id,
            other.action,
            other.payload,
        )

    def __repr__(self) -> str:
        return f"Call({self.message_id!r}, {self.action!r}, {self.payload!r})"


class CallResult:
    """
    C{[3, message_id, payload]}.
    """

    __slots__ = ("message_id", "payload")
    message_type = CALLRESULT

    def __init__(self, message_id: str, payload: dict) -> None:
        self.message_id = message_id
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return type(other) is CallResult and (self.message_id, self.payload) == (
            other.message_id,
            other.payload,
        )

    def __repr__(self) -> str:
        return f"CallResult({self.message_id!r}, {self.payload!r})"


class CallError:
    """
    C{[4, message_id, code, description, details]}.  The code is whatever
    the peer sent (a string); it is not checked against the ten 1.6 codes.
    """

    __slots__ = ("code", "description", "details", "message_id")
    message_type = CALLERROR

    def __init__(self, message_id: str, code: str, description: str, details: dict) -> None:
        self.message_id = message_id
        self.code = code
        self.description = description
        self.details = details

    def __eq__(self, other: object) -> bool:
        return type(other) is CallError and (
            self.message_id,
            self.code,
            self.description,
            self.details,
        ) == (other.message_id, other.code, other.description, other.details)

    def __repr__(self) -> str:
        return f"CallError({self.message_id!r}, {self.code!r}, {self.description!r}, {self.details!r})"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if isinf(value):
        raise ValueError("number out of range")
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(frame: list) -> bool:
    try:
        _encode(frame).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_decoder = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_parse_float)
_decode = _decoder.decode
_scan = _decoder.scan_once  # type: ignore[attr-defined]
_TRAILING_SPACE = re.compile(r"[ \t\n\r]*").fullmatch
_encode = compact
_fast_decode = msgspec.json.Decoder().decode


def _too_deep(value: object) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        children = item.values() if type(item) is dict else item
        stack.extend((child, depth + 1) for child in children if type(child) in (list, dict))
    return False


def usable_id(value: object) -> TypeGuard[str]:
    """
    Whether C{value} is a valid OCPP-J message id.
    """
    return type(value) is str and 0 < len(value) <= MAX_ID_LENGTH


def parse(text: str) -> Call | CallResult | CallError | None:
    """
    Parse one text frame.

    @return: the message, or C{None} for an unknown MessageTypeId.
    @raise FrameError: for anything that is not a well-formed OCPP-J frame.
    """
    # msgspec (about 4x the stdlib scanner) reads what it accepts exactly as
    # the stdlib does (integers of any length, floats correctly rounded, the
    # last of repeated keys); whatever it refuses (NaN, numbers out of range,
    # lone surrogates, too deep, not JSON) goes to the stdlib path below,
    # which gives the same FrameError or frame it always did
    try:
        frame: Any = _fast_decode(text)
    except (ValueError, RecursionError):  # msgspec.DecodeError and UnicodeEncodeError are ValueErrors
        frame = None
    try:
        if frame is not None:
            pass
        elif text[:1] == "[":  # nearly every frame: scan it without decode()'s whitespace handling
            frame, end = _scan(text, 0)
            if end != len(text) and _TRAILING_SPACE(text, end) is None:
                raise ValueError("data after the frame")
        else:
            frame = _decode(text)
    except (ValueError, RecursionError, StopIteration):
        raise FrameError(UNKNOWN_ID, "frame is not valid JSON") from None
    if type(frame) is not list or not frame:
        raise FrameError(UNKNOWN_ID, "frame is not a non-empty JSON array")
    message_type = frame[0]
    if type(message_type) is not int:
        raise FrameError(UNKNOWN_ID, "MessageTypeId is not an integer")
    if message_type not in MESSAGE_TYPES:
        return None
    length = len(frame)
    message_id = frame[1] if length > 1 else None
    if not usable_id(message_id):
        raise FrameError(
            UNKNOWN_ID,
            "message id must be a non-empty string of at most 36 characters",
            message_type,
        )
    # fewer brackets than MAX_DEPTH cannot nest deeper: most frames skip the walk
    if text.count("[") + text.count("{") > MAX_DEPTH and _too_deep(frame):
        raise FrameError(message_id, f"frame nested deeper than {MAX_DEPTH} levels", message_type, rpc=False)
    # a \uD800-style escape may decode to a lone surrogate, which no UTF-8 frame can carry back
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(frame):
        if _has_lone_surrogate([message_id]):
            message_id = UNKNOWN_ID
        raise FrameError(message_id, "frame holds a lone UTF-16 surrogate", message_type, rpc=False)
    if message_type == CALL:
        if length != 4:
            raise FrameError(message_id, "CALL must be [2, id, action, {payload}]", CALL)
        action, payload = frame[2], frame[3]
        if type(action) is not str:
            raise FrameError(message_id, "CALL must be [2, id, action, {payload}]", CALL)
        if type(payload) is not dict:
            raise FrameError(message_id, "CALL must be [2, id, action, {payload}]", CALL, rpc=False)
        return Call(message_id, action, payload)
    if message_type == CALLRESULT:
        if length != 3 or type(frame[2]) is not dict:
            raise FrameError(message_id, "CALLRESULT must be [3, id, {payload}]", CALLRESULT)
        return CallResult(message_id, frame[2])
    if (
        length != 5
        or type(frame[2]) is not str
        or type(frame[3]) is not str
        or type(frame[4]) is not dict
    ):
        raise FrameError(
            message_id,
            "CALLERROR must be [4, id, code, description, {details}]",
            CALLERROR,
        )
    return CallError(message_id, frame[2], frame[3], frame[4])


def unknown_type_id(text: str) -> str:
    """
    The message id of a frame L{parse} found to have an unknown
    MessageTypeId (it returned C{None}), when it is usable, else C{"-1"}.
    """
    try:
        frame = _decode(text)
    except (ValueError, RecursionError):
        return UNKNOWN_ID
    message_id = frame[1] if type(frame) is list and len(frame) > 1 else None
    if not usable_id(message_id) or _has_lone_surrogate([message_id]):
        return UNKNOWN_ID
    return message_id


def encode_call(message_id: str, action: str, payload: dict) -> str:
    """
    C{[2, message_id, action, payload]} as compact JSON.

    @raise ValueError: when C{payload} holds NaN or infinity.
    """
    return _encode([CALL, message_id, action, payload])


def encode_result(message_id: str, payload: dict) -> str:
    """
    C{[3, message_id, payload]} as compact JSON.

    @raise ValueError: when C{payload} holds NaN or infinity.
    """
    return _encode([CALLRESULT, message_id, payload])


def encode_result_parts(message_id: str, payload: dict) -> tuple[str, str]:
    """
    L{encode_result}'s frame and, encoded once, the payload's own text in it
    (what the message log keeps).

    @return: C{(frame, payload_text)}.
    @raise ValueError: when C{payload} holds NaN or infinity.
    """
    payload_text = _encode(payload)
    return "[3," + encode_basestring(message_id) + "," + payload_text + "]", payload_text


def call_payload_text(text: str) -> str:
    """
    The payload object of a CALL frame as the charger wrote it (a slice of
    C{text}, no re-encoding), for a C{text} that L{parse} accepted as a
    L{Call}.

    The frame is C{[2, "id", "action", {...}]} with JSON whitespace between
    the tokens: the first quote opens the message id, the next after it the
    action, the first brace after the action opens the payload and the last
    brace closes it.
    """
    start = text.index('"')
    end = scanstring(text, start + 1)[1]
    start = text.index('"', end)
    end = scanstring(text, start + 1)[1]
    return text[text.index("{", end) : text.rindex("}") + 1]


def encode_error(message_id: str, code: str, description: str = "", details: dict | None = None) -> str:
    """
    C{[4, message_id, code, description, details]} as compact JSON;
    C{details} is always an object.
    """
    return _encode([CALLERROR, message_id, code, description, {} if details is None else details])
