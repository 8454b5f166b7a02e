# -*- test-case-name: tests.fuzz.test_http_surface -*-
"""
Fuzzing the HTTP surface of a running gateway over raw TCP: any method,
path (dot segments, percent-encoding, the OCPP path, the API), headers
(Host, Origin, Content-Length, Transfer-Encoding, junk) and body.  Every
request gets one well-formed HTTP answer or a close, never a 500; a body
declared over 1 MiB gets 413; an API request from another site's page,
or without a token through a Host not naming loopback, gets 403 and never
reaches a charger; nothing is logged as an error; the gateway keeps
serving.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest_twisted
import treq
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol

from tests.fuzz.schemas import fuzz_settings
from tests.fuzz.support import WireCharger, start_gateway, stop_gateway
from tests.helpers import bounded

CHARGER = "FUZZHTTP1"
#: Commands go to a charger that is not connected (404 at once when they pass the checks).
OFFLINE = "FUZZHTTP0"

#: Requests made by this module, for docs/reliability.md.
TALLY = {"requests": 0, "refused": 0}

#: What twisted.web and the gateway answer: 501 is twisted.web's for a method no resource knows.
_KNOWN = {200, 400, 401, 403, 404, 405, 413, 426, 501, 503, 504}

_STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3}) ")


class _Raw(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.closed: Deferred = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason) -> None:
        self.closed.callback(self.data)


async def _exchange(port: int, request: bytes) -> bytes:
    """Send C{request} on a fresh connection and read until the server closes."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint

    protocol = await bounded(TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory.forProtocol(_Raw)))
    protocol.transport.write(request)
    TALLY["requests"] += 1
    try:
        return await bounded(protocol.closed, 15)
    finally:
        protocol.transport.loseConnection()


@pytest_twisted.async_yield_fixture(scope="module")
async def surface(tmp_path_factory):
    service = await start_gateway(str(tmp_path_factory.mktemp("fuzz-http") / "data"))
    charger = WireCharger(service.test_port, CHARGER)
    await charger.connect(boot=True)
    charger.service = service
    yield charger
    print("\nfuzz tally http:", TALLY)
    await stop_gateway(service)


_segment = st.one_of(
    st.sampled_from(["health", "ready", "metrics", "api", "v1", "chargers", OFFLINE, "commands", "Reset", "ocpp",
                     ".", "..", "%2e%2e", "%2F", "%00", "%C3%A9", "%E2%80%AE", "\\", "%", "%zz", "", "console"]),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="/?#%"), max_size=12),
    st.text(max_size=8).map(lambda t: quote(t, safe="")),
)


@st.composite
def paths(draw) -> str:
    prefix = draw(st.sampled_from(["", "/api/v1", f"/api/v1/chargers/{OFFLINE}/commands", "/ocpp", "/api/v1/chargers"]))
    segments = draw(st.lists(_segment, max_size=4))
    path = prefix + "/" + "/".join(segments)
    if draw(st.booleans()):
        path += "?" + draw(st.sampled_from(["timeout=0.2", "timeout=abc", "scope=fleet", "a=%ff", "x" * 50]))
    return path


_HOSTS = st.one_of(
    st.none(),
    st.sampled_from(["localhost", "127.0.0.1", "[::1]:9000", "LOCALHOST:1", "rebind.example", "10.0.0.1:9000",
                     "localhost.evil.example", "user@localhost", "", "::1", "[::1", "a b"]),
)
_ORIGINS = st.one_of(
    st.none(),
    st.sampled_from(["null", "http://evil.example", "http://localhost", "https://localhost:9001", "garbage", "http://",
                     "http://user@localhost"]),
    st.just("SAME"),
)
_token_header = st.tuples(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~", min_size=1, max_size=20),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60),
)
_junk_header = st.tuples(
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters=":"), min_size=1, max_size=20),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60),
)


