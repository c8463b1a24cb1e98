"""Scan cycles on the simulated market, with a fake worker context and a real store."""
import datetime as dt
import time

import numpy as np
import pandas as pd
import pytest

from supervisor import config as config_module
from tests import configs
from workers import technical, watchlist, whale_flows
from tests.faulty_provider import FaultyProvider
from workers.providers.sim import SimProvider
from workers.quarantine import Quarantine
from workers.scanner import CycleFailed
from workers.store import StoreReader, StoreWriter

NOW = dt.datetime(2026, 11, 25, 20, 0, tzinfo=dt.timezone.utc)  # a Wednesday, 3 pm in New York


class FakeContext:
    """What a scan sees of its worker: options and a heartbeat that records."""

    def __init__(self, kind, state_dir, handed_over=None, **options):
        spec = configs.build({"w": {"kind": kind, "interval": 60, **options}}).workers["w"]
        self.spec, self.name, self.options, self.state_dir = spec, "w", dict(spec.options), str(state_dir)
        self.handed_over = handed_over  # a protocol.Beat, as the supervisor hands it over
        self.beats = []

    def beat(self, phase, item=None):
        self.beats.append((phase, item))

    def hung_on(self, phase, item):
        return self.handed_over is not None and self.handed_over.names(phase, item)

    def idle(self, seconds, phase="idle"):
        self.beats.append((phase, None))


def make_scan(scan_class, kind, tmp_path, provider=None, quarantine=None, handed_over=None, **options):
    ctx = FakeContext(kind, tmp_path, handed_over, **options)
    provider = provider or SimProvider(seed=1, clock=lambda: NOW)
    quarantine = quarantine or Quarantine(None)
    return scan_class(ctx, provider, StoreWriter(tmp_path, now=lambda: NOW), quarantine), ctx


def test_watchlist_cycle_stores_every_symbol_and_beats_per_batch(tmp_path):
    scan, ctx = make_scan(watchlist.WatchlistScan, "watchlist", tmp_path, batch_size=50)
    counts = scan.run_cycle()
    symbols = ctx.options["symbols"]
    assert counts["stored"] == len(symbols) == counts["fresh"]
    assert [b for b in ctx.beats if b[0] == "fetch"] == [
        ("fetch", ",".join(symbols[i:i + 50])) for i in range(0, len(symbols), 50)]
    rows = StoreReader(tmp_path, now=lambda: NOW).watchlist(order_by="symbol", limit=1000)
    assert len(rows) == len(symbols) and all(r["price"] > 0 for r in rows)


def test_failing_symbol_keeps_its_previous_row_and_the_cycle_succeeds(tmp_path):
    sim = SimProvider(seed=1, clock=lambda: NOW)
    faulty = FaultyProvider(sim)
    scan, ctx = make_scan(watchlist.WatchlistScan, "watchlist", tmp_path, provider=faulty, batch_size=1,
                          symbols=["AAPL", "MSFT", "TSLA"])
    scan.run_cycle()
    faulty.fail = frozenset({"TSLA"})
    counts = scan.run_cycle()
    assert counts == {"symbols": 3, "fresh": 2, "stored": 3, "missed": 1, "quarantined": 0, "bars_updated": 0}
    rows = {r["symbol"] for r in StoreReader(tmp_path).watchlist(order_by="symbol")}
    assert rows == {"AAPL", "MSFT", "TSLA"}


def test_cycle_with_nothing_fetched_fails_and_keeps_the_stored_data(tmp_path):
    faulty = FaultyProvider(SimProvider(seed=1, clock=lambda: NOW))
    scan, _ = make_scan(watchlist.WatchlistScan, "watchlist", tmp_path, provider=faulty, symbols=["AAPL", "MSFT"])
    scan.run_cycle()
    faulty.fail = frozenset({"AAPL", "MSFT"})
    with pytest.raises(CycleFailed, match="no quote for any of 2 symbols"):
        scan.run_cycle()
    assert len(StoreReader(tmp_path).watchlist()) == 2


def test_suspects_are_fetched_alone_and_quarantined_symbols_not_at_all(tmp_path):
    quarantine = Quarantine(None)
    quarantine.suspect(["MSFT"], "its batch failed")
    quarantine.add("NVDA", "hung the previous process")
    symbols = ["AAPL", "MSFT", "TSLA", "NVDA", "AMD", "META"]
    assert watchlist.plan(symbols, 2, quarantine) == ["AAPL,TSLA", "AMD,META", "MSFT"]


@pytest.mark.parametrize("scan_class, kind, dataset", [
    (technical.MacdScan, "macd", "macd_scanner"),
    (technical.VpbScan, "vpb", "vpb_scanner"),
    (technical.TtmScan, "ttm", "ttm_squeeze_scanner"),
])
def test_technical_cycles_store_one_row_per_symbol(tmp_path, scan_class, kind, dataset):
    scan, ctx = make_scan(scan_class, kind, tmp_path)
    counts = scan.run_cycle()
    assert counts["stored"] == len(ctx.options["symbols"])
    assert ("bars", "AAPL") in ctx.beats and ("scan", dataset) in ctx.beats and ("store", dataset) in ctx.beats
    reader = StoreReader(tmp_path)
    assert reader.last_update()[dataset] is not None
    assert reader.stats()[f"{dataset}_count"] == len(ctx.options["symbols"])


