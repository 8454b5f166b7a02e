"""
Tests for L{ocpptw.transport.auth}: Basic credentials, key hashes, client
certificates from the handshake and from trusted proxies.
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import crypto

from ocpptw.transport.auth import (
    ALLOWED,
    Authenticator,
    CertificateVerifier,
    ProxyTrust,
    authenticator,
    basic_outcome,
    certificate_outcome,
    certificate_pem,
    certificates_from_header,
    check_basic,
    identity_from_certificate,
    parse_basic,
    verify_key_hash,
)
from tests.transport.certs import issue, make_ca


def make_hash(key: str, salt: bytes = b"0123456789abcdef") -> str:
    """
    A key hash in the contract's format, built independently of the code.
    """
    return f"sha256:{salt.hex()}:{hashlib.sha256(salt + key.encode('utf-8')).hexdigest()}"


def basic(user: str, password: str, encoding: str = "utf-8") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode(encoding)).decode("ascii")


KEY = "s3cret:with:colons-0123"


@pytest.fixture(scope="module")
def pki():
    """
    A client CA with an intermediate, a charger certificate under each, and
    a stranger CA.
    """
    root = make_ca("Charger Root")
    intermediate = make_ca("Charger Intermediate", issuer=root)
    stranger = make_ca("Somebody Else")
    return {
        "root": root,
        "intermediate": intermediate,
        "direct": issue(root, "CP001"),
        "chained": issue(intermediate, "CP002", kind="rsa"),
        "foreign": issue(stranger, "CP001"),
    }


def test_key_hash_matches_only_its_key():
    """A key verifies against its own hash and nothing else."""
    key_hash = make_hash(KEY)
    assert verify_key_hash(KEY, key_hash)
    assert not verify_key_hash(KEY + "x", key_hash)
    assert not verify_key_hash("", key_hash)


@pytest.mark.parametrize(
    "bad",
    ["", "sha256", "sha256::", "md5:00:" + "00" * 32, "sha256:zz:" + "00" * 32, "sha256:00:abcd", None],
)
def test_malformed_key_hash_matches_nothing(bad):
    """A malformed stored hash never lets anyone in."""
    assert not verify_key_hash("", bad)
    assert not verify_key_hash(KEY, bad)


def test_parse_basic_keeps_colons_in_the_password():
    """Only the first colon separates user and password."""
    assert parse_basic(basic("CP001", KEY)) == ("CP001", KEY)
    assert parse_basic(basic("CP001", "")) == ("CP001", "")


def test_parse_basic_reads_utf8_and_latin1():
    """Non-ASCII credentials decode as UTF-8, else as Latin-1."""
    assert parse_basic(basic("CPé", "pässword")) == ("CPé", "pässword")
    assert parse_basic(basic("CPé", "pässword", "latin-1")) == ("CPé", "pässword")
    assert parse_basic(basic("CP1", "x").encode("ascii")) == ("CP1", "x")


def test_parse_basic_tolerates_missing_padding_and_scheme_case():
    """A lower-case scheme and unpadded base64 still parse."""
    token = base64.b64encode(b"CP1:ab").decode().rstrip("=")
    assert parse_basic("basic " + token) == ("CP1", "ab")


@pytest.mark.parametrize(
    "header",
    [None, "", "Basic", "Basic !!!notbase64", "Bearer abc", "Basic " + base64.b64encode(b"no-colon").decode(), "Basic YW Jj"],
)
def test_parse_basic_refuses_malformed_headers(header):
    """Missing, non-Basic, bad base64 or colon-less headers are refused."""
    assert parse_basic(header) is None


def test_check_basic_needs_identity_and_key():
    """The username must be the identity and the password the key."""
    key_hash = make_hash(KEY)
    assert check_basic(basic("CP001", KEY), "CP001", key_hash)
    assert not check_basic(basic("CP002", KEY), "CP001", key_hash)
    assert not check_basic(basic("CP001", "wrong"), "CP001", key_hash)
    assert not check_basic(basic("CP001", KEY), "CP001", None)
    assert not check_basic(basic("CP001", KEY), "CP001", "")
    assert not check_basic("garbage", "CP001", key_hash)


def test_check_basic_hashes_even_when_the_user_is_wrong(monkeypatch):
    """A wrong user costs one hash computation, as a right one does."""
    import ocpptw.services.keys as auth

    key_hash = make_hash(KEY)
    calls = []
    real = auth.hashlib.sha256
    monkeypatch.setattr(auth.hashlib, "sha256", lambda data=b"": calls.append(1) or real(data))
    check_basic(basic("intruder", KEY), "CP001", key_hash)
    check_basic("garbage", "CP001", None)
    assert len(calls) == 2


def test_basic_outcome_statuses():
    """401 for bad credentials, 503 when they cannot be checked, never the secret."""
    key_hash = make_hash(KEY)
    assert basic_outcome(basic("CP001", KEY), "CP001", key_hash) == ALLOWED
    wrong = basic_outcome(basic("CP001", "guess"), "CP001", key_hash)
    assert (wrong.ok, wrong.status) == (False, 401)
    assert "guess" not in wrong.reason
    assert basic_outcome(None, "CP001", key_hash).status == 401
    assert basic_outcome(basic("CP001", KEY), "CP001", None).status == 401
    down = basic_outcome(basic("CP001", KEY), "CP001", None, unavailable=True)
    assert (down.ok, down.status) == (False, 503)
    assert basic_outcome(None, "CP001", None, unavailable=True).status == 401
    cached = basic_outcome(basic("CP001", KEY), "CP001", key_hash, unavailable=True)
    assert cached == ALLOWED


def test_identity_from_both_certificate_types(pki):
    """The CN is read from cryptography and pyOpenSSL certificates."""
    cert = pki["direct"].certificate
    assert identity_from_certificate(cert) == "CP001"
    assert identity_from_certificate(crypto.X509.from_cryptography(cert)) == "CP001"
    assert identity_from_certificate(None) is None
    assert identity_from_certificate(pki["root"].certificate) == "Charger Root"


def test_certificate_outcome_compares_cn(pki):
    """Profile 3 admits the certificate whose CN is the identity."""
    cert = crypto.X509.from_cryptography(pki["direct"].certificate)
    assert certificate_outcome(cert, "CP001") == ALLOWED
    assert certificate_outcome(cert, "CP002").status == 401
    assert certificate_outcome(None, "CP001").status == 401


def test_header_formats(pki):
    """PEM, URL-encoded PEM, space-folded PEM and bare DER base64 all parse."""
    pem = certificate_pem(pki["direct"].certificate).decode()
    der = base64.b64encode(pki["direct"].certificate.public_bytes(Encoding.DER)).decode()
    for value in (pem, quote(pem), pem.replace("\n", " "), der, pem.encode()):
        certs = certificates_from_header(value)
        assert [identity_from_certificate(c) for c in certs] == ["CP001"], value
    chain = pem + certificate_pem(pki["root"].certificate).decode()
    assert len(certificates_from_header(quote(chain))) == 2
    assert certificates_from_header("not a certificate") == []
    assert certificates_from_header("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----") == []
    assert certificates_from_header(None) == []


def test_verifier_accepts_our_ca_only(pki):
    """A certificate chains to our CA (via a forwarded intermediate) or is refused."""
    verifier = CertificateVerifier([pki["root"].certificate])
    assert verifier.verify(pki["direct"].certificate)
    assert verifier.verify(pki["chained"].certificate, [pki["intermediate"].certificate])
    assert not verifier.verify(pki["chained"].certificate)
    assert not verifier.verify(pki["foreign"].certificate)


def test_verifier_refuses_expired_certificates(pki):
    """An expired client certificate does not verify."""
    expired = issue(pki["root"], "CP001", days=-1)
    assert not CertificateVerifier([pki["root"].certificate]).verify(expired.certificate)


def test_proxy_trust_exact_and_cidr():
    """Exact addresses and networks, IPv4 and IPv6, mapped addresses count."""
    trust = ProxyTrust(["10.0.0.1", "192.168.0.0/16", "fd00::/8", " "])
    assert trust.is_trusted("10.0.0.1")
    assert not trust.is_trusted("10.0.0.2")
    assert trust.is_trusted("192.168.44.7")
    assert trust.is_trusted("::ffff:192.168.1.1")
    assert trust.is_trusted("fd12::1")
    assert not trust.is_trusted("not-an-address")
    assert not trust.is_trusted(None)
    assert not ProxyTrust([])
    with pytest.raises(ValueError):
        ProxyTrust(["10.0.0.300"])


def test_authenticator_profile_1_uses_record_hash():
    """Profiles 1 and 2 check Basic against the record's authorizationKeyHash."""
    auth = Authenticator(1)
    record = {"deviceId": "CP001", "authorizationKeyHash": make_hash(KEY)}
    headers = {"authorization": basic("CP001", KEY)}
    assert auth("CP001", headers, "127.0.0.1", None, record) == ALLOWED
    assert auth("CP001", {"Authorization": basic("CP001", KEY)}, "127.0.0.1", None, record) == ALLOWED
    assert auth("CP001", {}, "127.0.0.1", None, record).status == 401
    assert auth("CP001", headers, "127.0.0.1", None, None).status == 401
    assert auth("CP001", headers, "127.0.0.1", None, None, unavailable=True).status == 503


