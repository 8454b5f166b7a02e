# -*- test-case-name: tests.transport.test_request_guard -*-
"""
The checks every HTTP request on the gateway's port goes through
(docs/contract.md section 4), kept apart from the resources so that every route
can reuse them:

  - L{client_address}: the peer, or the address a trusted proxy forwarded;
  - L{foreign_origin}: a browser request from another site (C{Origin} not
    naming the request's own C{Host}, or C{Origin: null}); for the charger
    port's handshakes, L{web_page_elsewhere};
  - L{names_loopback}: the C{Host} header names loopback (DNS rebinding);
  - L{api_refusal}: the three together, plus the bearer token, as the
    command API (and anything else under C{/api}) applies them;
  - L{GuardedChannel} and L{GuardedRequest}: request bodies over
    L{MAX_BODY} answered 413 before they are read, bodies kept only where
    a route takes one (L{takes_body}), and headers that must be complete
    within L{HEADER_TIMEOUT} seconds of a request's first byte;
  - L{PeerConnectionCap}: an optional bound on open connections per address.
"""

from __future__ import annotations

import hmac
import io
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.server import Request

from ocpptw.transport.compat import reading_request_head, request_line

#: Largest request body on any path (1 MiB); larger gets 413 unread.
MAX_BODY = 1024 * 1024

#: Seconds a request's headers may take from its first byte.
HEADER_TIMEOUT = 10.0

#: Header a trusted proxy names the client in (the last entry is the one it added).
FORWARDED_FOR = b"x-forwarded-for"

_LOOPBACK_NAMES = frozenset({"localhost"})


# -- who is asking -------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """
    Whether C{host} is a loopback IP address (IPv4, IPv6, IPv4-mapped).
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def client_address(request: Any, trusted: Any = None) -> str:
    """
    The address of the client behind C{request}: the TCP peer, or, when
    the peer is one of C{trusted} (an L{ocpptw.transport.auth.ProxyTrust}),
    the last address of its C{X-Forwarded-For} header.  A trusted proxy
    that forwards no address gives C{""} (unknown: never loopback).
    """
    peer = str(getattr(request.getClientAddress(), "host", "") or "")
    if not trusted or not trusted.is_trusted(peer):
        return peer
    values = request.requestHeaders.getRawHeaders(FORWARDED_FOR) or []
    if not values:
        return ""
    last = values[-1].decode("latin-1").split(",")[-1].strip()
    if last.startswith("[") and "]" in last:
        last = last[1 : last.index("]")]
    elif last.count(":") == 1:  # an IPv4 address with a port
        last = last.split(":", 1)[0]
    return last


