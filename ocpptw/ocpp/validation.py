# -*- test-case-name: tests.ocpp.test_validation -*-
"""
Validation of OCPP payloads against the official JSON schemas shipped in
C{schemas/} (OCPP 1.6) and C{schemas_v201/} (OCPP 2.0.1): each CALL payload
against C{Action.json} (2.0.1: C{ActionRequest.json}), each CALLRESULT
payload against C{ActionResponse.json}.  A L{Validator} checks one version
(L{ocpptw.ocpp.versions}).

The schemas are compiled once per process with fastjsonschema (about twenty
times faster than jsonschema) and shared by every L{Validator}.  Two changes
to the generated code make it cheaper without changing what it accepts or
how it fails: an C{enum} of strings is one set lookup instead of a chain of
comparisons, and C{additionalProperties} on a property that is not an
object (the official schemas put it on many strings) is dropped, since the
type check before it already refuses anything else.  One
deviation from the schemas: C{format: date-time} also accepts timestamps
without an offset (taken as UTC) and fractional seconds of any length,
because real chargers send them; the date must still exist on the calendar,
also once converted to UTC (C{9999-12-31T23:59:59-05:00} does not).  The
schemas set no bounds on integers; every C{integer} is compiled with the
bounds of a signed 64-bit integer (L{INT_MIN}, L{INT_MAX}), what SQLite and
most backends store, so a larger value is refused as out of range instead of
failing deep inside a store.

A failure becomes an L{OcppError} with the CALLERROR code that docs/contract.md
section 1 names (in 1.6's spelling; the session spells it for the charger's
version, L{ocpptw.ocpp.versions.ProtocolVersion.wire_code}):

    - a required field missing, or an array with too few or too many items
      -> C{OccurenceConstraintViolation}
    - a field of the wrong JSON type -> C{TypeConstraintViolation}
    - a value out of range, too long, not in its enum, of the wrong format
      or not a multiple of its C{multipleOf} -> C{PropertyConstraintViolation}
    - an unknown property, or any other rule -> C{FormationViolation}
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from functools import partial, update_wrapper
from pathlib import Path
from typing import Any, Callable

import fastjsonschema
from twisted.logger import Logger

from ocpptw.ocpp.errors import (
    FORMATION_VIOLATION,
    NOT_IMPLEMENTED,
    OCCURENCE_CONSTRAINT_VIOLATION,
    PROPERTY_CONSTRAINT_VIOLATION,
    TYPE_CONSTRAINT_VIOLATION,
    OcppError,
)
from ocpptw.ocpp.versions import V16, ProtocolVersion

#: Where the official schemas live (package data).
SCHEMA_DIR = Path(__file__).with_name("schemas")

#: The fastjsonschema rule -> the CALLERROR code it maps to.
RULE_CODES: dict[str, str] = {
    "required": OCCURENCE_CONSTRAINT_VIOLATION,
    "minItems": OCCURENCE_CONSTRAINT_VIOLATION,
    "maxItems": OCCURENCE_CONSTRAINT_VIOLATION,
    "type": TYPE_CONSTRAINT_VIOLATION,
    "enum": PROPERTY_CONSTRAINT_VIOLATION,
    "const": PROPERTY_CONSTRAINT_VIOLATION,
    "minimum": PROPERTY_CONSTRAINT_VIOLATION,
    "maximum": PROPERTY_CONSTRAINT_VIOLATION,
    "exclusiveMinimum": PROPERTY_CONSTRAINT_VIOLATION,
    "exclusiveMaximum": PROPERTY_CONSTRAINT_VIOLATION,
    "minLength": PROPERTY_CONSTRAINT_VIOLATION,
    "maxLength": PROPERTY_CONSTRAINT_VIOLATION,
    "pattern": PROPERTY_CONSTRAINT_VIOLATION,
    "format": PROPERTY_CONSTRAINT_VIOLATION,
    "multipleOf": PROPERTY_CONSTRAINT_VIOLATION,
    "uniqueItems": PROPERTY_CONSTRAINT_VIOLATION,
    "additionalProperties": FORMATION_VIOLATION,
}

#: Longest description put into a CALLERROR.
MAX_DESCRIPTION = 300

_RESPONSE = "Response"

#: The integers a payload may hold (signed 64 bits).
INT_MIN, INT_MAX = -(2**63), 2**63 - 1

_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-]\d\d:?\d\d)?")
_fromisoformat = datetime.fromisoformat

#: recent timestamps found valid (chargers send many alike)
_VALID_TIMES: set[str] = set()
_VALID_TIMES_MAX = 256

log = Logger()


def is_date_time(value: str) -> bool:
    """
    The loosened C{date-time} format: C{YYYY-MM-DDTHH:MM:SS}, optionally
    with fractional seconds of any length and a C{Z} or C{+HH:MM} offset
    (C{T} may also be a space), naming a real date and time.
    """
    if value in _VALID_TIMES:
        return True
    if not _is_date_time(value):
        return False
    if len(_VALID_TIMES) >= _VALID_TIMES_MAX:
        _VALID_TIMES.clear()
    _VALID_TIMES.add(value)
    return True


def _is_date_time(value: str) -> bool:
    if _DATE_TIME.fullmatch(value) is None:
        return False
    if value[-1] in "Zz":
        value = value[:-1]
    try:
        parsed = _fromisoformat(value)
        if parsed.year in (1, 9999) and parsed.tzinfo is not None:
            parsed.astimezone(timezone.utc)  # an offset may push it off the calendar
    except (ValueError, OverflowError):
        return False
    return True


_FORMATS: dict[str, Callable[[Any], bool]] = {"date-time": is_date_time}

# action name -> compiled validator, for requests and responses; filled once
# per version (these two are OCPP 1.6's; L{_tables} holds every version's)
_requests: dict[str, Callable[[Any], Any]] = {}
_responses: dict[str, Callable[[Any], Any]] = {}
_tables: dict[str, tuple[dict[str, Callable[[Any], Any]], dict[str, Callable[[Any], Any]]]] = {
    V16.name: (_requests, _responses),
}


def _objects(node: Any) -> Any:
    """
    Every JSON object (dict) in a schema, outermost first.
    """
    if type(node) is dict:
        yield node
        for child in node.values():
            yield from _objects(child)
    elif type(node) is list:
        for child in node:
            yield from _objects(child)


def _bound_integers(schema: Any) -> None:
    """
    Give every C{integer} in a schema the 64-bit bounds, unless it has its own.
    """
    for node in _objects(schema):
        if node.get("type") == "integer":
            node.setdefault("minimum", INT_MIN)
            node.setdefault("maximum", INT_MAX)


def _drop_dead_additional_properties(schema: Any) -> None:
    """
    Drop C{additionalProperties} where the C{type} is one that is not an
    object: the type check comes first and refuses anything else.
    """
    for node in _objects(schema):
        kind = node.get("type")
        if type(kind) is str and kind != "object":
            node.pop("additionalProperties", None)


def _inline_definitions(schema: dict) -> dict:
    """
    C{schema} with every C{{"$ref": "#/definitions/X"}} replaced by a copy
    of definition C{X} (itself inlined), where that is the whole node: the
    generated code checks each nested value in place instead of calling a
    function per definition (the 2.0.1 schemas nest a definition for each
    sampled value, its unit and its C{customData}).  The checks, their rules
    and messages are the same.  A definition that refers to itself, directly
    or not, stays a reference.
    """
    definitions = schema.get("definitions")
    if not isinstance(definitions, dict):
        return schema

    def inline(node: Any, seen: frozenset[str]) -> Any:
        if type(node) is dict:
            ref = node.get("$ref")
            if len(node) == 1 and isinstance(ref, str) and ref.startswith("#/definitions/"):
                name = ref[len("#/definitions/"):]
                if name in definitions and name not in seen:
                    return inline(definitions[name], seen | {name})
                return node
            return {key: (value if key == "definitions" else inline(value, seen)) for key, value in node.items()}
        if type(node) is list:
            return [inline(child, seen) for child in node]
        return node

    return inline(schema, frozenset())


_generators: dict[type, type] = {}


def _generator(base: type) -> type:
    """
    fastjsonschema's code generator C{base} with an C{enum} of strings
    checked by one set lookup; the failure (rule, message) is the same.
    """
    generator = _generators.get(base)
    if generator is None:

        class SetEnums(base):
            def generate_enum(self) -> None:
                enum = self._definition["enum"]
                if not (isinstance(enum, (list, tuple)) and enum and all(type(value) is str for value in enum)):
                    return super().generate_enum()
                members = "{{" + ", ".join(repr(value) for value in enum).replace("{", "{{").replace("}", "}}") + "}}"
                with self.l("if not (isinstance({variable}, str) and {variable} in " + members + "):"):
                    self.exc("{name} must be one of {}", self.e(enum), rule="enum")

        generator = _generators[base] = SetEnums
    return generator


def _compile(schema: dict) -> Callable[[Any], Any]:
    """
    C{fastjsonschema.compile(schema, formats, use_default=False)}, with the
    set lookup of L{_generator}; plain C{compile} if fastjsonschema's
    generator cannot be extended this way (a version that changed it).
    """
    try:
        resolver = fastjsonschema.RefResolver.from_schema(schema, handlers={}, store={})
        base = fastjsonschema._get_code_generator_class(schema)
        code = _generator(base)(schema, resolver=resolver, formats=_FORMATS, use_default=False)
        namespace = code.global_state
        exec(code.func_code, namespace)
        function = namespace[resolver.get_scope_name()]
    except (AttributeError, TypeError, KeyError) as e:
        log.warn("schema compiled without set lookups for enums: {error}", error=repr(e))
        return fastjsonschema.compile(schema, formats=_FORMATS, use_default=False)
    return update_wrapper(partial(function, custom_formats=_FORMATS), function)


def _compile_all(version: ProtocolVersion = V16) -> tuple[dict, dict]:
    """
    Compile every schema of C{version}, once per process.

    @return: C{(requests, responses)}: action -> compiled check.
    """
    requests, responses = _tables.setdefault(version.name, ({}, {}))
    if requests:
        return requests, responses
    compiled_requests: dict[str, Callable[[Any], Any]] = {}
    compiled_responses: dict[str, Callable[[Any], Any]] = {}
    request_suffix = version.request_suffix
    for path in sorted(version.schema_dir.glob("*.json")):
        schema = _inline_definitions(json.loads(path.read_text(encoding="utf-8")))
        _bound_integers(schema)
        _drop_dead_additional_properties(schema)
        compiled = _compile(schema)
        name = path.stem
        if name.endswith(_RESPONSE):
            compiled_responses[name[: -len(_RESPONSE)]] = compiled
        elif request_suffix and name.endswith(request_suffix):
            compiled_requests[name[: -len(request_suffix)]] = compiled
        elif not request_suffix:
            compiled_requests[name] = compiled
    responses.update(compiled_responses)
    requests.update(compiled_requests)
    return requests, responses


def _to_error(exc: fastjsonschema.JsonSchemaValueException) -> OcppError:
    code = RULE_CODES.get(exc.rule or "", FORMATION_VIOLATION)
    description = exc.message
    if len(description) > MAX_DESCRIPTION:
        description = description[: MAX_DESCRIPTION - 3] + "..."
    return OcppError(code, description)


def _check(compiled: Callable[[Any], Any], payload: dict) -> None:
    try:
        compiled(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise _to_error(exc) from None
    except RecursionError:
        raise OcppError(FORMATION_VIOLATION, "payload is nested too deeply") from None
    except (TypeError, ValueError, ArithmeticError):
        # NaN or infinity in a number with multipleOf; only our own payloads can hold them
        raise OcppError(TYPE_CONSTRAINT_VIOLATION, "payload holds a value that is not a JSON value") from None


class Validator:
    """
    Checks the payloads of one OCPP version (1.6 unless told).  Constructing
    the first one of a version compiles all its schemas (about 0.2 s);
    later ones share them.

    @ivar version: the L{ProtocolVersion} whose schemas it checks against.
    """

    def __init__(self, version: ProtocolVersion = V16) -> None:
        self.version = version
        self._requests, self._responses = _compile_all(version)

    def knows(self, action: str) -> bool:
        """
        Whether C{action} is an action of this version (has a schema).
        """
        return action in self._requests

    def actions(self) -> frozenset[str]:
        """
        Every action with a schema.
        """
        return frozenset(self._requests)

    def check_request(self, action: str, payload: dict) -> None:
        """
        Check a CALL payload.

        @raise OcppError: with the mapped code, or C{NotImplemented} for an
            unknown action.
        """
        compiled = self._requests.get(action)
        if compiled is None:
            raise OcppError(NOT_IMPLEMENTED, f"unknown action {action[:60]!r}")
        _check(compiled, payload)

    def check_response(self, action: str, payload: dict) -> None:
        """
        Check a CALLRESULT payload for a CALL of C{action}.

        @raise OcppError: with the mapped code, or C{NotImplemented} for an
            unknown action.
        """
        compiled = self._responses.get(action)
        if compiled is None:
            raise OcppError(NOT_IMPLEMENTED, f"unknown action {action[:60]!r}")
        _check(compiled, payload)
