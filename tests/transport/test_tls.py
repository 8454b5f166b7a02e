"""
Tests for L{ocpptw.transport.tls}: real TLS handshakes on loopback against
certificates made in the test, client certificates, protocol versions and
reloads on the clock.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

import pytest
import pytest_twisted
from cryptography import x509

from ocpptw.config import load_config
from ocpptw.transport.tls import (
    CertificateReloadService,
    ReloadingContextFactory,
    TlsError,
    build_options,
    context_factory_for,
    install_sighup,
    tls_server_endpoint,
    tls_service,
)
from tests.helpers import bounded
from tests.transport.certs import issue, make_ca


@dataclass
class Files:
    cert: str
    key: str
    ca: str
    server_ca: str


@pytest.fixture(scope="module")
def pki():
    """
    A server CA with an intermediate, a client CA and a stranger CA.
    """
    server_root = make_ca("Server Root", kind="rsa")
    server_intermediate = make_ca("Server Intermediate", issuer=server_root)
    client_ca = make_ca("Charger CA")
    stranger = make_ca("Stranger CA")
    return {
        "server_root": server_root,
        "server_intermediate": server_intermediate,
        "client_ca": client_ca,
        "good_client": issue(client_ca, "CP001"),
        "foreign_client": issue(stranger, "CP001"),
    }


def write_server(tmp_path, pki, kind="ec", stem="server") -> Files:
    """
    Write a server certificate of C{kind} issued by the intermediate, with
    the intermediate appended, plus the client CA and the server root.
    """
    server = issue(pki["server_intermediate"], "localhost", kind=kind, server=True)
    cert, key = server.write(tmp_path, stem, chain=(pki["server_intermediate"],))
    ca = tmp_path / "client-ca.pem"
    ca.write_bytes(pki["client_ca"].cert_pem)
    root = tmp_path / "server-root.pem"
    root.write_bytes(pki["server_root"].cert_pem)
    return Files(cert, key, str(ca), str(root))


def client_handshake(port, files: Files, tmp_path, client=None, max_version=None, seclevel0=False):
    """
    A stdlib TLS client (run in a thread): verify the server against its
    root only (so the chain must be sent), optionally present C{client},
    send C{ping} and read the echo.  Returns (server certificate, echo).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(files.server_ca)
    if client is not None:
        cert, key = client.write(tmp_path, f"client-{client.certificate.serial_number}")
        context.load_cert_chain(cert, key)
    if max_version is not None:
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = max_version
    if seclevel0:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"ping")
            echo = tls.recv(4)
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)), echo, tls.version()


async def listen(factory):
    """
    Listen on 127.0.0.1 with C{factory} as the TLS connection creator,
    echoing what clients send.
    """
    from twisted.internet import reactor
    from twisted.internet.endpoints import SSL4ServerEndpoint
    from twisted.internet.protocol import Factory, Protocol

    if not factory.loaded:
        factory.load()
    class Echo(Protocol):
        def dataReceived(self, data):
            self.transport.write(data)

    endpoint = SSL4ServerEndpoint(reactor, 0, factory, interface="127.0.0.1")
    return await bounded(endpoint.listen(Factory.forProtocol(Echo)))


async def handshake(port, files, tmp_path, **kwargs):
    from twisted.internet.threads import deferToThread

    return await bounded(deferToThread(client_handshake, port, files, tmp_path, **kwargs))


@pytest.mark.parametrize("kind", ["rsa", "ec"])
@pytest_twisted.ensureDeferred
async def test_server_certificate_kinds_with_chain(kind, pki, tmp_path):
    """RSA and ECDSA server certificates work and their chain is sent."""
    files = write_server(tmp_path, pki, kind=kind)
    factory = ReloadingContextFactory(files.cert, files.key)
    factory.load()
    port = await listen(factory)
    try:
        cert, echo, version = await handshake(port.getHost().port, files, tmp_path)
    finally:
        await port.stopListening()
    assert echo == b"ping"
    assert cert == factory.certificate
    assert version in ("TLSv1.2", "TLSv1.3")


