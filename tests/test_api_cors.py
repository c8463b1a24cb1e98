"""CORS (API.md "Browsers"): any origin may GET, only listed origins may POST with Authorization.

The old callers' own requests are in test_api_old_clients.py; this file holds the
policy's edges: listed origins, refusals, preflights, the cache, the config key.
"""
from __future__ import annotations

import pytest

from supervisor import config as config_module
from tests import configs
from tests.api_support import TOKEN, call, get

BROWSER = "http://localhost:3000"   # a dashboard served from another origin
OPS = "https://ops.example.com"      # an origin listed explicitly
ORIGINS = ["*", OPS]


def preflight(app, path, origin, method, headers=None):
    request = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        request["Access-Control-Request-Headers"] = headers
    return call(app, "OPTIONS", path, headers=request)


def test_a_listed_origin_may_preflight_and_post_a_restart_with_its_token(make_app, control):
    app = make_app(token=TOKEN, cors_origins=ORIGINS)
    answer = preflight(app, "/api/workers/watchlist/restart", OPS, "POST", "authorization, content-type")
    assert answer.status == 204 and answer.body == b""
    assert answer.headers["access-control-allow-origin"] == OPS and answer.headers["vary"] == "Origin"
    assert answer.headers["access-control-allow-methods"] == "POST"
    assert answer.headers["access-control-allow-headers"] == "authorization, content-type"
    assert "access-control-allow-credentials" not in answer.headers  # a bearer token is a header, not a cookie
    posted = call(app, "POST", "/api/workers/watchlist/restart",
                  headers={"Origin": OPS, "Authorization": f"Bearer {TOKEN}"})
    assert posted.status == 202 and posted.headers["access-control-allow-origin"] == OPS
    assert control.restarted == ["watchlist"]


@pytest.mark.parametrize("method, headers, why", [
    ("POST", None, "may only GET here, not POST"),
    ("POST", "authorization", "may only GET here, not POST"),
    ("GET", "Authorization", "may not send Authorization"),
])
def test_any_origin_may_not_preflight_post_or_authorization(make_app, method, headers, why):
    path = "/api/workers/watchlist/restart" if method == "POST" else "/api/workers"
    answer = preflight(make_app(token=TOKEN, cors_origins=ORIGINS), path, BROWSER, method, headers)
    assert answer.status == 403 and "access-control-allow-origin" not in answer.headers
    assert answer.json == {"success": False, "error": f"origin '{BROWSER}' {why}; list the origin in "
                                                      "[api] cors_origins to allow it"}


def test_a_cross_origin_post_from_an_origin_not_listed_never_reaches_the_endpoint(make_app, control):
    # A browser sends a "simple" POST without a preflight: it must be refused, token or not.
    app = make_app(token=TOKEN)
    answer = call(app, "POST", "/api/workers/all/restart",
                  headers={"Origin": BROWSER, "Authorization": f"Bearer {TOKEN}"})
    assert answer.status == 403 and control.restarted == []
    assert answer.json["error"] == (f"origin '{BROWSER}' may not POST here: only GET is open to other origins; "
                                    "list the origin in [api] cors_origins to allow POST and Authorization")


def test_a_same_origin_post_needs_no_listing(make_app, control):
    answer = call(make_app(token=TOKEN), "POST", "/api/workers/watchlist/restart",
                  headers={"Origin": "http://127.0.0.1:8000", "Host": "127.0.0.1:8000",
                           "Authorization": f"Bearer {TOKEN}"})
    assert answer.status == 202 and control.restarted == ["watchlist"]


def test_with_no_origin_configured_browsers_read_nothing(make_app):
    app = make_app(cors_origins=[])
    answer = get(app, "/api/watchlist", headers={"Origin": BROWSER})
    assert answer.status == 200 and "access-control-allow-origin" not in answer.headers
    refused = preflight(app, "/api/watchlist", BROWSER, "GET")
    assert refused.status == 403
    assert refused.json["error"] == (f"origin '{BROWSER}' is not allowed ([api] cors_origins lists none); "
                                     "list the origin in [api] cors_origins")


def test_a_cached_answer_carries_the_cors_headers_of_each_request(make_app):
    app = make_app(cors_origins=ORIGINS, cache_ttl=60.0)
    first = get(app, "/api/watchlist", headers={"Origin": OPS})
    second = get(app, "/api/watchlist", headers={"Origin": BROWSER})  # served from the cache
    assert first.body == second.body
    assert first.headers["access-control-allow-origin"] == OPS
    assert second.headers["access-control-allow-origin"] == "*" and second.headers["vary"] == "Origin"
    assert get(app, "/api/watchlist").headers["access-control-allow-origin"] == "*"


def test_a_preflight_for_a_method_the_path_does_not_answer_is_405(make_app):
    answer = preflight(make_app(cors_origins=ORIGINS), "/api/watchlist", OPS, "DELETE")
    assert answer.status == 405
    assert answer.json["error"] == "a preflight for DELETE, but this path answers GET, HEAD"


def test_a_plain_options_says_what_the_path_answers_and_an_unknown_path_is_404(app):
    assert call(app, "OPTIONS", "/api/whale_flows").headers["allow"] == "GET, HEAD, OPTIONS"
    assert call(app, "OPTIONS", "/api/workers/macd/restart").headers["allow"] == "POST, OPTIONS"
    assert call(app, "OPTIONS", "/api/nothing", headers={"Origin": BROWSER,
                                                         "Access-Control-Request-Method": "GET"}).status == 404


def test_requested_header_names_are_echoed_only_when_they_are_names(make_app):
    answer = preflight(make_app(), "/api/stats", BROWSER, "GET", "X-Custom, bad header, , x-custom, (no)")
    assert answer.status == 204 and answer.headers["access-control-allow-headers"] == "x-custom"


def test_cors_origins_must_be_star_or_origins():
    one = configs.tables({"w": {"kind": "faulty", "interval": 1}})
    good = configs.from_tables({**one, "api": {"cors_origins": ["*", OPS, "http://[::1]:3000"]}})
    assert good.raw["api"]["cors_origins"] == ["*", OPS, "http://[::1]:3000"]
    for bad in (["https://ops.example.com/"], ["ops.example.com"], ["https://ops.example.com/path"], [3],
                ["*", "https://user@ops.example.com"]):
        with pytest.raises(config_module.ConfigError, match=r"api\.cors_origins = .*: allowed is a list of "
                                                            r"\"\*\" and origins such as \"https://dash"):
            configs.from_tables({**one, "api": {"cors_origins": bad}})
    with pytest.raises(config_module.ConfigError, match=r"api\.cors_origins = '\*': expected list"):
        configs.from_tables({**one, "api": {"cors_origins": "*"}})
