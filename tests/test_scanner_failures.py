"""How scanners meet failures: split batches, handed-over items, provider-wide failures, honest rows.

In-process cycles on the simulated market with the default universe and
batch sizes; the faults come from tests/faulty_provider.py, and a hung
predecessor's handover is the Beat the supervisor would pass.
"""
import datetime as dt

import pytest

from supervisor.shared.protocol import Beat, item_key
from tests.faulty_provider import FaultyProvider
from tests.test_scanners import NOW, make_scan
from workers import technical, watchlist, whale_flows
from workers.providers.base import AuthError, BadPayload, BudgetExhausted, DeadlineExceeded, HttpStatusError
from workers.providers.sim import SimProvider
from workers.quarantine import Quarantine
from workers.scanner import ProviderDown
from workers.store import StoreReader, StoreWriter
from workers.universe import WATCHLIST


def handover(phase, item):
    """What the supervisor hands a successor: the last beat, display cut to 200 characters."""
    return Beat(phase, item if len(item) <= 200 else item[:197] + "...", item_key(item))


def faulty(fail=()):
    return FaultyProvider(SimProvider(seed=1, clock=lambda: NOW), fail)


def rows(tmp_path, dataset="watchlist"):
    reader = StoreReader(tmp_path, now=lambda: NOW)
    fetch = {"watchlist": lambda: reader.watchlist(order_by="symbol", limit=1000),
             "macd_scanner": lambda: reader.macd(limit=1000)}[dataset]
    return {r["symbol"]: r for r in fetch()}


def test_batch_handed_over_by_a_hung_predecessor_is_split_and_every_symbol_stored(tmp_path):
    first_batch = ",".join(WATCHLIST[:50])  # 50 symbols: its display text is cut, its key is not
    provider = faulty()
    scan, ctx = make_scan(watchlist.WatchlistScan, "watchlist", tmp_path, provider=provider,
                          quarantine=Quarantine(tmp_path / "q.json"), handed_over=handover("fetch", first_batch))
    counts = scan.run_cycle()
    assert counts["fresh"] == len(WATCHLIST) and counts["stored"] == len(WATCHLIST)
    singles = [symbols for method, symbols in provider.calls if len(symbols) == 1]
    assert singles == [(s,) for s in WATCHLIST[:50]]  # the suspect batch, one symbol at a time
    assert set(rows(tmp_path)) == set(WATCHLIST)
    assert Quarantine(tmp_path / "q.json").suspects == {}  # each proved healthy alone


def test_symbol_handed_over_by_a_hung_predecessor_is_quarantined_and_the_others_stored(tmp_path):
    scan, ctx = make_scan(watchlist.WatchlistScan, "watchlist", tmp_path, quarantine=Quarantine(tmp_path / "q.json"),
                          handed_over=handover("fetch", "TSLA"))
    scan.quarantine.suspect(WATCHLIST[:50], "its batch hung the previous process (killed)")
    counts = scan.run_cycle()
    assert counts["fresh"] == len(WATCHLIST) - 1 and counts["quarantined"] == 1
    assert [q["item"] for q in Quarantine(tmp_path / "q.json").listing()] == ["TSLA"]
    assert "TSLA" not in rows(tmp_path)


@pytest.mark.parametrize("error", [
    DeadlineExceeded("GET /marketdata/v1/quotes: no complete answer within the 10.00s deadline (server hung)"),
    BadPayload("GET /marketdata/v1/quotes: truncated body (connection closed mid-body)"),
    HttpStatusError("GET /marketdata/v1/quotes: HTTP 502", status=502),
], ids=["deadline", "trickle", "error"])
def test_batch_that_fails_as_a_whole_is_split_and_only_the_guilty_symbol_is_quarantined(tmp_path, error):
    provider = faulty({"TSLA": error})
    quarantine = Quarantine(tmp_path / "q.json", after_failures=3)
    scan, _ = make_scan(watchlist.WatchlistScan, "watchlist", tmp_path, provider=provider, quarantine=quarantine)
    for cycle in range(3):
        counts = scan.run_cycle()
        assert counts["fresh"] == len(WATCHLIST) - 1, f"cycle {cycle}: every other symbol is quoted"
    assert [q["item"] for q in quarantine.listing()] == ["TSLA"]
    assert quarantine.failures == {} and quarantine.suspects == {}
    batched = [symbols for _, symbols in provider.calls if len(symbols) > 1]
    assert sum("TSLA" in b for b in batched) == 1  # after the first split, TSLA never again sinks a batch


