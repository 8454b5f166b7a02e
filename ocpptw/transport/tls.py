# -*- test-case-name: tests.transport.test_tls -*-
"""
TLS for C{wss://}: the server context built from C{TLS_CERT}, C{TLS_KEY}
and C{TLS_CA}, client certificates (security profile 3), and certificate
reloads without a restart.

  - TLS 1.2 is the minimum; compression is off (Twisted's default);
  - RSA and ECDSA keys;
  - C{TLS_CERT} holds the server certificate first, then its chain: the
    chain is sent to clients;
  - with C{TLS_CA}, every client must present a certificate from that CA
    (C{ssl:} endpoint strings cannot ask for one, hence
    L{tls_server_endpoint});
  - the files are read again when they change (checked every
    L{RELOAD_INTERVAL} seconds) or on C{SIGHUP}.  New connections get the
    new certificate; a reload that fails keeps the old one and logs an
    error.
"""

from __future__ import annotations

import hashlib
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import SSL, crypto
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.interfaces import (
    IOpenSSLContextFactory,
    IOpenSSLServerConnectionCreator,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.ssl import AcceptableCiphers, CertificateOptions, TLSVersion
from twisted.logger import Logger
from zope.interface import implementer

from ocpptw.clock import Periodic

#: Seconds between checks of the certificate files.
RELOAD_INTERVAL = 10.0

#: TLS 1.2 suites offered: AEAD only (TLS 1.3 has no other), forward-secret
#: ones first.  TLS_RSA_WITH_AES_128/256_GCM stay: the OCPP 1.6 security
#: whitepaper's compliance tests require a central system to offer them, and
#: some chargers implement no other.
AEAD_CIPHERS = AcceptableCiphers.fromOpenSSLCipherString(
    "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:RSA+AESGCM:!aNULL:!eNULL:!PSK:!SRP"
)


class TlsError(ValueError):
    """
    A certificate, key or CA file cannot be used.  The message is one line
    naming the file.
    """


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise TlsError(f"{what} {path} cannot be read: {e.strerror or e}") from None


def read_certificates(path: str, what: str = "TLS_CA") -> list[x509.Certificate]:
    """
    The PEM certificates in the file at C{path}, in order.

    @raise TlsError: unreadable, or no certificate in it.
    """
    data = _read(path, what)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TlsError(f"{what} {path} holds no readable PEM certificate") from None
    return certificates


def build_options(
    cert_path: str,
    key_path: str,
    ca_path: str | None = None,
    require_client_certificate: bool = True,
) -> CertificateOptions:
    """
    Server L{CertificateOptions} from the PEM files, checked: the context
    is built at once, so a key that does not match its certificate fails
    here rather than at the first handshake.

    @param ca_path: client CA bundle; with it clients are asked for a
        certificate, which must come from one of these CAs.
    @param require_client_certificate: with C{ca_path}, refuse clients that
        present none.  Off behind a TLS-terminating proxy that forwards
        certificates in a header (the proxy itself has none); the
        handshake's L{ocpptw.transport.auth.Authenticator} then refuses
        chargers without one.

    @raise TlsError: a file is unreadable or the pieces do not fit.
    """
    chain = read_certificates(cert_path, "TLS_CERT")
    key_data = _read(key_path, "TLS_KEY")
    try:
        key = load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError):
        raise TlsError(f"TLS_KEY {key_path} holds no readable unencrypted PEM private key") from None
    leaf, *extra = chain
    cas = read_certificates(ca_path) if ca_path else []
    # pyOpenSSL takes cryptography objects for the context, but its
    # certificate store (the client CAs) still wants its own X509.
    options = CertificateOptions(
        privateKey=key,  # type: ignore[arg-type]
        certificate=leaf,  # type: ignore[arg-type]
        extraCertChain=extra,  # type: ignore[arg-type]
        verify=bool(cas),
        caCerts=[crypto.X509.from_cryptography(ca) for ca in cas] or None,
        requireCertificate=bool(cas) and require_client_certificate,
        raiseMinimumTo=TLSVersion.TLSv1_2,
        acceptableCiphers=AEAD_CIPHERS,
    )
    try:
        context = options.getContext()
    except SSL.Error:
        raise TlsError(f"TLS_KEY {key_path} does not match the certificate in TLS_CERT {cert_path}") from None
    for ca in cas:
        # Tell clients which CAs we accept: some pick their certificate by it.
        context.add_client_ca(ca)
    return options