def test_authenticator_profile_3_tls_certificate(pki):
    """Profile 3 takes the certificate from the TLS handshake."""
    auth = Authenticator(3)
    cert = crypto.X509.from_cryptography(pki["direct"].certificate)
    assert auth("CP001", {}, "127.0.0.1", cert, None) == ALLOWED
    assert auth("CP009", {}, "127.0.0.1", cert, None).status == 401
    assert auth("CP001", {}, "127.0.0.1", None, None).status == 401


def test_authenticator_forwarded_certificate_only_from_trusted_proxies(pki):
    """A forwarded certificate counts only from a trusted proxy and only from our CA."""
    auth = Authenticator(
        3,
        trusted_proxies=ProxyTrust(["10.1.0.0/24"]),
        client_cert_header="X-SSL-Client-Cert",
        verifier=CertificateVerifier([pki["root"].certificate]),
    )
    good = {"x-ssl-client-cert": quote(certificate_pem(pki["direct"].certificate).decode())}
    chained = {
        "x-ssl-client-cert": quote(
            (certificate_pem(pki["chained"].certificate) + certificate_pem(pki["intermediate"].certificate)).decode()
        )
    }
    foreign = {"x-ssl-client-cert": quote(certificate_pem(pki["foreign"].certificate).decode())}
    assert auth("CP001", good, "10.1.0.5", None, None) == ALLOWED
    assert auth("CP002", chained, "10.1.0.5", None, None) == ALLOWED
    assert auth("CP001", good, "10.2.0.5", None, None).status == 401
    assert auth("CP001", foreign, "10.1.0.5", None, None).status == 401
    assert auth("CP002", good, "10.1.0.5", None, None).status == 401


