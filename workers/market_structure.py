"""Market-structure worker: key levels, skew and OI flows, and market sentiment, from the shared chains.

It makes no upstream request: each cycle it reads the option chains whale_flows stored in its latest
cycle (workers/store/market.py; SPY and QQQ for 5 expirations, the others for 4: whale_flows'
`more_expirations`), computes every dataset in one vectorised pass (workers/structure/) and writes
them in one transaction with their signals (workers/store/structure.py):

- key_levels: each chain's levels, and each symbol's over all its stored expirations (expiry "all");
- skew_metrics: each chain's ATM IV, 25-delta skew, put/call volume and unusual contracts (a history);
- oi_flows: the contracts with volume / open interest >= 3;
- market_sentiment: `sentiment_symbols` over their next `sentiment_expirations` (a history), with
  each day's 30-day ATM IV kept for the IV rank;
- signals: a symbol's spot crossing its gamma flip, a sentiment label change.

Chains older than `max_chain_age` are left out (whale_flows could not refresh them); when every stored
chain is that old the cycle fails, so the datasets go stale and /health says why. Before whale_flows
has stored any chain (a cold start) a cycle waits up to `wait_for_chains` seconds for them, beating,
then reports an empty successful cycle: nothing is wrong yet, and /health names the datasets if they
are still unwritten after startup_timeout + one interval.
"""
import logging
import time

import pandas as pd

from workers import scanner
from workers.bars import new_york_date
from workers.scanner import CycleFailed, Scan
from workers.store.market import MarketCache
from workers.structure import (ALL_EXPIRATIONS, LEVEL_FIELDS, OI_FLOW_FIELDS, SENTIMENT_FIELDS, SKEW_FIELDS, analyse,
                               plain_rows as records)

log = logging.getLogger("market_structure")


class MarketStructureScan(Scan):
    dataset = "key_levels"
    needs_provider = False

    def cycle(self):
        opts = self.options
        symbols = list(opts["symbols"])
        contracts = self.stored_chains(symbols)
        if contracts is None:
            return {"chains": 0, "waiting_for": "whale_flows"}
        now = self.store._clock()
        age = (pd.Timestamp(now) - pd.to_datetime(contracts["fetched_at"], utc=True, format="ISO8601")).dt.total_seconds()
        fresh = contracts[age.to_numpy() <= float(opts["max_chain_age"])]
        if not len(fresh):
            raise CycleFailed(f"every stored option chain is older than max_chain_age ({opts['max_chain_age']:g}s; "
                              f"the newest is {age.min():.0f}s old): whale_flows has not refreshed them")
        self.ctx.beat("scan", self.dataset)
        today = new_york_date(now)
        sentiment_symbols = list(opts["sentiment_symbols"])
        result = analyse(fresh, sentiment_symbols=sentiment_symbols,
                         sentiment_expirations=int(opts["sentiment_expirations"]),
                         iv_histories=self.store.iv_histories(sentiment_symbols, today))
        self.ctx.beat("store", self.dataset)
        written = self.store.record_structure(
            {"key_levels": self.level_rows(result.levels, fresh), "skew_metrics": records(result.skew, SKEW_FIELDS),
             "oi_flows": records(result.oi_flows, OI_FLOW_FIELDS),
             "market_sentiment": records(result.sentiment, SENTIMENT_FIELDS)},
            {row.symbol: row.atm_iv for row in result.sentiment.itertuples() if row.atm_iv is not None},
            today, skew_retention_days=float(opts["skew_retention_days"]),
            sentiment_retention_days=float(opts["sentiment_retention_days"]))
        chains = fresh[["symbol", "expiry"]].drop_duplicates()
        return {"symbols": int(chains["symbol"].nunique()), "chains": len(chains),
                "stale_chains": int(len(contracts[["symbol", "expiry"]].drop_duplicates()) - len(chains)),
                "gamma_flips": int(result.levels["gamma_flip"].notna().sum()), "oi_flows": len(result.oi_flows),
                "sentiment": len(result.sentiment), "signals": written["signals"]}

    def stored_chains(self, symbols):
        """The stored chains of `symbols` not yet expired; None when there are none (after waiting up to
        `wait_for_chains` for whale_flows' first cycle)."""
        cache = MarketCache(self.store)
        deadline = time.monotonic() + float(self.options["wait_for_chains"])
        while True:
            self.ctx.beat("read", "option_chains")
            contracts = cache.chains(symbols, new_york_date(self.store._clock()))
            if len(contracts):
                return contracts
            left = deadline - time.monotonic()
            if left <= 0:
                log.info("no option chain is stored yet for any of %d symbols: whale_flows stores them", len(symbols))
                return None
            self.ctx.idle(min(1.0, left), phase="waiting for option_chains")

    @staticmethod
    def level_rows(levels, contracts):
        """The key_levels rows, each with the fetch time of its chain (the oldest of a symbol's for "all")."""
        fetched = contracts.groupby(["symbol", "expiry"])["fetched_at"].min()
        oldest = contracts.groupby("symbol")["fetched_at"].min()
        rows = records(levels, LEVEL_FIELDS)
        for row in rows:
            row["chain_fetched_at"] = str(oldest[row["symbol"]] if row["expiry"] == ALL_EXPIRATIONS
                                          else fetched[(row["symbol"], row["expiry"])])
        return rows


def run(ctx):
    scanner.run(ctx, MarketStructureScan)
