"""
The console's API paths (overview, schemas, history, sessions, stream) and
its static files, through the real twisted.web stack: routing, access rules
(docs/contract.md section 4), status codes and bodies.
"""

from __future__ import annotations

import json

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.web.resource import Resource

from ocpptw.interfaces import BackendUnavailable
from ocpptw.ocpp.actions import SERVER_TO_CHARGER
from ocpptw.services.live import LiveFeed
from ocpptw.services.registry import ChargerRegistry
from ocpptw.transport.api import CommandApi
from ocpptw.transport.console import ConsoleApi, ConsoleFiles, RequestSchemas
from ocpptw.transport.history import RingHistory
from ocpptw.transport.stream import FLUSH, StreamHub
from tests.transport.web_support import get, open_request, response


class Session:
    charge_point_id = "CP1"


class Outbox:
    def depth(self):
        return 3

    def oldest_age(self):
        return 12.3456

    def dead_letters(self):
        return 1


class Backend:
    def __init__(self, answer):
        self.answer = answer

    def active_sessions(self, device_id):
        return self.answer


class Bus:
    def send(self, *args):
        return Deferred()


def site(token=None, backend=None):
    clock = Clock()
    registry = ChargerRegistry("i-1", clock)
    feed = LiveFeed(clock, registry, history_size=10)
    hub = StreamHub(feed, clock)
    hub.startService()
    command_api = CommandApi(Bus(), registry, token, 30)
    api = ConsoleApi(command_api, feed, RingHistory(feed), hub, Outbox(), instance="i-1",
                     backend=backend or Backend(succeed([])))
    root = Resource()
    v1 = Resource()
    v1.putChild(b"v1", api)
    root.putChild(b"api", v1)
    root.putChild(b"console", ConsoleFiles(command_api))
    return root, feed, hub, clock


def body(answer):
    return json.loads(answer[2])


def test_overview_lists_chargers_and_outbox():
    root, feed, _, _ = site()
    feed.frame(Session(), "in", "CALL", "1", "Heartbeat", {}, None, None)
    status, headers, raw = get(root, b"/api/v1/overview")
    assert status == 200 and headers["content-type"] == "application/json"
    answer = json.loads(raw)
    assert answer["outbox"] == {"depth": 3, "oldestAgeSeconds": 12.346, "deadLetters": 1}
    assert answer["instance"] == "i-1" and "1.6" in answer["ocppVersions"]


def test_schemas_hold_every_server_to_charger_action_of_1_6():
    root, *_ = site()
    answer = body(get(root, b"/api/v1/schemas/1.6"))
    assert set(answer["actions"]) == set(SERVER_TO_CHARGER)
    assert answer["actions"]["Reset"]["properties"]["type"]["enum"] == ["Hard", "Soft"]
    assert answer["actions"]["Reset"]["required"] == ["type"]
    status, _, raw = get(root, b"/api/v1/schemas/9.9")
    assert status == 404 and "9.9" in json.loads(raw)["error"]["description"]


def test_schemas_hold_every_server_to_charger_action_of_2_0_1():
    """The 2.0.1 forms come from the official 2.0.1 request schemas, one per CSMS-to-charger action."""
    from ocpptw.ocpp.versions import version

    root, *_ = site()
    answer = body(get(root, b"/api/v1/schemas/2.0.1"))
    assert set(answer["actions"]) == set(version("2.0.1").server_to_charger)
    reset = answer["actions"]["Reset"]
    kind = reset["properties"]["type"]
    if "$ref" in kind:  # the forms follow local references, as the official 2.0.1 schemas use them
        kind = reset["definitions"][kind["$ref"].rsplit("/", 1)[-1]]
    assert kind["enum"] == ["Immediate", "OnIdle"] and reset["required"] == ["type"]
    assert "RequestStartTransaction" in answer["actions"] and "RemoteStartTransaction" not in answer["actions"]


def test_a_new_version_plugs_in_with_its_table(tmp_path):
    (tmp_path / "ResetRequest.json").write_text(json.dumps({"type": "object", "properties": {"type": {"enum": ["Immediate"]}}}))
    schemas = RequestSchemas({"2.0.1": lambda: (tmp_path, frozenset({"Reset"}), "Request")})
    assert json.loads(schemas.body("2.0.1"))["actions"]["Reset"]["properties"]["type"]["enum"] == ["Immediate"]
    assert schemas.versions() == ["2.0.1"]