def test_authenticator_refuses_bad_setups():
    """Profile 0 needs no authenticator, and a verifier needs a CA."""
    with pytest.raises(ValueError):
        Authenticator(0)
    with pytest.raises(ValueError):
        CertificateVerifier([])


def test_forwarded_certificate_without_ca_trusts_the_proxy(pki):
    """Without TLS_CA the trusted proxy's own verification is relied on; untrusted peers still count for nothing."""
    auth = Authenticator(3, trusted_proxies=ProxyTrust(["127.0.0.1"]), client_cert_header="x-client-cert")
    header = {"x-client-cert": quote(certificate_pem(pki["foreign"].certificate).decode())}
    assert auth("CP001", header, "127.0.0.1", None, None) == ALLOWED
    assert auth("CP001", header, "127.0.0.2", None, None).status == 401


def test_authenticator_from_config(pki, tmp_path):
    """The config picks the profile, the proxies and the CA for forwarded certificates."""
    from ocpptw.config import load_config
    from tests.transport.certs import issue as issue_cert

    server = issue_cert(pki["root"], "localhost", server=True)
    cert, key = server.write(tmp_path, "server")
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki["root"].cert_pem)
    assert authenticator(load_config()) is None
    basic_only = authenticator(load_config(environ={"OCPP_SECURITY_PROFILE": "1"}))
    assert basic_only.profile == 1
    config = load_config(
        environ={
            "OCPP_SECURITY_PROFILE": "3",
            "TLS_CERT": cert,
            "TLS_KEY": key,
            "TLS_CA": str(ca),
            "CLIENT_CERT_HEADER": "X-SSL-Client-Cert",
            "TRUSTED_PROXIES": "10.0.0.0/8",
        }
    )
    auth = authenticator(config)
    good = {"x-ssl-client-cert": quote(certificate_pem(pki["direct"].certificate).decode())}
    foreign = {"x-ssl-client-cert": quote(certificate_pem(pki["foreign"].certificate).decode())}
    assert auth("CP001", good, "10.9.9.9", None, None) == ALLOWED
    assert auth("CP001", foreign, "10.9.9.9", None, None).status == 401


