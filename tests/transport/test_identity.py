"""
Tests for L{ocpptw.transport.identity}: the charger identity from the path.
"""

from __future__ import annotations

import pytest

from ocpptw.transport.identity import BadIdentity, identity_from_path


@pytest.mark.parametrize(
    "path, identity",
    [("/ocpp/CP1", "CP1"), ("/ocpp/CP%2D002", "CP-002"), ("/ocpp/CP1/", "CP1"), ("/ocpp/CP.1", "CP.1"), ("/ocpp/a%5Cb", "a\\b"),
     ("/ocpp/...", "..."), ("/ocpp/" + "x" * 48, "x" * 48)],
)
def test_identity_is_the_decoded_last_segment(path, identity):
    """The identity is percent-decoded."""
    assert identity_from_path(path, "/ocpp") == identity


@pytest.mark.parametrize(
    "path, status",
    [
        ("/ocpp/", 404),
        ("/ocpp", 404),
        ("/other/CP1", 404),
        ("/ocpp/a/b", 404),
        ("/ocpp/a%2Fb", 400),
        ("/ocpp/" + "x" * 49, 400),
        ("/ocpp/%FF", 400),
        ("/ocpp/a%00b", 400),
    ],
)
def test_bad_paths_are_refused(path, status):
    """Empty, too long, containing '/' or outside the prefix: refused with 400/404."""
    with pytest.raises(BadIdentity) as e:
        identity_from_path(path, "/ocpp")
    assert e.value.status == status


def test_custom_prefix():
    """OCPP_PATH may have several segments."""
    assert identity_from_path("/a/b/CP9", "/a/b") == "CP9"
    with pytest.raises(BadIdentity):
        identity_from_path("/a/CP9", "/a/b")


@pytest.mark.parametrize(
    "path",
    [
        "/ocpp/.",
        "/ocpp/..",
        "/ocpp/%2e%2e",
        "/ocpp/%2E",
        "/ocpp/CP%20002",
        "/ocpp/%C3%A9t%C3%A9",
        "/ocpp/CP%C2%85",  # U+0085
        "/ocpp/CP%E2%80%AE1",  # U+202E
        "/ocpp/CP%E2%80%A81",  # U+2028
        "/ocpp/%EF%BC%A3%EF%BC%B0",  # fullwidth CP
        "/ocpp/a%7Fb",
    ],
)
def test_finding_6_dot_segments_and_confusable_identities_are_refused(path):
    """Section 1: identities are printable ASCII (0x21-0x7E) and never '.' or '..'."""
    with pytest.raises(BadIdentity) as e:
        identity_from_path(path, "/ocpp")
    assert e.value.status == 400