def test_simulated_market_produces_every_technical_signal(tmp_path):
    for scan_class, kind in ((technical.MacdScan, "macd"), (technical.VpbScan, "vpb"), (technical.TtmScan, "ttm")):
        make_scan(scan_class, kind, tmp_path)[0].run_cycle()
    reader = StoreReader(tmp_path)
    assert reader.macd(filter="bullish") and reader.macd(filter="bearish")
    assert reader.vpb(filter="bullish") and reader.vpb(filter="bearish")
    assert reader.ttm(filter="active") and reader.ttm(filter="fired")


def test_whale_cycle_stores_scored_flows_with_every_api_field(tmp_path):
    scan, ctx = make_scan(whale_flows.WhaleFlowsScan, "whale_flows", tmp_path)
    counts = scan.run_cycle()
    more = ctx.options["more_expirations"]  # SPY and QQQ: 5, for the market sentiment
    assert more == {"SPY": 5, "QQQ": 5}
    assert counts["chains"] == len(ctx.options["symbols"]) * ctx.options["expirations"] + 2
    flows = StoreReader(tmp_path, now=lambda: NOW).whale_flows(limit=1000, hours=24)
    assert flows, "the simulated market injects large trades; the scanner found none"
    for flow in flows:
        assert flow["type"] in ("CALL", "PUT") and 0 <= flow["whale_score"] <= 100
        assert flow["vol_oi"] >= ctx.options["min_vol_oi"] and flow["total_premium"] >= ctx.options["min_premium"]
        assert flow["total_premium"] == pytest.approx(flow["volume"] * flow["premium"] * 100, rel=1e-4)  # stored 4 places
    assert ("chain", f"{flows[0]['symbol']} {flows[0]['expiry']}") in ctx.beats
    assert counts["retention_days"] == ctx.options["retention_days"]  # how the API learns it


def test_whale_rules_on_a_hand_built_chain():
    chain = pd.DataFrame({
        "type": ["CALL", "CALL", "PUT", "PUT"], "strike": [100.0, 105.0, 95.0, 90.0],
        "mark": [2.0, 0.5, 3.0, 10.0], "volume": [5000, 5000, 400, 3000], "open_interest": [1000, 100, 10, 2000],
        "delta": [0.45, 0.2, -0.4, -0.8], "iv": [25.0, 40.0, 30.0, 60.0],
        "expiry": [dt.date(2026, 12, 4)] * 4, "dte": [7, 7, 7, 7], "underlying_price": [100.0] * 4,
    })
    flows = whale_flows.find_whales(chain, "XYZ", min_volume=500, min_vol_oi=2.0, min_premium=100_000)
    # row 0: vol/OI 5, notional 1.0M: a whale. row 1: notional 250k, vol/OI 50: a whale.
    # row 2: volume 400 < 500. row 3: vol/OI 1.5 < 2.
    assert list(flows["strike"]) == [100.0, 105.0]
    assert list(flows["total_premium"]) == [1_000_000.0, 250_000.0]
    assert list(flows["expiry"]) == ["2026-12-04", "2026-12-04"]
    # Score of row 0, by the documented formula: notional log10(10)/2 = 0.5; vol/OI log2(2.5)/4;
    # delta 1 - |0.45-0.4|/0.4; DTE 1 - 7/35; IV 1 (25% <= 30%).
    expected = 40 * 0.5 + 25 * np.log2(2.5) / 4 + 15 * (1 - 0.05 / 0.4) + 10 * 0.8 + 10 * 1.0
    assert flows["whale_score"][0] == pytest.approx(expected, abs=0.01)


def test_whale_premium_is_the_mark_not_the_notional_the_old_dashboard_multiplies_by_volume():
    chain = pd.DataFrame({
        "type": ["CALL", "PUT"], "strike": [100.0, 95.0], "mark": [2.35, 0.199], "volume": [5000, 6000],
        "open_interest": [1000, 1200], "delta": [0.4, -0.4], "iv": [30.0, 30.0],
        "expiry": [dt.date(2026, 12, 4)] * 2, "dte": [7, 7], "underlying_price": [100.0] * 2,
    })
    # 0.199 x 6,000 x 100 = 119,400 passes min_premium 100,000 only as a notional, never as a price.
    flows = whale_flows.find_whales(chain, "XYZ", min_volume=500, min_vol_oi=2.0, min_premium=100_000)
    assert list(flows["premium"]) == [2.35, 0.199]
    assert list(flows["total_premium"]) == [1_175_000.0, 119_400.0]
    # The old dashboard's own figure (premium x volume) is the notional / 100, as with the old service.
    assert [p * v for p, v in zip(flows["premium"], flows["volume"])] == pytest.approx([11_750.0, 1_194.0])
    # The score's notional part: 1.175M is 11.75x the minimum, 119.4k is 1.194x.
    parts = (flows["whale_score"] - 25 * np.log2(5 / 2) / 4 - 15 - 10 * 0.8 - 10) / 40
    assert list(parts) == pytest.approx([np.log10(11.75) / 2, np.log10(1.194) / 2], abs=1e-3)


