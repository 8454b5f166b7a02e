"""
Tests for L{ocpptw.observability.heap}: the pace of young passes and full collections on
a C{Clock}, and what freezing does to real cyclic garbage.
"""

from __future__ import annotations

import gc
import weakref

from twisted.internet.task import Clock

from ocpptw.observability.heap import HeapService


class FakeGc:
    def __init__(self):
        self.calls = []

    def collect(self):
        self.calls.append("collect")
        return 0

    def freeze(self):
        self.calls.append("freeze")

    def unfreeze(self):
        self.calls.append("unfreeze")

    def get_freeze_count(self):
        return 0


def test_pace_of_young_and_full_passes():
    clock, fake = Clock(), FakeGc()
    service = HeapService(clock, young_every=0.5, full_every=10, collector=fake)
    service.startService()
    assert fake.calls == ["collect", "freeze"]
    fake.calls.clear()
    clock.advance(0.5)
    assert fake.calls == ["collect", "freeze"]
    fake.calls.clear()
    clock.pump([0.5] * 19)
    assert fake.calls.count("unfreeze") == 1
    assert service.full_collections == 1
    service.stopService()
    assert fake.calls[-1] == "unfreeze"
    fake.calls.clear()
    clock.advance(100)
    assert fake.calls == []


def test_no_full_collections_when_off():
    clock, fake = Clock(), FakeGc()
    service = HeapService(clock, young_every=1, full_every=0, collector=fake)
    service.startService()
    clock.pump([1] * 100)
    assert "unfreeze" not in fake.calls
    service.stopService()


class Node:
    pass


def test_cycles_frozen_alive_are_found_by_the_full_collection():
    """
    A cycle still in use when a young pass froze it, dropped afterwards,
    survives young passes and is freed by the next full collection.
    """
    service = HeapService(Clock(), young_every=1, full_every=0)
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a
        ref = weakref.ref(a)
        service.young()
        del a, b
        service.young()
        assert ref() is not None
        service.full()
        assert ref() is None
        assert service.full_collections == 1
    finally:
        gc.unfreeze()
