# -*- test-case-name: tests.fuzz.test_schema_strategies -*-
"""
Hypothesis strategies built from the official OCPP 1.6 JSON schemas
(C{ocpptw/ocpp/schemas}): valid payloads, and payloads with exactly one
mutation together with the CALLERROR code the contract (section 1) names
for it.

The converter covers the subset of JSON Schema those files use: C{object}
with C{properties}, C{required} and C{additionalProperties: false};
C{string} with C{enum}, C{maxLength} and C{format} (C{date-time},
C{uri}); C{integer}; C{number} (with C{multipleOf}); C{boolean}; C{array}
with C{items} and C{minItems}/C{maxItems}; local C{$ref} into
C{definitions}.

Run with C{HYPOTHESIS_PROFILE=long} for thousands of examples per property
instead of the few hundred CI runs.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from ocpptw.ocpp.errors import (
    FORMATION_VIOLATION,
    OCCURENCE_CONSTRAINT_VIOLATION,
    PROPERTY_CONSTRAINT_VIOLATION,
    TYPE_CONSTRAINT_VIOLATION,
)
from ocpptw.ocpp.validation import SCHEMA_DIR

#: C{HYPOTHESIS_PROFILE=long} multiplies every property's examples by this.
LONG_FACTOR = 25
LONG = os.environ.get("HYPOTHESIS_PROFILE", "") == "long"

settings.register_profile("long", max_examples=200 * LONG_FACTOR, deadline=None)
if LONG:
    settings.load_profile("long")


def fuzz_settings(examples: int) -> settings:
    """
    Settings for one property: C{examples} in CI, C{LONG_FACTOR} times more
    under C{HYPOTHESIS_PROFILE=long}; no deadline (the network is in the
    loop); the autouse log checker spans all examples.
    """
    return settings(
        max_examples=examples * LONG_FACTOR if LONG else examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=False,
    )


def load_schema(name: str, version: Any = None) -> dict:
    """
    The schema C{name}.json (e.g. C{"StartTransaction"} or
    C{"ResetResponse"}) of OCPP 1.6, or of C{version} (a
    L{ocpptw.ocpp.versions.ProtocolVersion}; 2.0.1 request schemas are
    C{ActionRequest.json}).
    """
    if version is None:
        return json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))
    response = name.endswith("Response")
    return json.loads(version.schema_file(name.removesuffix("Response"), response).read_text(encoding="utf-8"))


def resolve(node: dict, root: dict) -> dict:
    """C{node} with a local C{$ref} followed."""
    while "$ref" in node:
        target: Any = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


# -- valid values -------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

date_times = st.one_of(
    # realistic: around now, with Z, an offset, fractions, or no offset at all
    st.builds(
        lambda seconds, micro, style: _format_time(_EPOCH + timedelta(seconds=seconds, microseconds=micro), style),
        st.integers(min_value=1_500_000_000, max_value=2_000_000_000),
        st.integers(min_value=0, max_value=999_999),
        st.sampled_from(["Z", "ms", "offset", "naive", "micro"]),
    ),
    # anything on the calendar
    st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59), timezones=st.just(timezone.utc)
    ).map(lambda dt: _format_time(dt, "Z")),
)


def _format_time(dt: datetime, style: str) -> str:
    base = f"{dt.year:04d}-" + dt.strftime("%m-%dT%H:%M:%S")  # %Y does not pad years below 1000
    if style == "Z":
        return base + "Z"
    if style == "ms":
        return base + f".{dt.microsecond // 1000:03d}Z"
    if style == "micro":
        return base + f".{dt.microsecond:06d}+00:00"
    if style == "offset":
        return base + "+02:00"
    return base


_URIS = st.builds(lambda host, path: f"https://{host}.example/{path}", st.from_regex(r"[a-z]{1,12}", fullmatch=True),
                  st.from_regex(r"[a-z0-9/]{0,30}", fullmatch=True))  # fmt: skip

#: Integers a JSON number may hold: mostly small, some at the edges of 32 and 64 bits.
integers = st.one_of(
    st.integers(min_value=-10, max_value=100),
    st.integers(min_value=0, max_value=2**31 - 1),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([2**31 - 1, 2**31, -(2**31), 2**53, 2**63 - 1, -(2**63)]),
)


def _string(node: dict) -> st.SearchStrategy:
    if "enum" in node:
        return st.sampled_from(node["enum"])
    fmt = node.get("format")
    if fmt == "date-time":
        return date_times
    if fmt == "uri":
        return _URIS
    return st.text(max_size=min(node.get("maxLength", 60), 600))


def valid(node: dict, root: dict) -> st.SearchStrategy:
    """A strategy for values that C{node} (in schema C{root}) accepts."""
    node = resolve(node, root)
    kind = node.get("type")
    if kind == "object":
        props = node.get("properties", {})
        required = [k for k in node.get("required", []) if k in props]
        optional = [k for k in props if k not in required]
        return st.fixed_dictionaries(
            {k: valid(props[k], root) for k in required},
            optional={k: valid(props[k], root) for k in optional},
        )
    if kind == "array":
        low = node.get("minItems", 0)
        high = min(node.get("maxItems", low + 3), low + 3)
        return st.lists(valid(node.get("items", {}), root), min_size=low, max_size=high)
    if kind == "string":
        return _string(node)
    if kind == "integer":
        if "minimum" in node or "maximum" in node:  # 2.0.1 bounds some integers; 1.6 none
            # within the 64 bits the gateway admits (validation.INT_MIN/INT_MAX) on the open side
            return st.integers(min_value=node.get("minimum", -(2**63)), max_value=node.get("maximum", 2**63 - 1))
        return integers
    if kind == "number":
        if "minimum" in node or "maximum" in node:
            low, high = node.get("minimum"), node.get("maximum")
            return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False) | st.integers(
                min_value=None if low is None else int(low) + (low != int(low)), max_value=None if high is None else int(high)
            )
        if "multipleOf" in node:
            return st.integers(min_value=-10_000, max_value=10_000).map(lambda k: k / 10)
        return st.floats(allow_nan=False, allow_infinity=False, width=64) | integers
    if kind == "boolean":
        return st.booleans()
    return st.none()


def valid_payload(action: str, version: Any = None) -> st.SearchStrategy:
    """Valid CALL payloads of C{action} (of OCPP 1.6, or of C{version})."""
    schema = load_schema(action, version)
    return valid(schema, schema)


def valid_response(action: str, version: Any = None) -> st.SearchStrategy:
    """Valid CALLRESULT payloads for a CALL of C{action} (of OCPP 1.6, or of C{version})."""
    schema = load_schema(action + "Response", version)
    return valid(schema, schema)


# -- mutations --------------------------------------------------------------------------------


def _sites(value: Any, node: dict, root: dict, path: tuple = ()) -> list[tuple[tuple, dict, Any]]:
    """Every (path, schema, value) in a valid C{value}, depth first."""
    node = resolve(node, root)
    out = [(path, node, value)]
    if node.get("type") == "object" and type(value) is dict:
        for key, child in value.items():
            out += _sites(child, node["properties"][key], root, path + (key,))
    elif node.get("type") == "array" and type(value) is list:
        for i, child in enumerate(value):
            out += _sites(child, node.get("items", {}), root, path + (i,))
    return out


def _set(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    copy = json.loads(json.dumps(value))
    target = copy
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = new
    return copy


def _other_type(kind: str) -> st.SearchStrategy:
    """JSON values whose type is not C{kind}, even to a lax checker (no bools for numbers...)."""
    candidates = {
        "string": st.none() | st.booleans() | st.integers() | st.lists(st.text(max_size=3), max_size=2)
        | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        "integer": st.none() | st.booleans() | st.text(max_size=5)
        | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()) | st.just([1]),
        "number": st.none() | st.booleans() | st.text(max_size=5) | st.just({"v": 1}) | st.just([1.5]),
        "boolean": st.none() | st.integers(min_value=0, max_value=1) | st.sampled_from(["true", "false", ""]),
        "object": st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.just([{}]),
        "array": st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.just({}),
    }  # fmt: skip
    return candidates[kind]


_BAD_DATES = st.sampled_from(
    ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00", "yesterday", "", "2026-02-30T10:00:00Z", "2026-13-01T00:00:00Z", "2026-11-24", "10:00:00", "2026-11-24T25:00:00Z",
     "2026-11-24T10:00:00+2", "1e10", "2026-11-24T10:00:00ZZ", "２０２６-11-24T10:00:00Z"]
)  # fmt: skip


@st.composite
def mutated(draw, action: str, response: bool = False, version: Any = None) -> tuple[dict, str, str]:
    """
    A payload of C{action} (a response when C{response}; of OCPP 1.6, or of
    C{version}) with exactly one fault: C{(payload, expected CALLERROR code
    in 1.6's spelling, what was done)}.
    """
    schema = load_schema(action + ("Response" if response else ""), version)
    payload = draw(valid(schema, schema))
    sites = _sites(payload, schema, schema)
    kinds = ["unknown-property", "wrong-type"]
    if any(n.get("type") == "object" and any(k in v for k in n.get("required", [])) for _, n, v in sites):
        kinds.append("missing-required")
    strings = [(p, n) for p, n, _ in sites if n.get("type") == "string" and p]
    if any("maxLength" in n and "enum" not in n for _, n in strings):
        kinds += ["too-long", "huge-string"]
    if any("enum" in n for _, n in strings):
        kinds.append("not-in-enum")
    if any(n.get("format") == "date-time" for _, n in strings):
        kinds.append("bad-date")
    if any(n.get("type") == "array" and n.get("minItems", 0) > 0 for p, n, _ in sites):
        kinds.append("empty-array")
    if any(n.get("type") == "number" and "multipleOf" in n for p, n, _ in sites):
        kinds.append("not-a-multiple")
    if any(n.get("type") == "integer" and p for p, n, _ in sites):
        kinds.append("beyond-64-bits")
    kind = draw(st.sampled_from(kinds))
    if kind == "unknown-property":
        # objects that refuse unknown properties (all of 1.6's; 2.0.1's customData accepts any)
        objects = [(p, n, v) for p, n, v in sites if n.get("type") == "object" and n.get("additionalProperties") is False]
        path, node, value = draw(st.sampled_from(objects))
        key = draw(st.text(min_size=1, max_size=20).filter(lambda k: k not in node.get("properties", {})))
        extra = draw(st.one_of(st.integers(), st.text(max_size=20), st.none(), st.just([[[[[[[[["deep"]]]]]]]]])))
        return _set(payload, path, dict(value, **{key: extra})), FORMATION_VIOLATION, f"{kind} {path}/{key!r}"
    if kind == "wrong-type":
        typed = [(p, n) for p, n, _ in sites if p and n.get("type") in ("string", "integer", "number", "boolean", "object", "array")]
        if not typed:  # an empty object: an unknown property instead
            return {"x": 1}, FORMATION_VIOLATION, "unknown-property x"
        path, node = draw(st.sampled_from(typed))
        return _set(payload, path, draw(_other_type(node["type"]))), TYPE_CONSTRAINT_VIOLATION, f"{kind} {path}"
    if kind == "missing-required":
        holders = [(p, n, v) for p, n, v in sites if n.get("type") == "object" and any(k in v for k in n.get("required", []))]
        path, node, value = draw(st.sampled_from(holders))
        key = draw(st.sampled_from([k for k in node["required"] if k in value]))
        smaller = {k: v for k, v in value.items() if k != key}
        return _set(payload, path, smaller), OCCURENCE_CONSTRAINT_VIOLATION, f"{kind} {path}/{key}"
    if kind in ("too-long", "huge-string"):
        path, node = draw(st.sampled_from([(p, n) for p, n in strings if "maxLength" in n and "enum" not in n]))
        limit = node["maxLength"]
        # huge: 60,000 characters stay under the 1 MiB frame limit even as \\uXXXX\\uXXXX pairs
        size = limit + draw(st.integers(min_value=1, max_value=20)) if kind == "too-long" else 60_000
        char = draw(st.characters(exclude_categories=("Cs",)))
        return _set(payload, path, char * size), PROPERTY_CONSTRAINT_VIOLATION, f"{kind} {path} {size}"
    if kind == "not-in-enum":
        path, node = draw(st.sampled_from([(p, n) for p, n in strings if "enum" in n]))
        bad = draw(st.text(max_size=20).filter(lambda s: s not in node["enum"]))
        return _set(payload, path, bad), PROPERTY_CONSTRAINT_VIOLATION, f"{kind} {path}"
    if kind == "bad-date":
        path, _ = draw(st.sampled_from([(p, n) for p, n in strings if n.get("format") == "date-time"]))
        return _set(payload, path, draw(_BAD_DATES)), PROPERTY_CONSTRAINT_VIOLATION, f"{kind} {path}"
    if kind == "not-a-multiple":
        path = draw(st.sampled_from([p for p, n, _ in sites if n.get("type") == "number" and "multipleOf" in n]))
        return _set(payload, path, draw(st.integers(0, 999)) / 10 + 0.05), PROPERTY_CONSTRAINT_VIOLATION, f"{kind} {path}"
    if kind == "beyond-64-bits":
        path = draw(st.sampled_from([p for p, n, _ in sites if n.get("type") == "integer" and p]))
        huge = draw(st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30, -(10**40)]))
        return _set(payload, path, huge), PROPERTY_CONSTRAINT_VIOLATION, f"{kind} {path}"
    path = draw(st.sampled_from([p for p, n, _ in sites if n.get("type") == "array" and n.get("minItems", 0) > 0]))
    return _set(payload, path, []), OCCURENCE_CONSTRAINT_VIOLATION, f"{kind} {path}"