@implementer(IOpenSSLServerConnectionCreator, IOpenSSLContextFactory)
class ReloadingContextFactory:
    """
    The server's TLS connection creator: every new connection uses the
    context built from the files' current contents.

    Nothing is read until L{load} (L{CertificateReloadService} calls it when
    the gateway starts); L{check} and L{reload} read the files again.

    @param clock: unused; kept so callers may pass the reactor.
    """

    log = Logger()

    def __init__(
        self,
        cert_path: str,
        key_path: str,
        ca_path: str | None = None,
        clock: IReactorTime | None = None,
        interval: float = RELOAD_INTERVAL,
        require_client_certificate: bool = True,
    ) -> None:
        self.cert_path = cert_path
        self.key_path = key_path
        self.ca_path = ca_path
        self._require = require_client_certificate
        self.interval = interval
        self._signature = b""
        self._options: CertificateOptions | None = None
        self._context: SSL.Context | None = None
        self.reloads = 0

    @property
    def loaded(self) -> bool:
        return self._context is not None

    def load(self) -> None:
        """
        Read the files and build the context.

        @raise TlsError: the files cannot be used.
        """
        self._signature = self._read_signature()
        options = build_options(self.cert_path, self.key_path, self.ca_path, self._require)
        self._options, self._context = options, options.getContext()

    @property
    def requires_client_certificate(self) -> bool:
        return self.ca_path is not None and self._require

    @property
    def certificate(self) -> x509.Certificate:
        """
        The server certificate now served.
        """
        assert self._options is not None, "certificates not loaded"
        return self._options.certificate  # type: ignore[return-value]

    def getContext(self) -> SSL.Context:
        assert self._context is not None, "certificates not loaded"
        return self._context

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        return SSL.Connection(self.getContext(), None)

    def _read_signature(self) -> bytes:
        digest = hashlib.sha256()
        for path in (self.cert_path, self.key_path, self.ca_path):
            if path is None:
                continue
            try:
                digest.update(Path(path).read_bytes())
            except OSError as e:
                digest.update(f"unreadable {e.errno}".encode())
            digest.update(b"\0")
        return digest.digest()

    def reload(self) -> bool:
        """
        Read the files again now.  On failure keep serving the old
        certificate and log an error.

        @return: whether the new files are in use.
        """
        self._signature = self._read_signature()
        try:
            options = build_options(self.cert_path, self.key_path, self.ca_path, self._require)
        except TlsError as e:
            self.log.error("TLS certificates not reloaded, still serving the previous ones: {reason}", reason=str(e))
            return False
        self._options = options
        self._context = options.getContext()
        self.reloads += 1
        self.log.info(
            "TLS certificate reloaded: {subject}, valid until {notAfter}",
            subject=self.certificate.subject.rfc4514_string(),
            notAfter=self.certificate.not_valid_after_utc.isoformat(),
        )
        return True

    def check(self) -> bool:
        """
        Reload when a file's contents changed since the last read.

        @return: whether a reload happened and worked.
        """
        if self._read_signature() == self._signature:
            return False
        return self.reload()


def install_sighup(reactor: Any, callback: Callable[[], object]) -> Callable[[], None]:
    """
    Run C{callback} in the reactor thread on C{SIGHUP}.

    @return: a function that puts the previous handler back.  Where signals
        cannot be handled (not the main thread, no SIGHUP), nothing is
        installed and the function does nothing.
    """
    sighup = getattr(signal, "SIGHUP", None)
    if sighup is None:
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        reactor.callFromThread(callback)

    try:
        previous = signal.signal(sighup, handler)
    except ValueError:
        return lambda: None
    def restore() -> None:
        signal.signal(sighup, previous)

    return restore


