"""
The charger socket with real WebSocket clients on loopback: the handshake
rules and the bad-input rules of docs/contract.md section 1, newest connection wins,
and the command API (section 4).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import pytest_twisted
import treq
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from ocpptw.interfaces import BackendUnavailable, IChargerService
from ocpptw.ocpp.errors import OcppError
from ocpptw.ocpp.session import OcppSession
from ocpptw.ocpp.validation import Validator
from ocpptw.services.commands import LocalCommandBus
from ocpptw.services.registry import ChargerRegistry
from ocpptw.transport.api import CommandApi
from ocpptw.transport.handshake import Gate
from ocpptw.transport.http import build_site
from ocpptw.transport.websocket import OcppServerFactory
from tests.helpers import bounded, until
from tests.wsclient import connect_charger


@implementer(IChargerService)
class Chargers:
    """Charger records in a dict; admission per the test's wishes."""

    def __init__(self):
        self.records = {}
        self.unavailable = False
        self.events = []
        #: a Deferred the next admissions wait on, or None
        self.held = None

    def admit(self, cp):
        if self.unavailable:
            from twisted.internet.defer import fail

            return fail(BackendUnavailable("down"))
        if self.held is not None:
            return self.held
        return succeed(self.records.get(cp))

    def boot(self, cp, payload, now):
        return succeed({"status": "Accepted", "currentTime": "2026-11-24T00:00:00.000Z", "interval": 300})

    def is_accepted(self, cp):
        return True

    def status(self, cp, payload, now):
        return succeed(None)

    def connected(self, cp, now):
        self.events.append(("connected", cp))
        return succeed(None)

    def disconnected(self, cp, now):
        self.events.append(("disconnected", cp))
        return succeed(None)

    def seen(self, cp, now):
        pass


def router(session, action, payload):
    """A tiny handler: answers Heartbeat, Boot and DataTransfer; 'Slow' never answers."""
    if action == "Heartbeat":
        return {"currentTime": "2026-11-24T00:00:00.000Z"}
    if action == "BootNotification":
        return {"status": "Accepted", "currentTime": "2026-11-24T00:00:00.000Z", "interval": 300}
    if action == "DataTransfer":
        if payload.get("vendorId") == "crash":
            raise RuntimeError("a bug")
        return {"status": "Accepted"}
    raise OcppError("NotSupported", f"{action} not handled in this test")


@dataclass
class Server:
    port: int
    chargers: Chargers
    registry: ChargerRegistry
    gate: Gate
    site: object = None
    factory: object = None


@pytest.fixture
def server_options():
    return {}


@pytest_twisted.async_yield_fixture
async def server(server_options):
    from twisted.internet import reactor

    options = dict(server_options)
    chargers = Chargers()
    registry = ChargerRegistry("test", reactor)
    validator = Validator()

    def session_factory(identity, connection, strict):
        s = OcppSession(identity, connection, router, reactor, validator, call_timeout=options.pop("call_timeout", 30))
        s.strict = strict
        return s

    gate = Gate(
        prefix="/ocpp",
        chargers=chargers,
        registry=registry,
        session_factory=session_factory,
        clock=reactor,
        allow_unknown=options.get("allow_unknown", True),
        allow_missing_subprotocol=options.get("allow_missing_subprotocol", False),
        authenticate=options.get("authenticate"),
    )
    factory = OcppServerFactory(gate, max_frame_bytes=options.get("max_frame_bytes", 4096), ping_interval=options.get("ping_interval", 0), reactor=reactor)
    api = CommandApi(LocalCommandBus(registry, validator, 30), registry, options.get("token"), 30)
    site = build_site(factory, "/ocpp", [lambda: (True, "")], lambda: (b"x 1\n", "text/plain"), api)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    yield Server(port.getHost().port, chargers, registry, gate, site, factory)
    for cp in list(registry):
        registry.get(cp).close(1000, "test over")
    await until(lambda: len(registry) == 0)
    await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_round_trip_with_subprotocol(server):
    """A charger offering ocpp1.6 gets it and a CALLRESULT."""
    charger = await connect_charger(server.port, "/ocpp/CP1", ["ocpp2.0.1", "ocpp1.6"])
    assert charger.subprotocol == "ocpp1.6"
    frame = await charger.call("Heartbeat", {})
    assert frame[0] == 3 and "currentTime" in frame[2]
    assert server.registry.describe("CP1")["instance"] == "test"


