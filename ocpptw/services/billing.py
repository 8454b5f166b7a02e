# -*- test-case-name: tests.services.test_billing -*-
"""
Money for charging sessions, in L{Decimal} and nothing else (docs/contract.md
section 3, "Billing on StopTransaction").

    energyWh = meterStop - meterStart
    cost     = energyWh / 1000 * pricePerKwh, rounded half-up to 2 places
    refund   = max(0, prepaidAmount - cost)

A meter that runs backwards (C{meterStop < meterStart}) is an anomaly:
energy 0, cost 0, so the driver is never charged for it.  So is a difference
larger than L{MAX_ENERGY_WH} (the largest signed 64-bit integer): each
reading fits, but together they are garbage no store can hold.  Money travels as
decimal strings with two places (C{"6.29"}); numbers are accepted on input,
and a float goes through C{str()} first so that C{0.1} stays C{0.1}.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
ZERO = Decimal("0.00")

#: The largest energy a session can have, Wh; more is an anomaly (signed 64 bits).
MAX_ENERGY_WH = 2**63 - 1


def money(value: object) -> Decimal:
    """
    An amount from JSON as a L{Decimal}.

    @param value: a decimal string (C{"6.29"}), an C{int}, a C{float} (read
        through C{str()}, so C{0.1} is exactly C{0.1}) or a L{Decimal}.
    @raise ValueError: for anything else, for text that is not a number,
        and for infinities and NaN.
    """
    if isinstance(value, bool):
        raise ValueError(f"not an amount: {value!r}")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        amount = Decimal(str(value))
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not an amount: {value!r}") from None
    else:
        raise ValueError(f"not an amount: {value!r}")
    if not amount.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    return amount


def round_money(amount: Decimal) -> Decimal:
    """
    C{amount} rounded half-up to cents.
    """
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def money_str(amount: Decimal) -> str:
    """
    The wire form of an amount: two places, half-up (C{"6.29"}).
    """
    return str(round_money(amount))


def session_cost(meter_start: int, meter_stop: int, price_per_kwh: Decimal) -> tuple[int, Decimal, bool]:
    """
    Energy and cost of one session.

    @param meter_start: the meter at StartTransaction, Wh.
    @param meter_stop: the meter at StopTransaction, Wh.
    @param price_per_kwh: the tariff.
    @return: C{(energy_wh, cost, anomaly)}; C{anomaly} is true when the
        meter ran backwards or the energy exceeds L{MAX_ENERGY_WH}, and then
        energy and cost are zero.
    """
    energy_wh = int(meter_stop) - int(meter_start)
    if energy_wh < 0 or energy_wh > MAX_ENERGY_WH:
        return 0, ZERO, True
    cost = round_money(Decimal(energy_wh) / Decimal(1000) * money(price_per_kwh))
    return energy_wh, cost, False


def refund_amount(prepaid: Decimal, cost: Decimal) -> Decimal:
    """
    What goes back to the driver: C{max(0, prepaid - cost)}, in cents.
    """
    return max(ZERO, round_money(money(prepaid) - money(cost)))
