"""
End to end: C{lastSeen} counts every frame from a charger, also the
answers to commands, in the charger list and as a C{charger.lastSeen}
event (at most once a minute per charger).
"""

from __future__ import annotations

import json

import pytest_twisted
from twisted.internet.defer import ensureDeferred

from tests.fuzz.support import start_gateway, stop_gateway
from tests.helpers import until
from tests.integration.instances_support import answer_next_call, boot, http
from tests.wsclient import connect_charger


@pytest_twisted.ensureDeferred
async def test_answers_to_commands_move_last_seen_and_publish_the_event(tmp_path):
    """A charger that only boots and answers a command: lastSeen moves past connectedAt, and one charger.lastSeen event goes out."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    service = await start_gateway(str(tmp_path / "data"))
    events: list[dict] = []
    publish = service.publisher.publish

    def spy(event):
        events.append(event)
        return publish(event)

    service.publisher.publish = spy
    charger = await connect_charger(service.test_port, "/ocpp/SEEN-1")
    try:
        await boot(charger)
        _, before = await http(service.test_port, "GET", "/api/v1/chargers/SEEN-1")
        assert before["lastSeen"] >= before["connectedAt"]
        assert not [e for e in events if e["type"] == "charger.lastSeen"], events  # the boot itself does not count
        await deferLater(reactor, 0.01, lambda: None)  # lastSeen has millisecond resolution
        command = ensureDeferred(http(service.test_port, "POST", "/api/v1/chargers/SEEN-1/commands/ClearCache", {}))
        await answer_next_call(charger, {"status": "Accepted"})
        status, answer = await command
        assert (status, answer) == (200, {"result": {"status": "Accepted"}})
        _, after = await http(service.test_port, "GET", "/api/v1/chargers/SEEN-1")
        assert after["lastSeen"] > after["connectedAt"] and after["lastSeen"] > before["lastSeen"], after
        await until(lambda: [e for e in events if e["type"] == "charger.lastSeen"])
        [seen] = [e for e in events if e["type"] == "charger.lastSeen"]
        assert seen["deviceId"] == "SEEN-1" and set(seen["data"]) == {"lastSeen"}
        # a second frame within the minute: the list moves, no second event
        charger.send_text(json.dumps([2, "hb-1", "Heartbeat", {}]))
        assert (await charger.next())[0] == 3
        assert len([e for e in events if e["type"] == "charger.lastSeen"]) == 1
    finally:
        charger.dropConnection(abort=True)
        await stop_gateway(service)
