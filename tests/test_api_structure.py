"""The market-structure endpoints over a store filled by real cycles on the simulated market, and their
live fetches (one at a time, a deadline, 404 for what the provider does not have)."""
import datetime as dt
import fcntl
import os
import threading

import pytest

from api.app import create_app
from api.live import LiveMarket
from api.status import StatusSource
from supervisor.shared.control_client import ControlClient
from tests.api_support import get
from tests.test_scanners import NOW, make_scan
from workers import market_structure, technical, whale_flows
from workers.providers.base import AuthError
from workers.providers.sim import SimProvider
from workers.store import StoreReader, StoreWriter

LATER = NOW + dt.timedelta(seconds=30)


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    """A store after one whale_flows, market_structure and cycle_scanner cycle at NOW."""
    path = tmp_path_factory.mktemp("structure")
    for scan_class, kind in ((whale_flows.WhaleFlowsScan, "whale_flows"),
                             (market_structure.MarketStructureScan, "market_structure"),
                             (technical.CycleScan, "cycle_scanner")):
        scan, _ = make_scan(scan_class, kind, path)
        scan.run_cycle()
    return path


@pytest.fixture
def sim():
    return SimProvider(seed=1, clock=lambda: LATER)


@pytest.fixture
def make(state, tmp_path):
    def build(provider=None, timeout=10.0, live=True, now=LATER):
        market = LiveMarket(lambda: provider, str(tmp_path), timeout) if live else None
        status = StatusSource(ControlClient(str(tmp_path / "no.sock"), timeout=0.5), ttl=0.0)
        return create_app(StoreReader(state, now=lambda: now), status, live=market, clock=lambda: now)
    return build


def spy_expiry(n=0):
    return SimProvider(seed=1, clock=lambda: NOW).expirations("SPY", 5)[n].isoformat()


# -- key levels ---------------------------------------------------------------------------------

def test_key_levels_of_a_stored_chain_in_the_old_shape(make, sim):
    body = get(make(sim), "/api/key_levels", f"symbol=SPY&expiry={spy_expiry()}").json
    assert body["success"] is True and body["source"] == "store" and body["symbol"] == "SPY"
    strikes = {row["strike"]: row for row in body["strike_data"]}
    assert set(body["strike_data"][0]) == {"strike", "call_vol", "put_vol", "net_vol", "call_oi", "put_oi", "call_gex",
                                           "put_gex", "net_gex", "call_premium", "put_premium", "distance_pct"}
    assert body["call_wall"] == max(strikes.values(), key=lambda r: r["call_vol"])  # the whole row, as before
    assert body["put_oi_wall"] == max(strikes.values(), key=lambda r: r["put_oi"])
    assert abs(body["max_gex"]["net_gex"]) == max(abs(r["net_gex"]) for r in strikes.values())
    assert {"flip_level", "gamma_flip", "pc_ratio", "total_call_vol", "total_put_vol", "fetched_at"} <= set(body)


def test_key_levels_over_every_stored_expiration(make, sim):
    body = get(make(sim), "/api/key_levels", "symbol=SPY&expiry=all").json
    assert body["expiry"] == "all" and len(body["expirations"]) == 5 and body["source"] == "store"


def test_key_levels_of_a_symbol_outside_the_universe_are_fetched_live(make, sim):
    expiry = sim.expirations("F", 1)[0].isoformat()
    body = get(make(sim), "/api/key_levels", f"symbol=F&expiry={expiry}").json
    assert body["source"] == "live" and body["strike_data"] and body["underlying_price"] > 0


@pytest.mark.parametrize("query, message", [
    ("symbol=SPY&expiry=2026-12-02", "no expiration on 2026-12-02"),  # a Wednesday
    ("symbol=SPY&expiry=2026-11-20", "it has passed"),
    ("symbol=9ZZ&expiry=2026-11-27", "not a valid symbol"),
    ("symbol=ZZZZ&expiry=all", "no option chain of ZZZZ is stored"),
])
def test_what_does_not_exist_is_a_404_naming_it(make, sim, query, message):
    answer = get(make(sim), "/api/key_levels", query)
    assert answer.status == 404 and message in answer.json["error"] and answer.json["success"] is False


