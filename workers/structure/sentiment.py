"""Market sentiment (GET /api/market_sentiment): SPY and QQQ over their next expirations.

`sentiment(prepared, skew, histories)` gives one row per symbol (SENTIMENT_FIELDS) from its contracts
(contracts.prepare(), the symbol's next `expirations` chains), its chains' skew rows (skew.py: their
ATM IV) and its stored daily ATM IV history. The old service's definitions, with three made sound:

- price: spot; total_call_volume, total_put_volume, total_call_oi, total_put_oi; pc_volume_ratio and
  pc_oi_ratio = puts / calls (None when no call traded or is open: the old 0 read as "very bullish");
- call_gamma, put_gamma: the calls' and puts' gamma exposure, each contract's gamma x OI x 100 x S^2 x
  0.01 summed, both >= 0 as the old service gave them; net_gamma = call_gamma - put_gamma;
- avg_iv: the mean IV (percent) of every contract with an IV > 0 (what the old `iv_rank` was, times
  100 once too often: the old value was in hundredths of a percent);
- atm_iv (new): the 30-day at-the-money IV: each expiration's ATM IV (skew.py) as total variance
  iv^2 x T, interpolated linearly in T to 30 days (the nearest expiration's when 30 days is outside);
- iv_rank: a true IV rank: (today's atm_iv - its lowest) / (highest - lowest) x 100 over the stored
  daily history (the last 252 days, today included); None until IV_RANK_MIN_DAYS (20) days exist, or
  when the history is flat. iv_history_days says how many exist;
- sentiment_score, 0..100 = 0.4 x volume part + 0.3 x OI part + 0.3 x gamma part, where a ratio part
  is clip((1.2 - ratio) x 100, 0, 100) (0.8 -> 40, 0.5 -> 70; no calls but puts -> 0; neither -> 50)
  and the gamma part is 50 + 50 x net_gamma / (call_gamma + put_gamma) (50 with no gamma). The old
  part, 50 + 50 x net / |net + 1|, was in dollars: 0 or 100 by the sign of net gamma alone;
- sentiment_label: >= 65 BULLISH, >= 55 SLIGHTLY_BULLISH, >= 45 NEUTRAL, >= 35 SLIGHTLY_BEARISH, else
  BEARISH; data_quality by total volume: < 1,000 LOW, < 10,000 MEDIUM, else HIGH; expirations: how many
  chains it read.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Optional

import numpy as np
import pandas as pd

SENTIMENT_FIELDS = ("symbol", "price", "total_call_volume", "total_put_volume", "pc_volume_ratio", "total_call_oi",
                    "total_put_oi", "pc_oi_ratio", "call_gamma", "put_gamma", "net_gamma", "avg_iv", "atm_iv",
                    "iv_rank", "iv_history_days", "sentiment_score", "sentiment_label", "data_quality",
                    "expirations")
LABELS = ((65.0, "BULLISH"), (55.0, "SLIGHTLY_BULLISH"), (45.0, "NEUTRAL"), (35.0, "SLIGHTLY_BEARISH"))
LABEL_ORDER = ("BEARISH", "SLIGHTLY_BEARISH", "NEUTRAL", "SLIGHTLY_BULLISH", "BULLISH")
IV_RANK_MIN_DAYS = 20
IV_RANK_DAYS = 252
CONSTANT_MATURITY_DAYS = 30


def label(score: float) -> str:
    return next((name for floor, name in LABELS if score >= floor), "BEARISH")


def quality(total_volume: float) -> str:
    return "LOW" if total_volume < 1000 else "MEDIUM" if total_volume < 10000 else "HIGH"


def ratio_part(puts: float, calls: float) -> float:
    if calls > 0:
        return float(np.clip((1.2 - puts / calls) * 100, 0, 100))
    return 0.0 if puts > 0 else 50.0


def gamma_part(call_gamma: float, put_gamma: float) -> float:
    total = call_gamma + put_gamma
    return 50.0 if total <= 0 else 50.0 + 50.0 * (call_gamma - put_gamma) / total


def constant_maturity_iv(atm_iv: Iterable[float], years: Iterable[float], days: int = CONSTANT_MATURITY_DAYS):
    """ATM IV (percent) at `days`, by linear interpolation of total variance in time; None without data."""
    points = sorted((t, v) for v, t in zip(atm_iv, years) if v == v and t == t and v > 0 and t > 0)
    if not points:
        return None
    target = days / 365
    if target <= points[0][0]:
        return float(points[0][1])
    if target >= points[-1][0]:
        return float(points[-1][1])
    times = [t for t, _ in points]
    variance = [v * v * t for t, v in points]
    return float(np.sqrt(np.interp(target, times, variance) / target))


def iv_rank(today: Optional[float], history: Iterable[float]) -> tuple[Optional[float], int]:
    """(rank 0..100 or None, days of history counted): `history` is the stored daily values before today,
    oldest first; today's value counts as one more day."""
    values = [float(v) for v in history if v is not None and v == v][-(IV_RANK_DAYS - 1):]
    if today is None or today != today:
        return None, len(values)
    values.append(float(today))
    low, high = min(values), max(values)
    if len(values) < IV_RANK_MIN_DAYS or high <= low:
        return None, len(values)
    return round((today - low) / (high - low) * 100, 2), len(values)


