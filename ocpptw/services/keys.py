# -*- test-case-name: tests.services.test_keys -*-
"""
Charger authorization keys (security profiles 1 and 2): the stored hash
format of docs/contract.md section 1, C{sha256:<salt hex>:<hex of SHA-256(salt bytes
+ key UTF-8 bytes)>}.  Keys are random and 16 to 40 characters long, so one
salted SHA-256 is enough and a reconnect storm stays cheap.  Comparisons run
in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import string

#: The characters of generated keys: letters and digits, safe in a Basic
#: auth header and easy to type into a charger's web page.
KEY_ALPHABET = string.ascii_letters + string.digits

#: Shortest and longest key the contract allows.
MIN_KEY_LENGTH = 16
MAX_KEY_LENGTH = 40

_SALT_BYTES = 16


def generate_key(length: int = 24) -> str:
    """
    A new random key of C{length} letters and digits.
    """
    if not MIN_KEY_LENGTH <= length <= MAX_KEY_LENGTH:
        raise ValueError(f"a key has {MIN_KEY_LENGTH} to {MAX_KEY_LENGTH} characters")
    return "".join(secrets.choice(KEY_ALPHABET) for _ in range(length))


def check_key(key: str) -> str | None:
    """
    Why C{key} is not acceptable as a charger key, or C{None} when it is.
    """
    if not MIN_KEY_LENGTH <= len(key) <= MAX_KEY_LENGTH:
        return f"a key has {MIN_KEY_LENGTH} to {MAX_KEY_LENGTH} characters, this one has {len(key)}"
    if not key.isprintable() or any(c.isspace() for c in key):
        return "a key has printable characters and no spaces"
    return None


def hash_key(key: str, salt: bytes | None = None) -> str:
    """
    The stored form of C{key}: C{sha256:<salt hex>:<digest hex>}.

    @param salt: random 16 bytes when not given (tests pass their own).
    """
    if salt is None:
        salt = os.urandom(_SALT_BYTES)
    digest = hashlib.sha256(salt + key.encode("utf-8")).hexdigest()
    return f"sha256:{salt.hex()}:{digest}"


def verify_key(hash_text: str, key: str) -> bool:
    """
    Whether C{key} matches C{hash_text} (made by L{hash_key}).  A malformed
    or empty hash matches nothing.
    """
    parts = (hash_text or "").split(":")
    if len(parts) != 3 or parts[0] != "sha256":
        return False
    try:
        salt = bytes.fromhex(parts[1])
    except ValueError:
        return False
    expected = parts[2].lower()
    if len(expected) != 64:
        return False
    actual = hashlib.sha256(salt + key.encode("utf-8")).hexdigest()
    return hmac.compare_digest(actual.encode("ascii"), expected.encode("ascii", "replace"))