@pytest.mark.parametrize("path, query, message", [
    ("/api/key_levels", "expiry=2026-11-27", "symbol is required"),
    ("/api/key_levels", "symbol=SPY", "expiry is required"),
    ("/api/key_levels", "symbol=SPY&expiry=27/11/2026", "expiry must be an expiration date YYYY-MM-DD or all"),
    ("/api/key_levels", "symbol=SPY&expiry=2026-02-30", "expiry must be"),
    ("/api/key_levels", "symbol=S%20P%20Y&expiry=all", "symbol must be a ticker symbol"),
    ("/api/market_snapshot", "symbol=SPY&expiry=all", "expiry must be an expiration date YYYY-MM-DD;"),
    ("/api/market_snapshot", "symbol=SPY&expiry=2026-11-27&timeframe=weekly", "timeframe must be one of intraday, daily"),
    ("/api/cycle_scanner", "filter=top", "filter must be one of all, peak, bottom, approaching_peak, approaching_bottom"),
    ("/api/cycle_scanner", "limit=0", "limit must be an integer from 1 to 1000"),
    ("/api/top_opportunities", "limit=x", "limit must be an integer from 1 to 1000"),
    ("/api/market_sentiment/history", "hours=721", "hours must be an integer from 1 to 720"),
    ("/api/market_sentiment/history", "symbol=$$$$$$$$$$$$$", "symbol must be a ticker symbol"),
    ("/api/skew_metrics", "format=xml", "format must be one of json, csv"),
    ("/api/oi_flows", "limit=100000", "limit must be an integer from 1 to 1000"),
])
def test_every_parameter_is_checked(make, sim, path, query, message):
    answer = get(make(sim), path, query)
    assert answer.status == 400 and message in answer.json["error"], answer.json


# -- live fetches --------------------------------------------------------------------------------

def test_market_snapshot_returns_quote_chain_and_history_in_the_old_shapes(make, sim):
    expiry = spy_expiry(1)
    body = get(make(sim), "/api/market_snapshot", f"symbol=SPY&expiry={expiry}").json
    quote = body["quote"]["SPY"]["quote"]
    assert quote["lastPrice"] == body["underlying_price"] > 0 and quote["closePrice"] > 0
    chain = body["options_chain"]
    [(key, strikes)] = chain["callExpDateMap"].items()
    assert key.startswith(expiry) and chain["putExpDateMap"] and chain["status"] == "SUCCESS"
    contract = next(iter(strikes.values()))[0]
    assert {"putCall", "strikePrice", "mark", "totalVolume", "openInterest", "volatility", "delta", "gamma"} <= \
        set(contract)
    candles = body["price_history"]["candles"]
    days = {dt.datetime.fromtimestamp(c["datetime"] / 1000, dt.timezone.utc).date() for c in candles}
    assert candles and len(days) == 2  # the last two sessions' regular hours
    daily = get(make(sim), "/api/market_snapshot", f"symbol=SPY&expiry={expiry}&timeframe=daily").json
    assert len(daily["price_history"]["candles"]) == 30 and daily["timeframe"] == "daily"


