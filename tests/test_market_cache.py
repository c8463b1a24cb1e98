"""Request economy: daily bars fetched once a day and kept current from quotes; expirations once a day;
chains stored for every dataset. In-process cycles on the simulated market, default universe."""
import datetime as dt
import math

import numpy as np
import pytest

from tests.faulty_provider import FaultyProvider
from tests.test_scanners import make_scan
from workers import technical, watchlist, whale_flows
from workers.providers.sim import SimProvider
from workers.store import StoreReader, StoreWriter
from workers.store.market import MarketCache
from workers.universe import WATCHLIST, WHALE_SYMBOLS
from tests.clock import Clock

OPEN = dt.datetime(2026, 11, 25, 15, 0, tzinfo=dt.timezone.utc)  # 10:00 in New York, a Wednesday


def counted(clock):
    return FaultyProvider(SimProvider(seed=1, clock=clock))


def calls(provider, method):
    return sum(1 for m, _ in provider.calls if m == method)


def scans(tmp_path, clock, provider):
    """A watchlist and a MACD scan sharing one store, both on `clock`."""
    def make(scan_class, kind):
        scan, _ = make_scan(scan_class, kind, tmp_path, provider=provider)
        scan.store = StoreWriter(tmp_path, now=clock)
        return scan
    return make(watchlist.WatchlistScan, "watchlist"), make(technical.MacdScan, "macd")


def test_technical_scanners_fetch_bars_once_a_day_and_equal_a_full_refetch(tmp_path):
    clock = Clock(OPEN)
    provider = counted(clock)
    quotes, macd = scans(tmp_path / "cached", clock, provider)
    assert macd.run_cycle()["fetched"] == len(WATCHLIST)
    vpb, _ = make_scan(technical.VpbScan, "vpb", tmp_path / "cached", provider=provider)
    vpb.store = StoreWriter(tmp_path / "cached", now=clock)
    assert vpb.run_cycle()["fetched"] == 0  # another scanner's fill serves it
    for minutes in (30, 120, 300):  # the session goes on; quotes keep today's bar current
        clock.now = OPEN + dt.timedelta(minutes=minutes)
        assert quotes.run_cycle()["bars_updated"] == len(WATCHLIST)
        before = calls(provider, "daily_bars")
        counts = macd.run_cycle()
        assert counts["fetched"] == 0 and calls(provider, "daily_bars") == before
    fresh, _ = make_scan(technical.MacdScan, "macd", tmp_path / "fresh", provider=counted(clock))
    fresh.store = StoreWriter(tmp_path / "fresh", now=clock)
    fresh.run_cycle()
    cached = {r["symbol"]: r for r in StoreReader(tmp_path / "cached", now=clock).macd(limit=1000)}
    full = {r["symbol"]: r for r in StoreReader(tmp_path / "fresh", now=clock).macd(limit=1000)}
    assert set(cached) == set(full) == set(WATCHLIST)
    for symbol in WATCHLIST:  # the quote's last price is cents-rounded, the bar's close is not
        for field in ("price", "macd", "signal", "histogram"):
            assert cached[symbol][field] == pytest.approx(full[symbol][field], rel=1e-3, abs=1e-2), (symbol, field)
        assert (cached[symbol]["bullish_cross"], cached[symbol]["bearish_cross"]) == (
            full[symbol]["bullish_cross"], full[symbol]["bearish_cross"])


def test_the_next_day_the_history_is_fetched_again(tmp_path):
    clock = Clock(OPEN)
    provider = counted(clock)
    _, macd = scans(tmp_path, clock, provider)
    macd.run_cycle()
    clock.now = OPEN + dt.timedelta(days=1)
    assert macd.run_cycle()["fetched"] == len(WATCHLIST)


def test_a_split_makes_the_quote_disagree_and_the_history_is_fetched_again(tmp_path, caplog):
    clock = Clock(OPEN)
    provider = counted(clock)
    quotes, macd = scans(tmp_path, clock, provider)
    macd.run_cycle()
    cache = MarketCache(StoreWriter(tmp_path, now=clock))
    cache.writer.transaction("test", lambda conn: conn.execute(  # what a 4:1 split looks like to a stale history
        "UPDATE daily_bars SET open = open * 4, high = high * 4, low = low * 4, close = close * 4 "
        "WHERE symbol = 'NVDA'"))
    counts = quotes.run_cycle()
    assert counts["bars_updated"] == len(WATCHLIST) - 1
    assert "NVDA: the quote's previous close" in caplog.text and "fetched again" in caplog.text
    before = [s for m, s in provider.calls if m == "daily_bars"]
    assert macd.run_cycle()["fetched"] == 1
    assert [s for m, s in provider.calls if m == "daily_bars"][len(before):] == [("NVDA",)]
    stored = cache.bars(["NVDA"])["NVDA"]["close"]
    real = SimProvider(seed=1, clock=clock).daily_bars("NVDA", 365)["close"]
    assert np.allclose(stored.iloc[:-1].to_numpy(), real.iloc[:-1].to_numpy())


def test_a_missing_day_in_the_history_is_fetched_again(tmp_path):
    clock = Clock(OPEN)
    provider = counted(clock)
    quotes, macd = scans(tmp_path, clock, provider)
    macd.run_cycle()
    MarketCache(StoreWriter(tmp_path, now=clock)).writer.transaction("test", lambda conn: conn.execute(
        "DELETE FROM daily_bars WHERE symbol = 'AAPL' AND date = '2026-11-24'"))  # yesterday's bar lost
    quotes.run_cycle()
    assert macd.run_cycle()["fetched"] == 1