@pytest_twisted.ensureDeferred
async def test_client_certificate_from_our_ca_accepted(pki, tmp_path):
    """With TLS_CA a client certificate from that CA is accepted."""
    files = write_server(tmp_path, pki)
    port = await listen(ReloadingContextFactory(files.cert, files.key, files.ca))
    try:
        _, echo, _ = await handshake(port.getHost().port, files, tmp_path, client=pki["good_client"])
    finally:
        await port.stopListening()
    assert echo == b"ping"


@pytest.mark.parametrize("client", ["foreign_client", None])
@pytest_twisted.ensureDeferred
async def test_client_certificate_from_another_ca_or_none_refused(client, pki, tmp_path):
    """With TLS_CA a certificate from another CA, or none, gets no service."""
    files = write_server(tmp_path, pki)
    port = await listen(ReloadingContextFactory(files.cert, files.key, files.ca))
    try:
        with pytest.raises((ssl.SSLError, ConnectionError)) as caught:
            _, echo, _ = await handshake(
                port.getHost().port, files, tmp_path, client=pki[client] if client else None
            )
            # TLS 1.3 reports the refusal on the first read after the handshake
            assert echo == b"", "the server answered a client it should refuse"
            raise ConnectionError("closed without an echo")
    finally:
        await port.stopListening()
    assert caught.value is not None


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
@pytest_twisted.ensureDeferred
async def test_tls_1_1_refused_tls_1_2_accepted(pki, tmp_path):
    """A client limited to TLS 1.1 is refused; the same client at 1.2 connects."""
    files = write_server(tmp_path, pki, kind="rsa")
    factory = ReloadingContextFactory(files.cert, files.key)
    factory.load()
    # OpenSSL's default security level refuses TLS 1.1 by itself; lower it so
    # that only the gateway's own minimum version is tested.
    factory.getContext().set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    port = await listen(factory)
    try:
        with pytest.raises(ssl.SSLError):
            await handshake(port.getHost().port, files, tmp_path, max_version=ssl.TLSVersion.TLSv1_1, seclevel0=True)
        _, echo, version = await handshake(
            port.getHost().port, files, tmp_path, max_version=ssl.TLSVersion.TLSv1_2, seclevel0=True
        )
    finally:
        await port.stopListening()
    assert (echo, version) == (b"ping", "TLSv1.2")


@pytest_twisted.ensureDeferred
async def test_reload_on_clock_tick_serves_new_certificate(pki, tmp_path, clock):
    """Changed files are picked up on the next check; new connections see the new certificate."""
    files = write_server(tmp_path, pki, kind="ec")
    factory = ReloadingContextFactory(files.cert, files.key, interval=10)
    service = CertificateReloadService(factory, clock=clock)
    service.startService()
    port = await listen(factory)
    try:
        first, _, _ = await handshake(port.getHost().port, files, tmp_path)
        write_server(tmp_path, pki, kind="rsa")  # same paths, new contents
        clock.advance(9)
        assert factory.reloads == 0
        clock.advance(1)
        assert factory.reloads == 1
        second, echo, _ = await handshake(port.getHost().port, files, tmp_path)
    finally:
        service.stopService()
        await port.stopListening()
    assert echo == b"ping"
    assert first != second
    assert second == factory.certificate
    clock.advance(10)
    assert factory.reloads == 1