def test_a_second_live_fetch_while_one_runs_is_busy_not_queued(make, sim, tmp_path):
    fd = os.open(tmp_path / "live-fetch.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another serving process's fetch
        answer = get(make(sim), "/api/market_snapshot", f"symbol=SPY&expiry={spy_expiry()}")
        assert answer.status == 503 and "another live fetch is running" in answer.json["error"]
    finally:
        os.close(fd)
    assert get(make(sim), "/api/market_snapshot", f"symbol=SPY&expiry={spy_expiry()}").status == 200


class Stuck:
    """A provider whose chain call does not return until released."""

    def __init__(self):
        self.release = threading.Event()

    def option_chain(self, *args, **kwargs):
        self.release.wait(30)
        raise AuthError("released")


def test_a_live_fetch_past_its_deadline_is_a_504_and_keeps_the_slot_until_it_returns(make):
    stuck = Stuck()
    app = make(stuck, timeout=0.1)  # deadline 1 x 0.1 s + 2 s of slack
    answer = get(app, "/api/key_levels", "symbol=F&expiry=2026-11-27")
    assert answer.status == 504 and "did not finish within its deadline (2.1s" in answer.json["error"]
    assert get(app, "/api/key_levels", "symbol=F&expiry=2026-11-27").status == 503  # still running: busy
    stuck.release.set()


class Refusing:
    def option_chain(self, *args, **kwargs):
        raise AuthError("the refresh token has expired: run mdw-schwab-login")


def test_a_provider_that_cannot_answer_now_is_a_503_naming_why(make):
    answer = get(make(Refusing()), "/api/key_levels", "symbol=F&expiry=2026-11-27")
    assert answer.status == 503 and "run mdw-schwab-login" in answer.json["error"]
    answer = get(make(live=False), "/api/market_snapshot", "symbol=F&expiry=2026-11-27")
    assert answer.status == 503 and "no provider is configured" in answer.json["error"]


# -- store-backed datasets -------------------------------------------------------------------------

def test_market_sentiment_in_the_old_shape_and_its_history(make):
    app = make()
    body = get(app, "/api/market_sentiment").json
    assert body["count"] == 2 and set(body["data"]) == {"SPY", "QQQ"}
    spy = body["data"]["SPY"]
    assert {"price", "total_call_volume", "total_put_volume", "pc_volume_ratio", "total_call_oi", "total_put_oi",
            "pc_oi_ratio", "call_gamma", "put_gamma", "net_gamma", "iv_rank", "avg_iv", "sentiment_score",
            "sentiment_label", "data_quality", "timestamp"} <= set(spy)
    assert 0 <= spy["sentiment_score"] <= 100 and spy["iv_rank"] is None  # one day of ATM IV history so far
    history = get(app, "/api/market_sentiment/history", "symbol=SPY&hours=1").json
    assert history["count"] == 1 and history["data"][0]["timestamp"] == spy["timestamp"]
    csv = get(app, "/api/market_sentiment/history", "format=csv")
    assert csv.status == 200 and csv.body.startswith(b"symbol,price,")


def test_top_opportunities_and_fear_greed_read_the_last_thirty_minutes(make):
    body = get(make(), "/api/top_opportunities", "limit=5").json
    assert body["count"] == 5 and body["window_minutes"] == 30
    scores = [r["composite_score"] for r in body["opportunities"]]
    assert scores == sorted(scores, reverse=True) and any(r["strike"] for r in body["opportunities"])
    mood = get(make(), "/api/market_fear_greed").json
    assert mood["sentiment"] in ("EXTREME_FEAR", "FEAR", "SLIGHT_FEAR", "NEUTRAL", "GREED")
    assert mood["symbols_analyzed"] > 0
    stale = make(now=NOW + dt.timedelta(minutes=31))
    answer = get(stale, "/api/market_fear_greed")
    assert answer.status == 404 and "No recent data" in answer.json["error"]
    assert get(stale, "/api/top_opportunities").json["count"] == 0


def test_cycle_scanner_filters(make):
    app = make()
    everything = get(app, "/api/cycle_scanner", "limit=1000").json
    assert everything["count"] > 0 and everything["scan_time"] and everything["filter"] == "all"
    kinds = {r["signal_type"] for r in everything["data"]}
    assert "NONE" not in kinds
    sell = get(app, "/api/cycle_scanner", "filter=sell&limit=1000").json["data"]
    assert {r["signal_type"] for r in sell} <= {"PEAK", "APPROACHING_PEAK"}
    assert all(r["extremum_date"] for r in sell if r["signal_type"] == "PEAK")


def test_skew_oi_flows_and_the_stored_chains(make):
    app = make()
    skew = get(app, "/api/skew_metrics", "symbol=SPY").json
    assert skew["count"] == 5 and {"atm_iv", "skew_25d", "put_call_ratio", "unusual_contracts"} <= set(skew["data"][0])
    flows = get(app, "/api/oi_flows", "limit=3").json["data"]
    assert flows and all(f["vol_oi_ratio"] >= 3 for f in flows)
    chains = get(app, "/api/chains").json
    assert chains["count"] == 102 and {"symbol", "expiry", "fetched_at", "contracts"} == set(chains["data"][0])
