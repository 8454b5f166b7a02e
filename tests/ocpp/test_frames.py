# -*- test-case-name: tests.ocpp.test_frames -*-
"""
Tests for L{ocpptw.ocpp.frames}.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocpptw.ocpp import frames
from ocpptw.ocpp.errors import OcppError
from ocpptw.ocpp.frames import (
    Call,
    CallError,
    CallResult,
    FrameError,
    encode_call,
    encode_error,
    encode_result,
    parse,
)


def test_parse_the_three_kinds():
    """CALL, CALLRESULT and CALLERROR parse to their classes."""
    assert parse('[2,"a1","Heartbeat",{}]') == Call("a1", "Heartbeat", {})
    assert parse('[3,"a1",{"currentTime":"x"}]') == CallResult("a1", {"currentTime": "x"})
    assert parse('[4,"a1","NotSupported","no",{"k":1}]') == CallError("a1", "NotSupported", "no", {"k": 1})


@pytest.mark.parametrize("text", ['[5,"x",{}]', "[0]", '[6,"x"]', "[-1]", "[99999999999999999999]"])
def test_unknown_message_type_is_none(text):
    """A well-formed array with an unknown MessageTypeId parses to None."""
    assert parse(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "{",
        '{"a":1}',
        '"text"',
        "42",
        "null",
        "[]",
        '["2","x","Heartbeat",{}]',
        '[true,"x","Heartbeat",{}]',
        '[2.0,"x","Heartbeat",{}]',
        '[null,"x"]',
        "[2,NaN]",
        '[2,"x","Heartbeat",{"a":NaN}]',
        '[2,"x","Heartbeat",{"a":Infinity}]',
        '[2,"x","Heartbeat",{"a":-Infinity}]',
        '[2,"x","Heartbeat",{"a":1e999}]',
        '[2,"x","Heartbeat",{"a":' + "9" * 5000 + "}]",
        "[" * 100000 + "]" * 100000,
        '[2,"x","Heartbeat",{}] trailing',
    ],
)
def test_unreadable_frames_answer_with_minus_one(text):
    """Not JSON, not an array, no integer type id, NaN, overflow or deep nesting: FormationViolation, id -1."""
    with pytest.raises(FrameError) as info:
        parse(text)
    assert isinstance(info.value, OcppError)
    assert info.value.code == "FormationViolation"
    assert info.value.message_id == "-1"
    assert "Traceback" not in info.value.description


@pytest.mark.parametrize(
    "text, message_type",
    [
        ("[2]", 2),
        ('[2,"",  "Heartbeat",{}]', 2),
        ('[2,"' + "x" * 37 + '","Heartbeat",{}]', 2),
        ('[2,17,"Heartbeat",{}]', 2),
        ('[2,null,"Heartbeat",{}]', 2),
        ('[3,["x"],{}]', 3),
        ('[4,"",  "GenericError","",{}]', 4),
    ],
)
def test_unusable_ids_answer_with_minus_one(text, message_type):
    """An id that is not a non-empty string of at most 36 characters is unusable: id -1."""
    with pytest.raises(FrameError) as info:
        parse(text)
    assert (info.value.message_id, info.value.message_type) == ("-1", message_type)


def test_id_of_36_characters_is_fine():
    """36 characters is the longest id allowed."""
    assert parse('[2,"' + "x" * 36 + '","Heartbeat",{}]').message_id == "x" * 36


@pytest.mark.parametrize(
    "text, message_type",
    [
        ('[2,"m7","Heartbeat"]', 2),
        ('[2,"m7","Heartbeat",[]]', 2),
        ('[2,"m7","Heartbeat",null]', 2),
        ('[2,"m7",5,{}]', 2),
        ('[2,"m7","Heartbeat",{},{}]', 2),
        ('[3,"m7"]', 3),
        ('[3,"m7",[]]', 3),
        ('[3,"m7",{},1]', 3),
        ('[4,"m7","GenericError","x"]', 4),
        ('[4,"m7","GenericError","x",null]', 4),
        ('[4,"m7",1,"x",{}]', 4),
        ('[4,"m7","GenericError",null,{}]', 4),
    ],
)
def test_wrong_shape_keeps_the_readable_id(text, message_type):
    """A wrong shape is a FormationViolation that carries the frame's usable id."""
    with pytest.raises(FrameError) as info:
        parse(text)
    assert (info.value.message_id, info.value.message_type, info.value.code) == (
        "m7",
        message_type,
        "FormationViolation",
    )


def test_encoding_is_compact_utf8():
    """Encoders write compact JSON without ASCII escapes."""
    assert encode_call("1", "Reset", {"type": "Soft"}) == '[2,"1","Reset",{"type":"Soft"}]'
    assert encode_result("1", {"idTagInfo": {"status": "Accepted"}}) == '[3,"1",{"idTagInfo":{"status":"Accepted"}}]'
    assert encode_result("1", {"data": "Grüße"}) == '[3,"1",{"data":"Grüße"}]'


def test_encode_error_details_always_an_object():
    """A CALLERROR's details default to {}."""
    assert encode_error("-1", "FormationViolation", "bad") == '[4,"-1","FormationViolation","bad",{}]'
    assert encode_error("9", "GenericError", "x", None) == '[4,"9","GenericError","x",{}]'
    assert json.loads(encode_error("9", "GenericError", "x", {"a": [1]}))[4] == {"a": [1]}


