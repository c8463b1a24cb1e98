"""`sim`: a deterministic simulated market, the embedded default provider.

Everything is a pure function of (seed, symbol, clock): two providers with the
same seed and clock return identical data, and the same provider returns new
prices when its clock moves. Any syntactically valid symbol works;
`DEFAULT_UNIVERSE` symbols get evenly spread cycle phases (below).

Daily bars follow a 40-trading-day cycle per symbol so that, on every day,
some symbols show each technical signal the scanners look for:
  phases 0-31  quiet: closes jitter around an anchor, narrow ranges, low volume
               -> Bollinger Bands inside Keltner Channels (TTM squeeze on), and
               MACD hugging its signal line (crosses both ways);
  phase 32     fire: a gap of 12-15 daily sigmas on triple volume, up or down
               -> volume-price breakout/breakdown, squeeze fires;
  phases 33-39 trend in the fire's direction on raised volume, ending at the
               next cycle's anchor.
A symbol's phase is its position in DEFAULT_UNIVERSE (mod 40); fire directions
alternate by cycle and between groups of 40 symbols, so every phase and both
directions are present on any day. Every fourth group of 40 oscillates instead
(a 10-day wave, phases evenly spread), which keeps MACD crosses both ways
coming every day.

Intraday prices are a Brownian bridge from each session's open to its close,
so quotes move minute by minute during market hours (9:30-16:00 New York) and
today's daily bar is the partial session so far. Outside the session (evenings,
nights, weekends, holidays) a quote's `price` is the last close plus a small,
slow, bounded after-hours drift (`after_hours_drift`, under 0.5 %), so `make
run` shows movement at any hour; its `session_last` stays the close, so the
daily bars never change after the close. Option chains are priced with
Black-Scholes on a per-symbol implied volatility with a smile; now and then (per
symbol, expiration and hour) one near-the-money contract gets a whale trade:
volume many times its open interest, large enough to pass the old system's
whale-score threshold. `iv` is in percent, like Schwab's.

Holidays: NYSE closures from a table for 2024-2027 (including the 2025-01-09
national day of mourning) and the exchange's rules for other years
(sim_calendar.py). A weekly expiration whose Friday is a holiday moves to the
previous trading day.
"""
from __future__ import annotations

import datetime as dt
import functools
import re
import time
import zlib
from typing import Callable, Iterable, Mapping
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from ..universe import DEFAULT_UNIVERSE
from .base import Provider, ProviderError, QuoteBatch, bars_frame, chain_frame
from .sim_calendar import (EPOCH, HOLIDAY_TABLE, day_index, day_of, holidays_by_rule,  # noqa: F401 (its API)
                           is_trading_day, nyse_holidays, weekly_expirations)

NEW_YORK = ZoneInfo("America/New_York")

CYCLE, FIRE = 40, 32
SESSION_MINUTES = 390
OPEN_TIME = dt.time(9, 30)
_SYMBOL = re.compile(r"^[A-Z][A-Z0-9./]{0,9}$")

# Rough price levels of well-known symbols around REFERENCE_DAY, so the demo looks like a market;
# other symbols get a seeded level between $20 and $400.
REFERENCE_DAY = dt.date(2026, 1, 2)
_REFERENCE_INDEX = day_index(REFERENCE_DAY)
REFERENCE_PRICES = {
    "SPY": 600.0, "QQQ": 520.0, "IWM": 230.0, "DIA": 440.0, "VTI": 300.0, "VOO": 550.0,
    "AAPL": 240.0, "MSFT": 430.0, "GOOGL": 190.0, "GOOG": 192.0, "AMZN": 220.0, "META": 600.0,
    "NVDA": 140.0, "TSLA": 380.0, "PLTR": 80.0, "AMD": 125.0, "AVGO": 230.0, "TSM": 200.0,
    "CRWD": 350.0, "SNOW": 160.0, "COIN": 260.0, "HOOD": 40.0, "SOFI": 15.0, "SHOP": 105.0,
    "UBER": 65.0, "ABNB": 130.0, "DASH": 170.0, "RBLX": 60.0, "NFLX": 900.0, "JPM": 240.0,
    "V": 320.0, "MA": 530.0, "UNH": 500.0, "LLY": 780.0, "XOM": 110.0, "WMT": 90.0, "COST": 920.0,
}


# --- numerical helpers ---------------------------------------------------------

AFTER_HOURS_SETTLE_MIN = 5.0  # the close stands still this long: the last in-session quote finalises the bar
_DRIFT_PERIODS_MIN = np.array([23.0, 71.0, 197.0])