def test_whale_flows_fetch_expirations_once_a_day_and_store_the_chains(tmp_path):
    clock = Clock(OPEN)
    provider = counted(clock)
    scan, ctx = make_scan(whale_flows.WhaleFlowsScan, "whale_flows", tmp_path, provider=provider)
    scan.store = StoreWriter(tmp_path, now=clock)
    for cycle in range(3):
        clock.now = OPEN + dt.timedelta(minutes=5 * cycle)
        scan.run_cycle()
    assert calls(provider, "expirations") == len(WHALE_SYMBOLS)  # once each, not once per cycle
    assert calls(provider, "option_chain") == 3 * (len(WHALE_SYMBOLS) * 4 + 2)  # SPY and QQQ: 5 expirations
    expiry = SimProvider(seed=1, clock=clock).expirations("SPY", 4)[0].isoformat()
    chain = MarketCache(scan.store).chain("SPY", expiry)
    assert len(chain) > 10 and set(chain["type"]) == {"CALL", "PUT"}
    assert chain["fetched_at"].nunique() == 1  # this cycle's, replaced whole


def test_check_config_prints_the_request_budget_and_warns_above_80_percent(tmp_path):
    import subprocess

    from tests import configs

    path = tmp_path / "c.toml"
    path.write_text('[provider]\nkind = "schwab"\n')
    result = subprocess.run([*configs.MDWD, "--check-config", str(path)], capture_output=True, text=True,
                            timeout=60, env=configs.mdwd_environ())
    assert result.returncode == 0 and "warning" not in result.stderr
    assert ("request budget, steady state: watchlist 4.0/min, whale_flows 20.4/min, macd 0.1/min, vpb 0.0/min, "
            "ttm 0.0/min, cycle_scanner 0.0/min; total 24.5 of requests_per_minute 120 (20%)") in result.stdout
    assert "cold start: 174 bar histories and 25 expiration lists" in result.stdout
    path.write_text('[provider]\nkind = "schwab"\n[workers.watchlist]\ninterval = 10\nbatch_size = 20\n')
    result = subprocess.run([*configs.MDWD, "--check-config", str(path)], capture_output=True, text=True,
                            timeout=60, env=configs.mdwd_environ())
    assert result.returncode == 0
    assert "total 74.5 of requests_per_minute 120 (62%)" in result.stdout
    path.write_text('[provider]\nkind = "schwab"\nrequests_per_minute = 80\n'
                    '[workers.watchlist]\ninterval = 10\nbatch_size = 20\n')
    result = subprocess.run([*configs.MDWD, "--check-config", str(path)], capture_output=True, text=True,
                            timeout=60, env=configs.mdwd_environ())
    assert "warning: the workers would use 93% of provider.requests_per_minute (80)" in result.stderr


def test_a_quote_before_the_first_trade_writes_no_bar(tmp_path):
    clock = Clock(OPEN)
    quotes, macd = scans(tmp_path, clock, counted(clock))
    macd.run_cycle()
    cache = MarketCache(StoreWriter(tmp_path, now=clock))
    before = cache.bars(["AAPL"])["AAPL"]
    previous_close = float(before["close"].iloc[-2])
    quote = {"price": previous_close, "daily_change": 0.0, "volume": 0, "open": 0.0, "high": 0.0, "low": 0.0,
             "session": "2026-11-25"}  # what Schwab sends before the open
    assert cache.update_session_bars({"AAPL": quote}) == (0, [])
    assert cache.bars(["AAPL"])["AAPL"].equals(before)


def test_an_after_hours_trade_moves_the_watchlist_price_but_not_the_sessions_close(tmp_path):
    clock = Clock(OPEN)
    quotes, macd = scans(tmp_path, clock, counted(clock))
    macd.run_cycle()
    cache = MarketCache(StoreWriter(tmp_path, now=clock))
    bar = cache.bars(["AAPL"])["AAPL"].iloc[-1]
    previous_close = float(cache.bars(["AAPL"])["AAPL"]["close"].iloc[-2])
    quote = {"price": bar["close"] * 1.02, "daily_change": bar["close"] * 1.02 - previous_close, "volume": 10,
             "open": bar["open"], "high": bar["high"], "low": bar["low"], "session_last": bar["close"],
             "session": "2026-11-25"}
    assert cache.update_session_bars({"AAPL": quote}) == (1, [])
    assert cache.bars(["AAPL"])["AAPL"]["close"].iloc[-1] == pytest.approx(bar["close"])


def test_schwab_takes_the_sessions_close_from_its_regular_market_fields():
    from workers.providers.schwab_payloads import parse_quote

    entry = {"quote": {"lastPrice": 101.5, "closePrice": 99.0, "totalVolume": 5, "openPrice": 99.5,
                       "highPrice": 100.5, "lowPrice": 99.1, "tradeTime": 1764720000000},  # 2025-12-03 00:00 UTC
             "regular": {"regularMarketLastPrice": 100.25, "regularMarketTradeTime": 1764694740000}}  # 11:59 New York
    quote = parse_quote("AAPL", entry, invalid=False)
    assert quote["price"] == 101.5 and quote["session_last"] == 100.25 and quote["session"] == "2025-12-02"
    bare = parse_quote("AAPL", {"quote": entry["quote"]}, invalid=False)
    assert math.isnan(bare["session_last"]) and bare["session"] == "2025-12-02"  # 19:00 New York, the 2nd
