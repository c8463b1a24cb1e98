"""Options market structure from the chains the tree already holds: key levels, skew and OI flows,
market sentiment, top opportunities and fear/greed. Pure and vectorised: frames in, frames out.

    from workers.structure import analyse
    result = analyse(contracts, sentiment_symbols=("SPY", "QQQ"), sentiment_expirations=5, iv_histories={})

`contracts`: every stored contract (the option_chains rows: CHAIN_COLUMNS, `symbol`, `fetched_at`).
Definitions: contracts.py (gamma and GEX), levels.py, skew.py, sentiment.py, opportunities.py.
"""
from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import pandas as pd

from .contracts import prepare
from .levels import LEVEL_FIELDS, STRIKE_FIELDS, key_levels
from .sentiment import SENTIMENT_FIELDS, sentiment
from .skew import OI_FLOW_FIELDS, SKEW_FIELDS, oi_flows, skew_metrics

__all__ = ["ALL_EXPIRATIONS", "Structure", "analyse", "plain_rows", "prepare", "key_levels", "skew_metrics", "oi_flows",
           "sentiment", "with_all_expirations", "LEVEL_FIELDS", "STRIKE_FIELDS", "SKEW_FIELDS", "OI_FLOW_FIELDS",
           "SENTIMENT_FIELDS"]

ALL_EXPIRATIONS = "all"  # the `expiry` of a symbol's levels over every stored expiration together


class Structure(NamedTuple):
    levels: pd.DataFrame     # LEVEL_FIELDS per (symbol, expiry), and per (symbol, "all")
    strikes: pd.DataFrame    # per (symbol, expiry, strike) of the single chains
    skew: pd.DataFrame       # SKEW_FIELDS per (symbol, expiry)
    oi_flows: pd.DataFrame   # OI_FLOW_FIELDS: the unusual contracts
    sentiment: pd.DataFrame  # SENTIMENT_FIELDS per sentiment symbol


def with_all_expirations(prepared: pd.DataFrame) -> pd.DataFrame:
    """The contracts relabelled as one chain per symbol (expiry "all"), all at the spot of the symbol's
    nearest expiration; each contract keeps its own gamma, open interest and time to expiry."""
    nearest = prepared.sort_values("expiry", kind="stable").drop_duplicates("symbol").set_index("symbol")
    out = prepared.copy()
    out["expiry"] = ALL_EXPIRATIONS
    out["underlying_price"] = nearest["underlying_price"].reindex(out["symbol"]).to_numpy()
    return out


def nearest_expirations(prepared: pd.DataFrame, symbols: Sequence[str], count: int) -> pd.DataFrame:
    """The contracts of each of `symbols`' first `count` expirations."""
    mine = prepared[prepared["symbol"].isin(list(symbols))]
    pairs = mine[["symbol", "expiry"]].drop_duplicates().sort_values(["symbol", "expiry"])
    pairs = pairs.groupby("symbol", sort=False).head(count)
    return mine.merge(pairs, on=["symbol", "expiry"], how="inner")


def analyse(contracts: pd.DataFrame, *, sentiment_symbols: Sequence[str] = ("SPY", "QQQ"),
            sentiment_expirations: int = 5, iv_histories: Mapping[str, list] | None = None, now=None) -> Structure:
    prepared = prepare(contracts, now)
    if not len(prepared):
        return Structure(*(pd.DataFrame(columns=list(fields)) for fields in (
            LEVEL_FIELDS, ("symbol", "expiry", "spot", *STRIKE_FIELDS), SKEW_FIELDS, OI_FLOW_FIELDS,
            SENTIMENT_FIELDS)))
    levels, strikes = key_levels(prepared)
    overall, _ = key_levels(with_all_expirations(prepared))
    levels = pd.concat([levels, overall], ignore_index=True)
    skew = skew_metrics(prepared)
    chosen = nearest_expirations(prepared, sentiment_symbols, sentiment_expirations)
    their_skew = skew.merge(chosen[["symbol", "expiry"]].drop_duplicates(), on=["symbol", "expiry"])
    mood = sentiment(chosen, their_skew, iv_histories or {})
    return Structure(levels, strikes, skew, oi_flows(prepared), mood)


def plain_rows(frame: pd.DataFrame, fields: Sequence[str]) -> list[dict]:
    """Rows as dicts of plain values (NaN as None), for the store and for JSON."""
    out = frame.loc[:, list(fields)].astype(object)
    return out.where(pd.notna(out), None).to_dict("records")