@pytest_twisted.ensureDeferred
async def test_percent_encoded_identity(server):
    """The identity is the percent-decoded last segment."""
    await connect_charger(server.port, "/ocpp/CP%2D002")
    await until(lambda: server.registry.get("CP-002") is not None)


@pytest.mark.parametrize("path, status", [("/ocpp/", 404), ("/ocpp/" + "x" * 49, 400), ("/ocpp/a%2Fb", 400), ("/ocpp/a/b", 404)])
@pytest_twisted.ensureDeferred
async def test_bad_identity_refused_at_handshake(server, path, status):
    """Empty, too long or containing '/': refused at the handshake, never after."""
    charger = await connect_charger(server.port, path)
    assert f"[{status}]" in (charger.close_reason or "")
    assert len(server.registry) == 0


@pytest_twisted.ensureDeferred
async def test_a_web_page_of_another_site_cannot_take_a_chargers_place(server):
    """
    On profile 0 a page in an operator's browser could open the charger's
    URL and, newest connection winning, take its place: an http(s) Origin
    naming another site is refused 403 at the handshake; the charger stays.
    Autobahn itself refuses C{null} and C{file://} (400).
    """
    charger = await connect_charger(server.port, "/ocpp/CP1")
    page = await connect_charger(server.port, "/ocpp/CP1", headers={"Origin": "http://evil.example"})
    assert "[403]" in (page.close_reason or "")
    assert server.registry.get("CP1") is not None and (await charger.call("Heartbeat", {}))[0] == 3
    own = await connect_charger(server.port, "/ocpp/CP2", headers={"Origin": "ws://cp2.local"})  # a charger's own
    assert (await own.call("Heartbeat", {}))[0] == 3
    for origin, status in (("null", 400), ("file://", 400), (f"http://127.0.0.1:{server.port}", None)):
        other = await connect_charger(server.port, "/ocpp/CP3", headers={"Origin": origin})
        if status is None:
            assert (await other.call("Heartbeat", {}))[0] == 3  # a page of the gateway's own site
        else:
            assert f"[{status}]" in (other.close_reason or ""), (origin, other.close_reason)


def test_a_charger_gone_while_being_admitted_is_not_opened(server, fail_on_logged_errors):
    """
    A charger whose socket closes while its record is being looked up is
    not opened afterwards: nothing registered in its place and no second
    close (Autobahn completes a handshake whose onConnect fires after the
    socket closed, and its close timeout then resolves is_closed twice).
    """
    from twisted.internet.defer import Deferred
    from twisted.internet.error import ConnectionLost
    from twisted.internet.testing import StringTransport
    from twisted.python.failure import Failure

    server.chargers.held = Deferred()
    class Transport(StringTransport):
        def unregisterProducer(self):  # as lenient as TCP's
            self.producer = None

    protocol = server.factory.buildProtocol(None)
    transport = Transport()
    protocol.makeConnection(transport)
    protocol.dataReceived(
        b"GET /ocpp/GONE HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
    )
    protocol.connectionLost(Failure(ConnectionLost("the charger went away")))
    server.chargers.held.callback(None)  # its record arrives after
    server.chargers.held = None
    assert server.registry.get("GONE") is None
    assert ("connected", "GONE") not in server.chargers.events
    assert b"101 Switching" not in transport.value()
    assert protocol.is_closed.called and not fail_on_logged_errors


@pytest_twisted.ensureDeferred
async def test_no_common_subprotocol_is_accepted_then_closed(server):
    """OCPP-J 1.6 section 3.2: handshake without the header, then an immediate close."""
    charger = await connect_charger(server.port, "/ocpp/CP1", ["ocpp2.0.1"])
    assert charger.subprotocol is None
    code, _ = await charger.wait_closed()
    assert code == 1000
    assert server.registry.get("CP1") is None


@pytest_twisted.ensureDeferred
async def test_missing_subprotocol_closed_by_default(server):
    """A charger that offers nothing is closed unless the option admits it."""
    charger = await connect_charger(server.port, "/ocpp/CP1", [])
    code, _ = await charger.wait_closed()
    assert code == 1000


