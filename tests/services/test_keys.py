"""
Tests for L{ocpptw.services.keys}: the salted key hashes of docs/contract.md section 1.
"""

from __future__ import annotations

import hashlib

import pytest

from ocpptw.services.keys import check_key, generate_key, hash_key, verify_key


def test_hash_format_matches_the_contract():
    """The hash is sha256:<salt hex>:<hex sha256(salt + key utf-8)>."""
    salt = bytes(range(16))
    text = hash_key("clé-de-recharge-01", salt)
    assert text == f"sha256:{salt.hex()}:{hashlib.sha256(salt + 'clé-de-recharge-01'.encode()).hexdigest()}"


def test_verify_accepts_the_key_and_nothing_else():
    """verify_key matches the right key only; each hash has its own salt."""
    text = hash_key("0123456789abcdef")
    assert verify_key(text, "0123456789abcdef")
    assert not verify_key(text, "0123456789abcdeF")
    assert hash_key("0123456789abcdef") != text


@pytest.mark.parametrize("bad", ["", "sha256", "md5:00:" + "0" * 64, "sha256:zz:" + "0" * 64, "sha256:00:abc", None])
def test_malformed_hashes_match_nothing(bad):
    """A malformed or missing hash never verifies."""
    assert verify_key(bad, "0123456789abcdef") is False


def test_generated_keys():
    """Generated keys are random letters and digits of the asked length, within 16 to 40."""
    keys = {generate_key() for _ in range(50)}
    assert len(keys) == 50 and all(len(k) == 24 and k.isalnum() and check_key(k) is None for k in keys)
    with pytest.raises(ValueError):
        generate_key(8)