def _server_only(ca, common_name):
    """A leaf from C{ca} whose only purpose is server authentication."""
    return issue(ca, common_name, server=True)


def test_finding_10_proxy_certificate_header_is_checked_like_tls(pki):
    """A server-only certificate, the CA itself, and a header given twice (joined by a comma) are refused."""
    from ocpptw.transport.auth import fit_for_client_auth

    auth = Authenticator(
        3,
        trusted_proxies=ProxyTrust(["10.1.0.0/24"]),
        client_cert_header="X-SSL-Client-Cert",
        verifier=CertificateVerifier([pki["root"].certificate]),
    )

    def header(*certificates):
        return {"x-ssl-client-cert": quote(b"".join(certificate_pem(c) for c in certificates).decode())}

    server_only = _server_only(pki["root"], "CP001").certificate
    assert not fit_for_client_auth(server_only)
    assert auth("CP001", header(server_only), "10.1.0.5", None, None).status == 401
    # The root CA as a "client certificate" (its CN named as the identity).
    assert auth("Charger Root", header(pki["root"].certificate), "10.1.0.5", None, None).status == 401
    assert not fit_for_client_auth(pki["root"].certificate)
    # The client's own header and the proxy's, joined as Autobahn joins repeated headers.
    attacker = issue(pki["root"], "CP001")
    joined = {"x-ssl-client-cert": header(attacker.certificate)["x-ssl-client-cert"] + "," + header(pki["direct"].certificate)["x-ssl-client-cert"]}
    assert auth("CP001", joined, "10.1.0.5", None, None).status == 401
    # The same certificate alone still passes.
    assert auth("CP001", header(pki["direct"].certificate), "10.1.0.5", None, None) == ALLOWED


def test_finding_10_tls_certificates_need_the_client_purpose_too(pki):
    """The same rules hold for a certificate from the TLS handshake."""
    auth = Authenticator(3)
    server_only = crypto.X509.from_cryptography(_server_only(pki["root"], "CP001").certificate)
    assert auth("CP001", {}, "127.0.0.1", server_only, None).status == 401
    ca = crypto.X509.from_cryptography(pki["root"].certificate)
    assert auth("Charger Root", {}, "127.0.0.1", ca, None).status == 401
