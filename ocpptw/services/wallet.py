# -*- test-case-name: tests.services.test_wallet -*-
"""
Money going back to drivers: the refund of a session's unused prepayment
(C{POST /api/wallet/refund}).
"""

from __future__ import annotations

from decimal import Decimal

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from ocpptw.interfaces import IBackend, IWalletService
from ocpptw.services.billing import ZERO, money_str, round_money


@implementer(IWalletService)
class WalletService:
    """
    Refunds through the backend.  The C{idempotencyKey} is the sessionId,
    so retries (the outbox retries until the backend answers) refund once.
    """

    def __init__(self, backend: IBackend) -> None:
        self._backend = backend

    def refund(self, session_id: str, user_id: str, amount: Decimal, currency: str) -> Deferred[None]:
        """
        Refund C{amount} (rounded half-up to cents) for C{session_id}; a
        zero or negative amount is not posted.
        """
        cents = round_money(amount)
        if cents <= ZERO:
            return succeed(None)
        body = {
            "sessionId": session_id,
            "userId": user_id,
            "amount": money_str(cents),
            "currency": currency,
            "idempotencyKey": session_id,
        }
        return self._backend.refund(body).addCallback(lambda _: None)