def sentiment(prepared: pd.DataFrame, skew: pd.DataFrame, histories: Mapping[str, list]) -> pd.DataFrame:
    """One row per symbol of `prepared` (SENTIMENT_FIELDS); `histories`: symbol -> daily ATM IVs before today."""
    calls = prepared["is_call"].to_numpy()
    gex = np.abs(prepared["gex"].to_numpy())
    iv = prepared["iv"].to_numpy()
    frame = pd.DataFrame({
        "symbol": prepared["symbol"].to_numpy(), "spot": prepared["underlying_price"].to_numpy(),
        "call_volume": np.where(calls, prepared["volume"], 0.0), "put_volume": np.where(calls, 0.0, prepared["volume"]),
        "call_oi": np.where(calls, prepared["open_interest"], 0.0), "put_oi": np.where(calls, 0.0, prepared["open_interest"]),
        "call_gamma": np.where(calls, gex, 0.0), "put_gamma": np.where(calls, 0.0, gex),
        "iv": np.where(iv > 0, iv, np.nan), "expiry": prepared["expiry"].to_numpy()})
    sums = frame.groupby("symbol", sort=True).agg(
        price=("spot", "first"), total_call_volume=("call_volume", "sum"), total_put_volume=("put_volume", "sum"),
        total_call_oi=("call_oi", "sum"), total_put_oi=("put_oi", "sum"), call_gamma=("call_gamma", "sum"),
        put_gamma=("put_gamma", "sum"), avg_iv=("iv", "mean"), expirations=("expiry", "nunique"))
    years = prepared.drop_duplicates(["symbol", "expiry"]).set_index(["symbol", "expiry"])["years"]
    rows = []
    for symbol, s in sums.iterrows():  # one row per symbol (SPY, QQQ): the sums above are the vectorised part
        chains = skew[skew["symbol"] == symbol]
        atm = constant_maturity_iv(chains["atm_iv"], [years.get((symbol, e), np.nan) for e in chains["expiry"]])
        rank, days = iv_rank(atm, histories.get(symbol, ()))
        score = round(0.4 * ratio_part(s.total_put_volume, s.total_call_volume)
                 + 0.3 * ratio_part(s.total_put_oi, s.total_call_oi) + 0.3 * gamma_part(s.call_gamma, s.put_gamma), 2)
        rows.append({
            "symbol": symbol, "price": s.price, "total_call_volume": s.total_call_volume,
            "total_put_volume": s.total_put_volume,
            "pc_volume_ratio": s.total_put_volume / s.total_call_volume if s.total_call_volume > 0 else None,
            "total_call_oi": s.total_call_oi, "total_put_oi": s.total_put_oi,
            "pc_oi_ratio": s.total_put_oi / s.total_call_oi if s.total_call_oi > 0 else None,
            "call_gamma": s.call_gamma, "put_gamma": s.put_gamma, "net_gamma": s.call_gamma - s.put_gamma,
            "avg_iv": None if s.avg_iv != s.avg_iv else s.avg_iv, "atm_iv": atm, "iv_rank": rank,
            "iv_history_days": days, "sentiment_score": score, "sentiment_label": label(score),
            "data_quality": quality(s.total_call_volume + s.total_put_volume), "expirations": int(s.expirations)})
    return pd.DataFrame(rows, columns=list(SENTIMENT_FIELDS))