def test_encoding_refuses_nan():
    """Our own NaN is a bug, never sent as invalid JSON."""
    with pytest.raises(ValueError):
        encode_result("1", {"x": float("nan")})


def test_round_trip():
    """What the encoders write, parse reads back."""
    assert parse(encode_call("id-1", "Reset", {"type": "Hard"})) == Call("id-1", "Reset", {"type": "Hard"})
    assert parse(encode_result("id-1", {})) == CallResult("id-1", {})
    assert parse(encode_error("id-1", "NotSupported", "d", {"x": 1})) == CallError("id-1", "NotSupported", "d", {"x": 1})


def test_nesting_is_bounded():
    """A frame nested deeper than MAX_DEPTH is a FormationViolation carrying its id; wide frames are fine."""
    deep = {"vendorId": "V", "data": None}
    inner = "x"
    for _ in range(frames.MAX_DEPTH):
        inner = [inner]
    deep["data"] = inner
    with pytest.raises(FrameError) as info:
        parse(json.dumps([2, "deep", "DataTransfer", deep]))
    assert (info.value.message_id, info.value.code) == ("deep", "FormationViolation")
    shallow = [[["x"]]] * 200
    assert parse(json.dumps([2, "wide", "DataTransfer", {"data": shallow}])).payload == {"data": shallow}
    almost = "x"
    for _ in range(frames.MAX_DEPTH - 2):
        almost = [almost]
    assert parse(json.dumps([2, "ok", "DataTransfer", {"data": almost}])).message_id == "ok"


def test_lone_surrogates_are_refused_pairs_are_fine():
    """An escape decoding to a lone surrogate is a FormationViolation; an escaped pair is a normal character."""
    with pytest.raises(FrameError) as info:
        parse('[2,"s1","Authorize",{"idTag":"\\ud800"}]')
    assert info.value.message_id == "s1"
    with pytest.raises(FrameError) as info:
        parse('[2,"\\udc00","Authorize",{"idTag":"A"}]')
    assert info.value.message_id == "-1"
    assert parse('[2,"s2","Authorize",{"idTag":"\\ud83d\\ude00"}]').payload == {"idTag": "\U0001f600"}
    assert parse('[2,"s3","Authorize",{"idTag":"\\\\ud800"}]').payload == {"idTag": "\\ud800"}


@pytest.mark.parametrize(
    "text",
    [
        '[2,"1","Heartbeat",{}]',
        ' \n[ 2 ,\t"1" , "Heartbeat" , {} ] \r\n',
        '[2,"{\\"","A\\u0022{}",{"a":"}]","b":[{"c":"\\"{"}]}]',
        '[2,"x","DataTransfer",{"vendorId":"V","data":"Grüße \\ud83d\\ude00"}]',
    ],
)
def test_call_payload_text_is_the_payload_as_sent(text):
    """The payload's text is a slice of the frame: it decodes to the parsed payload."""
    call = parse(text)
    payload_text = frames.call_payload_text(text)
    assert payload_text in text and payload_text.startswith("{") and payload_text.endswith("}")
    assert json.loads(payload_text) == call.payload


def test_encode_result_parts():
    """The frame is encode_result's; the payload text is the payload's part of it."""
    for message_id, payload in [("1", {}), ('a"b', {"data": "Grüße", "n": [1, 2.5]})]:
        text, payload_text = frames.encode_result_parts(message_id, payload)
        assert text == encode_result(message_id, payload)
        assert json.loads(payload_text) == payload and payload_text in text
    with pytest.raises(ValueError):
        frames.encode_result_parts("1", {"x": float("nan")})


@pytest.mark.parametrize("text", ['[2,"1","Heartbeat",{}]x', '[2,"1","Heartbeat",{}][]', '[2,"1","Heartbeat",{}] \t,', "[", '[2,"1"'])
def test_anything_after_the_frame_is_not_json(text):
    """Only JSON whitespace may follow the array."""
    with pytest.raises(FrameError) as info:
        parse(text)
    assert info.value.message_id == "-1"


def test_whitespace_around_the_frame_is_fine():
    """Leading and trailing JSON whitespace are allowed, as json.loads allows them."""
    assert parse('[2,"1","Heartbeat",{}] \r\n\t') == Call("1", "Heartbeat", {})
    assert parse(' \n[3,"1",{}]') == CallResult("1", {})


_payload_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**80), max_value=2**80) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _payload_values, max_size=5), st.booleans())
def test_fast_reader_reads_what_the_stdlib_reads(payload, spaced):
    """Every payload (long integers, floats of any range, any text) is read exactly as the stdlib reads it."""
    text = json.dumps([2, "id", "Action", payload], ensure_ascii=not spaced, separators=(", ", ": ") if spaced else (",", ":"))
    call = frames.parse(text)
    expected = json.loads(text)[3]
    assert call.payload == expected
    assert json.dumps(call.payload) == json.dumps(expected)  # same types: ints stay ints, -0.0 stays -0.0


def test_what_the_fast_reader_refuses_gets_the_stdlib_answer():
    """A 30-digit integer is kept exact; numbers out of range and NaN stay FormationViolation."""
    assert frames.parse('[2,"a","X",{"n":123456789012345678901234567890}]').payload == {"n": 123456789012345678901234567890}
    for text in ('[2,"a","X",{"n":1e400}]', '[2,"a","X",{"n":NaN}]'):
        with pytest.raises(FrameError):
            frames.parse(text)