def test_budget_exhaustion_is_not_a_symbol_failure(tmp_path):
    spent = BudgetExhausted("request budget exhausted (120 per 60s shared by all workers)")
    provider = faulty(dict.fromkeys(WATCHLIST, spent))
    quarantine = Quarantine(tmp_path / "q.json", after_failures=1)
    scan, _ = make_scan(technical.MacdScan, "macd", tmp_path, provider=provider, quarantine=quarantine)
    with pytest.raises(ProviderDown, match="BudgetExhausted"):
        scan.run_cycle()
    assert quarantine.listing() == [] and quarantine.failures == {}
    assert len(provider.calls) == 5  # it gave up after five, not one attempt per symbol


def test_dead_login_fails_the_cycle_at_once_and_quarantines_nothing(tmp_path):
    dead = AuthError("Schwab token refresh rejected (invalid_grant): run the login again")
    provider = faulty(dict.fromkeys(WATCHLIST, dead))
    quarantine = Quarantine(tmp_path / "q.json", after_failures=1)
    scan, _ = make_scan(watchlist.WatchlistScan, "watchlist", tmp_path, provider=provider, quarantine=quarantine)
    with pytest.raises(ProviderDown, match="refused our credentials"):
        scan.run_cycle()
    assert len(provider.calls) == 1 and quarantine.listing() == [] and quarantine.suspects == {}


def test_provider_failing_every_call_fails_the_cycle_without_quarantining_every_symbol(tmp_path):
    provider = faulty(set(WATCHLIST))
    quarantine = Quarantine(tmp_path / "q.json", after_failures=1)
    scan, _ = make_scan(technical.TtmScan, "ttm", tmp_path, provider=provider, quarantine=quarantine)
    for _ in range(3):
        with pytest.raises(ProviderDown, match="5 of 5 requests failed the same way"):
            scan.run_cycle()
    assert quarantine.listing() == [] and quarantine.failures == {}


def test_carried_over_row_keeps_the_time_it_was_really_fetched(tmp_path):
    provider = faulty()
    scan, _ = make_scan(watchlist.WatchlistScan, "watchlist", tmp_path, provider=provider)
    scan.run_cycle()
    first = rows(tmp_path)["TSLA"]["updated_at"]
    later = NOW + dt.timedelta(minutes=5)
    scan.store = StoreWriter(tmp_path, now=lambda: later)
    provider.fail = {"TSLA"}
    counts = scan.run_cycle()
    assert counts["missed"] == 1 and counts["stored"] == len(WATCHLIST)
    stored = rows(tmp_path)
    assert stored["TSLA"]["updated_at"] == first  # honest: fetched five minutes ago
    assert stored["AAPL"]["updated_at"] == later.strftime("%Y-%m-%d %H:%M:%S")


def test_a_new_process_keeps_the_rows_of_symbols_it_cannot_fetch(tmp_path):
    make_scan(technical.MacdScan, "macd", tmp_path)[0].run_cycle()
    successor, _ = make_scan(technical.MacdScan, "macd", tmp_path, provider=faulty({"TSLA"}))  # no memory of rows
    successor.run_cycle()
    assert set(rows(tmp_path, "macd_scanner")) == set(WATCHLIST)


