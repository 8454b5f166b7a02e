"""
Tests for L{ocpptw.ocpp.recent_ids}.
"""

from __future__ import annotations

from ocpptw.ocpp.recent_ids import RecentIds


def test_remembers_the_last_ids_only():
    ids = RecentIds()
    assert "a" not in ids and len(ids) == 0
    names = [f"id-{n}" for n in range(RecentIds.size + 10)]
    for name in names:
        ids.add(name)
    assert len(ids) == RecentIds.size
    assert all(name in ids for name in names[10:])
    assert not any(name in ids for name in names[:10])


def test_small_ring():
    class Three(RecentIds):
        size = 3

    ids = Three()
    for name in "abcd":
        ids.add(name)
    assert [name in ids for name in "abcd"] == [False, True, True, True]
    assert len(ids) == 3


def test_nothing_allocated_before_the_first_id():
    assert RecentIds()._ring is None
