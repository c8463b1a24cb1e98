"""Black-Scholes (European, no dividends) on arrays: prices and Greeks, the one definition every part uses.

The simulated market prices its chains with it, the Yahoo provider computes the Greeks Yahoo does not
send with it, and the market-structure computations re-price gamma with it (workers/structure/).

    d1 = (ln(S/K) + (r + sigma^2/2) T) / (sigma sqrt T),   d2 = d1 - sigma sqrt T
    call = S N(d1) - K e^(-rT) N(d2),     put = K e^(-rT) N(-d2) - S N(-d1)
    delta: call N(d1), put N(d1) - 1
    gamma = phi(d1) / (S sigma sqrt T)                               (per $1 of the underlying, per share)
    theta: call -S phi(d1) sigma / (2 sqrt T) - r K e^(-rT) N(d2)
           put  -S phi(d1) sigma / (2 sqrt T) + r K e^(-rT) N(-d2)  / 365 (per calendar day, $ per share)
    vega  = S phi(d1) sqrt T / 100                                   (per 1 volatility point, $ per share)

These are the units Schwab reports its gamma, theta and vega in. `sigma` is a fraction (0.25 = 25 %;
chains carry `iv` in percent), `years` calendar time to expiry in 365-day years (`years_to_expiry`),
`rate` RISK_FREE_RATE (4 % a year, continuously compounded, a fixed assumption near short US Treasury
yields). Where sigma, the strike, spot or T is not a positive number every output is NaN.
"""
from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd

RISK_FREE_RATE = 0.04
NEW_YORK = "America/New_York"
MIN_YEARS = 3600.0 / (365 * 86400)  # one hour: an expiring contract still has a little time value
_ERFC = np.vectorize(math.erfc, otypes=[float])
_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def norm_cdf(x) -> np.ndarray:
    """The standard normal CDF, exact to double precision (math.erfc); NaN stays NaN."""
    x = np.asarray(x, dtype=float)
    out = np.full(x.shape, np.nan)
    finite = ~np.isnan(x)
    out[finite] = 0.5 * _ERFC(-x[finite] / _SQRT2)
    return out


def norm_pdf(x) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return _INV_SQRT_2PI * np.exp(-0.5 * x * x)


def years_to_expiry(now, expiration) -> float:
    """Calendar years from `now` (aware) to 16:00 New York on `expiration` (365-day years), >= one hour."""
    close = pd.Timestamp(dt.datetime.combine(pd.Timestamp(expiration).date(), dt.time(16, 0)), tz=NEW_YORK)
    return max((close - pd.Timestamp(now)).total_seconds() / (365 * 86400), MIN_YEARS)


def _inputs(spot, strike, sigma, years):
    spot, strike, sigma, years = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (spot, strike, sigma,
                                                                                             years)))
    valid = (np.isfinite(spot) & (spot > 0) & np.isfinite(strike) & (strike > 0) & np.isfinite(sigma)
             & (sigma > 0) & np.isfinite(years) & (years > 0))
    one = np.ones(spot.shape)
    return (np.where(valid, spot, one), np.where(valid, strike, one), np.where(valid, sigma, one),
            np.where(valid, years, one), valid)


def d1_of(spot, strike, sigma, years, rate=RISK_FREE_RATE):
    root = sigma * np.sqrt(years)
    return (np.log(spot / strike) + (rate + sigma * sigma / 2) * years) / root


def gamma(spot, strike, sigma, years, rate=RISK_FREE_RATE) -> np.ndarray:
    """Black-Scholes gamma alone (the same for a call and a put): phi(d1) / (S sigma sqrt T); NaN where invalid."""
    s, k, v, t, valid = _inputs(spot, strike, sigma, years)
    out = norm_pdf(d1_of(s, k, v, t, rate)) / (s * v * np.sqrt(t))
    return np.where(valid, out, np.nan)


def greeks(is_call, spot, strike, sigma, years, rate=RISK_FREE_RATE) -> dict[str, np.ndarray]:
    """{price, delta, gamma, theta, vega} of each contract (module docstring for the units)."""
    is_call = np.asarray(is_call, dtype=bool)
    s, k, v, t, valid = _inputs(spot, strike, sigma, years)
    is_call = np.broadcast_to(is_call, s.shape)
    root_t = np.sqrt(t)
    d1 = d1_of(s, k, v, t, rate)
    d2 = d1 - v * root_t
    n_d1, n_d2, pdf = norm_cdf(d1), norm_cdf(d2), norm_pdf(d1)
    discounted = k * np.exp(-rate * t)
    call = s * n_d1 - discounted * n_d2
    put = call - s + discounted  # put-call parity: the same model, without a second rounding path
    decay = -s * pdf * v / (2 * root_t)
    out = {
        "price": np.where(is_call, call, put),
        "delta": np.where(is_call, n_d1, n_d1 - 1.0),
        "gamma": pdf / (s * v * root_t),
        "theta": np.where(is_call, decay - rate * discounted * n_d2, decay + rate * discounted * (1.0 - n_d2)) / 365,
        "vega": s * pdf * root_t / 100,
    }
    return {name: np.where(valid, values, np.nan) for name, values in out.items()}
