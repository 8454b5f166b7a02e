# -*- test-case-name: tests.ocpp.test_recent_ids -*-
"""
The message ids of the last CALLs one connection received, for refusing a
repeated id (C{ProtocolError}) in bounded and small memory.

A charger has one CALL in flight at a time and repeats a CALL, with the same
id, only when its answer did not come: the repeat follows the original
closely.  The last L{RecentIds.size} ids are kept as 64-bit hashes in one
fixed array (about 600 bytes a connection, allocated at the first CALL),
not as strings in a set: with a thousand ids a connection that was 150 kB
a long-lived charger, the largest part of its memory.  Two different ids
share a hash with a probability of about 2**-64 per pair.
"""

from __future__ import annotations

from array import array


class RecentIds:
    """
    The last C{size} message ids added, by hash.
    """

    __slots__ = ("_ring", "_next", "_count")

    size = 64

    def __init__(self) -> None:
        self._ring: array | None = None
        self._next = 0
        self._count = 0

    def __contains__(self, message_id: str) -> bool:
        ring = self._ring
        return ring is not None and (hash(message_id) or 1) in ring

    def add(self, message_id: str) -> None:
        ring = self._ring
        if ring is None:
            ring = self._ring = array("q", bytes(8 * self.size))
        ring[self._next] = hash(message_id) or 1
        self._next = (self._next + 1) % len(ring)
        if self._count < len(ring):
            self._count += 1

    def __len__(self) -> int:
        return self._count