def test_technical_symbol_handed_over_is_quarantined(tmp_path):
    quarantine = Quarantine(tmp_path / "q.json")
    scan, ctx = make_scan(technical.VpbScan, "vpb", tmp_path, quarantine=quarantine, handed_over=handover("bars", "NVDA"))
    counts = scan.run_cycle()
    assert counts["quarantined"] == 1 and counts["fresh"] == len(WATCHLIST) - 1
    assert ("bars", "NVDA") not in ctx.beats and [q["item"] for q in quarantine.listing()] == ["NVDA"]


def test_whale_chain_handed_over_is_quarantined_and_the_other_expirations_scanned(tmp_path):
    expiry = SimProvider(seed=1, clock=lambda: NOW).expirations("TSLA", 4)[1].isoformat()
    quarantine = Quarantine(tmp_path / "q.json")
    scan, ctx = make_scan(whale_flows.WhaleFlowsScan, "whale_flows", tmp_path, quarantine=quarantine,
                          handed_over=handover("chain", f"TSLA {expiry}"))
    counts = scan.run_cycle()
    assert counts["quarantined"] == 1 and counts["chains"] == len(ctx.options["symbols"]) * 4 + 2 - 1
    assert [q["item"] for q in quarantine.listing()] == [f"TSLA {expiry}"]
    assert ("chain", f"TSLA {expiry}") not in ctx.beats


@pytest.fixture
def fake_schwab():
    from tests.fake_schwab import FakeSchwab

    server = FakeSchwab().start()
    yield server
    server.stop()


def test_schwab_batches_led_by_a_dripping_and_a_hung_symbol_are_split_and_the_rest_quoted(tmp_path, fake_schwab):
    """The default universe and batch size against the Schwab stand-in; two batches fail by their deadline."""
    from tests.schwab_fixture import MARKET_TIME, schwab_against

    dripping, hung = WATCHLIST[50], WATCHLIST[100]  # the leaders of the second and third batch
    fake_schwab.misbehave("/marketdata/v1/quotes", "trickle", symbol=dripping, interval=0.2)
    fake_schwab.misbehave("/marketdata/v1/quotes", "hang", symbol=hung)
    provider = schwab_against(fake_schwab, tmp_path, deadline=0.5)
    quarantine = Quarantine(tmp_path / "q.json", after_failures=3)
    try:
        scan, _ = make_scan(watchlist.WatchlistScan, "watchlist", tmp_path, provider=provider, quarantine=quarantine)
        scan.store = StoreWriter(tmp_path, now=lambda: MARKET_TIME)
        scan.timeout = 0.5  # [provider] request_timeout
        first = scan.run_cycle()
        assert first["fresh"] == len(WATCHLIST) - 2  # every healthy symbol, in the very first cycle
        for _ in range(2):
            assert scan.run_cycle()["fresh"] == len(WATCHLIST) - 2
        assert sorted(q["item"] for q in quarantine.listing()) == sorted([dripping, hung])
        last = scan.run_cycle()
    finally:
        provider.close()
    assert last == {"symbols": len(WATCHLIST), "fresh": len(WATCHLIST) - 2, "stored": len(WATCHLIST) - 2,
                    "missed": 2, "quarantined": 2, "bars_updated": 0}
    assert scan.tally.requests == {"ok": 4}  # quarantined symbols cost nothing any more: four batches


def test_a_quarantined_symbol_keeps_its_stored_row(tmp_path):
    make_scan(watchlist.WatchlistScan, "watchlist", tmp_path)[0].run_cycle()
    before = rows(tmp_path)["TSLA"]
    later = NOW + dt.timedelta(minutes=1)
    scan, _ = make_scan(watchlist.WatchlistScan, "watchlist", tmp_path, quarantine=Quarantine(tmp_path / "q.json"),
                        handed_over=handover("fetch", "TSLA"))
    scan.store = StoreWriter(tmp_path, now=lambda: later)
    scan.quarantine.suspect(["TSLA"], "its batch hung the previous process (killed)")
    counts = scan.run_cycle()
    assert counts["quarantined"] == 1 and counts["stored"] == len(WATCHLIST)
    assert rows(tmp_path)["TSLA"] == before  # nothing already stored is lost; its time says how old it is
