"""
Tests for L{ocpptw.services.wallet}: one refund per session, never zero.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from zope.interface.verify import verifyObject

from ocpptw.interfaces import IWalletService
from ocpptw.services.wallet import WalletService
from tests.helpers import success_result_of
from tests.services.support import Rig


@pytest.fixture
def rig(clock):
    r = Rig(clock)
    yield r
    r.close()


def test_provides_interface(rig):
    """WalletService provides IWalletService."""
    verifyObject(IWalletService, WalletService(rig.backend))


def test_refund_body_and_idempotency(rig):
    """The refund carries a two-place amount and the sessionId as idempotencyKey; a repeat refunds once."""
    success_result_of(rig.wallet.refund("s-1", "u-1", Decimal("3.705"), "EUR"))
    success_result_of(rig.wallet.refund("s-1", "u-1", Decimal("3.705"), "EUR"))
    assert rig.backend.called("refund")[0] == (
        {"sessionId": "s-1", "userId": "u-1", "amount": "3.71", "currency": "EUR", "idempotencyKey": "s-1"},
    )
    assert rig.sql("SELECT idempotency_key, amount FROM wallet_ledger") == [("s-1", "3.71")]


@pytest.mark.parametrize("amount", [Decimal("0"), Decimal("0.004"), Decimal("-1")])
def test_zero_is_not_posted(rig, amount):
    """A refund that rounds to zero (or less) is not posted."""
    success_result_of(rig.wallet.refund("s-1", "u-1", amount, "EUR"))
    assert rig.backend.called("refund") == []