def _host_port(text: str) -> tuple[str, str] | None:
    """
    C{(host, port)} of an authority such as C{localhost:9000} or
    C{[::1]}, lower-cased, the port C{""} when absent; C{None} when it
    cannot be read.
    """
    try:
        parts = urlsplit("//" + text.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not host or parts.username is not None or parts.path or parts.query or parts.fragment:
        return None
    return host.lower(), "" if port is None else str(port)


def _header(request: Any, name: bytes) -> list[bytes]:
    return request.requestHeaders.getRawHeaders(name) or []


def names_loopback(request: Any) -> bool:
    """
    Whether the request's C{Host} names loopback (C{localhost},
    C{127.0.0.1}, C{[::1]}, any port).  A request without a C{Host}
    (HTTP/1.0) names nothing else and passes; two C{Host} headers fail.
    """
    hosts = _header(request, b"host")
    if not hosts:
        return True
    if len(hosts) > 1:
        return False
    parsed = _host_port(hosts[0].decode("latin-1"))
    if parsed is None:
        return False
    host = parsed[0]
    return host in _LOOPBACK_NAMES or is_loopback(host)


def foreign_origin(request: Any) -> bool:
    """
    Whether the request comes from a web page of another site: an
    C{Origin} header that is C{null}, unreadable, repeated, or whose host
    and port differ from the C{Host} header's (the scheme is ignored, for
    TLS terminators; a default port, 80 or 443, equals no port).
    """
    origins = _header(request, b"origin")
    if not origins:
        return False
    if len(origins) > 1:
        return True
    hosts = _header(request, b"host")
    return _elsewhere(origins[0].decode("latin-1"), hosts[0].decode("latin-1") if len(hosts) == 1 else None)


def _elsewhere(origin: str, host: str | None) -> bool:
    """
    Whether C{origin} (one C{Origin} header) names another site than
    C{host} (the one C{Host} header, or C{None}), or none (C{null}).
    """
    origin = origin.strip()
    if origin.lower() == "null":
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:  # "http://[::1" and the like
        return True
    if not parts.scheme or not parts.netloc:
        return True
    mine = _host_port(parts.netloc)
    theirs = _host_port(host) if host is not None else None
    if mine is None or theirs is None or mine[0] != theirs[0]:
        return True
    if mine[1] == theirs[1]:
        return False
    return {mine[1], theirs[1]} not in ({"", "80"}, {"", "443"})


#: The schemes of the origins browsers send for web pages.
_WEB_SCHEMES = ("http:", "https:")


def web_page_elsewhere(headers: Mapping[str, str]) -> bool:
    """
    Whether a charger port handshake (Autobahn's C{headers}, lower-case
    names) comes from a web page of another site: an C{Origin} of scheme
    C{http} or C{https} (what browsers send for pages) that names another
    site than C{Host}, or C{Origin: null}.  Chargers send no C{Origin}, or
    one of their own: those pass.  (Autobahn refuses C{null}, C{file://}
    and a repeated C{Origin} before this is asked.)
    """
    origin = headers.get("origin")
    if origin is None:
        return False
    text = origin.strip().lower()
    if text != "null" and not text.startswith(_WEB_SCHEMES):
        return False
    if "," in text:  # repeated (Autobahn joins repeated headers)
        return True
    return _elsewhere(origin, headers.get("host"))


def api_refusal(request: Any, token: bytes | None, trusted: Any = None) -> tuple[int, str, str] | None:
    """
    Who may use the API (docs/contract.md section 4): C{None} when C{request} may
    proceed, else C{(status, code, description)} of the refusal.

    @param token: C{ADMIN_API_TOKEN} as bytes, or C{None} (loopback only).
    @param trusted: the L{ocpptw.transport.auth.ProxyTrust} of
        C{TRUSTED_PROXIES}, whose forwarded address counts as the peer.
    """
    if foreign_origin(request):
        return 403, "Forbidden", "requests from another site's web page are refused"
    if token is None:
        if not is_loopback(client_address(request, trusted)):
            return 403, "Forbidden", "the command API answers only on loopback: set ADMIN_API_TOKEN"
        if not names_loopback(request):
            return 403, "Forbidden", "without ADMIN_API_TOKEN the Host must name loopback"
        return None
    header = request.getHeader(b"authorization") or b""
    scheme, _, given = header.partition(b" ")
    if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), token):
        return 401, "Unauthorized", "a valid bearer token is required"
    return None


# -- request bodies and header deadline ----------------------------------------


def takes_body(method: bytes, path: bytes) -> bool:
    """
    Whether a request to C{path} keeps its body: the API's POSTs alone.
    """
    return method == b"POST" and (path == b"/api" or path.startswith(b"/api/"))


class _Discard(io.BytesIO):
    """
    Where the body of a request that takes none goes: nowhere.
    """

    def write(self, data: Any) -> int:
        return len(data)


class GuardedRequest(Request):
    """
    A request that keeps its body only when its route takes one, and
    answers 413 once a chunked body passes L{MAX_BODY}.
    """

    _keep_body = True
    _body_seen = 0

    def gotLength(self, length: int | None) -> None:
        if not self._keep_body:
            self.content = _Discard()  # type: ignore[assignment]
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self._body_seen += len(data)
        if self._body_seen > MAX_BODY:
            channel = self.channel
            if isinstance(channel, GuardedChannel) and not channel._refused:
                channel.refuse(413, b"Payload Too Large", b"the request body is larger than 1 MiB")
            return
        super().handleContentChunk(data)


