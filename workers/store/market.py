"""What the scanners fetch once and share, in the store: daily bars, expirations, option chains.

Schwab allows 120 requests a minute for every worker together. Fetched
again by each of three technical scanners every cycle, a year of daily bars
for 174 symbols alone would take most of it. So the store keeps:

- `daily_bars` (symbol, date): the daily history. A symbol's whole history is
  fetched at most once per New York calendar day (`bars_history.fetched_on`);
  after that, today's bar is kept up to date from the quotes the watchlist
  fetches anyway (open, high, low, last, volume: `update_session_bars`).
- `expirations`: each symbol's expiration list of the day.
- `option_chains`: the chains of the latest cycle, per symbol and expiry, for
  every dataset that needs them (whale flows now).

A quote that disagrees with the stored history (its previous close is not
the stored close of the session before: a split, a dividend adjustment, a
missing day) invalidates that symbol's history, so it is fetched whole again.

MarketCache works through a StoreWriter's connection (one per worker
process), each write one short transaction.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
from typing import Iterable, Mapping, Optional

import numpy as np
import pandas as pd

from .writer import StoreWriter

log = logging.getLogger(__name__)
CHAIN_FIELDS = ("type", "strike", "bid", "ask", "last", "mark", "volume", "open_interest", "delta", "iv", "dte",
                "underlying_price")
# A quote's previous close may differ from the stored close by rounding; beyond this it is another history.
DISAGREEMENT = 0.005


def _value(x):
    """A value SQLite takes: floats stay floats, NaN becomes NULL."""
    if x is None:
        return None
    if isinstance(x, (np.integer, int)) and not isinstance(x, bool):
        return int(x)
    x = float(x)
    return None if math.isnan(x) else x


class MarketCache:
    def __init__(self, writer: StoreWriter):
        self.writer = writer

    # -- daily bars --------------------------------------------------------------

    def fetched_today(self, symbols: Iterable[str], today: str) -> set[str]:
        """Which of `symbols` had their whole history fetched on `today` (YYYY-MM-DD)."""
        symbols = list(symbols)

        def work(conn):
            return {s for (s,) in conn.execute(
                "SELECT symbol FROM bars_history WHERE fetched_on = ? AND symbol IN (SELECT value FROM json_each(?))",
                (today, json.dumps(symbols)))}
        return self.writer.transaction("bars", work)

    def bars(self, symbols: Iterable[str]) -> dict[str, pd.DataFrame]:
        """Each symbol's stored daily bars (BAR_COLUMNS, naive dates, ascending); absent if none."""
        symbols = list(symbols)

        def work(conn):
            return conn.execute(
                "SELECT symbol, date, open, high, low, close, volume FROM daily_bars "
                "WHERE symbol IN (SELECT value FROM json_each(?)) ORDER BY symbol, date", (json.dumps(symbols),)
            ).fetchall()
        rows = self.writer.transaction("bars", work)
        if not rows:
            return {}
        frame = pd.DataFrame(rows, columns=["symbol", "date", "open", "high", "low", "close", "volume"])
        frame["date"] = pd.to_datetime(frame["date"])
        out = {}
        for symbol, group in frame.groupby("symbol", sort=False):
            bars = group.set_index("date")[["open", "high", "low", "close", "volume"]].astype("float64")
            bars.index.name = "date"
            out[symbol] = bars
        return out

    def replace_history(self, symbol: str, bars: pd.DataFrame, today: str, now: dt.datetime) -> int:
        """Store a symbol's whole fetched history (dropping what it had), marked fetched on `today`."""
        dates = pd.DatetimeIndex(bars.index).strftime("%Y-%m-%d")
        values = bars.loc[:, ["open", "high", "low", "close", "volume"]].to_numpy(dtype="float64")
        cells = [[None if math.isnan(x) else float(x) for x in row] for row in values.tolist()]
        rows = [(symbol, date, *cell) for date, cell in zip(dates, cells)]

        def work(conn):
            conn.execute("DELETE FROM daily_bars WHERE symbol = ?", (symbol,))
            conn.executemany("INSERT INTO daily_bars VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("INSERT INTO bars_history VALUES (?, ?, ?) ON CONFLICT (symbol) DO UPDATE SET "
                         "fetched_on = excluded.fetched_on, fetched_at = excluded.fetched_at",
                         (symbol, today, now.isoformat()))
            return len(rows)
        return self.writer.transaction("bars", work)

    def update_session_bars(self, quotes: Mapping[str, Mapping]) -> tuple[int, list[str]]:
        """Make each quote its session's bar. Returns (bars written, symbols whose stored history the
        quote disagrees with: their history is marked for a whole fetch again).

        `quotes`: symbol -> {price, daily_change, volume, open, high, low, session_last, session}; the bar's
        close is `session_last` (the session's own last trade), `price` where it is missing. Quotes without a
        session, or without a positive open, high and low (before the session's first trade, Schwab
        sends 0), are skipped."""
        usable = {s: q for s, q in quotes.items() if q.get("session")
                  and all((_value(q.get(k)) or 0) > 0 for k in ("open", "high", "low", "price"))}

        def work(conn):
            disagree, written = [], 0
            for symbol, q in usable.items():
                known = conn.execute("SELECT 1 FROM bars_history WHERE symbol = ?", (symbol,)).fetchone()
                if not known:
                    continue  # no history yet: the technical scanners fetch it whole first
                before = conn.execute("SELECT date, close FROM daily_bars WHERE symbol = ? AND date < ? "
                                      "ORDER BY date DESC LIMIT 1", (symbol, q["session"])).fetchone()
                previous = float(q["price"]) - float(q["daily_change"])
                if before is None or before[1] is None or previous <= 0 or \
                        abs(before[1] / previous - 1) > DISAGREEMENT:
                    disagree.append((symbol, before, previous))
                    continue
                conn.execute("INSERT INTO daily_bars VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (symbol, date) "
                             "DO UPDATE SET open = excluded.open, high = excluded.high, low = excluded.low, "
                             "close = excluded.close, volume = excluded.volume",
                             (symbol, q["session"], _value(q["open"]), _value(q["high"]), _value(q["low"]),
                              _value(q.get("session_last")) or _value(q["price"]), _value(q["volume"])))
                written += 1
            if disagree:
                conn.execute("DELETE FROM bars_history WHERE symbol IN (SELECT value FROM json_each(?))",
                             (json.dumps([d[0] for d in disagree]),))
            return written, disagree
        written, disagree = self.writer.transaction("bars", work)
        for symbol, before, previous in disagree:
            stored = f"the stored close of {before[0]} is {before[1]:.4g}" if before and before[1] else \
                "no stored session before it"
            log.warning("%s: the quote's previous close %.4g disagrees with its stored history (%s): a split, "
                        "an adjustment or a missing day; its history will be fetched again", symbol, previous,
                        stored)
        return written, [d[0] for d in disagree]

    # -- expirations and chains ------------------------------------------------------

    def expirations(self, symbol: str, today: str) -> Optional[list[dt.date]]:
        """The expirations stored for `symbol` today, or None."""
        def work(conn):
            return conn.execute("SELECT dates FROM expirations WHERE symbol = ? AND fetched_on = ?",
                                (symbol, today)).fetchone()
        found = self.writer.transaction("expirations", work)
        if not found:
            return None
        try:
            return [dt.date.fromisoformat(d) for d in json.loads(found[0])]
        except (ValueError, TypeError):
            return None

    def put_expirations(self, symbol: str, dates: Iterable[dt.date], today: str) -> None:
        text = json.dumps([d.isoformat() for d in dates])

        def work(conn):
            conn.execute("INSERT INTO expirations VALUES (?, ?, ?) ON CONFLICT (symbol) DO UPDATE SET "
                         "fetched_on = excluded.fetched_on, dates = excluded.dates", (symbol, today, text))
        self.writer.transaction("expirations", work)

    def put_chains(self, chains: Mapping[tuple[str, str], pd.DataFrame], now: dt.datetime) -> int:
        """Replace the stored chains of these (symbol, expiry) pairs with this cycle's, in one transaction."""
        stamp = now.isoformat()
        rows = [(symbol, expiry, stamp, *(_value(v) if f not in ("type",) else str(v) for f, v in
                                          zip(CHAIN_FIELDS, record)))
                for (symbol, expiry), chain in chains.items()
                for record in chain.loc[:, list(CHAIN_FIELDS)].itertuples(index=False, name=None)]

        def work(conn):
            for symbol, expiry in chains:
                conn.execute("DELETE FROM option_chains WHERE symbol = ? AND expiry = ?", (symbol, expiry))
            conn.executemany(f"INSERT INTO option_chains VALUES ({', '.join('?' * (3 + len(CHAIN_FIELDS)))})", rows)
            return len(rows)
        return self.writer.transaction("option_chains", work)

    def chain(self, symbol: str, expiry: str) -> pd.DataFrame:
        """The latest stored chain of a symbol and expiry (CHAIN_FIELDS and fetched_at); empty if none."""
        def work(conn):
            return conn.execute(f"SELECT fetched_at, {', '.join(CHAIN_FIELDS)} FROM option_chains "
                                "WHERE symbol = ? AND expiry = ?", (symbol, expiry)).fetchall()
        return pd.DataFrame(self.writer.transaction("option_chains", work), columns=["fetched_at", *CHAIN_FIELDS])
