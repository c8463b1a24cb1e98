"""Key levels, skew and sentiment of 25 symbols x 4 expirations x ~400 contracts in one vectorised pass,
against a per-contract Python loop (tests/structure_reference.py) in the same run.

The chains are synthetic and seeded: 200 strikes from -20 % to +20 % of spot, a call and a put each,
Black-Scholes Greeks on a skewed smile, random volume and open interest, every tenth contract without
a provider gamma (so the pass computes it). The vectorised pass is workers.structure.analyse: every
chain's key levels with the gamma flip (81 re-priced spots), each symbol's over all its expirations,
the skew rows, the OI flows and SPY's and QQQ's sentiment. The loop computes per chain, contract by
contract: the per-strike table, walls, flip level and gamma flip, the skew row, and the sentiment
sums; it does not do the all-expirations levels, so it does less. Before any figure counts, every
chain's levels and skew from the two are compared. Best of 3 (the loop: 1).

Target: the vectorised pass at least 10x faster than the loop.
Run: ``python -m bench structure``.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from bench.common import best_of
from tests import structure_reference as ref
from workers import options_math
from workers.structure import analyse, prepare

TARGET = 10.0
FETCHED = "2026-03-02T15:00:00+00:00"


def make_contracts(symbols: int = 25, expirations: int = 4, strikes: int = 200, seed: int = 20260302) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    names = ["SPY", "QQQ"] + [f"S{i:03d}" for i in range(symbols - 2)]
    expiries = pd.bdate_range("2026-03-06", periods=expirations * 5, freq="B")[4::5][:expirations]
    frames = []
    for name in names:
        spot = float(np.exp(rng.uniform(np.log(20), np.log(900))))
        atm = rng.uniform(0.15, 0.6)
        grid = np.round(spot * np.linspace(0.8, 1.2, strikes), 2)
        for expiry in expiries:
            years = options_math.years_to_expiry(pd.Timestamp(FETCHED), expiry.date())
            x = np.log(grid / spot) / (atm * np.sqrt(years))
            iv = atm * np.clip(1 - 0.1 * x + 0.03 * x * x, 0.6, 3.5)
            for kind in ("CALL", "PUT"):
                g = options_math.greeks(kind == "CALL", spot, grid, iv, years)
                gamma = np.where(rng.random(strikes) < 0.1, np.nan, g["gamma"])
                frames.append(pd.DataFrame({
                    "symbol": name, "expiry": expiry.date().isoformat(), "fetched_at": FETCHED, "type": kind,
                    "strike": grid, "bid": g["price"] * 0.98, "ask": g["price"] * 1.02, "last": g["price"],
                    "mark": np.maximum(g["price"], 0.01), "volume": rng.integers(0, 3000, strikes),
                    "open_interest": rng.integers(0, 20000, strikes), "delta": g["delta"], "iv": iv * 100,
                    "dte": (expiry.date() - pd.Timestamp(FETCHED).date()).days, "underlying_price": spot,
                    "gamma": gamma, "theta": g["theta"], "vega": g["vega"]}))
    return pd.concat(frames, ignore_index=True)


def loop_pass(records: list[dict]) -> dict:
    out = {}
    for key, chain in ref.by_chain(records).items():
        out[key] = (ref.chain_levels(chain)[0], ref.chain_skew(chain))
    sums = {}
    for c in records:
        if c["symbol"] in ("SPY", "QQQ"):
            s = sums.setdefault(c["symbol"], [0.0, 0.0, 0.0, 0.0])
            gamma = ref.contract_gamma(c) or 0.0
            s[0 if c["type"] == "CALL" else 1] += c["volume"]
            s[2 if c["type"] == "CALL" else 3] += gamma * c["open_interest"] * c["underlying_price"] ** 2
    out["sentiment"] = sums
    return out


def mismatches(result, looped) -> int:
    bad = 0
    levels = result.levels.set_index(["symbol", "expiry"])
    skew = result.skew.set_index(["symbol", "expiry"])
    for key, (want_levels, want_skew) in ((k, v) for k, v in looped.items() if k != "sentiment"):
        for frame, want in ((levels, want_levels), (skew, want_skew)):
            got = frame.loc[key]
            for field, value in want.items():
                have = got[field]
                same = (value is None and have != have) or (value is not None and np.isclose(have, value, rtol=1e-7,
                                                                                              atol=1e-6))
                bad += not same
    return bad


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench_structure", description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=25)
    parser.add_argument("--expirations", type=int, default=4)
    parser.add_argument("--strikes", type=int, default=200)
    args = parser.parse_args(argv)
    contracts = make_contracts(args.symbols, args.expirations, args.strikes)
    print(f"{args.symbols} symbols x {args.expirations} expirations x {2 * args.strikes} contracts "
          f"= {len(contracts)} contracts")
    analyse(contracts.iloc[:800])  # warm up
    t_vector, result = best_of(3, lambda: analyse(contracts))
    records = prepare(contracts).to_dict("records")  # the loop gets the same prepared contracts (years, gamma)
    t_loop, looped = best_of(1, lambda: loop_pass(records))
    bad = mismatches(result, looped)
    ratio = t_loop / t_vector
    print(f"per-contract Python loop          {t_loop * 1e3:9.1f} ms")
    print(f"vectorised pass (workers.structure) {t_vector * 1e3:7.1f} ms   loop / vectorised = {ratio:6.1f}  "
          f"(target >= {TARGET:g})")
    print(f"  of which key levels + gamma flip over {len(result.levels)} level rows, skew {len(result.skew)} rows, "
          f"OI flows {len(result.oi_flows)}, sentiment {len(result.sentiment)}")
    print(f"fields differing between the two: {bad}")
    if bad:
        print("the vectorised pass does not match the loop", file=sys.stderr)
        return 1
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
