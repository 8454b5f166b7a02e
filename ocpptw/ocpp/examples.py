# -*- test-case-name: tests.ocpp.test_versions -*-
"""
The smallest payload an OCPP JSON schema accepts: required properties only,
the first value of each enum, the lower bound of each number, one item per
required array.  For tests, the simulator and forms that need a valid
starting point for any action of any version.
"""

from __future__ import annotations

from typing import Any

from ocpptw.ocpp.versions import request_schema, response_schema

#: The timestamp put into every C{date-time} field.
TIMESTAMP = "2026-12-04T10:00:00Z"


def _resolve(node: dict, root: dict) -> dict:
    while "$ref" in node:
        target: Any = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def minimal(schema: dict, root: dict | None = None) -> Any:
    """
    The smallest value C{schema} (a node of C{root}) accepts.
    """
    root = schema if root is None else root
    node = _resolve(schema, root)
    if "enum" in node:
        return node["enum"][0]
    kind = node.get("type")
    if kind == "object":
        properties = node.get("properties", {})
        return {name: minimal(properties[name], root) for name in node.get("required", ())}
    if kind == "array":
        count = max(node.get("minItems", 1), 1)
        return [minimal(node.get("items", {}), root) for _ in range(count)]
    if kind == "string":
        if node.get("format") == "date-time":
            return TIMESTAMP
        if node.get("format") == "uri":
            return "https://example.invalid/x"
        length = max(node.get("minLength", 1), 1)
        return "x" * min(length, node.get("maxLength", length))
    if kind == "integer":
        return int(node.get("minimum", 1))
    if kind == "number":
        return node.get("minimum", 1)
    if kind == "boolean":
        return False
    return {}


def minimal_request(version: str, action: str) -> dict:
    """
    The smallest valid CALL payload of C{action} in C{version}.
    """
    schema = request_schema(version, action)
    if schema is None:
        raise KeyError(f"{action} is not an action of OCPP {version}")
    return minimal(schema)


def minimal_response(version: str, action: str) -> dict:
    """
    The smallest valid CALLRESULT payload of C{action} in C{version}.
    """
    schema = response_schema(version, action)
    if schema is None:
        raise KeyError(f"{action} is not an action of OCPP {version}")
    return minimal(schema)
