"""The HTTP API endpoints against a real store in tmp_path, through WSGI calls: data, format, bad input."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from api.app import JSON_CONTENT_TYPE
from api.status import FALLBACK_STALE_AFTER_S, stale_after
from tests.api_support import NOW, _BrokenStore, call, get
from tests.fake_control import worker_row
from workers.store import StoreReader, StoreWriter

# -- envelope and format ---------------------------------------------------------

def test_body_is_written_as_flask_jsonify_did(app):
    answer = get(app, "/api/watchlist")
    assert answer.status == 200
    assert answer.headers["content-type"] == JSON_CONTENT_TYPE
    assert answer.body.endswith(b"}\n")
    assert answer.body == (json.dumps(answer.json, sort_keys=True, separators=(",", ":")) + "\n").encode()
    assert answer.headers["content-length"] == str(len(answer.body))


def test_watchlist_envelope_and_fields(app):
    body = get(app, "/api/watchlist").json
    assert set(body) == {"success", "count", "data"}  # the old service echoed nothing here
    assert body["success"] is True and body["count"] == 4 == len(body["data"])
    assert set(body["data"][0]) == {"symbol", "price", "daily_change", "daily_change_pct", "volume", "updated_at"}
    assert body["data"][0]["updated_at"] == "2026-03-02 15:00:00"


@pytest.mark.parametrize("order_by, column", [
    (None, "daily_change_pct"), ("daily_change_pct", "daily_change_pct"), ("volume", "volume"),
    ("symbol", "symbol"), ("price", "price")])
def test_watchlist_orders_descending(app, order_by, column):
    rows = get(app, "/api/watchlist", f"order_by={order_by}" if order_by else "").json["data"]
    values = [row[column] for row in rows]
    assert values == sorted(values, reverse=True)


@pytest.mark.parametrize("order_by, column", [("symbol", "symbol"), ("volume", "volume"), (None, "daily_change_pct")])
def test_watchlist_order_asc_turns_the_column_around_and_desc_is_the_default(app, order_by, column):
    by = f"order_by={order_by}&" if order_by else ""
    ascending = [row[column] for row in get(app, "/api/watchlist", f"{by}order=asc").json["data"]]
    assert ascending == sorted(ascending) and len(set(ascending)) > 1
    assert get(app, "/api/watchlist", f"{by}order=desc").json == get(app, "/api/watchlist", by.rstrip("&")).json


def test_whale_flows_order_asc_and_a_bad_order_names_the_choices(app):
    rows = get(app, "/api/whale_flows", "sort_by=time&order=asc&hours=24").json["data"]
    assert [r["detected_at"] for r in rows] == sorted(r["detected_at"] for r in rows) and len(rows) > 1
    answer = get(app, "/api/watchlist", "order=up")
    assert answer.status == 400 and answer.json["error"] == "order must be one of desc, asc; got 'up'"


def test_limit_cuts_the_rows(app):
    body = get(app, "/api/watchlist", "order_by=volume&limit=2").json
    assert body["count"] == 2 and [r["symbol"] for r in body["data"]] == ["TSLA", "AMD"]


def test_whale_flows_by_score_within_default_six_hours(app):
    body = get(app, "/api/whale_flows").json
    assert body["sort_by"] == "score"
    assert [r["symbol"] for r in body["data"]] == ["TSLA", "AAPL", "NVDA"]  # AMD is 10 h old
    assert set(body["data"][0]) == {"symbol", "type", "strike", "whale_score", "volume", "open_interest", "vol_oi",
                                    "premium", "delta", "expiry", "dte", "detected_at", "iv", "underlying_price",
                                    "total_premium"}
    assert body["data"][0]["type"] == "PUT" and body["data"][0]["expiry"] == "2026-04-17"


def test_whale_flows_by_time_and_hours(app):
    body = get(app, "/api/whale_flows", "sort_by=time&hours=12&limit=3").json
    assert body["sort_by"] == "time" and body["count"] == 3
    assert [r["symbol"] for r in body["data"]] == ["NVDA", "AAPL", "TSLA"]
    assert [r["symbol"] for r in get(app, "/api/whale_flows", "hours=1").json["data"]] == ["NVDA"]


@pytest.mark.parametrize("filter_, symbols", [
    ("bullish", ["NVDA", "AAPL"]), ("bearish", ["TSLA", "AMD"])])
def test_macd_filters(app, filter_, symbols):
    body = get(app, "/api/macd_scanner", f"filter={filter_}").json
    assert body["filter"] == filter_ and [r["symbol"] for r in body["data"]] == symbols


def test_macd_all_is_every_row_and_booleans_are_json_booleans(app):
    body = get(app, "/api/macd_scanner").json
    assert body["filter"] == "all" and body["count"] == 5
    assert all(isinstance(r["bullish_cross"], bool) for r in body["data"])
    assert b'"bullish_cross":true' in get(app, "/api/macd_scanner", "filter=bullish").body


@pytest.mark.parametrize("filter_, symbols", [
    ("bullish", ["NVDA", "AAPL"]), ("bearish", ["TSLA"]), ("all", ["AAPL", "TSLA", "NVDA", "AMD"])])
def test_vpb_filters(app, filter_, symbols):
    body = get(app, "/api/vpb_scanner", f"filter={filter_}").json
    assert body["filter"] == filter_ and [r["symbol"] for r in body["data"]] == symbols


@pytest.mark.parametrize("filter_, symbols", [
    ("active", ["TSLA", "AAPL", "NVDA"]), ("fired", ["MSFT", "AMD"]), ("bullish", ["AMD"]),
    ("bearish", ["MSFT"])])
def test_ttm_filters(app, filter_, symbols):
    body = get(app, "/api/ttm_squeeze_scanner", f"filter={filter_}").json
    assert body["filter"] == filter_ and [r["symbol"] for r in body["data"]] == symbols


def test_stats(app):
    body = get(app, "/api/stats").json
    stats = body["stats"]
    assert body["success"] is True
    assert (stats["watchlist_count"], stats["whale_flows_count"], stats["macd_scanner_count"]) == (4, 4, 5)
    assert {u["key"] for u in stats["last_updates"]} == {
        "watchlist", "whale_flows", "macd_scanner", "vpb_scanner", "ttm_squeeze_scanner"}
    assert set(stats["last_updates"][0]) == {"key", "value", "updated_at"}


def test_last_update_has_every_dataset_with_age_and_staleness(app):
    body = get(app, "/api/last_update").json
    assert body["success"] is True
    entry = body["watchlist"]
    assert set(entry) == {"value", "updated_at", "age_s", "stale"}
    assert entry["updated_at"] == "2026-03-02 15:00:00" and entry["age_s"] == 30.0 and entry["stale"] is False
    assert set(body) == {"success", "watchlist", "whale_flows", "macd_scanner", "vpb_scanner",
                         "ttm_squeeze_scanner", "cycle_scanner", "key_levels", "skew_metrics", "oi_flows",
                         "market_sentiment", "market"}


def test_last_update_null_for_a_dataset_never_written(tmp_path, make_app):
    empty = tmp_path / "empty"
    StoreWriter(empty, now=lambda: NOW).replace_snapshot("watchlist", [])
    app = make_app(reader=StoreReader(empty, now=lambda: NOW))
    body = get(app, "/api/last_update").json
    assert body["whale_flows"] is None and body["macd_scanner"] is None and body["watchlist"]["age_s"] == 0.0


def test_stale_means_older_than_three_intervals_of_the_writer(make_app):
    app = make_app(now=NOW + dt.timedelta(seconds=181))  # the scanners' interval is 60 s
    body = get(app, "/api/last_update").json
    assert all(body[d]["stale"] for d in ("watchlist", "whale_flows", "macd_scanner"))
    assert get(make_app(now=NOW + dt.timedelta(seconds=179)), "/api/last_update").json["watchlist"]["stale"] is False


def test_stale_falls_back_to_a_fixed_limit_without_the_supervisor(make_app, tmp_path):
    gone = str(tmp_path / "no-such.sock")
    assert get(make_app(now=NOW + dt.timedelta(seconds=600), socket=gone),
               "/api/last_update").json["watchlist"]["stale"] is False
    assert get(make_app(now=NOW + dt.timedelta(seconds=FALLBACK_STALE_AFTER_S + 1), socket=gone),
               "/api/last_update").json["watchlist"]["stale"] is True


def test_stale_after_takes_the_largest_interval_of_a_kind_and_falls_back_for_the_rest():
    limits = stale_after([worker_row("w1", "watchlist", interval=10.0), worker_row("w2", "watchlist", interval=20.0),
                          worker_row("m", "macd", interval=5)])
    assert limits["watchlist"] == 60.0 and limits["macd_scanner"] == 15.0
    assert limits["whale_flows"] == FALLBACK_STALE_AFTER_S == stale_after(None)["vpb_scanner"]


def test_unknown_query_parameters_are_ignored(app):
    plain = get(app, "/api/whale_flows", "limit=2").json
    assert get(app, "/api/whale_flows", "limit=2&_=1712&foo=bar&callback=x").json == plain


def test_first_of_repeated_parameters_wins(app):
    assert get(app, "/api/watchlist", "limit=1&limit=3").json["count"] == 1


@pytest.mark.parametrize("path, query", [
    ("/api/watchlist", "limit=1"), ("/api/watchlist", "limit=1000"), ("/api/whale_flows", "hours=1"),
    ("/api/whale_flows", "hours=168&limit=1000"), ("/api/ttm_squeeze_scanner", "filter=active&limit=1")])
def test_bounds_are_inclusive(app, path, query):
    assert get(app, path, query).status == 200


# -- bad input ---------------------------------------------------------------

BAD = [
    ("/api/watchlist", "limit=0", "limit must be an integer from 1 to 1000; got '0'"),
    ("/api/watchlist", "limit=1001", "limit must be an integer from 1 to 1000; got '1001'"),
    ("/api/watchlist", "limit=-5", "limit must be an integer from 1 to 1000; got '-5'"),
    ("/api/watchlist", "limit=abc", "limit must be an integer from 1 to 1000; got 'abc'"),
    ("/api/watchlist", "limit=", "limit must be an integer from 1 to 1000; got ''"),
    ("/api/watchlist", "limit=2.5", "limit must be an integer from 1 to 1000; got '2.5'"),
    ("/api/watchlist", "limit=%205", "limit must be an integer from 1 to 1000; got ' 5'"),
    ("/api/watchlist", "limit=" + "9" * 5000, "limit must be an integer from 1 to 1000; got '9999"),
    ("/api/watchlist", "order_by=name",
     "order_by must be one of daily_change_pct, volume, symbol, price; got 'name'"),
    ("/api/watchlist", "order_by=volume%3B%20DROP%20TABLE%20watchlist",
     "order_by must be one of daily_change_pct, volume, symbol, price; got 'volume; DROP TABLE watchlist'"),
    ("/api/whale_flows", "sort_by=premium", "sort_by must be one of score, time; got 'premium'"),
    ("/api/whale_flows", "hours=0", "hours must be an integer >= 1 (a window longer than the retention, 168, "
                                    "is cut to it); got '0'"),
    ("/api/whale_flows", "hours=0000000000000", "hours must be an integer >= 1 (a window longer than"),
    ("/api/whale_flows", "hours=-720", "hours must be an integer >= 1 (a window longer than"),
    ("/api/whale_flows", "hours=720.0", "hours must be an integer >= 1 (a window longer than"),
    ("/api/whale_flows", "hours=%20720", "hours must be an integer >= 1 (a window longer than"),
    ("/api/whale_flows", "limit=10&hours=six", "hours must be an integer >= 1 (a window longer than the "
                                               "retention, 168, is cut to it); got 'six'"),
    ("/api/macd_scanner", "filter=active", "filter must be one of all, bullish, bearish; got 'active'"),
    ("/api/vpb_scanner", "filter=BULLISH",
     "filter must be one of all, bullish, bearish, buy (= bullish), sell (= bearish); got 'BULLISH'"),
    ("/api/vpb_scanner", "filter=BUY",
     "filter must be one of all, bullish, bearish, buy (= bullish), sell (= bearish); got 'BUY'"),
    ("/api/macd_scanner", "filter=buy", "filter must be one of all, bullish, bearish; got 'buy'"),
    ("/api/ttm_squeeze_scanner", "filter=squeeze",
     "filter must be one of all, active, fired, bullish, bearish; got 'squeeze'"),
    ("/api/ttm_squeeze_scanner", "limit=%C3%A9", "limit must be an integer from 1 to 1000; got 'é'"),
]


@pytest.mark.parametrize("path, query, message", BAD)
def test_bad_parameters_answer_400_saying_what_is_allowed(app, path, query, message):
    answer = get(app, path, query)
    assert answer.status == 400 and answer.headers["content-type"] == JSON_CONTENT_TYPE
    assert answer.json["success"] is False
    assert answer.json["error"].startswith(message)
    assert len(answer.json["error"]) < 200  # a huge value is not echoed whole


def test_unknown_path_is_404_json(app):
    answer = get(app, "/api/nothing")
    assert answer.status == 404 and answer.headers["content-type"] == JSON_CONTENT_TYPE
    error = answer.json["error"]
    assert answer.json["success"] is False and error.startswith(
        'no such endpoint: /api/nothing; the endpoints (README, "HTTP API"): /, /api/chains, /api/cycle_scanner, '
        '/api/cycles, ')
    assert "/api/key_levels," in error and "/api/market_snapshot," in error
    assert "/api/symbol/<symbol>," in error and "/api/workers/<name>/restart," in error and "/static" not in error
    assert "API.md" not in error
    assert get(app, "/api/watchlist/").status == 404


@pytest.mark.parametrize("raw, shown", [("/\xff", "/%FF"), ("/api/\xc3\xa9t\xc3\xa9", "/api/%C3%A9t%C3%A9"),
                                        ("/a b", "/a%20b")])
def test_an_unknown_path_is_named_as_it_was_sent_escaped(app, raw, shown):
    """A server hands the path over as latin-1 text of its bytes: /%ff is the byte 0xff, not the root."""
    answer = get(app, raw)
    assert answer.status == 404 and answer.json["error"].startswith(f"no such endpoint: {shown}; ")


def test_wrong_method_is_405_json_naming_the_allowed_ones(app):
    answer = call(app, "DELETE", "/api/watchlist")
    assert answer.status == 405 and answer.headers["content-type"] == JSON_CONTENT_TYPE
    assert answer.json["error"] == "method DELETE is not allowed on /api/watchlist; allowed: GET"
    assert call(app, "GET", "/api/workers/watchlist/restart").status == 405


def test_head_answers_like_get_without_a_body(app):
    answer = call(app, "HEAD", "/api/stats")
    assert answer.status == 200 and answer.body == b""


@pytest.mark.parametrize("path", ["/api/watchlist", "/api/whale_flows", "/api/macd_scanner", "/api/vpb_scanner",
                                  "/api/ttm_squeeze_scanner", "/api/stats", "/api/last_update"])
def test_store_failure_is_503_json(make_app, path):
    answer = get(make_app(reader=_BrokenStore()), path)
    assert answer.status == 503 and answer.headers["content-type"] == JSON_CONTENT_TYPE
    assert answer.json == {"success": False,
                           "error": "the store cannot be read: the store: read failed: database is locked"}


def test_an_unexpected_exception_is_a_json_500_without_traceback(make_app):
    class Exploding:
        def stats(self):
            raise RuntimeError("secret internals")

    answer = get(make_app(reader=Exploding()), "/api/stats")
    assert answer.status == 500 and answer.headers["content-type"] == JSON_CONTENT_TYPE
    assert answer.json["success"] is False and "secret" not in answer.json["error"]


def test_a_url_too_long_is_a_414_in_json(app):
    answer = get(app, "/api/watchlist", "x=" + "a" * 9000)
    assert answer.status == 414 and answer.headers["content-type"] == JSON_CONTENT_TYPE
    assert answer.json == {"success": False, "error": "the URL is 9016 bytes long; at most 8192 are answered"}
    assert get(app, "/api/watchlist", "x=" + "a" * 8000).status == 200