@pytest.mark.parametrize("server_options", [{"allow_missing_subprotocol": True}])
@pytest_twisted.ensureDeferred
async def test_missing_subprotocol_admitted_when_allowed(server):
    """OCPP_ALLOW_MISSING_SUBPROTOCOL=true admits chargers that send no header at all."""
    charger = await connect_charger(server.port, "/ocpp/CP1", [])
    frame = await charger.call("Heartbeat", {})
    assert frame[0] == 3


@pytest.mark.parametrize("server_options", [{"allow_unknown": False}])
@pytest_twisted.ensureDeferred
async def test_unknown_charger_refused_when_not_allowed(server):
    """With OCPP_ALLOW_UNKNOWN_CHARGERS=false an unknown charger gets 404 at the handshake."""
    server.chargers.records["KNOWN"] = {"deviceId": "KNOWN", "enabled": True}
    refused = await connect_charger(server.port, "/ocpp/NOPE")
    assert "[404]" in (refused.close_reason or "")
    known = await connect_charger(server.port, "/ocpp/KNOWN")
    assert (await known.call("Heartbeat", {}))[0] == 3


@pytest.mark.parametrize("server_options", [{"allow_unknown": False}])
@pytest_twisted.ensureDeferred
async def test_records_unavailable_means_503(server):
    """When nothing can say whether the charger is known, 503 so it retries."""
    server.chargers.unavailable = True
    refused = await connect_charger(server.port, "/ocpp/CP1")
    assert "[503]" in (refused.close_reason or "")


