"""
The hand-over tables of L{ocpptw.adapters.amqp_handover}: where chargers
went, and recognising the second copy of a command, both bounded.
"""

from __future__ import annotations

from types import SimpleNamespace

from ocpptw.adapters.amqp_handover import FORWARDED_FOR, Handover, forwarded_properties


def props(correlation_id="c1", reply_to="amq.rabbitmq.reply-to.x", **extra):
    return SimpleNamespace(correlation_id=correlation_id, reply_to=reply_to, **extra)


def test_moved_and_back():
    """A charger that moved is reported with its new instance until it connects here again."""
    handover = Handover()
    assert handover.holder("CP1") is None
    handover.moved("CP1", "b")
    assert handover.holder("CP1") == "b"
    handover.back("CP1")
    assert handover.holder("CP1") is None


def test_second_copy_is_recognised_once_in_either_order():
    """The routed and the forwarded copy of one command: the first runs, the other is dropped."""
    handover = Handover()
    assert handover.first_copy(props("c1"), forwarded=False)
    assert not handover.first_copy(props("c1"), forwarded=True)
    assert handover.first_copy(props("c2"), forwarded=True)
    assert not handover.first_copy(props("c2"), forwarded=False)


def test_repeats_of_the_same_kind_and_anonymous_commands_always_run():
    """A caller's own retry (same kind) and commands without correlation are never dropped."""
    handover = Handover()
    assert handover.first_copy(props("c1"), forwarded=False)
    assert handover.first_copy(props("c1"), forwarded=False)
    assert handover.first_copy(props(None), forwarded=False)
    assert handover.first_copy(props(None), forwarded=True)
    assert handover.first_copy(props("c1", reply_to="other"), forwarded=True)


def test_tables_are_bounded():
    """Old entries leave once the limit is reached."""
    handover = Handover(limit=2)
    for n in range(3):
        handover.moved(f"CP{n}", "b")
        handover.first_copy(props(f"c{n}"), forwarded=False)
    assert handover.holder("CP0") is None and handover.holder("CP2") == "b"
    assert handover.first_copy(props("c0"), forwarded=True)  # forgotten: runs


def test_forwarded_properties_keep_the_reply_address():
    """A forwarded command keeps reply_to, correlation_id and expiration, and names the charger."""
    original = props("c9", content_type=None, expiration="5000", message_id=None, headers={"a": 1})
    forwarded = forwarded_properties(original, "CP9")
    assert (forwarded.reply_to, forwarded.correlation_id, forwarded.expiration) == (original.reply_to, "c9", "5000")
    assert forwarded.content_type == "application/json"
    assert forwarded.headers == {"a": 1, FORWARDED_FOR: "CP9"}