def test_failed_reload_keeps_old_certificate(pki, tmp_path, clock, fail_on_logged_errors):
    """A broken file is logged as an error and the old certificate stays; a fix is picked up."""
    files = write_server(tmp_path, pki)
    factory = ReloadingContextFactory(files.cert, files.key, files.ca, interval=10)
    service = CertificateReloadService(factory, clock=clock)
    service.startService()
    before = factory.certificate
    try:
        with open(files.key, "wb") as f:
            f.write(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
        clock.advance(10)
        assert factory.certificate == before
        assert [e["reason"].split()[0] for e in fail_on_logged_errors] == ["TLS_KEY"]
        clock.advance(10)  # unchanged broken files are not retried (no log flood)
        assert len(fail_on_logged_errors) == 1
        fail_on_logged_errors.clear()
        write_server(tmp_path, pki)
        clock.advance(10)
        assert factory.certificate != before
        assert factory.reloads == 1
    finally:
        service.stopService()


def test_mismatched_key_and_certificate_refused_at_start(pki, tmp_path):
    """A key that is not the certificate's stops the start with a line naming the files."""
    files = write_server(tmp_path, pki)
    other = write_server(tmp_path, pki, stem="other")
    with pytest.raises(TlsError, match="does not match"):
        build_options(files.cert, other.key)
    with pytest.raises(TlsError, match="cannot be read"):
        ReloadingContextFactory(str(tmp_path / "missing.pem"), files.key).load()
    with pytest.raises(TlsError, match="no readable PEM certificate"):
        build_options(files.key, files.key)
    with pytest.raises(TlsError, match="TLS_CA"):
        build_options(files.cert, files.key, files.key)


def test_client_certificate_required_only_with_ca(pki, tmp_path):
    """Client verification is on exactly when a CA is configured."""
    from OpenSSL import SSL

    files = write_server(tmp_path, pki)
    with_ca = ReloadingContextFactory(files.cert, files.key, files.ca)
    with_ca.load()
    without = ReloadingContextFactory(files.cert, files.key)
    without.load()
    assert with_ca.getContext().get_verify_mode() & SSL.VERIFY_FAIL_IF_NO_PEER_CERT
    assert without.getContext().get_verify_mode() == SSL.VERIFY_NONE
    assert with_ca.requires_client_certificate and not without.requires_client_certificate


def test_endpoint_and_service_from_config(pki, tmp_path, clock):
    """The config's files give an SSL endpoint and a service that checks files while running."""
    from twisted.internet.testing import MemoryReactorClock

    files = write_server(tmp_path, pki)
    config = load_config(
        environ={"TLS_CERT": files.cert, "TLS_KEY": files.key, "TLS_CA": files.ca, "OCPP_SECURITY_PROFILE": "3"}
    )
    factory = context_factory_for(config, clock)
    assert factory.requires_client_certificate
    reactor = MemoryReactorClock()
    endpoint = tls_server_endpoint(reactor, config, 9443, "127.0.0.1", factory)
    endpoint.listen(object())
    assert reactor.sslServers[0][0] == 9443 and reactor.sslServers[0][2] is factory
    service = tls_service(reactor, config, object(), 9443, "127.0.0.1")
    service.startService()
    assert [c for c in reactor.getDelayedCalls() if c.active()]
    service.stopService()
    assert [c for c in reactor.getDelayedCalls() if c.active()] == []
    with pytest.raises(TlsError):
        context_factory_for(load_config(), clock)


def test_nothing_is_read_before_the_service_starts(pki, tmp_path, clock):
    """Building the endpoint reads no file; the reload service reads them at start and checks them while it runs."""
    files = write_server(tmp_path, pki, kind="ec")
    config = load_config(environ={"TLS_CERT": files.cert, "TLS_KEY": files.key})
    factory = context_factory_for(config, clock)
    assert not factory.loaded
    service = CertificateReloadService(factory, clock=clock)
    service.startService()
    try:
        assert factory.loaded
        first = factory.certificate
        write_server(tmp_path, pki, kind="rsa")
        clock.advance(factory.interval)
        assert factory.certificate != first
    finally:
        service.stopService()
    assert clock.getDelayedCalls() == []


def test_privileged_start_reads_the_files(pki, tmp_path, clock):
    """Under twistd the files are read before privileges are shed, and not read twice."""
    files = write_server(tmp_path, pki)
    factory = ReloadingContextFactory(files.cert, files.key)
    factory.load()
    service = CertificateReloadService(factory, clock=clock)
    service.privilegedStartService()
    assert factory.loaded
    loaded = factory.certificate
    service.startService()
    service.stopService()
    assert factory.certificate is loaded


@pytest_twisted.ensureDeferred
async def test_behind_a_proxy_client_certificates_are_optional(pki, tmp_path):
    """With CLIENT_CERT_HEADER a client without a certificate connects; one from another CA still fails."""
    from twisted.internet import reactor

    files = write_server(tmp_path, pki)
    config = load_config(
        environ={
            "TLS_CERT": files.cert,
            "TLS_KEY": files.key,
            "TLS_CA": files.ca,
            "CLIENT_CERT_HEADER": "X-SSL-Client-Cert",
            "TRUSTED_PROXIES": "127.0.0.1",
        }
    )
    factory = context_factory_for(config, reactor)
    assert not factory.requires_client_certificate
    port = await listen(factory)
    try:
        _, echo, _ = await handshake(port.getHost().port, files, tmp_path)
        assert echo == b"ping"
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _, echo, _ = await handshake(port.getHost().port, files, tmp_path, client=pki["foreign_client"])
            assert echo == b""
            raise ConnectionError("closed without an echo")
    finally:
        await port.stopListening()


def test_sighup_triggers_reload(pki, tmp_path, clock):
    """SIGHUP reloads through the reactor thread, and the old handler comes back."""
    import os
    import signal

    files = write_server(tmp_path, pki)
    factory = ReloadingContextFactory(files.cert, files.key, clock=clock)

    class Reactor:
        def callFromThread(self, f, *a):
            f(*a)

    previous = signal.getsignal(signal.SIGHUP)
    service = CertificateReloadService(factory, Reactor(), clock=clock)
    service.startService()
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        assert factory.reloads == 1
    finally:
        service.stopService()
    assert signal.getsignal(signal.SIGHUP) == previous
    restore = install_sighup(Reactor(), lambda: None)
    restore()
    assert signal.getsignal(signal.SIGHUP) == previous


def _tls12_with(port, files, cipher):
    """A stdlib TLS 1.2 client offering only C{cipher}; the suite agreed on."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(files.server_ca)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(cipher)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.cipher()[0]


@pytest_twisted.ensureDeferred
async def test_finding_12_tls_1_2_offers_aead_suites_only(pki, tmp_path):
    """ECDHE-ECDSA-AES128-SHA (CBC) is refused; the same key exchange with AES-GCM or ChaCha20 connects."""
    from twisted.internet.threads import deferToThread

    files = write_server(tmp_path, pki, kind="ec")
    port = await listen(ReloadingContextFactory(files.cert, files.key))
    number = port.getHost().port
    try:
        for cbc in ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"):
            with pytest.raises(ssl.SSLError):
                await bounded(deferToThread(_tls12_with, number, files, cbc))
        for aead in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"):
            assert await bounded(deferToThread(_tls12_with, number, files, aead)) == aead
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_the_suites_ocpp_compliance_requires_are_offered(pki, tmp_path):
    """The OCPP 1.6 security suites: ECDHE-ECDSA with AES-GCM on an EC key, RSA key exchange with AES-GCM on an RSA key."""
    from twisted.internet.threads import deferToThread

    for kind, suites in (
        ("ec", ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384")),
        ("rsa", ("AES128-GCM-SHA256", "AES256-GCM-SHA384")),
    ):
        files = write_server(tmp_path, pki, kind=kind)
        port = await listen(ReloadingContextFactory(files.cert, files.key))
        try:
            for suite in suites:
                assert await bounded(deferToThread(_tls12_with, port.getHost().port, files, suite)) == suite
            with pytest.raises(ssl.SSLError):  # RSA key exchange with CBC stays refused
                await bounded(deferToThread(_tls12_with, port.getHost().port, files, "AES128-SHA256"))
        finally:
            await port.stopListening()
