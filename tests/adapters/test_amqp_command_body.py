"""
Unit tests for L{ocpptw.adapters.amqp_commands.parse_command}'s bounds.
"""

from __future__ import annotations

import json

import pytest

from ocpptw.adapters.amqp_commands import (
    MAX_COMMAND_BYTES,
    MalformedCommand,
    parse_command,
)


def _command(size: int) -> bytes:
    head = b'{"action":"DataTransfer","payload":{"vendorId":"V","data":"'
    tail = b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_finding_12_amqp_command_bodies_over_1_mib_are_invalid_payload():
    """A 20 MB DataTransfer is refused before it is parsed; 1 MiB exactly still parses."""
    with pytest.raises(MalformedCommand, match="1 MiB"):
        parse_command(_command(20 * 1024 * 1024))
    with pytest.raises(MalformedCommand):
        parse_command(_command(MAX_COMMAND_BYTES + 1))
    action, payload, _ = parse_command(_command(MAX_COMMAND_BYTES))
    assert action == "DataTransfer" and len(json.dumps(payload)) > 1_000_000