def test_history_pages_and_errors():
    root, feed, _, _ = site()
    for n in range(3):
        feed.frame(Session(), "in", "CALL", str(n), "Heartbeat", {}, None, None)
    first = body(get(root, b"/api/v1/chargers/CP1/messages?limit=2"))
    assert [m["messageId"] for m in first["messages"]] == ["2", "1"] and first["next"]
    second = body(get(root, b"/api/v1/chargers/CP1/messages?limit=2&before=" + first["next"].encode()))
    assert [m["messageId"] for m in second["messages"]] == ["0"] and second["next"] is None
    for query in (b"limit=501", b"limit=0", b"limit=x", b"before=nonsense!"):
        status, _, raw = get(root, b"/api/v1/chargers/CP1/messages?" + query)
        assert status == 400 and json.loads(raw)["error"]["code"] == "InvalidQuery", query
    status, _, _ = get(root, b"/api/v1/chargers/NEVER/messages")
    assert status == 404


def test_sessions_come_from_the_backend_and_an_outage_is_503():
    sessions = [{"sessionId": "s", "transactionId": 1, "connectorId": 1, "idTag": "T", "meterStart": 0}]
    root, *_ = site(backend=Backend(succeed(sessions)))
    assert body(get(root, b"/api/v1/chargers/CP1/sessions")) == {"sessions": sessions}
    root, *_ = site(backend=Backend(fail(BackendUnavailable("down"))))
    status, _, raw = get(root, b"/api/v1/chargers/CP1/sessions")
    assert status == 503 and json.loads(raw)["error"]["code"] == "Unavailable"


def test_wrong_method_is_405_and_other_paths_reach_the_command_api():
    root, *_ = site()
    status, headers, _ = get(root, b"/api/v1/overview", method=b"POST")
    assert status == 405 and headers["allow"] == "GET"
    assert body(get(root, b"/api/v1/chargers")) == {"chargers": []}


@pytest.mark.parametrize("path", [b"/api/v1/overview", b"/api/v1/stream", b"/api/v1/schemas/1.6",
                                  b"/api/v1/chargers/CP1/messages", b"/api/v1/chargers/CP1/sessions"])
def test_access_follows_the_command_api(path):
    root, *_ = site()
    assert get(root, path, peer="10.0.0.5")[0] == 403
    root, *_ = site(token="s3cret")
    assert get(root, path)[0] == 401
    assert get(root, path, headers=[(b"Authorization", b"Bearer wrong")])[0] == 401
    _, transport = open_request(root, path, headers=[(b"Authorization", b"Bearer s3cret")])
    assert transport.value().split(b" ")[1] in (b"200", b"404")  # past the access check (CP1 has no frames)


def test_console_files_are_served_with_a_strict_policy():
    root, *_ = site()
    status, headers, raw = get(root, b"/console/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<script type="module" src="app.js">' in raw
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    status, headers, _ = get(root, b"/console/app.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    assert get(root, b"/console")[0] == 302
    for bad in (b"/console/../pyproject.toml", b"/console/%2e%2e/x.js", b"/console/.hidden.js", b"/console/nope.js",
                b"/console/forms.py"):
        assert get(root, bad)[0] == 404, bad


def test_every_console_file_is_referenced_and_local():
    """Nothing is fetched from another host: no absolute URL in any file."""
    root, *_ = site()
    from pathlib import Path

    import ocpptw

    directory = Path(ocpptw.__file__).parent / "console"
    for path in directory.iterdir():
        text = path.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path.name


def test_console_files_follow_the_access_rules():
    root, *_ = site()
    assert get(root, b"/console/", peer="10.0.0.5")[0] == 403  # no token: loopback only
    root, *_ = site(token="s3cret")
    assert get(root, b"/console/", peer="10.0.0.5")[0] == 200  # the page asks for the token itself


def test_a_stream_on_the_site_carries_events_with_its_filter():
    root, feed, hub, clock = site()
    _, everything = open_request(root, b"/api/v1/stream")
    _, filtered = open_request(root, b"/api/v1/stream?chargePointId=OTHER")
    feed.frame(Session(), "in", "CALL", "1", "Heartbeat", {}, None, None)
    clock.advance(FLUSH)
    status, headers, raw = response(everything)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert b"event: message\ndata: {\"chargePointId\":\"CP1\"" in raw
    assert b"CP1" not in response(filtered)[2]
    assert len(hub.clients) == 2
    hub.stopService()
    assert not hub.clients