class CertificateReloadService(Periodic):
    """
    Loads a L{ReloadingContextFactory}'s files when the gateway starts (in
    C{privilegedStartService} under twistd, so that keys readable only by
    root are read before it drops privileges), then keeps them fresh while
    it runs: a check every C{interval} seconds on C{clock}, and a reload on
    C{SIGHUP} when C{reactor} is given.
    """

    job = "checking the TLS certificate files"

    def __init__(
        self, context_factory: ReloadingContextFactory, reactor: Any = None, clock: IReactorTime | None = None
    ) -> None:
        super().__init__(clock if clock is not None else reactor, context_factory.interval)
        self.context_factory = context_factory
        self._reactor = reactor
        self._restore: Callable[[], None] | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if not self.context_factory.loaded:
            self.context_factory.load()

    def startService(self) -> None:
        if not self.context_factory.loaded:
            self.context_factory.load()
        if self.clock is not None:
            super().startService()
        else:
            Service.startService(self)
        if self._reactor is not None:
            self._restore = install_sighup(self._reactor, self.context_factory.reload)

    def tick(self) -> None:
        self.context_factory.check()

    def stopService(self) -> Any:
        restore, self._restore = self._restore, None
        if restore is not None:
            restore()
        if self.clock is not None:
            return super().stopService()
        return Service.stopService(self)


def context_factory_for(config: Any, clock: IReactorTime) -> ReloadingContextFactory:
    """
    The reloading context factory for C{config.tls_cert}, C{tls_key} and
    C{tls_ca}.  With C{CLIENT_CERT_HEADER} set (a proxy in front), client
    certificates are asked for but not required.

    @raise TlsError: the files cannot be used.
    """
    if not config.tls_cert or not config.tls_key:
        raise TlsError("TLS_CERT and TLS_KEY must be set for wss")
    return ReloadingContextFactory(
        config.tls_cert,
        config.tls_key,
        config.tls_ca,
        clock,
        require_client_certificate=not config.client_cert_header,
    )


def _endpoint(
    reactor: Any, port: int, context_factory: Any, interface: str, pacing: tuple[Any, int] | None
) -> IStreamServerEndpoint:
    if pacing is None:
        return SSL4ServerEndpoint(reactor, port, context_factory, interface=interface)
    from ocpptw.transport.pacing import PacedServerEndpoint

    pacer, backlog = pacing
    return PacedServerEndpoint(reactor, port, pacer, backlog, interface, tls=context_factory)


def tls_server_endpoint(
    reactor: Any,
    config: Any,
    port: int,
    interface: str = "",
    context_factory: ReloadingContextFactory | None = None,
    pacing: tuple[Any, int] | None = None,
) -> IStreamServerEndpoint:
    """
    A TLS listening endpoint for the configured certificates (with client
    certificates when C{TLS_CA} is set).

    Without C{context_factory} one is built from C{config}; it must be
    loaded (L{CertificateReloadService} does it) before the endpoint listens.

    @param pacing: C{(AcceptPacer, backlog)} for a paced accept loop
        (L{ocpptw.transport.pacing}), or C{None} for Twisted's own.
    @raise TlsError: the certificate files cannot be used.
    """
    if context_factory is None:
        context_factory = context_factory_for(config, reactor)
    return _endpoint(reactor, port, context_factory, interface, pacing)


def tls_service(reactor: Any, config: Any, site: Any, port: int, interface: str = "") -> MultiService:
    """
    Everything wss needs as one service: the listener on C{port} serving
    C{site}, and the certificate reloads (file checks and C{SIGHUP}).

    @raise TlsError: at start, when the certificate files cannot be used.
    """
    factory = context_factory_for(config, reactor)
    service = MultiService()
    CertificateReloadService(factory, reactor).setServiceParent(service)
    endpoint = tls_server_endpoint(reactor, config, port, interface, factory)
    StreamServerEndpointService(endpoint, site).setServiceParent(service)
    service.context_factory = factory  # type: ignore[attr-defined]
    return service
