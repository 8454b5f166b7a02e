"""
Tests for L{ocpptw.services.billing}: cost and refund to the cent.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocpptw.services.billing import money, money_str, refund_amount, session_cost


def test_contract_example():
    """12,580 Wh at 0.50/kWh costs 6.29; a 10.00 prepayment refunds 3.71."""
    energy, cost, anomaly = session_cost(1000, 13580, Decimal("0.50"))
    assert (energy, cost, anomaly) == (12580, Decimal("6.29"), False)
    assert refund_amount(Decimal("10.00"), cost) == Decimal("3.71")
    assert money_str(cost) == "6.29"


def test_half_up_where_half_even_rounds_down():
    """1,005 Wh at 0.50 is 0.5025 -> 0.50; 250 Wh at 0.50 is exactly 0.125 -> 0.13, where half-even says 0.12."""
    assert session_cost(0, 1005, Decimal("0.5"))[1] == Decimal("0.50")
    # exactly x.xx5: half-up gives 0.13, half-even gives 0.12
    exact = Decimal(250) / 1000 * Decimal("0.5")
    assert exact == Decimal("0.125")
    assert exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN) == Decimal("0.12")
    assert session_cost(0, 250, Decimal("0.5"))[1] == Decimal("0.13")


def test_float_arithmetic_would_lose_the_cent():
    """2,675 Wh at 1.00/kWh is 2.675 -> 2.68; float rounding gives 2.67."""
    assert round(2675 / 1000 * 1.0, 2) == 2.67
    assert session_cost(0, 2675, money(1.0))[1] == Decimal("2.68")
    assert session_cost(0, 2675, money("1"))[1] == Decimal("2.68")


def test_meter_running_backwards_is_an_anomaly():
    """meterStop below meterStart: energy 0, cost 0, flagged."""
    assert session_cost(5000, 4000, Decimal("0.30")) == (0, Decimal("0.00"), True)


def test_refund_never_negative():
    """A cost above the prepayment refunds zero."""
    assert refund_amount(Decimal("5.00"), Decimal("6.29")) == Decimal("0.00")
    assert refund_amount(Decimal("6.29"), Decimal("6.29")) == Decimal("0.00")


@pytest.mark.parametrize(
    "value, expected",
    [("6.29", Decimal("6.29")), (6, Decimal("6")), (0.1, Decimal("0.1")), (" 1.005 ", Decimal("1.005"))],
)
def test_money_reads_json_amounts(value, expected):
    """Strings, ints and floats (through str) become exact Decimals."""
    assert money(value) == expected


@pytest.mark.parametrize("value", ["abc", None, True, float("nan"), "Infinity", [1]])
def test_money_refuses_non_amounts(value):
    """Anything that is not a finite number is refused."""
    with pytest.raises(ValueError):
        money(value)


def test_money_str_half_up():
    """The wire form has two places, rounded half-up."""
    assert money_str(Decimal("0.125")) == "0.13"
    assert money_str(Decimal("3")) == "3.00"


@given(
    st.integers(0, 10**9),
    st.integers(0, 10**6),
    st.decimals(min_value=0, max_value=100, places=4),
)
def test_cost_matches_exact_rational_rounding(start, energy, price):
    """For any input the cost is the exact rational value rounded half-up to cents."""
    _, cost, anomaly = session_cost(start, start + energy, price)
    exact_cents = Fraction(energy) * Fraction(price) * 100 / 1000
    cents = math.floor(exact_cents + Fraction(1, 2))
    assert not anomaly
    assert cost == Decimal(cents) / 100
