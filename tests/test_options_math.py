"""Black-Scholes: hand-worked values, a per-contract scalar implementation, and the simulated market's
chains (every Greek equal to Black-Scholes from the contract's own iv; no contract of absurd size)."""
import datetime as dt
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from workers import options_math
from workers.providers.sim import SimProvider
from workers.universe import WHALE_SYMBOLS


def scalar_greeks(is_call, s, k, sigma, t, r=0.04):
    """One contract, straight from the textbook formulas (math.erf), for comparison."""
    cdf = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    pdf = math.exp(-0.5 * ((math.log(s / k) + (r + sigma ** 2 / 2) * t) / (sigma * math.sqrt(t))) ** 2) / math.sqrt(
        2 * math.pi)
    d1 = (math.log(s / k) + (r + sigma ** 2 / 2) * t) / (sigma * math.sqrt(t))
    d2 = d1 - sigma * math.sqrt(t)
    if is_call:
        price = s * cdf(d1) - k * math.exp(-r * t) * cdf(d2)
        delta = cdf(d1)
        theta = -s * pdf * sigma / (2 * math.sqrt(t)) - r * k * math.exp(-r * t) * cdf(d2)
    else:
        price = k * math.exp(-r * t) * cdf(-d2) - s * cdf(-d1)
        delta = cdf(d1) - 1
        theta = -s * pdf * sigma / (2 * math.sqrt(t)) + r * k * math.exp(-r * t) * cdf(-d2)
    return {"price": price, "delta": delta, "gamma": pdf / (s * sigma * math.sqrt(t)), "theta": theta / 365,
            "vega": s * pdf * math.sqrt(t) / 100}


def test_hand_worked_at_the_money_year_contract():
    # S = K = 100, sigma 20 %, T = 1, r = 4 %: d1 = 0.3, d2 = 0.1, N(0.3) = 0.617911, N(0.1) = 0.539828,
    # phi(0.3) = 0.381388; call = 61.7911 - 96.0789 x 0.539828 = 9.9251; put by parity = 9.9251 - 100 + 96.0789
    call = options_math.greeks(True, 100.0, 100.0, 0.2, 1.0)
    put = options_math.greeks(False, 100.0, 100.0, 0.2, 1.0)
    assert call["price"] == pytest.approx(9.9251, abs=1e-4) and put["price"] == pytest.approx(6.0040, abs=1e-4)
    assert call["delta"] == pytest.approx(0.617911, abs=1e-6) and put["delta"] == pytest.approx(-0.382089, abs=1e-6)
    assert call["gamma"] == put["gamma"] == pytest.approx(0.381388 / 20, abs=1e-7)
    assert call["vega"] == put["vega"] == pytest.approx(0.381388, abs=1e-6)
    # theta per day: (-100 x 0.381388 x 0.2 / 2 - 0.04 x 96.0789 x 0.539828) / 365
    assert call["theta"] == pytest.approx((-3.81388 - 2.07465) / 365, abs=1e-6)
    assert put["theta"] == pytest.approx((-3.81388 + 1.76852) / 365, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(is_call=st.booleans(), s=st.floats(1, 2000), moneyness=st.floats(0.5, 1.5), sigma=st.floats(0.03, 2.5),
       t=st.floats(1e-3, 3))
def test_arrays_equal_the_scalar_textbook_formulas(is_call, s, moneyness, sigma, t):
    k = s * moneyness
    got = options_math.greeks(is_call, s, k, sigma, t)
    for name, value in scalar_greeks(is_call, s, k, sigma, t).items():
        assert float(got[name]) == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert float(options_math.gamma(s, k, sigma, t)) == pytest.approx(float(got["gamma"]), rel=1e-12)


def test_invalid_inputs_give_nan_not_an_error():
    out = options_math.greeks([True, False, True], [100.0, 100.0, 0.0], [100.0, -1.0, 100.0],
                              [np.nan, 0.2, 0.2], [0.5, 0.5, 0.5])
    assert all(np.isnan(v).all() for v in out.values())


def test_years_to_expiry_counts_to_the_close_in_new_york_and_at_least_an_hour():
    now = dt.datetime(2026, 3, 27, 14, 0, tzinfo=dt.timezone.utc)  # 10:00 New York (EDT)
    assert options_math.years_to_expiry(now, dt.date(2026, 3, 27)) == pytest.approx(6 / (365 * 24))
    assert options_math.years_to_expiry(now + dt.timedelta(hours=7), dt.date(2026, 3, 27)) == options_math.MIN_YEARS


# -- the simulated market's chains ---------------------------------------------------------

MIDDAY = dt.datetime(2026, 11, 25, 18, 0, tzinfo=dt.timezone.utc)  # a Wednesday, 1 pm in New York


def test_every_simulated_contract_is_black_scholes_from_its_own_reported_iv():
    sim = SimProvider(seed=3, clock=lambda: MIDDAY)
    for symbol in ("SPY", "AAPL", "NVDA"):
        for expiry in sim.expirations(symbol, 4):
            chain = sim.option_chain(symbol, expiry, 10.0)
            years = options_math.years_to_expiry(MIDDAY, expiry)
            for row in chain.itertuples(index=False):
                want = scalar_greeks(row.type == "CALL", row.underlying_price, row.strike, row.iv / 100, years)
                for greek in ("delta", "gamma", "theta", "vega"):
                    assert getattr(row, greek) == pytest.approx(want[greek], rel=1e-9, abs=1e-12), (symbol, greek)
                value = max(want["price"], 0.01)  # quoted around the model's value
                assert row.bid <= value + 0.01 and row.ask >= value - 0.01


def test_simulated_chains_have_an_equity_skew_and_sane_sizes_at_every_hour():
    """Puts dearer than calls on the index ETFs; no contract traded for more than $25M a day (the
    old sim once showed $423M on one DIA put); open interest of believable size."""
    for hour in (14, 16, 18, 20):  # 10:00 to 16:00 New York
        sim = SimProvider(seed=0, clock=lambda: MIDDAY.replace(hour=hour))
        for symbol in WHALE_SYMBOLS:
            for expiry in sim.expirations(symbol, 5):
                chain = sim.option_chain(symbol, expiry, 10.0)
                notional = chain["volume"] * chain["mark"] * 100
                assert notional.max() <= 25e6, (symbol, expiry, hour, notional.max())
                assert chain["open_interest"].max() <= 100_000
        spy = sim.option_chain("SPY", sim.expirations("SPY", 4)[3], 10.0)
        spot = spy["underlying_price"].iloc[0]
        below, above = spy[spy["strike"] < spot * 0.97], spy[spy["strike"] > spot * 1.03]
        assert below["iv"].mean() > above["iv"].mean() + 2  # volatility points


def test_an_expiration_that_does_not_exist_is_refused_naming_it():
    sim = SimProvider(seed=0, clock=lambda: MIDDAY)
    with pytest.raises(Exception, match="no expiration on 2026-12-02"):
        sim.option_chain("SPY", dt.date(2026, 12, 2))  # a Wednesday
