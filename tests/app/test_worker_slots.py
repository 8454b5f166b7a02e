# -*- test-case-name: tests.app.test_worker_slots -*-
"""
The transactionId slot of each worker: hashed from its own instance id by
default (so the workers of two hosts do not take neighbouring slots), the
next ones after an INSTANCE_SLOT that is set.
"""

from ocpptw.app.gateway import worker_config
from ocpptw.config import load_config, slot_of


def test_default_slots_are_hashed_per_worker():
    config = load_config("", {"INSTANCE_ID": "gw-a", "WORKERS": "3"}, {})
    slots = [worker_config(config, n).instance_slot for n in (1, 2, 3)]
    assert slots == [slot_of(f"gw-a-w{n}") for n in (1, 2, 3)]


def test_a_set_slot_is_followed_by_the_next_ones():
    config = load_config("", {"INSTANCE_ID": "gw-a", "WORKERS": "3", "INSTANCE_SLOT": "1022"}, {})
    assert [worker_config(config, n).instance_slot for n in (1, 2, 3)] == [1022, 1023, 0]
