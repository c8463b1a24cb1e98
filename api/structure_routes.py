"""The market-structure endpoints (README "Market structure"): `install(app, reader, live, clock)`.

Store-backed: /api/market_sentiment (+ /history), /api/top_opportunities, /api/market_fear_greed,
/api/cycle_scanner, /api/skew_metrics, /api/oi_flows, /api/chains. /api/key_levels is computed from
the chains the tree holds when it holds that symbol and expiry, else from one live fetch;
/api/market_snapshot is always live (api/live.py: one at a time, a total deadline, the shared budget).
Parameters are checked by api/validation.py (400 naming what is allowed); a symbol or expiration the
provider does not have is a 404; a live fetch that cannot be made now a 503 or 504; never a 500.
"""
from __future__ import annotations

import datetime as dt
from typing import Callable, Optional

import bottle
import pandas as pd

from workers.bars import new_york_date
from workers.store import structure as S
from workers.store.reader import MAX_LIMIT
from workers.structure import ALL_EXPIRATIONS
from workers.structure.opportunities import OPPORTUNITY_FIELDS, WINDOW_MINUTES, fear_greed, top_opportunities

from . import validation as V
from .answers import dataset_fields, json_answer, json_endpoint, json_failure, listing, request_query
from .live import LiveMarket, LiveUnavailable, NotFound
from .market_answers import key_levels_answer, snapshot_body

STRIKE_BAND_PCT = 10.0  # as whale_flows stores them
CACHEABLE = ("/api/key_levels", "/api/market_sentiment", "/api/market_sentiment/history", "/api/top_opportunities",
             "/api/market_fear_greed", "/api/cycle_scanner", "/api/skew_metrics", "/api/oi_flows", "/api/chains",
             "/api/market_snapshot")


def _live_endpoint(handler: Callable) -> Callable:
    """json_endpoint, plus the live fetch's own answers: 404 not found, 503/504 cannot answer now."""
    @json_endpoint
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except NotFound as exc:
            return json_failure(404, str(exc))
        except LiveUnavailable as exc:
            return json_failure(exc.status, str(exc))
    wrapper.__name__ = handler.__name__
    return wrapper


