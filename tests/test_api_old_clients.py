"""The seed system's own pages and bots, answered as they expect (issue 9 §4).

Each request below is byte for byte one that a caller in pkay2402/options-scanner
sends, and each check does what that caller does with the answer:

- pages/2_Trading_Dashboard.py (src/utils/droplet_api.py's fetch_whale_flows, which
  sends sort_by, limit, hours in that order): adds `premium * volume` per symbol and
  prints `Premium: ${premium:.2f}` on each whale card;
- pages/4_Whale_Flow_History.py (commit c93fb3d): hours=720 ("Last 30 Days") and
  hours=999999 ("All Time"), limit=1000;
- pages/8_AI_Copilot.py and discord-bot/bot/services/market_commentary.py:
  /api/vpb_scanner?filter=buy|sell, keeping the rows with buy_signal / sell_signal;
- trading-hub (a browser app, axios from another origin): reads every answer
  through CORS;
- scripts/api_server.py's `GET /` banner.
"""
from __future__ import annotations

import datetime as dt

import pytest

from api.status import whale_retention_days
from tests.api_support import NOW, call, get
from tests.fake_control import worker_row
from workers.store import StoreWriter

# -- whale flows: premium is the mark -------------------------------------------------------


@pytest.mark.parametrize("query", ["sort_by=time&limit=100&hours=6", "sort_by=score&limit=5&hours=6",
                                   "sort_by=score&limit=20&hours=24"])
def test_dashboard_whale_premium_is_the_per_contract_mark_it_multiplies_by_volume(app, query):
    body = get(app, "/api/whale_flows", query).json
    assert body["success"] is True and body["count"] == len(body["data"]) > 0
    for flow in body["data"]:  # the fixture's flows: 1,000 contracts at a mark of 10.00
        assert flow["premium"] == 10.0 and flow["volume"] == 1000
        assert f"Premium: ${flow['premium']:.2f}" == "Premium: $10.00"  # its whale card: a price, not $1000000.00
        assert flow["total_premium"] == flow["volume"] * flow["premium"] * 100 == 1_000_000.0
    # Its "options flow sentiment": call_premium / put_premium summed as premium * volume per symbol.
    call_premium = sum(f["premium"] * f["volume"] for f in body["data"] if f["type"] == "CALL")
    assert call_premium == sum(f["total_premium"] for f in body["data"] if f["type"] == "CALL") / 100


# -- vpb: filter=buy / filter=sell ---------------------------------------------------------

@pytest.mark.parametrize("query, echoed, signal, symbols", [
    ("filter=buy&limit=10", "buy", "buy_signal", ["NVDA", "AAPL"]),     # the market commentary bot
    ("filter=sell&limit=10", "sell", "sell_signal", ["TSLA"]),
    ("filter=buy&limit=5", "buy", "buy_signal", ["NVDA", "AAPL"]),      # the AI copilot page
    ("filter=sell&limit=5", "sell", "sell_signal", ["TSLA"]),
])
def test_vpb_buy_and_sell_are_the_breakouts_and_breakdowns_the_old_callers_meant(app, query, echoed, signal,
                                                                                 symbols):
    answer = get(app, "/api/vpb_scanner", query)
    assert answer.status == 200
    body = answer.json
    assert body["filter"] == echoed  # the old service echoed the filter as sent
    assert [r["symbol"] for r in body["data"]] == symbols  # by volume_surge_pct, as bullish/bearish
    kept = [r for r in body["data"] if r.get(signal)]  # what both callers do with the rows
    assert kept == body["data"]
    canonical = {"buy": "bullish", "sell": "bearish"}[echoed]
    assert body["data"] == get(app, "/api/vpb_scanner", f"filter={canonical}").json["data"]


# -- whale flows: hours above the retention ------------------------------------------------