@pytest.mark.parametrize(
    "frame, code",
    [
        ("not json", "FormationViolation"),
        ('{"a": 1}', "FormationViolation"),
        ('[2, "m1", "Heartbeat"]', "FormationViolation"),
        ('[2, "m1", "Heartbeat", []]', "FormationViolation"),
        ('[2, "m1", "NoSuchAction", {}]', "NotImplemented"),
        ('[2, "m1", "Reset", {"type": "Hard"}]', "NotSupported"),
        ('[2, "m1", "BootNotification", {"chargePointModel": "M"}]', "OccurenceConstraintViolation"),
        ('[2, "m1", "BootNotification", {"chargePointVendor": 5, "chargePointModel": "M"}]', "TypeConstraintViolation"),
        ('[2, "m1", "BootNotification", {"chargePointVendor": "' + "v" * 21 + '", "chargePointModel": "M"}]', "PropertyConstraintViolation"),
        ('[2, "m1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M", "x": 1}]', "FormationViolation"),
        ('[2, "m1", "DataTransfer", {"vendorId": "crash"}]', "InternalError"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_input_gets_the_contract_callerror(server, frame, code, fail_on_logged_errors):
    """Each bad-input rule answers the exact CALLERROR and the connection stays usable."""
    charger = await connect_charger(server.port)
    charger.send_text(frame)
    answer = await charger.next()
    assert answer[0] == 4 and answer[2] == code, answer
    assert isinstance(answer[4], dict)
    if code == "InternalError":
        assert len(fail_on_logged_errors) == 1  # the handler's bug is logged as a failure
        fail_on_logged_errors.clear()
    assert (await charger.call("Heartbeat", {}))[0] == 3


@pytest_twisted.ensureDeferred
async def test_id_rules(server):
    """Unreadable ids answer with "-1"; a repeated CALL id gets ProtocolError."""
    charger = await connect_charger(server.port)
    charger.send_text('[2, "", "Heartbeat", {}]')
    assert (await charger.next())[:3] == [4, "-1", "FormationViolation"]
    charger.send_text(json.dumps([2, "x" * 37, "Heartbeat", {}]))
    assert (await charger.next())[:3] == [4, "-1", "FormationViolation"]
    charger.send_text('[2, "same", "Heartbeat", {}]')
    assert (await charger.next())[0] == 3
    charger.send_text('[2, "same", "Heartbeat", {}]')
    assert (await charger.next())[:3] == [4, "same", "ProtocolError"]


@pytest_twisted.ensureDeferred
async def test_unknown_message_type_and_unmatched_results_are_ignored(server):
    """An unknown MessageTypeId and a CALLRESULT for nothing get no answer."""
    charger = await connect_charger(server.port)
    charger.send_text('[7, "m1", {}]')
    charger.send_text('[3, "nothing-pending", {}]')
    charger.send_text('[2, "m2", "Heartbeat", {}]')
    assert (await charger.next())[:2] == [3, "m2"]


@pytest_twisted.ensureDeferred
async def test_binary_frame_is_a_formation_violation(server):
    """Binary frames are not OCPP-J: FormationViolation, connection open."""
    charger = await connect_charger(server.port)
    charger.sendMessage(b"\x00\x01", isBinary=True)
    assert (await charger.next())[:3] == [4, "-1", "FormationViolation"]
    assert (await charger.call("Heartbeat", {}))[0] == 3


@pytest_twisted.ensureDeferred
async def test_oversized_frame_closes_with_1009(server):
    """A frame over OCPP_MAX_FRAME_BYTES closes the connection with 1009."""
    charger = await connect_charger(server.port)
    charger.send_text(json.dumps([2, "big", "DataTransfer", {"vendorId": "v", "data": "x" * 5000}]))
    code, _ = await charger.wait_closed()
    assert code == 1009


@pytest_twisted.ensureDeferred
async def test_newest_connection_wins(server):
    """A second connection with the same identity closes the first with 4000."""
    first = await connect_charger(server.port, "/ocpp/CP1")
    second = await connect_charger(server.port, "/ocpp/CP1")
    code, reason = await first.wait_closed()
    assert code == 4000 and "replaced" in reason
    assert (await second.call("Heartbeat", {}))[0] == 3
    assert server.registry.get("CP1") is not None
    assert ("disconnected", "CP1") not in server.chargers.events


async def _post(port, path, body, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await bounded(treq.post(f"http://127.0.0.1:{port}{path}", data=body, headers=headers, persistent=False))
    return response.code, json.loads(await bounded(response.content()))


async def _answer_next_call(charger, make_answer):
    frame = await charger.next()
    assert frame[0] == 2
    charger.send_text(json.dumps(make_answer(frame)))
    return frame


@pytest_twisted.ensureDeferred
async def test_command_api(server):
    """200 with the result, 400 invalid payload, 404 offline, 502 CALLERROR."""
    charger = await connect_charger(server.port, "/ocpp/CP1")
    await until(lambda: server.registry.get("CP1") is not None)
    base = "/api/v1/chargers/CP1/commands"

    answered = Deferred.fromCoroutine(_answer_next_call(charger, lambda f: [3, f[1], {"status": "Accepted"}]))
    code, body = await _post(server.port, f"{base}/Reset", b'{"type": "Soft"}')
    sent = await answered
    assert (code, body) == (200, {"result": {"status": "Accepted"}})
    assert sent[2:] == ["Reset", {"type": "Soft"}]

    assert (await _post(server.port, f"{base}/Reset", b'{"type": "Sideways"}'))[0] == 400
    assert (await _post(server.port, f"{base}/Reset", b"[1]"))[0] == 400
    assert (await _post(server.port, f"{base}/Heartbeat", b"{}"))[0] == 400
    assert (await _post(server.port, "/api/v1/chargers/NOPE/commands/Reset", b'{"type": "Soft"}'))[0] == 404

    answered = Deferred.fromCoroutine(_answer_next_call(charger, lambda f: [4, f[1], "NotSupported", "no", {"x": 1}]))
    code, body = await _post(server.port, f"{base}/ClearCache", b"{}")
    await answered
    assert code == 502 and body["error"]["code"] == "NotSupported" and body["error"]["details"] == {"x": 1}


@pytest_twisted.ensureDeferred
async def test_command_timeout_is_504(server):
    """A charger that does not answer in time gives 504."""
    await connect_charger(server.port, "/ocpp/CP1")
    await until(lambda: server.registry.get("CP1") is not None)
    code, body = await _post(server.port, "/api/v1/chargers/CP1/commands/ClearCache?timeout=0.2", b"{}")
    assert code == 504 and body["error"]["code"] == "Timeout"


@pytest.mark.parametrize("server_options", [{"token": "s3cret"}])
@pytest_twisted.ensureDeferred
async def test_command_api_needs_the_token(server):
    """With ADMIN_API_TOKEN set, a missing or wrong bearer token is 401."""
    assert (await _post(server.port, "/api/v1/chargers/CP1/commands/ClearCache", b"{}"))[0] == 401
    assert (await _post(server.port, "/api/v1/chargers/CP1/commands/ClearCache", b"{}", token="nope"))[0] == 401
    assert (await _post(server.port, "/api/v1/chargers/CP1/commands/ClearCache", b"{}", token="s3cret"))[0] == 404


@pytest_twisted.ensureDeferred
async def test_charger_list_and_health(server):
    """GET /api/v1/chargers lists connected chargers; /health answers ok."""
    await connect_charger(server.port, "/ocpp/CP1")
    await until(lambda: server.registry.get("CP1") is not None)
    response = await bounded(treq.get(f"http://127.0.0.1:{server.port}/api/v1/chargers", persistent=False))
    listed = json.loads(await bounded(response.content()))
    assert [c["chargePointId"] for c in listed["chargers"]] == ["CP1"]
    response = await bounded(treq.get(f"http://127.0.0.1:{server.port}/api/v1/chargers/CP9", persistent=False))
    assert response.code == 404
    await bounded(response.content())
    response = await bounded(treq.get(f"http://127.0.0.1:{server.port}/health", persistent=False))
    assert response.code == 200 and json.loads(await bounded(response.content())) == {"status": "ok"}


class SilentCharger:
    """A raw TCP client that completes the WebSocket handshake, then never answers pings."""

    def __init__(self):
        from twisted.internet.protocol import Protocol

        outer = self
        self.lost = Deferred()
        self.data = b""

        class Raw(Protocol):
            def connectionMade(self):
                self.transport.write(
                    b"GET /ocpp/SILENT HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                    b"Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
                )

            def dataReceived(self, data):
                outer.data += data

            def connectionLost(self, reason):
                outer.lost.callback(None)

        self.protocol = Raw


@pytest.mark.parametrize("server_options", [{"ping_interval": 1}])
@pytest_twisted.ensureDeferred
async def test_charger_missing_pongs_is_dropped(server):
    """Keepalive: a charger that never answers the WebSocket pings is dropped and forgotten."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    silent = SilentCharger()
    await bounded(connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", server.port), silent.protocol()))
    await until(lambda: server.registry.get("SILENT") is not None)
    answering = await connect_charger(server.port, "/ocpp/ALIVE")
    await bounded(silent.lost)
    assert b"101 Switching Protocols" in silent.data
    await until(lambda: server.registry.get("SILENT") is None)
    assert answering.close_code is None, (answering.close_code, answering.close_reason)
    assert (await answering.call("Heartbeat", {}))[0] == 3  # a charger that answers pings stays


def _spy_on_upgrades(monkeypatch):
    """
    Weak references to each upgraded request and its channel, as the
    upgrade resource sees them.
    """
    import weakref

    from autobahn.twisted.resource import WebSocketResource

    seen = []
    render = WebSocketResource.render

    def spy(self, request):
        seen.append((weakref.ref(request), weakref.ref(request.channel)))
        return render(self, request)

    monkeypatch.setattr(WebSocketResource, "render", spy)
    return seen


async def _released_after_upgrade(server, port, identity, seen, tls=None):
    """
    Connect C{identity}, check that twisted.web's request and channel are
    gone without the cyclic collector, then close the socket cleanly.
    """
    import gc

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        charger = await connect_charger(port, f"/ocpp/{identity}", tls=tls)
        assert charger.subprotocol == "ocpp1.6", (charger.close_code, charger.close_reason)
        assert (await charger.call("Heartbeat", {}))[0] == 3
        assert len(seen) == 1
        request, channel = seen[0]
        assert request() is None and channel() is None
        connection = server.registry.get(identity)
        assert getattr(connection._protocol.transport, "producer", None) is None
    finally:
        if was_enabled:
            gc.enable()
    connection.close(1000, "bye")
    assert (await charger.wait_closed())[0] == 1000
    await until(lambda: server.registry.get(identity) is None)


@pytest_twisted.ensureDeferred
async def test_upgrade_releases_the_http_request(server, monkeypatch):
    """
    Once a charger's socket is upgraded, twisted.web's channel and request
    for it are freed (by reference counting, not left to the collector), and
    the charger is served and closed as before.
    """
    await _released_after_upgrade(server, server.port, "RELEASED", _spy_on_upgrades(monkeypatch))


@pytest_twisted.ensureDeferred
async def test_upgrade_over_tls_releases_the_http_request(server, monkeypatch):
    """The same over wss, where the socket's transport is the TLS layer."""
    from twisted.internet import reactor, ssl

    from tests.transport.certs import issue, make_ca

    ca = make_ca("Release CA")
    leaf = issue(ca, "localhost", server=True)
    context = ssl.PrivateCertificate.loadPEM(leaf.key_pem + leaf.cert_pem).options()
    port = reactor.listenSSL(0, server.site, context, interface="127.0.0.1")
    try:
        tls = ssl.optionsForClientTLS("localhost", trustRoot=ssl.Certificate.loadPEM(ca.cert_pem))
        await _released_after_upgrade(server, port.getHost().port, "RELEASEDTLS", _spy_on_upgrades(monkeypatch), tls)
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_protocol_options_are_shared_not_copied(server):
    """
    Autobahn's options live on the factory's own protocol class, not in each
    connection; a second factory's options do not change the first's, and a
    function option stays a plain function (compression offers are declined).
    """
    from autobahn.twisted.websocket import WebSocketClientFactory
    from autobahn.websocket.compress import PerMessageDeflateOffer

    from ocpptw.transport.websocket import OcppServerProtocol
    from tests.wsclient import TestCharger

    charger = await connect_charger(server.port, "/ocpp/SHARED")
    protocol = server.registry.get("SHARED")._protocol
    factory = protocol.factory
    assert isinstance(protocol, OcppServerProtocol) and type(protocol) is factory.protocol
    for name in type(protocol).CONFIG_ATTRS:
        assert name not in vars(protocol), name
        assert getattr(protocol, name) == getattr(factory, name), name
    assert protocol.maxMessagePayloadSize == 4096

    other = OcppServerFactory(server.gate, max_frame_bytes=100, ping_interval=7)
    assert other.protocol is not factory.protocol
    assert other.protocol.maxMessagePayloadSize == 100 and other.protocol.autoPingInterval == 7
    assert protocol.maxMessagePayloadSize == 4096 and protocol.autoPingInterval == 0
    assert "maxMessagePayloadSize" not in vars(OcppServerProtocol)
    factory.setProtocolOptions(maxMessagePayloadSize=5000)
    assert protocol.maxMessagePayloadSize == 5000
    factory.setProtocolOptions(maxMessagePayloadSize=4096)

    from twisted.internet import reactor

    offering = WebSocketClientFactory(f"ws://127.0.0.1:{server.port}/ocpp/DEFLATE", protocols=["ocpp1.6"])
    offering.protocol = TestCharger
    offering.setProtocolOptions(autoPingInterval=0, perMessageCompressionOffers=[PerMessageDeflateOffer()])
    offering.ready = Deferred()
    reactor.connectTCP("127.0.0.1", server.port, offering)
    deflate = await bounded(offering.ready)
    assert deflate.close_code is None, (deflate.close_code, deflate.close_reason)
    assert deflate.websocket_extensions_in_use == []
    assert (await deflate.call("Heartbeat", {}))[0] == 3
    assert (await charger.call("Heartbeat", {}))[0] == 3


@pytest_twisted.ensureDeferred
async def test_open_socket_forgets_the_handshake(server):
    """
    Once open, a charger's protocol keeps neither the opening handshake nor
    the charger record, nor Autobahn's flags still at their first values;
    reads find the class defaults, and the charger is served and closed as
    before.
    """
    from ocpptw.transport.compat import HANDSHAKE_STATE as _HANDSHAKE_STATE
    from ocpptw.transport.compat import QUIET_STATE as _QUIET_STATE

    server.chargers.records["FORGET"] = {"ocppValidation": "lenient"}
    charger = await connect_charger(server.port, "/ocpp/FORGET")
    connection = server.registry.get("FORGET")
    protocol = connection._protocol
    assert connection.session.strict is False  # the record was used before it was dropped
    assert (await charger.call("Heartbeat", {}))[0] == 3
    state = vars(protocol)
    assert not _HANDSHAKE_STATE & state.keys()
    assert not [name for name, value in _QUIET_STATE.items() if state.get(name, object()) is value]
    assert protocol.http_headers is None and protocol._ocpp_record is None
    assert protocol.wasClean is False and protocol.closedByMe is False
    assert protocol.websocket_protocol_in_use == "ocpp1.6"
    charger.sendClose(1000, "done")
    assert (await charger.wait_closed())[0] == 1000
    await until(lambda: server.registry.get("FORGET") is None)
    assert protocol.wasClean is True