@st.composite
def requests(draw, port_holder: list) -> tuple[bytes, dict]:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "get", "BREW"]))
    path = draw(paths())
    host = draw(_HOSTS)
    origin = draw(_ORIGINS)
    port = port_holder[0]
    if origin == "SAME":
        origin = f"http://{host}" if host else f"http://127.0.0.1:{port}"
    body_kind = draw(st.sampled_from(["none"] * 4 + ["small", "json"] * 2 + ["huge-declared", "chunked", "chunked-huge"]))
    lines = [f"{method} {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    if origin is not None:
        lines.append(f"Origin: {origin}")
    for name, value in draw(st.lists(_junk_header | _token_header, max_size=2)):
        if name.lower() not in ("host", "origin", "content-length", "transfer-encoding", "connection", "expect", "upgrade"):
            lines.append(f"{name}: {value}")
    body = b""
    expect = {"huge": False}
    if body_kind in ("small", "json"):
        body = b'{"type":"Soft"}' if body_kind == "json" else draw(st.binary(max_size=300))
        lines.append(f"Content-Length: {len(body)}")
    elif body_kind == "huge-declared":
        lines.append(f"Content-Length: {draw(st.integers(1024 * 1024 + 1, 10**12))}")
        expect["huge"] = True
    elif body_kind == "chunked":
        payload = draw(st.binary(max_size=200))
        lines.append("Transfer-Encoding: chunked")
        body = (b"%x\r\n%s\r\n" % (len(payload), payload) if payload else b"") + b"0\r\n\r\n"
    else:
        lines.append("Transfer-Encoding: chunked")
        chunk = b"z" * 65536
        body = (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 17 + b"0\r\n\r\n"
        expect["huge"] = True
    lines.append("Connection: close")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    expect.update(method=method, path=path, host=host, origin=origin)
    return raw, expect


_PORT: list = [0]

#: The sampled Host values that name loopback (the contract's list, any port); None: no Host header.
_LOOPBACK_HOSTS = {None, "localhost", "127.0.0.1", "[::1]:9000", "LOCALHOST:1"}
#: Sampled Host values that an Origin of http://{host} matches (readable host[:port]).
_READABLE_HOSTS = {"localhost", "127.0.0.1", "[::1]:9000", "LOCALHOST:1", "rebind.example", "10.0.0.1:9000",
                   "localhost.evil.example", "a b"}


def _foreign(origin: str | None, host: str | None) -> bool:
    """The contract's rule, spelled out for the sampled values."""
    if origin is None:
        return False
    if host in _READABLE_HOSTS and origin == f"http://{host}":
        return False
    return not (origin == "http://localhost" and host is not None and host.lower() == "localhost")


@fuzz_settings(200)
@given(case=requests(_PORT))
async def test_any_request_gets_a_sound_answer(surface, case):
    """One well-formed answer (or a close) per request, never a 500; 413 and 403 exactly where the contract says."""
    _PORT[0] = surface.port
    raw, expect = case
    answer = await _exchange(surface.port, raw)
    if not answer:
        return  # closed without an answer: only for requests twisted.web cannot parse
    match = _STATUS.match(answer)
    assert match, answer[:200]
    status = int(match.group(1))
    TALLY[str(status)] = TALLY.get(str(status), 0) + 1
    assert status != 500 and status in _KNOWN, (raw[:300], answer[:300])
    if expect["huge"]:
        assert status in (400, 413), (raw[:300], answer[:300])
        return
    path = expect["path"].split("?", 1)[0]
    if not (path == "/api/v1" or path.startswith("/api/v1/")) or expect["method"] not in ("GET", "HEAD", "POST") or status == 400:
        return
    refused = _foreign(expect["origin"], expect["host"]) or expect["host"] not in _LOOPBACK_HOSTS
    assert (status == 403) == refused, (raw[:300], answer[:300])
    TALLY["refused"] += refused


@fuzz_settings(150)
@given(
    method=st.sampled_from(["GET", "HEAD", "POST"]),
    path=st.sampled_from(["/api/v1/chargers", f"/api/v1/chargers/{OFFLINE}", f"/api/v1/chargers/{OFFLINE}/commands/Reset",
                          "/api/v1/chargers?scope=fleet", "/api/v1"]),
    host=_HOSTS,
    origin=_ORIGINS,
    body=st.sampled_from([b"", b'{"type":"Soft"}', b"type=Hard", b"not json"]),
)
async def test_api_access_follows_host_and_origin(surface, method, path, host, origin, body):
    """Tokenless API from loopback: 403 exactly when Origin is foreign or Host does not name loopback; else its own answer."""
    if origin == "SAME":
        origin = f"http://{host}" if host else f"http://127.0.0.1:{surface.port}"
    lines = [f"{method} {path} HTTP/1.1"]
    lines += [f"Host: {host}"] if host is not None else []
    lines += [f"Origin: {origin}", "Content-Type: text/plain"] if origin is not None else []
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    answer = await _exchange(surface.port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    match = _STATUS.match(answer)
    assert match, answer[:200]
    status = int(match.group(1))
    refused = _foreign(origin, host) or host not in _LOOPBACK_HOSTS
    assert (status == 403) == refused, (method, path, host, origin, answer[:300])
    assert status in ((403,) if refused else (200, 400, 404, 405)), (method, path, host, origin, answer[:300])
    TALLY["refused"] += refused


@pytest_twisted.ensureDeferred
async def test_gateway_still_serves_after_the_http_fuzzing(surface):
    """After every case above, the connected charger still gets answers and /health says ok."""
    await surface.ensure()
    assert await surface.exchange('[2,"after-http","Heartbeat",{}]') != []
    response = await bounded(treq.get(f"http://127.0.0.1:{surface.port}/health", persistent=False))
    assert response.code == 200
    await bounded(response.content())