def after_hours_drift(phases: np.ndarray, minutes_after_close: float) -> float:
    """The after-hours move, as a fraction of the close: 0 until AFTER_HOURS_SETTLE_MIN after it, then a sum of
    three slow waves (periods 23, 71 and 197 minutes, phases per symbol) ramping up over 30 minutes, |x| < 0.005."""
    if minutes_after_close <= AFTER_HOURS_SETTLE_MIN:
        return 0.0
    ramp = min(1.0, (minutes_after_close - AFTER_HOURS_SETTLE_MIN) / 30.0)
    waves = np.sin(2 * np.pi * minutes_after_close / _DRIFT_PERIODS_MIN + phases).sum() / 3
    return float(0.0045 * ramp * waves)

def _norm_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7)."""
    z = np.abs(x) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
                                                                           + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * (1.0 + np.sign(x) * erf)


def _black_scholes(spot, strikes, iv, t, rate=0.04):
    """Call and put values and the call delta (iv as a fraction, t in years)."""
    d1 = (np.log(spot / strikes) + (rate + iv ** 2 / 2) * t) / (iv * np.sqrt(t))
    d2 = d1 - iv * np.sqrt(t)
    discounted = strikes * np.exp(-rate * t)
    call = spot * _norm_cdf(d1) - discounted * _norm_cdf(d2)
    put = discounted * _norm_cdf(-d2) - spot * _norm_cdf(-d1)
    return call, put, _norm_cdf(d1)


def _strike_step(price: float) -> float:
    for limit, step in ((25, 0.5), (100, 1.0), (250, 2.5), (1000, 5.0)):
        if price < limit:
            return step
    return 10.0


_PROFILE = 1.0 + 1.5 * np.linspace(-1, 1, SESSION_MINUTES) ** 2  # U-shaped intraday volume
_CUM_PROFILE = np.concatenate([[0.0], np.cumsum(_PROFILE) / _PROFILE.sum()])


class SimProvider(Provider):
    """Deterministic simulated market. `clock()` returns an aware datetime (default: now, UTC)."""

    name = "sim"

    def __init__(self, *, seed: int = 0, clock: Callable[[], dt.datetime] | None = None,
                 universe: Iterable[str] = DEFAULT_UNIVERSE,
                 failing: Mapping[str, str] | Iterable[str] | None = None, hang: Iterable[str] = ()):
        if seed < 0:
            raise ValueError("seed must be >= 0")
        self.seed = int(seed)
        self._clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self._order = {s: i for i, s in enumerate(universe)}
        self.failing = (dict(failing) if isinstance(failing, Mapping)
                        else dict.fromkeys(failing or (), "simulated upstream failure"))
        self.hang = frozenset(hang)  # calls for these never return: the 27-hour incident, on demand
        self._params = functools.lru_cache(maxsize=1024)(self._symbol_params)
        self._path = functools.lru_cache(maxsize=1024)(self._session_path)
        self._block = functools.lru_cache(maxsize=4096)(self._noise_block)
        self._day = functools.lru_cache(maxsize=4096)(lambda sym, i: self._daily(sym, i, i))

    # -- time -----------------------------------------------------------------

    def _now(self) -> tuple[dt.date, int, int]:
        """(today in New York, index of the latest session started, minutes into it)."""
        now = self._clock().astimezone(NEW_YORK)
        today = now.date()
        minute = (now.hour * 60 + now.minute) - (OPEN_TIME.hour * 60 + OPEN_TIME.minute)
        if is_trading_day(today) and minute >= 0:
            return today, day_index(today), min(minute, SESSION_MINUTES)
        return today, day_index(today) - 1, SESSION_MINUTES

    def _minutes_after_close(self, index: int) -> float:
        """Minutes since session `index` closed at 16:00 New York (0 while it is still open)."""
        day = pd.Timestamp(day_of(np.array([index]))[0]).date()
        close = dt.datetime.combine(day, dt.time(16, 0), NEW_YORK)
        return max(0.0, (self._clock() - close).total_seconds() / 60)

    # -- the daily model -------------------------------------------------------

    def _rng(self, symbol: str, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(symbol.encode()), *key])

    def _symbol_params(self, symbol: str) -> dict:
        rng = self._rng(symbol, 0)
        position = self._order.get(symbol, zlib.crc32(symbol.encode()))
        group = position // CYCLE
        cycler = group % 4 != 3  # every fourth group of 40 oscillates instead (MACD crosses)
        sigma = rng.uniform(0.003, 0.006)
        scale = (1.0 + rng.uniform(-0.25, 0.25) * np.array([1.0, -1.0]))  # up, down
        sizes = rng.uniform(0.85, 1.25, 600) * cycler
        rank = group - group // 4  # among cycler groups: alternate directions between them
        direction = np.where((np.arange(600) + rank) % 2 == 0, 1.0, -1.0)
        jump = sigma * rng.uniform(12.0, 15.0) * sizes * np.where(direction > 0, *scale)
        trend = sigma * rng.uniform(2.0, 3.0) * sizes * np.where(direction > 0, *scale)
        moves = direction * (jump + trend * (CYCLE - 1 - FIRE))
        anchors = np.concatenate([[0.0], np.cumsum(moves)[:-1]])
        # Level the walk so that around REFERENCE_DAY the symbol trades near a believable price
        # (its own rough level if known). A constant factor changes no signal: every indicator
        # here compares prices with prices of the same symbol.
        anchors += np.log(self._reference_price(symbol)) - anchors[(_REFERENCE_INDEX + position % CYCLE) // CYCLE]
        wave, period = (sigma * rng.uniform(0.8, 1.2), rng.uniform(10, 16)) if cycler else \
            (4 * sigma, 10.0)
        return {"phase": position % CYCLE, "cycler": cycler, "sigma": sigma,
                "range": sigma * rng.uniform(2.4, 3.0),
                "volume": np.exp(rng.uniform(np.log(2e6), np.log(6e7))), "direction": direction,
                "jump": jump, "trend": trend, "anchors": anchors, "wave": wave, "period": period,
                "wave_phase": 2 * np.pi * (position % CYCLE) / CYCLE}

    def _reference_price(self, symbol: str) -> float:
        known = REFERENCE_PRICES.get(symbol)
        return known if known else float(np.exp(self._rng(symbol, 7).uniform(np.log(20), np.log(400))))

    def _noise_block(self, symbol: str, block: int) -> np.ndarray:
        return self._rng(symbol, 1, block).standard_normal((4, 256))

    def _noise(self, symbol: str, lo: int, hi: int) -> np.ndarray:
        blocks = range(lo // 256, hi // 256 + 1)
        z = np.concatenate([self._block(symbol, b) for b in blocks], axis=1)
        start = lo - blocks[0] * 256
        return z[:, start:start + hi - lo + 1]

    def _daily(self, symbol: str, lo: int, hi: int) -> dict[str, np.ndarray]:
        """Log-price OHLC and volume for trading-day indices lo..hi (final session values)."""
        p = self._params(symbol)
        n = np.arange(lo - 1, hi + 1)
        z_close, z_range, z_open, z_vol = self._noise(symbol, lo - 1, hi)
        cycle, phase = np.divmod(n + p["phase"], CYCLE)
        d, jump, trend = p["direction"][cycle], p["jump"][cycle], p["trend"][cycle]
        quiet = (phase < FIRE) | (not p["cycler"])
        fire = (phase == FIRE) & p["cycler"]
        shift = np.where(quiet, 0.0, d * (jump + trend * np.maximum(phase - FIRE, 0)))
        wave = p["wave"] * np.sin(2 * np.pi * n / p["period"] + p["wave_phase"])
        close = (p["anchors"][cycle] + shift + wave
                 + p["sigma"] * np.where(quiet | fire, 1.0, 1.5) * z_close)
        prev = close[:-1]
        close = close[1:]
        quiet, fire, phase = quiet[1:], fire[1:], phase[1:]
        open_ = prev + np.where(fire, 0.6, 0.3) * (close - prev) + 0.1 * p["sigma"] * z_open[1:]
        width = p["range"] * np.clip(1 + 0.25 * z_range[1:], 0.5, 1.6) * np.where(
            fire, 2.5, np.where(quiet, 1.0, 1.6))
        high = np.maximum(open_, close) + 0.5 * width
        low = np.minimum(open_, close) - 0.5 * width
        boost = np.where(fire, 3.0, np.where(quiet, 0.85, 1.0 + 0.1 * (CYCLE - phase)))
        volume = p["volume"] * boost * np.exp(0.25 * z_vol[1:])
        return {"open": open_, "high": high, "low": low, "close": close, "prev": prev,
                "volume": volume}

    def _session_path(self, symbol: str, index: int) -> np.ndarray:
        """Log price at each minute 0..390 of session `index`: a bridge from open to close."""
        day = self._day(symbol, index)
        o, c, h, l_ = (day[k][0] for k in ("open", "close", "high", "low"))
        steps = self._rng(symbol, 2, index).standard_normal(SESSION_MINUTES)
        walk = np.concatenate([[0.0], np.cumsum(steps)])
        bridge = walk - np.linspace(0, 1, SESSION_MINUTES + 1) * walk[-1]
        path = o + (c - o) * np.linspace(0, 1, SESSION_MINUTES + 1) + (h - l_) * 0.04 * bridge
        return np.clip(path, l_, h)

    def _hang_if_told(self, symbols) -> None:
        """A call touching a symbol of `hang` never returns and never raises: only a kill ends it."""
        if self.hang.intersection(symbols):
            while True:
                time.sleep(3600)

    def _check(self, symbol: str) -> str:
        self._hang_if_told([symbol])
        if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
            raise ProviderError(f"sim: {symbol!r} is not a valid symbol", symbol=str(symbol))
        if symbol in self.failing:
            raise ProviderError(f"sim: {symbol} is configured to fail: {self.failing[symbol]}",
                                symbol=symbol)
        return symbol

    # -- the Provider interface -------------------------------------------------

    def quotes(self, symbols, *, timeout=None) -> QuoteBatch:
        symbols = list(dict.fromkeys([symbols] if isinstance(symbols, str) else symbols))
        self._hang_if_told(symbols)
        _, index, minute = self._now()
        after_close = self._minutes_after_close(index) if minute == SESSION_MINUTES else 0.0
        rows, errors = {}, {}
        for symbol in symbols:
            try:
                self._check(symbol)
            except ProviderError as exc:
                errors[symbol] = str(exc)
                continue
            day = self._day(symbol, index)
            path = np.exp(self._path(symbol, index)[:minute + 1])
            drift = after_hours_drift(self._rng(symbol, 4).uniform(0, 2 * np.pi, 3), after_close)
            price = float(path[-1]) * (1 + drift)
            prev = float(np.exp(day["prev"][0]))
            rows[symbol] = {"price": round(price, 2), "daily_change": round(price - prev, 4),
                            "daily_change_pct": round((price / prev - 1) * 100, 4),
                            "volume": int(day["volume"][0] * _CUM_PROFILE[minute]),
                            "open": round(float(path[0]), 4), "high": round(float(path.max()), 4),
                            "low": round(float(path.min()), 4), "session_last": round(float(path[-1]), 4),
                            "session": str(day_of(np.array([index]))[0])}
        return QuoteBatch.build(rows, errors)

    def daily_bars(self, symbol, days=365, *, timeout=None) -> pd.DataFrame:
        self._check(symbol)
        if days < 1:
            raise ValueError("days must be >= 1")
        today, index, minute = self._now()
        lo = min(day_index(today - dt.timedelta(days=days)), index)
        bars = self._daily(symbol, lo, index)
        ohlc = {k: np.exp(bars[k]) for k in ("open", "high", "low", "close")}
        volume = bars["volume"].copy()
        if minute < SESSION_MINUTES:  # today's bar is the session so far
            path = np.exp(self._path(symbol, index)[:minute + 1])
            ohlc["high"][-1], ohlc["low"][-1], ohlc["close"][-1] = path.max(), path.min(), path[-1]
            volume[-1] *= _CUM_PROFILE[minute]
        dates = pd.DatetimeIndex(day_of(np.arange(lo, index + 1)).astype("datetime64[ns]"),
                                 name="date")
        return bars_frame(dates, ohlc["open"].round(4), ohlc["high"].round(4),
                          ohlc["low"].round(4), ohlc["close"].round(4), volume.round())

    def intraday_bars(self, symbol, minutes=5, days=1, *, timeout=None) -> pd.DataFrame:
        self._check(symbol)
        if minutes not in (1, 5, 10, 15, 30) or not 1 <= days <= 10:
            raise ValueError("minutes must be 1, 5, 10, 15 or 30 and days 1..10")
        _, index, minute = self._now()
        frames = []
        for session in range(index - days + 1, index + 1):
            upto = minute if session == index else SESSION_MINUTES
            if upto == 0:
                continue
            path = np.exp(self._path(symbol, session)[:upto + 1])
            starts = np.arange(0, upto, minutes)
            ends = np.minimum(starts + minutes, upto)
            vol = self._day(symbol, session)["volume"][0]
            day = pd.Timestamp(day_of(np.array([session]))[0]).date()
            opening = pd.Timestamp(dt.datetime.combine(day, OPEN_TIME), tz=NEW_YORK)
            frames.append(bars_frame(
                pd.DatetimeIndex(opening + pd.to_timedelta(starts, unit="min"), name="datetime"),
                path[starts].round(4), [path[s:e + 1].max().round(4) for s, e in zip(starts, ends)],
                [path[s:e + 1].min().round(4) for s, e in zip(starts, ends)], path[ends].round(4),
                (vol * (_CUM_PROFILE[ends] - _CUM_PROFILE[starts])).round()))
        return pd.concat(frames) if frames else bars_frame(
            pd.DatetimeIndex([], tz=NEW_YORK, name="datetime"), [], [], [], [], [])

    def expirations(self, symbol, count=4, *, timeout=None) -> list[dt.date]:
        self._check(symbol)
        return weekly_expirations(self._now()[0], count)

    def option_chain(self, symbol, expiration, strike_band_pct=5.0, *, timeout=None):
        self._check(symbol)
        today, index, minute = self._now()
        if expiration < today:
            raise ProviderError(f"sim: {symbol} {expiration} has already expired", symbol=symbol)
        p = self._params(symbol)
        spot = float(np.exp(self._path(symbol, index)[minute]))
        reference = float(np.exp(self._day(symbol, index)["prev"][0]))
        step = _strike_step(reference)  # a strike grid fixed for the day, whatever spot does
        grid = np.arange(np.floor(reference * 0.5 / step), np.ceil(reference * 1.5 / step) + 1)
        strikes = grid * step
        rng = self._rng(symbol, 3, expiration.toordinal(), index)
        base_oi = rng.uniform(0.5, 1.5, (2, grid.size))
        activity = rng.uniform(0.01, 0.5, (2, grid.size))
        keep = np.abs(strikes / spot - 1) <= strike_band_pct / 100
        dte = (expiration - today).days
        t = max(dte, 0.25) / 365
        moneyness = np.log(strikes / spot)
        iv = np.minimum(p["sigma"] * 100 * (1 + 2.0 * moneyness ** 2 / max(t, 0.02)),
                        3 * p["sigma"] * 100)  # a smile around an annual vol of sigma * 100
        call, put, call_delta = _black_scholes(spot, strikes, iv, t)
        oi_scale = p["volume"] / 2000 * np.exp(-(moneyness / 0.06) ** 2)
        elapsed = min(1.0, 0.1 + minute / SESSION_MINUTES)
        kept = np.flatnonzero(keep)
        parts = []
        for side, (kind, value, delta) in enumerate((("CALL", call, call_delta),
                                                     ("PUT", put, call_delta - 1))):
            oi = np.round(oi_scale * base_oi[side]).astype(np.int64) + 10
            mid = np.maximum(value, 0.01)
            spread = np.maximum(0.01, 0.04 * mid + 0.01)
            bid = np.maximum(np.round(mid - spread / 2, 2), 0.0)
            ask = np.round(bid + spread, 2) + 0.01 * (bid == 0)
            part = {"strike": strikes, "bid": bid, "ask": ask, "last": np.round(mid, 2),
                    "mark": np.round((bid + ask) / 2, 3),
                    "volume": np.round(oi * activity[side] * elapsed).astype(np.int64),
                    "open_interest": oi, "delta": np.round(delta, 4), "iv": np.round(iv * 100, 2)}
            part = {name: values[kept] for name, values in part.items()}
            part["type"] = np.full(kept.size, kind, dtype=object)
            parts.append(part)
        columns = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        rows = len(columns["type"])
        columns.update(expiry=np.full(rows, expiration, dtype=object), dte=np.full(rows, dte),
                       underlying_price=np.full(rows, round(spot, 2)))
        chain = chain_frame(columns)
        self._inject_whale(symbol, expiration, index, minute, spot, p["volume"], chain)
        return chain

    def _inject_whale(self, symbol, expiration, index, minute, spot, day_volume, chain):
        """Now and then (per symbol, expiry and hour) one near-the-money contract trades big:
        volume far above open interest, sized to pass the old system's whale score."""
        rng = self._rng(symbol, 4, expiration.toordinal(), index, minute // 60)
        near = np.flatnonzero((np.abs(chain["strike"].to_numpy() / spot - 1) <= 0.03)
                              & (np.abs(chain["delta"].to_numpy()) > 0.05))
        if rng.random() > 0.3 or near.size == 0:
            return
        row = near[rng.integers(near.size)]
        oi, delta, iv = (chain.at[row, k] for k in ("open_interest", "delta", "iv"))
        needed = np.sqrt(150 * oi * day_volume / (abs(delta) * iv / 100 * 1e5))
        chain.at[row, "volume"] = int(max(oi * rng.uniform(4, 20), needed * rng.uniform(1.1, 2)))