class GuardedChannel(HTTPChannel):
    """
    An L{HTTPChannel} that refuses a declared body over L{MAX_BODY} with
    413 before reading it, and closes a connection whose request headers
    are not complete L{HEADER_TIMEOUT} seconds after their first byte
    (the idle timeout restarts on every byte: one header line every few
    seconds would hold a connection for ever).
    """

    log = Logger()
    header_timeout = HEADER_TIMEOUT
    _header_deadline: IDelayedCall | None = None
    _refused = False

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self._header_deadline is None and reading_request_head(self):
            self._arm()
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return
        if self._header_deadline is None:
            self._arm()
        super().lineReceived(line)

    def rawDataReceived(self, data: bytes) -> None:
        if not self._refused:
            super().rawDataReceived(data)

    def _arm(self) -> None:
        self._header_deadline = self.callLater(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        deadline, self._header_deadline = self._header_deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.transport is None:
            return
        self.log.info("closed a connection whose request headers took over {seconds:g} s", seconds=self.header_timeout)
        self._refused = True
        transport: Any = self.transport  # TCP or TLS: both abort
        transport.abortConnection()

    def allHeadersReceived(self) -> None:
        self._disarm()
        if self.length is not None and self.length > MAX_BODY:
            self.refuse(413, b"Payload Too Large", b"the request body is larger than 1 MiB")
            return
        request = self.requests[-1]
        method, target = request_line(self)
        request._keep_body = takes_body(method, target.split(b"?", 1)[0])
        super().allHeadersReceived()

    def refuse(self, status: int, phrase: bytes, description: bytes) -> None:
        """
        Answer C{status} at once and close, reading nothing more.
        """
        self._refused = True
        self._disarm()
        body = b'{"error":{"code":"PayloadTooLarge","description":"' + description + b'"}}'
        if self.transport is not None:
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
                % (status, phrase, len(body), body)
            )
            self.transport.loseConnection()
        self.setRawMode()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm()
        super().connectionLost(reason)


# -- open connections per address -------------------------------------------------


class _Counted(ProtocolWrapper):
    def __init__(self, factory: Any, wrapped: Any, host: str) -> None:
        super().__init__(factory, wrapped)
        self.host = host


class PeerConnectionCap(WrappingFactory):
    """
    At most C{limit} open connections from one address (chargers'
    WebSockets included: the count follows the TCP connection, whatever
    protocol takes it over); more are closed at once.  Off by default:
    many chargers may share one NAT address.
    """

    protocol = _Counted
    log = Logger()

    def __init__(
        self, wrapped: Any, limit: int, refused: Callable[[], None] | None = None, counts: dict[str, int] | None = None
    ) -> None:
        super().__init__(wrapped)
        self.limit = limit
        #: open connections per address; shared by the caps of one process's listeners
        self.open: dict[str, int] = {} if counts is None else counts
        self._refused = refused

    def __getattr__(self, name: str) -> Any:  # the wrapped site's attributes (resource, ...)
        if name == "wrappedFactory":
            raise AttributeError(name)
        return getattr(self.wrappedFactory, name)

    def buildProtocol(self, addr: Any) -> Any:
        host = str(getattr(addr, "host", ""))
        if self.open.get(host, 0) >= self.limit:
            if self._refused is not None:
                self._refused()
            return None
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            return None
        self.open[host] = self.open.get(host, 0) + 1
        return self.protocol(self, wrapped, host)

    def registerProtocol(self, p: Any) -> None:
        pass

    def unregisterProtocol(self, p: Any) -> None:
        host = getattr(p, "host", None)
        if host is None or host not in self.open:
            return
        count = self.open[host] - 1
        if count > 0:
            self.open[host] = count
        else:
            del self.open[host]


def query_args(request: Request) -> dict[bytes, list[bytes]]:
    """
    The request's query arguments (twisted.web leaves them C{None} before
    the request line is parsed).
    """
    return request.args or {}
