"""Whale-flows scanner: unusually large options activity in the next weekly expirations.

For each whale symbol, the provider names the next `expirations` weekly
expiry dates (Thursday in a Friday-holiday week; fetched once a day and kept
in the store); for each, the chain within `strike_band_pct` of spot is
fetched (one request, beating before it) and stored for every dataset that
reads chains (workers/store/market.py). A contract is a whale flow when, on
the day,

    volume >= min_volume,  volume / open_interest >= min_vol_oi,
    total_premium = volume x mark x 100 >= min_premium   (the traded notional, USD).

A flow's `premium` is the contract's mark, a per-contract price: that is what
the old service sent under that name, and its dashboard multiplies it by the
volume itself. The notional is `total_premium`.

Whale score, 0..100, a weighted sum of five parts each in 0..1:

    40 x notional   log10(total_premium / min_premium) / 2, capped at 1 (100x the minimum scores 1)
    25 x vol/OI     log2(vol_oi / min_vol_oi) / 4, capped at 1 (16x the minimum scores 1)
    15 x delta      1 - | |delta| - 0.4 | / 0.4, floored at 0: out-of-the-money conviction
                    around |delta| 0.4 scores highest; deep in or far out of the money less
    10 x DTE        1 - dte / 35, floored at 0: nearer expiries are more urgent
    10 x IV         1 - (iv% - 30) / 70, clipped to 0..1: paying up in a calm market
                    (IV <= 30 %) is more telling than in a frenzy (IV >= 100 %)

Flows are stored with the store's de-duplication (the same contract seen again
the same UTC day updates its row) and kept for `retention_days`. Every cycle's
counts name that retention (`retention_days`), so the API learns it from
mdwd's status rows and clamps a longer `hours` window to it.
"""
import logging

import numpy as np
import pandas as pd

from workers import scanner
from workers.bars import new_york_date
from workers.scanner import CycleFailed, Scan
from workers.store import StoreError
from workers.store.market import MarketCache

log = logging.getLogger("whale_flows")
FLOW_COLUMNS = ("symbol", "type", "strike", "whale_score", "volume", "open_interest", "vol_oi", "premium",
                "delta", "expiry", "dte", "iv", "underlying_price", "total_premium")


def whale_score(total_premium, vol_oi, delta, dte, iv, min_premium, min_vol_oi):
    premium_part = np.clip(np.log10(np.maximum(total_premium, 1e-9) / min_premium) / 2, 0, 1)
    vol_oi_part = np.clip(np.log2(np.maximum(vol_oi, 1e-9) / min_vol_oi) / 4, 0, 1)
    delta_part = np.clip(1 - np.abs(np.abs(np.nan_to_num(delta, nan=0.0)) - 0.4) / 0.4, 0, 1)
    dte_part = np.clip(1 - dte / 35.0, 0, 1)
    iv_part = np.clip(1 - (np.nan_to_num(iv, nan=100.0) - 30.0) / 70.0, 0, 1)
    score = 40 * premium_part + 25 * vol_oi_part + 15 * delta_part + 10 * dte_part + 10 * iv_part
    return np.round(score, 2)


def find_whales(chain, symbol, min_volume, min_vol_oi, min_premium):
    """The whale flows of one option chain (provider columns), scored; an empty frame if none."""
    volume = chain["volume"].to_numpy(dtype="float64")
    open_interest = chain["open_interest"].to_numpy(dtype="float64")
    vol_oi = volume / np.maximum(open_interest, 1.0)
    mark = chain["mark"].to_numpy(dtype="float64")
    notional = volume * mark * 100.0
    hit = (volume >= min_volume) & (vol_oi >= min_vol_oi) & (notional >= min_premium)
    if not hit.any():
        return pd.DataFrame(columns=FLOW_COLUMNS)
    flows = chain.loc[hit].copy()
    flows["symbol"] = symbol
    flows["vol_oi"] = np.round(vol_oi[hit], 2)
    flows["premium"] = mark[hit]
    flows["total_premium"] = np.round(notional[hit], 2)
    flows["expiry"] = [str(e) for e in flows["expiry"]]
    flows["whale_score"] = whale_score(notional[hit], vol_oi[hit], flows["delta"].to_numpy(dtype="float64"),
                                       flows["dte"].to_numpy(dtype="float64"), flows["iv"].to_numpy(dtype="float64"),
                                       min_premium, min_vol_oi)
    return flows.loc[:, list(FLOW_COLUMNS)].reset_index(drop=True)


class WhaleFlowsScan(Scan):
    dataset = "whale_flows"

    def cycle(self):
        opts = self.options
        symbols = list(opts["symbols"])
        expiries, errors, skipped = self.expirations(symbols, int(opts["expirations"]))
        items = [f"{symbol} {expiry.isoformat()}" for symbol, dates in expiries.items() for expiry in dates]
        chains, chain_errors, chain_skipped = self.fetch_each(items, self.fetch_chain, phase="chain")
        self.check_provider()
        if not items and not errors and not skipped:
            raise CycleFailed(f"no expiration ahead for any of {len(symbols)} symbols: the provider listed none "
                              f"after today")
        if not chains:
            raise CycleFailed(f"no option chain for any of {len(symbols)} symbols")
        self.share(chains)
        self.ctx.beat("scan", self.dataset)
        found = [find_whales(chain, item.split()[0], opts["min_volume"], opts["min_vol_oi"], opts["min_premium"])
                 for item, chain in chains.items()]
        flows = pd.concat([f for f in found if len(f)], ignore_index=True) if any(len(f) for f in found) else None
        self.ctx.beat("store", self.dataset)
        rows = flows.to_dict("records") if flows is not None else []
        result = self.store.record_whale_flows(rows, retention_days=float(opts["retention_days"]))
        return {"symbols": len(symbols), "chains": len(chains), "flows": len(rows), "new": result.inserted,
                "updated": result.updated, "expired": result.expired,
                "failed": len(errors) + len(chain_errors), "quarantined": len(skipped) + len(chain_skipped),
                "retention_days": float(opts["retention_days"])}

    def expirations(self, symbols, count):
        """Each symbol's next `count` expirations: from the store when fetched today, else fetched (and
        stored for the rest of the day). Returns (dates by symbol, errors, skipped) like fetch_each."""
        cache, today = MarketCache(self.store), new_york_date(self.store._clock())
        known = {s: d for s in symbols if (d := cache.expirations(s, today)) is not None and len(d) >= count}
        fetched, errors, skipped = self.fetch_each(
            [s for s in symbols if s not in known],
            lambda s: self.provider.expirations(s, count, timeout=self.timeout), phase="expirations")
        for symbol, dates in fetched.items():
            cache.put_expirations(symbol, dates, today)
        dates = {**known, **fetched}
        return {s: [d for d in dates[s] if d.isoformat() >= today][:count] for s in symbols if s in dates}, \
            errors, skipped

    def share(self, chains):
        """Store this cycle's chains for every dataset that reads them; a failure costs only that."""
        try:
            MarketCache(self.store).put_chains({tuple(item.split()): chain for item, chain in chains.items()},
                                               self.store._clock())
        except StoreError as e:
            log.warning("option chains not stored for other datasets: %s", e)

    def fetch_chain(self, item):
        import datetime as dt

        symbol, expiry = item.split()
        return self.provider.option_chain(symbol, dt.date.fromisoformat(expiry),
                                          float(self.options["strike_band_pct"]), timeout=self.timeout)


def run(ctx):
    scanner.run(ctx, WhaleFlowsScan)
