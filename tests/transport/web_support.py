"""
Requests through the real twisted.web stack on a C{StringTransport}: no
socket, no reactor.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.web.server import Site


class Transport(StringTransport):
    def unregisterProducer(self):
        self.producer = None


def open_request(resource, raw_path, method=b"GET", host=b"127.0.0.1", headers=(), peer="127.0.0.1", body=b""):
    """
    Send one request to a site serving C{resource} at the root; returns
    C{(the HTTP channel, transport)}.
    """
    site = Site(resource)
    channel = site.buildProtocol(IPv4Address("TCP", peer, 40000))
    transport = Transport(peerAddress=IPv4Address("TCP", peer, 40000), hostAddress=IPv4Address("TCP", "127.0.0.1", 9000))
    channel.makeConnection(transport)
    lines = [method + b" " + raw_path + b" HTTP/1.1", b"Host: " + host]
    lines += [name + b": " + value for name, value in headers]
    if body:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    channel.dataReceived(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    return getattr(channel, "_channel", channel), transport


def response(transport):
    """
    C{(status, headers dict, body)} of what was written (chunked bodies
    decoded).
    """
    raw = transport.value()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()
    if headers.get("transfer-encoding") == "chunked":
        out = b""
        while body:
            size, _, rest = body.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out += rest[:n]
            body = rest[n + 2:]
        body = out
    return status, headers, body


def get(resource, raw_path, **kwargs):
    _, transport = open_request(resource, raw_path, **kwargs)
    return response(transport)