def install(app: bottle.Bottle, reader, live: Optional[LiveMarket], clock: Callable[[], dt.datetime]) -> None:
    """Add the routes to `app` (whose create_app makes CACHEABLE cacheable)."""

    query, fields = request_query, dataset_fields

    def live_market() -> LiveMarket:
        if live is None:
            raise LiveUnavailable(503, "no provider is configured for live fetches")
        return live

    def today() -> str:
        return new_york_date(clock())

    @app.get("/api/key_levels")
    @_live_endpoint
    def key_levels():
        params = query()
        symbol, expiry = V.required_symbol(params), V.expiry(params, allow_all=True)
        if expiry != ALL_EXPIRATIONS and expiry < today():
            raise NotFound(f"{symbol} has no expiration on {expiry}: it has passed (today is {today()} in New York)")
        stored = reader.chain(symbol, None if expiry == ALL_EXPIRATIONS else expiry)
        stored = [row for row in stored if row[1] >= today()]
        if stored:
            return json_answer(200, key_levels_answer(pd.DataFrame(stored, columns=list(S.CHAIN_COLUMNS)), symbol,
                                                      expiry, "store"))
        if expiry == ALL_EXPIRATIONS:
            raise NotFound(f"no option chain of {symbol} is stored: expiry=all reads the chains whale_flows stores "
                           f"(its symbols); ask for one expiration to fetch it live")
        chain = live_market().run(1, lambda provider, timeout: provider.option_chain(
            symbol, dt.date.fromisoformat(expiry), STRIKE_BAND_PCT, timeout=timeout))
        if not len(chain):
            raise NotFound(f"{symbol} has no contracts expiring {expiry} within {STRIKE_BAND_PCT:g} % of spot")
        chain = chain.assign(symbol=symbol, fetched_at=clock().isoformat())
        return json_answer(200, key_levels_answer(chain, symbol, expiry, "live"))

    @app.get("/api/chains")
    @json_endpoint
    def chains():
        rows = [row for row in reader.chains() if row["expiry"] >= today()]
        return listing(rows, ("symbol", "expiry", "fetched_at", "contracts"))

    @app.get("/api/market_snapshot")
    @_live_endpoint
    def market_snapshot():
        params = query()
        symbol, expiry, timeframe = V.required_symbol(params), V.expiry(params, allow_all=False), V.timeframe(params)
        if expiry < today():
            raise NotFound(f"{symbol} has no expiration on {expiry}: it has passed (today is {today()} in New York)")

        def fetch(provider, timeout):
            quotes = provider.quotes([symbol], timeout=timeout)
            if symbol not in quotes.index:
                raise NotFound(f"no quote for {symbol}: {quotes.errors.get(symbol, 'the provider does not know it')}")
            chain = provider.option_chain(symbol, dt.date.fromisoformat(expiry), STRIKE_BAND_PCT, timeout=timeout)
            bars = (provider.intraday_bars(symbol, 5, 5, timeout=timeout) if timeframe == "intraday"
                    else provider.daily_bars(symbol, 45, timeout=timeout))
            return quotes.loc[symbol], chain, bars

        quote, chain, bars = live_market().run(3, fetch)
        if not len(chain):
            raise NotFound(f"{symbol} has no contracts expiring {expiry}")
        return json_answer(200, snapshot_body(symbol, dt.date.fromisoformat(expiry), timeframe, quote, chain, bars,
                                              clock()))

    @app.get("/api/market_sentiment")
    @json_endpoint
    def market_sentiment():
        rows = {row["symbol"]: row for row in reader.latest_sentiment()}
        return json_answer(200, {"success": True, "count": len(rows), "data": rows, "fetched_at": clock().isoformat()})

    @app.get("/api/market_sentiment/history")
    @json_endpoint
    def market_sentiment_history():
        symbol, hours = V.sentiment_history_params(query())
        return listing(reader.sentiment_history(symbol, hours), fields("market_sentiment"), hours=hours)

    @app.get("/api/top_opportunities")
    @json_endpoint
    def opportunities():
        limit = V.bounded_int(query(), "limit", MAX_LIMIT, 50)
        whales, skews = reader.structure_window(WINDOW_MINUTES)
        rows = top_opportunities(whales, skews, limit)
        if V.output_format(query()) == "csv":
            return listing(rows, OPPORTUNITY_FIELDS)
        return json_answer(200, {"success": True, "opportunities": rows, "count": len(rows),
                                 "window_minutes": WINDOW_MINUTES, "timestamp": clock().isoformat()})

    @app.get("/api/market_fear_greed")
    @json_endpoint
    def market_fear_greed():
        _, skews = reader.structure_window(WINDOW_MINUTES)
        mood = fear_greed(skews)
        if mood is None:
            return json_failure(404, f"No recent data: no chain's 25-delta skew in the last {WINDOW_MINUTES} minutes "
                                     f"(the market_structure worker computes it)")
        return json_answer(200, {"success": True, **mood, "window_minutes": WINDOW_MINUTES,
                                 "timestamp": clock().isoformat()})

    @app.get("/api/cycle_scanner")
    @json_endpoint
    def cycle_scanner():
        filter_, echoed, limit = V.scanner_params(query(), V.CYCLE_FILTERS)
        rows = reader.cycle_scanner(filter=filter_, limit=limit)
        return listing(rows, fields("cycle_scanner"), filter=echoed,
                       scan_time=max((r["scanned_at"] for r in rows), default=None))

    @app.get("/api/skew_metrics")
    @json_endpoint
    def skew_metrics():
        params = query()
        symbol, limit = V.symbol(params.get("symbol")), V.bounded_int(params, "limit", MAX_LIMIT, 200)
        return listing(reader.latest_skew(symbol, limit), fields("skew_metrics"))

    @app.get("/api/oi_flows")
    @json_endpoint
    def oi_flows():
        params = query()
        symbol, limit = V.symbol(params.get("symbol")), V.bounded_int(params, "limit", MAX_LIMIT, 50)
        return listing(reader.oi_flows(symbol, limit), fields("oi_flows"))


__all__ = ["install", "CACHEABLE"]
