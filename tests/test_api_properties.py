"""Property tests: nothing a client sends makes the API answer 500, a traceback or non-JSON."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api import validation as V
from api.app import create_app
from api.status import StatusSource
from supervisor.shared.control_client import ControlClient
from tests.fake_control import FakeControl
from tests.api_support import NOW, TOKEN, call, fill, scanner_rows
from workers.store import StoreReader

ENDPOINTS = ["/health", "/api/watchlist", "/api/whale_flows", "/api/stats", "/api/last_update",
             "/api/macd_scanner", "/api/vpb_scanner", "/api/ttm_squeeze_scanner", "/api/workers",
             "/api/workers/watchlist/restart", "/metrics", "/api/key_levels", "/api/market_snapshot",
             "/api/market_sentiment", "/api/market_sentiment/history", "/api/top_opportunities",
             "/api/market_fear_greed", "/api/cycle_scanner", "/api/skew_metrics", "/api/oi_flows", "/api/chains"]
LIVE_OR_FOUND = ("/api/key_levels", "/api/market_snapshot", "/api/market_fear_greed")
PARAMETERS = ["limit", "hours", "order_by", "sort_by", "filter", "symbol", "expiry", "timeframe", "format"]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"]
LISTED_ORIGIN = "https://ops.example.com"
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    base = tmp_path_factory.mktemp("api-properties")
    fill(base / "state")
    reader = StoreReader(base / "state", now=lambda: NOW)
    with FakeControl(base / "mdwd.sock", rows=scanner_rows()) as fake:
        yield create_app(reader, StatusSource(ControlClient(fake.path), ttl=1.0), token=TOKEN, cache_ttl=0.5,
                         cors_origins=["*", LISTED_ORIGIN])
    reader.close()


def wsgi_text(data: bytes) -> str:
    """What a WSGI server puts in environ for raw request bytes (PEP 3333: latin-1)."""
    return data.decode("latin-1")


def assert_well_formed(answer, path, method):
    assert answer.status != 500 and answer.status < 600
    if answer.status == 204:  # OPTIONS: what the path answers, or a CORS preflight's answer; nothing else
        assert method == "OPTIONS" and answer.body == b"" and "content-type" not in answer.headers
        return
    if path == "/metrics" and method in ("GET", "HEAD") and answer.status == 200:
        assert answer.headers["content-type"].startswith("text/plain")
        return
    assert answer.headers["content-type"] == "application/json; charset=utf-8", answer
    if method == "HEAD":
        return
    body = json.loads(answer.body)  # always parses
    assert isinstance(body, dict)
    if answer.status >= 400:
        assert body["success"] is False or body.get("status") == "degraded"
        assert "Traceback" not in answer.body.decode()


parameter_values = st.one_of(
    st.text(max_size=30), st.integers(-10**6, 10**6).map(str),
    st.sampled_from(["", "0", "1", "20", "168", "169", "1000", "1001", "score", "time", "all", "active",
                     "bullish", "volume", "%", "%ff", "%00", "+5", "05", "1e3", "٣", "SPY", "2026-03-20",
                     "2026-02-30", "9999-12-31", "0001-01-01", "daily", "csv", "peak", "sell"]))
query_pairs = st.lists(st.tuples(st.one_of(st.sampled_from(PARAMETERS), st.text(max_size=8)), parameter_values),
                       max_size=5)


def encode_query(pairs, raw_tail: bytes) -> str:
    from urllib.parse import quote

    text = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    return wsgi_text(text.encode() + raw_tail)


@PROPERTY_SETTINGS
@given(path=st.sampled_from(ENDPOINTS), pairs=query_pairs,
       raw_tail=st.binary(max_size=12) | st.just(b""))
def test_any_query_string_on_any_endpoint_answers_json_without_500(app, path, pairs, raw_tail):
    method = "POST" if path.endswith("/restart") else "GET"
    answer = call(app, method, path, encode_query(pairs, raw_tail))
    assert_well_formed(answer, path, method)
    if path in LIVE_OR_FOUND:  # the market structure: 404 for what does not exist, 503 without a live provider
        assert answer.status in (200, 400, 404, 503)
    elif path not in ("/health", "/api/workers/watchlist/restart", "/metrics"):
        assert answer.status in (200, 400)


@PROPERTY_SETTINGS
@given(path=st.one_of(st.sampled_from(ENDPOINTS), st.binary(max_size=40).map(lambda b: wsgi_text(b"/" + b)),
                      st.text(max_size=30).map(lambda t: wsgi_text(("/api/" + t).encode()))),
       method=st.one_of(st.sampled_from(METHODS), st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1,
                                                          max_size=10)))
def test_any_path_and_method_answers_json_without_500(app, path, method):
    answer = call(app, method, path)
    assert_well_formed(answer, path, method)


@PROPERTY_SETTINGS
@given(path=st.sampled_from(ENDPOINTS), method=st.sampled_from(METHODS),
       origin=st.one_of(st.sampled_from(["http://localhost:3000", LISTED_ORIGIN, LISTED_ORIGIN.upper(), "null", ""]),
                        st.text(max_size=40), st.binary(max_size=40).map(wsgi_text)),
       requested=st.one_of(st.sampled_from(["GET", "POST", "DELETE", "get", ""]), st.text(max_size=10)),
       request_headers=st.one_of(st.sampled_from(["authorization", "content-type, x-y", ""]), st.text(max_size=40)))
def test_any_cross_origin_request_or_preflight_answers_without_500(app, path, method, origin, requested,
                                                                    request_headers):
    answer = call(app, method, path, headers={"Origin": origin, "Access-Control-Request-Method": requested,
                                              "Access-Control-Request-Headers": request_headers})
    assert_well_formed(answer, path, method)
    allowed = answer.headers.get("access-control-allow-origin")
    assert allowed in (None, "*", origin)
    if allowed == origin and origin != "*":
        assert origin.lower() == LISTED_ORIGIN and answer.headers["vary"] == "Origin"
    if method not in ("GET", "HEAD", "OPTIONS") and origin and origin.lower() != LISTED_ORIGIN:
        assert answer.status == 403  # a cross-origin POST, PUT... from an origin not listed never gets in


@PROPERTY_SETTINGS
@given(authorization=st.one_of(st.text(max_size=40), st.binary(max_size=40).map(wsgi_text),
                               st.text(max_size=20).map(lambda t: "Bearer " + t)),
       name=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/"),
                    min_size=1, max_size=20))
def test_any_authorization_header_is_401_unless_it_is_the_token(app, authorization, name):
    path = wsgi_text(f"/api/workers/{name}/restart".encode())
    answer = call(app, "POST", path, headers={"Authorization": authorization})
    assert_well_formed(answer, path, "POST")
    if V.bearer_token(authorization) != TOKEN:
        assert answer.status == 401


@PROPERTY_SETTINGS
@given(order_by=st.sampled_from(["daily_change_pct", "volume", "symbol", "price"]),
       limit=st.integers(1, 1000))
def test_valid_parameters_always_answer_at_most_limit_rows(app, order_by, limit):
    body = json.loads(call(app, "GET", "/api/watchlist", f"order_by={order_by}&limit={limit}").body)
    assert body["success"] is True and body["count"] == len(body["data"]) <= limit


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=12))
def test_limit_parsing_accepts_exactly_the_decimal_integers_in_range(value):
    expected = value.isascii() and value.isdigit() and 1 <= int(value) <= 1000
    try:
        V.bounded_int({"limit": value}, "limit", 1000, 20)
    except V.ParamError as exc:
        assert not expected and str(exc).startswith("limit must be an integer from 1 to 1000; got ")
    else:
        assert expected


@settings(max_examples=300, deadline=None)
@given(query=st.binary(max_size=60).map(wsgi_text))
def test_parse_query_takes_any_bytes(query):
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in V.parse_query(query).items())
