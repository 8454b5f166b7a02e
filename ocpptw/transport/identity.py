# -*- test-case-name: tests.transport.test_identity -*-
"""
The charger's identity from the WebSocket URL path (docs/contract.md section 1).
"""

from __future__ import annotations

from urllib.parse import unquote

#: Longest chargePointId accepted (OCPP 1.6 CiString48 for the identity).
MAX_IDENTITY = 48


class BadIdentity(ValueError):
    """
    The path names no acceptable identity.

    @ivar status: the HTTP status for the refusal (400 or 404).
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def identity_from_path(path: str, prefix: str) -> str:
    """
    The percent-decoded last segment of C{path} below C{prefix}.

    @param path: the raw request path (not percent-decoded, no query).
    @param prefix: the configured C{OCPP_PATH}, e.g. C{/ocpp}.
    @raise BadIdentity: 404 for a path outside C{prefix}, more than one
        segment or an empty identity; 400 for an identity that is too long,
        contains C{/}, is C{.} or C{..} (also percent-encoded), or holds a
        character outside printable ASCII (0x21-0x7E: no spaces, controls,
        look-alike or direction-changing Unicode).
    """
    base = prefix.rstrip("/") + "/"
    if not path.startswith(base):
        raise BadIdentity(404, "not an OCPP path")
    raw = path[len(base) :]
    if raw.endswith("/"):
        raw = raw[:-1]
    if not raw:
        raise BadIdentity(404, "no charger identity in the path")
    if "/" in raw:
        raise BadIdentity(404, "the charger identity must be the last path segment")
    try:
        identity = unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise BadIdentity(400, "the charger identity is not UTF-8") from None
    if not identity:
        raise BadIdentity(404, "no charger identity in the path")
    if "/" in identity:
        raise BadIdentity(400, "the charger identity must not contain '/'")
    if len(identity) > MAX_IDENTITY:
        raise BadIdentity(400, f"the charger identity is longer than {MAX_IDENTITY} characters")
    if identity in (".", ".."):
        raise BadIdentity(400, "the charger identity must not be a dot segment")
    if not all(0x21 <= ord(c) <= 0x7E for c in identity):
        raise BadIdentity(400, "the charger identity must be printable ASCII without spaces")
    return identity
