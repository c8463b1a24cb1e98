"""Top opportunities and the fear/greed label (GET /api/top_opportunities, /api/market_fear_greed).

Both read the last WINDOW_MINUTES (30) of whale flows and skew rows, as the old service did.

Composite score (0..100) of a contract, the old query's three parts:

    whale part   whale_score > 80: 35, > 60: 25, > 40: 15, else int(whale_score / 10)
    vol/OI part  vol_oi_ratio > 8: 35, > 6: 30, > 4: 20, else int(vol_oi_ratio x 3)
    skew part    skew_25d > 6: 30, skew_25d < -1: 25, else 5 (also when there is no skew)

The old whale thresholds (200, 100, 50) were set on the old service's unbounded whale score; this
one's is 0..100 (workers/whale_flows.py), so they are 80, 60, 40: the same four bands in the same
order. vol_oi_ratio is the largest volume / open interest among the chain's unusual contracts
(skew.py: >= 3) in the window, 0 when none; skew_25d and put_call_ratio are the chain's latest in
the window (the old query joined every skew row of the window, so a chain scanned six times came back
six times). Rows: each whale contract of the window (its highest score there) with its chain's
parts, and each chain scanned in the window without a whale (strike and option_type None, whale 0);
by composite score, then whale score, descending.

Fear/greed, from the latest skew of each chain in the window that has one (the old service averaged
every row, a missing skew counted as 0): avg_skew > 5 EXTREME_FEAR, > 3 FEAR, > 1 SLIGHT_FEAR,
< -2 GREED, else NEUTRAL (on avg_skew rounded to 0.01, as the old service classified it).
"""
from __future__ import annotations

from typing import Iterable, Mapping, Optional

WINDOW_MINUTES = 30
FEAR_GREED_BANDS = ((5.0, "EXTREME_FEAR"), (3.0, "FEAR"), (1.0, "SLIGHT_FEAR"))
GREED_BELOW = -2.0
OPPORTUNITY_FIELDS = ("symbol", "expiry", "strike", "option_type", "composite_score", "whale_score", "vol_oi_ratio",
                      "skew_25d", "put_call_ratio")


def whale_part(score: float) -> int:
    return 35 if score > 80 else 25 if score > 60 else 15 if score > 40 else int(score / 10)


def vol_oi_part(ratio: float) -> int:
    return 35 if ratio > 8 else 30 if ratio > 6 else 20 if ratio > 4 else int(ratio * 3)


def skew_part(skew: Optional[float]) -> int:
    if skew is None:
        return 5
    return 30 if skew > 6 else 25 if skew < -1 else 5


def _number(value) -> Optional[float]:
    """A number, or None for None and NaN."""
    return None if value is None or value != value else float(value)


def _latest_chains(skews: Iterable[Mapping]) -> dict:
    """(symbol, expiry) -> {latest row, max_vol_oi over the window}."""
    chains: dict = {}
    for row in skews:
        key = (row["symbol"], row["expiry"])
        seen = chains.get(key)
        top = max(_number(row.get("max_vol_oi")) or 0.0, seen["max_vol_oi"] if seen else 0.0)
        if seen is None or str(row["computed_at"]) >= str(seen["row"]["computed_at"]):
            seen = {"row": row}
        chains[key] = {**seen, "max_vol_oi": top}
    return chains


def _rounded(value, digits=2):
    value = _number(value)
    return None if value is None else round(value, digits)


def top_opportunities(whales: Iterable[Mapping], skews: Iterable[Mapping], limit: int) -> list[dict]:
    """The composite-scored rows (OPPORTUNITY_FIELDS) of the window's whale flows and skew rows."""
    chains = _latest_chains(skews)
    contracts: dict = {}
    for row in whales:
        key = (row["symbol"], row["expiry"], float(row["strike"]), row["type"])
        contracts[key] = max(contracts.get(key, 0.0), float(row.get("whale_score") or 0.0))
    with_whale = {(s, e) for s, e, _, _ in contracts}
    rows = []
    for (symbol, expiry, strike, kind), score in contracts.items():
        rows.append(_row(symbol, expiry, strike, kind, score, chains.get((symbol, expiry))))
    for (symbol, expiry), chain in chains.items():
        if (symbol, expiry) not in with_whale:
            rows.append(_row(symbol, expiry, None, None, 0.0, chain))
    rows.sort(key=lambda r: (-r["composite_score"], -r["whale_score"], r["symbol"], r["expiry"], r["strike"] or 0))
    return rows[:limit]


def _row(symbol, expiry, strike, kind, whale_score, chain) -> dict:
    latest = chain["row"] if chain else {}
    ratio = chain["max_vol_oi"] if chain else 0.0
    skew = _number(latest.get("skew_25d"))
    return {"symbol": symbol, "expiry": expiry, "strike": strike, "option_type": kind,
            "composite_score": whale_part(whale_score) + vol_oi_part(ratio) + skew_part(skew),
            "whale_score": whale_score, "vol_oi_ratio": round(ratio, 2), "skew_25d": _rounded(skew),
            "put_call_ratio": _rounded(latest.get("put_call_ratio"))}


def fear_greed_label(avg_skew: float) -> str:
    if avg_skew < GREED_BELOW:
        return "GREED"
    return next((name for floor, name in FEAR_GREED_BANDS if avg_skew > floor), "NEUTRAL")


def fear_greed(skews: Iterable[Mapping]) -> Optional[dict]:
    """{sentiment, avg_skew, avg_put_call_ratio, symbols_analyzed, chains_analyzed}, or None without data."""
    latest = [c["row"] for c in _latest_chains(skews).values() if _number(c["row"].get("skew_25d")) is not None]
    if not latest:
        return None
    avg_skew = round(sum(float(r["skew_25d"]) for r in latest) / len(latest), 2)
    ratios = [_number(r.get("put_call_ratio")) for r in latest if _number(r.get("put_call_ratio")) is not None]
    return {"sentiment": fear_greed_label(avg_skew), "avg_skew": avg_skew,
            "avg_put_call_ratio": round(sum(ratios) / len(ratios), 2) if ratios else None,
            "symbols_analyzed": len({r["symbol"] for r in latest}), "chains_analyzed": len(latest)}