def test_quarantine_skips_the_item_survives_a_restart_and_expires(tmp_path):
    now = [1000.0]
    path = tmp_path / "q.json"
    first = Quarantine(path, seconds=60, clock=lambda: now[0])
    first.add("TSLA", "hung the previous process")
    second = Quarantine(path, seconds=60, clock=lambda: now[0])  # the next incarnation
    assert second.holds("TSLA") and second.listing()[0]["item"] == "TSLA"
    now[0] += 61
    assert not second.holds("TSLA") and second.listing() == []


def test_repeated_failures_quarantine_an_item(tmp_path):
    quarantine = Quarantine(None, seconds=60, after_failures=3)
    for _ in range(2):
        quarantine.failed("TSLA", "timeout")
    assert not quarantine.holds("TSLA")
    quarantine.failed("TSLA", "timeout")
    assert quarantine.holds("TSLA")


def test_scanner_kinds_validate_their_options():
    with pytest.raises(config_module.ConfigError, match=r"workers.w.symbols = \['aapl'\]: allowed is a non-empty"):
        configs.build({"w": {"kind": "watchlist", "interval": 1, "symbols": ["aapl"]}})
    with pytest.raises(config_module.ConfigError, match=r"provider.kind = 'polygon': allowed is sim"):
        configs.from_tables({**configs.tables({}), "provider": {"kind": "polygon"}})


@pytest.fixture
def fake_schwab():
    from tests.fake_schwab import FakeSchwab

    server = FakeSchwab().start()
    yield server
    server.stop()


@pytest.mark.parametrize("mode", ["hang", "trickle"])
def test_hung_upstream_for_one_symbol_costs_one_deadline_and_every_other_symbol_is_stored(
        tmp_path, fake_schwab, mode):
    from tests.schwab_fixture import MARKET_TIME, schwab_against

    deadline = 0.5
    symbols = ["AAPL", "MSFT", "TSLA", "NVDA", "AMD", "META"]
    provider = schwab_against(fake_schwab, tmp_path, deadline)
    try:
        scan, _ = make_scan(technical.MacdScan, "macd", tmp_path, provider=provider, symbols=symbols)
        scan.store = StoreWriter(tmp_path, now=lambda: MARKET_TIME)
        scan.timeout = deadline  # [provider] request_timeout
        started = time.monotonic()
        scan.run_cycle()
        normal = time.monotonic() - started
        fake_schwab.misbehave("/marketdata/v1/pricehistory", mode, symbol="TSLA", interval=0.2)
        scan.store = StoreWriter(tmp_path, now=lambda: MARKET_TIME + dt.timedelta(days=1))  # bars are due again
        started = time.monotonic()
        counts = scan.run_cycle()
        took = time.monotonic() - started
    finally:
        provider.close()
    assert counts["fresh"] == 5 and counts["failed"] == 1
    assert took <= deadline + normal + 0.5, f"{mode}: cycle took {took:.2f}s (normal {normal:.2f}s)"
    assert {r["symbol"] for r in StoreReader(tmp_path).macd(limit=100)} == set(symbols)  # TSLA's row carried over


def test_locked_database_fails_the_cycle_clearly_and_keeps_the_previous_data(tmp_path):
    import sqlite3

    from workers.store import StoreError

    scan, _ = make_scan(watchlist.WatchlistScan, "watchlist", tmp_path, symbols=["AAPL", "MSFT"])
    scan.store = StoreWriter(tmp_path, now=lambda: NOW, busy_timeout_ms=50)
    scan.run_cycle()
    blocker = sqlite3.connect(tmp_path / "market_data.db")
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="watchlist.*locked"):
            scan.run_cycle()
        assert len(StoreReader(tmp_path).watchlist()) == 2  # readers are not blocked, and see the old data
    finally:
        blocker.rollback()
        blocker.close()
    assert scan.run_cycle()["stored"] == 2  # the next cycle works once the lock is gone


def test_whale_cycle_without_any_expiration_ahead_says_so(tmp_path):
    class NoExpirations(SimProvider):
        def expirations(self, symbol, count=4, *, timeout=None):
            return []

    scan, _ = make_scan(whale_flows.WhaleFlowsScan, "whale_flows", tmp_path,
                        provider=NoExpirations(seed=1, clock=lambda: NOW), symbols=["SPY", "QQQ"])
    with pytest.raises(CycleFailed, match="no expiration ahead for any of 2 symbols"):
        scan.run_cycle()
