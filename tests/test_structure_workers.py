"""The market_structure and cycle_scanner workers' cycles on the simulated market, with a real store."""
import datetime as dt

import pytest

from tests.test_scanners import NOW, make_scan
from workers import market_structure, technical, whale_flows
from workers.providers.sim import SimProvider
from workers.scanner import CycleFailed
from workers.store import StoreReader, StoreWriter
from workers.store.market import MarketCache
from workers.universe import WHALE_SYMBOLS
from tests.clock import Clock


def whale_cycle(tmp_path, clock):
    scan, _ = make_scan(whale_flows.WhaleFlowsScan, "whale_flows", tmp_path,
                        provider=SimProvider(seed=1, clock=clock))
    scan.store = StoreWriter(tmp_path, now=clock)
    return scan.run_cycle()


def structure_scan(tmp_path, clock, **options):
    scan, ctx = make_scan(market_structure.MarketStructureScan, "market_structure", tmp_path, **options)
    scan.store = StoreWriter(tmp_path, now=clock)
    return scan, ctx


def test_whale_flows_fetch_spy_and_qqq_for_five_expirations_and_the_others_for_four(tmp_path):
    clock = Clock(NOW)
    counts = whale_cycle(tmp_path, clock)
    assert counts["chains"] == 4 * len(WHALE_SYMBOLS) + 2
    chains = MarketCache(StoreWriter(tmp_path, now=clock)).chains(WHALE_SYMBOLS, "2026-11-25")
    per_symbol = chains.groupby("symbol")["expiry"].nunique()
    assert per_symbol["SPY"] == per_symbol["QQQ"] == 5 and per_symbol["AAPL"] == 4
    assert chains["gamma"].notna().all()  # the Greeks are stored with the chains


def test_a_market_structure_cycle_fills_every_dataset_from_the_stored_chains(tmp_path):
    clock = Clock(NOW)
    whale_cycle(tmp_path, clock)
    scan, ctx = structure_scan(tmp_path, clock)
    assert scan.provider is not None  # make_scan hands one; the worker itself opens none (needs_provider)
    counts = scan.run_cycle()
    assert counts["symbols"] == len(WHALE_SYMBOLS) and counts["chains"] == 4 * len(WHALE_SYMBOLS) + 2
    assert counts["stale_chains"] == 0 and counts["sentiment"] == 2
    reader = StoreReader(tmp_path, now=clock)
    assert all(reader.last_update()[d] for d in ("key_levels", "skew_metrics", "oi_flows", "market_sentiment"))
    spy = reader.stored_key_levels("SPY", "all")
    assert spy["call_wall"] and spy["put_oi_wall"] and spy["chain_fetched_at"]
    moods = {row["symbol"]: row for row in reader.latest_sentiment()}
    assert set(moods) == {"SPY", "QQQ"} and moods["SPY"]["expirations"] == 5
    assert moods["SPY"]["iv_rank"] is None and moods["SPY"]["iv_history_days"] == 1  # one day of history
    assert moods["SPY"]["sentiment_label"] in ("BULLISH", "SLIGHTLY_BULLISH", "NEUTRAL", "SLIGHTLY_BEARISH", "BEARISH")
    skews = reader.latest_skew()
    assert len(skews) == counts["chains"] and any(s["skew_25d"] for s in skews)
    assert [b[0] for b in ctx.beats] == ["read", "scan", "store"]


def test_before_whale_flows_stored_anything_a_cycle_waits_then_reports_an_empty_success(tmp_path):
    clock = Clock(NOW)
    scan, ctx = structure_scan(tmp_path, clock, wait_for_chains=0.0)
    assert scan.run_cycle() == {"chains": 0, "waiting_for": "whale_flows"}
    assert StoreReader(tmp_path, now=clock).last_update()["key_levels"] is None


def test_chains_whale_flows_could_not_refresh_fail_the_cycle_and_the_data_stays(tmp_path):
    clock = Clock(NOW)
    whale_cycle(tmp_path, clock)
    scan, _ = structure_scan(tmp_path, clock)
    scan.run_cycle()
    clock.now = NOW + dt.timedelta(seconds=901)
    with pytest.raises(CycleFailed, match=r"older than max_chain_age \(900s; the newest is 901s old\)"):
        scan.run_cycle()
    assert StoreReader(tmp_path, now=clock).stored_key_levels("SPY", "all") is not None


def test_the_cycle_scanner_stores_every_symbol_and_records_its_peaks_and_bottoms(tmp_path):
    scan, _ = make_scan(technical.CycleScan, "cycle_scanner", tmp_path)
    counts = scan.run_cycle()
    reader = StoreReader(tmp_path, now=lambda: NOW)
    rows = reader.cycle_scanner("all", limit=1000)
    assert counts["stored"] == counts["symbols"] and rows
    confirmed = [r for r in rows if r["signal_type"] in ("PEAK", "BOTTOM")]
    assert confirmed, "the simulated market has cycle peaks and bottoms on any day"
    signals = reader.signals(limit=1000)
    assert {(s["symbol"], s["values"]["extremum_date"]) for s in signals} == \
        {(r["symbol"], r["extremum_date"]) for r in confirmed}


def test_check_config_warns_when_the_sentiment_wants_more_expirations_than_whale_flows_fetches():
    from tests import configs
    from workers import budget_plan

    config = configs.from_tables({"workers": {"whale_flows": {"more_expirations": {"SPY": 3, "QQQ": 5}}}}, path="")
    [warning] = [line for line in budget_plan.describe(config) if line.startswith("warning")]
    assert "sentiment_expirations = 5, but whale_flows fetches fewer for SPY (3)" in warning
    assert not [line for line in budget_plan.describe(configs.from_tables({}, path="")) if "warning" in line]
