# -*- test-case-name: tests.transport.test_auth -*-
"""
Security profiles of the OCPP 1.6 security extension, decided at the
WebSocket handshake.  Pure: no I/O, no clock, nothing logged here (the
caller logs the refusal with the L{AuthOutcome.reason}, which never holds a
secret).

  - profile 0: nobody is checked;
  - profiles 1 and 2: HTTP Basic, username = chargePointId, password = the
    charger's authorization key, checked against its stored hash;
  - profile 3: a client certificate whose subject CN is the chargePointId,
    from the TLS handshake itself or forwarded by a trusted proxy in a
    header.

The key hash format is C{sha256:<salt hex>:<hex of SHA-256(salt + key)>},
the key taken as UTF-8 bytes; hashes compare in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto

from ocpptw.services.keys import verify_key

#: Header that carries HTTP credentials (Autobahn lower-cases header names).
AUTHORIZATION = "authorization"

#: The charger-record field holding the key hash (backend and embedded store).
KEY_HASH_FIELD = "authorizationKeyHash"

# Verified against when the charger has no key or the user is wrong, so that
# every refusal costs the same hashing work as a real check.
_DUMMY_HASH = "sha256:" + "00" * 16 + ":" + "00" * 32

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)


@dataclass(frozen=True)
class AuthOutcome:
    """
    The verdict on a charger's credentials.

    @ivar ok: C{True} when the charger may connect.
    @ivar status: the HTTP status of the refusal: 401 for bad or missing
        credentials, 503 when they cannot be checked now (the charger should
        retry); 200 when C{ok}.
    @ivar reason: a short text for the log and the HTTP reason; never the
        secret.
    """

    ok: bool
    status: int
    reason: str


ALLOWED = AuthOutcome(True, 200, "ok")


def _refused(reason: str) -> AuthOutcome:
    return AuthOutcome(False, 401, reason)


# -- key hashes ---------------------------------------------------------------


def verify_key_hash(key: str, key_hash: str | None) -> bool:
    """
    Whether C{key} matches C{key_hash} (C{sha256:<salt hex>:<digest hex>}),
    compared in constant time.  A malformed hash matches nothing.
    """
    return verify_key(key_hash or "", key)


# -- HTTP Basic ------------------------------------------------------------------


def parse_basic(header_value: str | bytes | None) -> tuple[str, str] | None:
    """
    The (username, password) of an C{Authorization: Basic} header, or
    C{None} when it is missing or malformed.  Only the first C{:} separates
    them, so the password may contain colons.  The decoded bytes are read
    as UTF-8, or as Latin-1 when they are not UTF-8.
    """
    if header_value is None:
        return None
    if isinstance(header_value, bytes):
        header_value = header_value.decode("latin-1")
    scheme, _, token = header_value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    token = token.strip()
    token += "=" * (-len(token) % 4)  # some chargers drop the padding
    try:
        raw = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    user, colon, password = text.partition(":")
    if not colon:
        return None
    return user, password


def check_basic(header_value: str | bytes | None, identity: str, key_hash: str | None) -> bool:
    """
    Whether the Basic credentials in C{header_value} are C{identity} and the
    key that C{key_hash} was made from.  The hash is computed even when the
    header is malformed, the user is wrong or there is no hash, so a refusal
    takes as long as an acceptance.
    """
    parsed = parse_basic(header_value)
    user, password = parsed if parsed is not None else ("", "")
    user_ok = hmac.compare_digest(user.encode("utf-8", "surrogatepass"), identity.encode("utf-8", "surrogatepass"))
    key_ok = verify_key_hash(password, key_hash if key_hash else _DUMMY_HASH)
    return parsed is not None and user_ok and key_ok and bool(key_hash)


def basic_outcome(
    header_value: str | bytes | None,
    identity: str,
    key_hash: str | None,
    unavailable: bool = False,
) -> AuthOutcome:
    """
    The verdict for security profiles 1 and 2.

    @param key_hash: the charger's stored hash (or the last verified one
        while the backend is down); C{None} when it has none.
    @param unavailable: C{True} when the charger's hash could not be read
        (backend unreachable) and none is cached: the answer is then 503,
        so that the charger retries, unless the header is missing or
        malformed anyway.
    """
    parsed = parse_basic(header_value)
    if parsed is None:
        check_basic(header_value, identity, key_hash)  # same work as a check
        return _refused("missing or malformed Basic credentials")
    if key_hash is None and unavailable:
        check_basic(header_value, identity, None)
        return AuthOutcome(False, 503, "credentials cannot be checked now, retry later")
    if check_basic(header_value, identity, key_hash):
        return ALLOWED
    if not key_hash:
        return _refused("no authorization key is set for this charger")
    return _refused("wrong username or authorization key")


# -- certificates -------------------------------------------------------------


def identity_from_certificate(certificate: Any) -> str | None:
    """
    The subject common name of a pyOpenSSL C{X509} or a C{cryptography}
    certificate, or C{None} when it has none.
    """
    if certificate is None:
        return None
    if isinstance(certificate, crypto.X509):
        certificate = certificate.to_cryptography()
    try:
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except (AttributeError, ValueError):
        return None
    if not names:
        return None
    value = names[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def certificates_from_header(value: str | bytes | None) -> list[x509.Certificate]:
    """
    The certificates a TLS-terminating proxy forwarded in a header: PEM,
    URL-encoded PEM (nginx C{$ssl_client_escaped_cert}), PEM with its line
    breaks folded into spaces, or bare base64 DER (Traefik).  The leaf
    comes first.  Anything unreadable gives C{[]}.
    """
    if not value:
        return []
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    text = value.strip().strip('"')
    if "%" in text:
        text = unquote(text)
    data = text.encode("latin-1", "replace")
    bodies = _PEM.findall(data) or [data]
    certificates = []
    try:
        for body in bodies:
            der = base64.b64decode(b"".join(body.split()), validate=True)
            certificates.append(x509.load_der_x509_certificate(der))
    except (binascii.Error, ValueError):
        return []
    return certificates


def fit_for_client_auth(certificate: x509.Certificate) -> bool:
    """
    Whether C{certificate} may serve as a charger's client certificate, as
    OpenSSL decides for one presented in the TLS handshake: not a CA, and
    when it names its purposes (extended key usage), client authentication
    is one of them.
    """
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        if constraints.ca:
            return False
    except x509.ExtensionNotFound:
        pass
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ExtendedKeyUsageOID.CLIENT_AUTH in usages or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages


class CertificateVerifier:
    """
    Checks that a certificate forwarded by a proxy chains to our client CA
    and is within its validity period, the way OpenSSL checks one presented
    in the TLS handshake.

    @param ca_certificates: the trusted CA certificates (C{cryptography}).
    """

    def __init__(self, ca_certificates: Iterable[x509.Certificate]) -> None:
        self._cas = [crypto.X509.from_cryptography(c) for c in ca_certificates]
        if not self._cas:
            raise ValueError("no CA certificate to verify client certificates against")

    def verify(self, leaf: x509.Certificate, intermediates: Iterable[x509.Certificate] = ()) -> bool:
        """
        Whether C{leaf} chains to one of the CAs through C{intermediates}.
        """
        store = crypto.X509Store()
        for ca in self._cas:
            store.add_cert(ca)
        chain = [crypto.X509.from_cryptography(c) for c in intermediates]
        context = crypto.X509StoreContext(store, crypto.X509.from_cryptography(leaf), chain or None)
        try:
            context.verify_certificate()
        except crypto.X509StoreContextError:
            return False
        return True


class ProxyTrust:
    """
    The addresses (exact or CIDR, IPv4 or IPv6) whose forwarded client
    certificate headers are believed.
    """

    def __init__(self, trusted: Iterable[str]) -> None:
        self._networks = [ipaddress.ip_network(entry.strip(), strict=False) for entry in trusted if entry.strip()]

    def __bool__(self) -> bool:
        return bool(self._networks)

    def is_trusted(self, peer: str | None) -> bool:
        """
        Whether C{peer} (an address as the transport reports it) is one of
        the trusted proxies.  IPv4-mapped IPv6 addresses count as IPv4.
        """
        if not peer:
            return False
        try:
            address = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)


def certificate_outcome(certificate: Any, identity: str) -> AuthOutcome:
    """
    The verdict for security profile 3 on a certificate that is already
    verified (by the TLS handshake or L{CertificateVerifier}): its CN must
    be C{identity}.
    """
    if certificate is None:
        return _refused("a client certificate is required")
    readable = certificate.to_cryptography() if isinstance(certificate, crypto.X509) else certificate
    if isinstance(readable, x509.Certificate) and not fit_for_client_auth(readable):
        return _refused("the certificate is a CA's or not for client authentication")
    name = identity_from_certificate(certificate)
    if name is None:
        return _refused("the client certificate has no common name")
    if not hmac.compare_digest(name.encode("utf-8"), identity.encode("utf-8", "surrogatepass")):
        return _refused("the client certificate is not for this charger")
    return ALLOWED


# -- the handshake's authenticator ---------------------------------------------


class Authenticator:
    """
    The security profile as one callable for the handshake gate:
    C{authenticator(identity, headers, peer, certificate, record)}.

    @param profile: 1, 2 or 3 (profile 0 needs no authenticator).
    @param trusted_proxies: L{ProxyTrust} for forwarded certificates.
    @param client_cert_header: the header a proxy forwards the client
        certificate in (any case), or C{None}.
    @param verifier: checks forwarded certificates against the CA.  Without
        one, a forwarded certificate is taken as verified by the trusted
        proxy (which must then verify client certificates itself).
    """

    def __init__(
        self,
        profile: int,
        trusted_proxies: ProxyTrust | None = None,
        client_cert_header: str | None = None,
        verifier: CertificateVerifier | None = None,
    ) -> None:
        if profile not in (1, 2, 3):
            raise ValueError(f"security profile {profile} has no authenticator")
        self.profile = profile
        self._proxies = trusted_proxies or ProxyTrust(())
        self._header = client_cert_header.lower() if client_cert_header else None
        self._verifier = verifier

    def __call__(
        self,
        identity: str,
        headers: Mapping[str, Any],
        peer: str | None,
        certificate: Any,
        record: Mapping[str, Any] | None,
        unavailable: bool = False,
    ) -> AuthOutcome:
        """
        Decide.  C{headers} are the handshake's (lower-case names);
        C{certificate} is the TLS peer certificate or C{None}; C{record} the
        charger record (its C{authorizationKeyHash} is used), or C{None}.
        """
        if self.profile in (1, 2):
            key_hash = (record or {}).get(KEY_HASH_FIELD) or None
            return basic_outcome(_header(headers, AUTHORIZATION), identity, key_hash, unavailable)
        if certificate is None:
            certificate = self.forwarded_certificate(headers, peer)
        return certificate_outcome(certificate, identity)

    def forwarded_certificate(self, headers: Mapping[str, Any], peer: str | None) -> x509.Certificate | None:
        """
        The verified client certificate a trusted proxy forwarded, or
        C{None} (no header, untrusted peer, unreadable, not from our CA, a
        CA certificate, not for client authentication, or the header given
        twice).
        """
        if self._header is None or not self._proxies.is_trusted(peer):
            return None
        value = _header(headers, self._header)
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if value and "," in value:
            # No encoding of a certificate has a comma: this is the header
            # twice, joined (one of them the client's own, the proxy's added).
            return None
        chain = certificates_from_header(value)
        if not chain or not fit_for_client_auth(chain[0]):
            return None
        if self._verifier is not None and not self._verifier.verify(chain[0], chain[1:]):
            return None
        return chain[0]


def authenticator(config: Any) -> Authenticator | None:
    """
    The L{Authenticator} for C{config}'s security profile, or C{None} for
    profile 0.  With C{CLIENT_CERT_HEADER} and C{TLS_CA}, forwarded
    certificates are verified against C{TLS_CA} (read here, once).

    @raise ocpptw.transport.tls.TlsError: C{TLS_CA} cannot be read.
    """
    if not config.security_profile:
        return None
    verifier = None
    if config.client_cert_header and config.tls_ca:
        from ocpptw.transport.tls import read_certificates

        verifier = CertificateVerifier(read_certificates(config.tls_ca))
    return Authenticator(
        config.security_profile,
        ProxyTrust(config.trusted_proxies),
        config.client_cert_header,
        verifier,
    )


def _header(headers: Mapping[str, Any], name: str) -> Any:
    value = headers.get(name)
    if value is None:
        for key, candidate in headers.items():
            if isinstance(key, str) and key.lower() == name:
                value = candidate
                break
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return value


def certificate_pem(certificate: Any) -> bytes:
    """
    A certificate (pyOpenSSL or C{cryptography}) as PEM, e.g. for a test
    proxy header.
    """
    if isinstance(certificate, crypto.X509):
        certificate = certificate.to_cryptography()
    return certificate.public_bytes(Encoding.PEM)