def add_old_flows(state_dir):
    """Flows 6, 10 and 25 days old next to the fixture's (a writer keeping 30 days)."""
    flow = dict(type="CALL", strike=100.0, whale_score=10.0, volume=600, open_interest=100, vol_oi=6.0,
                premium=2.0, total_premium=120_000.0, delta=0.4, expiry="2026-03-20", dte=18, iv=0.3,
                underlying_price=99.0)
    StoreWriter(state_dir, now=lambda: NOW).record_whale_flows([
        dict(flow, symbol=symbol, detected_at=(NOW - dt.timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S"))
        for symbol, days in (("D6", 6), ("D10", 10), ("D25", 25))], retention_days=30)


def whale_row(retention_days):
    """The whale_flows worker's status row after a good cycle, naming its retention."""
    counts = {"flows": 3} if retention_days is None else {"flows": 3, "retention_days": retention_days}
    return worker_row("whale_flows", interval=60.0,
                      last_cycle={"ok": True, "duration": 1.0, "counts": counts, "error": None})


RECENT = ["NVDA", "AAPL", "TSLA", "AMD"]  # the fixture's flows, 10 min to 10 h old


@pytest.mark.parametrize("hours", ["720", "999999"])
def test_whale_history_last_30_days_and_all_time_get_everything_kept_not_400(app, state_dir, hours):
    add_old_flows(state_dir)  # the retention is not reported yet: the default, 7 days
    answer = get(app, "/api/whale_flows", f"sort_by=time&limit=1000&hours={hours}")
    assert answer.status == 200
    assert [f["symbol"] for f in answer.json["data"]] == [*RECENT, "D6"]
    assert answer.json["sort_by"] == "time"


@pytest.mark.parametrize("hours, symbols", [
    ("720", [*RECENT, "D6", "D10", "D25"]), ("999999", [*RECENT, "D6", "D10", "D25"]),
    ("99999999999999999999", [*RECENT, "D6", "D10", "D25"]), ("300", [*RECENT, "D6", "D10"]),
    ("168", [*RECENT, "D6"])])
def test_hours_is_clamped_to_the_retention_the_whale_worker_reports(app, state_dir, control, hours, symbols):
    add_old_flows(state_dir)
    control.rows[1] = whale_row(30.0)
    body = get(app, "/api/whale_flows", f"sort_by=time&limit=1000&hours={hours}").json
    assert [f["symbol"] for f in body["data"]] == symbols


def test_hours_is_clamped_to_a_shorter_reported_retention_too(app, state_dir, control):
    add_old_flows(state_dir)  # AMD (10 h) and D6 are still stored: the worker keeping 6 hours has not run since
    control.rows[1] = whale_row(0.25)
    assert [f["symbol"] for f in get(app, "/api/whale_flows", "sort_by=time&hours=720&limit=1000").json["data"]] \
        == ["NVDA", "AAPL", "TSLA"]
    assert get(app, "/api/whale_flows", "hours=0").json["error"].startswith(
        "hours must be an integer >= 1 (a window longer than the retention, 6, is cut to it)")


def test_the_retention_is_remembered_across_a_failed_cycle_and_an_unreachable_supervisor(make_app, state_dir,
                                                                                         control):
    add_old_flows(state_dir)
    app = make_app()

    def all_time():
        return [f["symbol"] for f in get(app, "/api/whale_flows", "sort_by=time&hours=999999&limit=100").json["data"]]

    everything = [*RECENT, "D6", "D10", "D25"]
    control.rows[1] = whale_row(30.0)
    assert all_time() == everything
    control.rows[1] = worker_row("whale_flows", interval=60.0,  # a failed cycle reports no counts
                                 last_cycle={"ok": False, "duration": 1.0, "counts": {}, "error": "provider down"})
    assert all_time() == everything
    control.mode = "silent"  # mdwd answers nothing
    assert all_time() == everything


def test_the_retention_is_the_smallest_a_wanted_whale_worker_reported():
    rows = [whale_row(30.0), dict(whale_row(3.0), name="w2"), dict(whale_row(1.0), name="w3", wanted=False),
            dict(whale_row(None), name="w4"), dict(whale_row(True), name="w5"), dict(whale_row(float("inf")), name="w6"),
            worker_row("macd", last_cycle={"counts": {"retention_days": 0.5}})]
    assert whale_retention_days(rows) == 3.0
    assert whale_retention_days(rows[3:]) is None and whale_retention_days(None) is None


# -- the browser dashboard (trading-hub): CORS ----------------------------------------------

TRADING_HUB = "http://localhost:3000"  # a Next.js app on another origin than the API
TRADING_HUB_GETS = [  # trading-hub/src/lib/api.ts, in axios's parameter order
    ("/api/watchlist", "order_by=daily_change_pct&limit=50"), ("/api/whale_flows", "limit=20"),
    ("/api/macd_scanner", "filter=all&limit=30"), ("/api/ttm_squeeze_scanner", "filter=all&limit=30"),
    ("/api/vpb_scanner", "filter=all&limit=30")]


@pytest.mark.parametrize("path, query", TRADING_HUB_GETS)
def test_the_browser_dashboard_may_read_every_answer_from_its_own_origin(app, path, query):
    answer = get(app, path, query, headers={"Origin": TRADING_HUB, "Accept": "application/json, text/plain, */*"})
    assert answer.status == 200 and answer.json["success"] is True
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "vary" not in answer.headers  # "*" only: the answer is the same for every origin
    assert get(app, path, query).headers["access-control-allow-origin"] == "*"  # as the old service, Origin or not


def test_a_browser_preflight_from_the_dashboard_origin_is_answered(app):
    answer = call(app, "OPTIONS", "/api/whale_flows", headers={
        "Origin": TRADING_HUB, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "cache-control, content-type"})
    assert answer.status == 204 and answer.body == b""
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.headers["access-control-allow-methods"] == "GET, HEAD"
    assert answer.headers["access-control-allow-headers"] == "cache-control, content-type"
    assert answer.headers["access-control-max-age"] == "600"
    # POST and Authorization are for origins listed in [api] cors_origins only, never for "*".
    refused = call(app, "OPTIONS", "/api/workers/watchlist/restart", headers={
        "Origin": TRADING_HUB, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization"})
    assert refused.status == 403 and "access-control-allow-origin" not in refused.headers


# -- GET / ------------------------------------------------------------------------------------

@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/json, text/plain, */*"])
def test_root_answers_the_old_banner_in_json(app, accept):
    """Every client but a browser (tests/test_api_page.py: Accept naming text/html gets the status page)."""
    answer = get(app, "/", headers={"Accept": accept} if accept else {})
    assert answer.status == 200 and answer.headers["content-type"] == "application/json; charset=utf-8"
    body = answer.json
    assert (body["status"], body["service"], body["version"]) == ("running", "Options Scanner API", "1.0")
    assert body["cache_stats"] == get(app, "/api/stats").json["stats"]  # the old cache_stats
    assert set(body) == {"status", "service", "version", "cache_stats"}
