"""The status page's routes (api/page.py): GET / for browsers, /static/..., /api/page.

The page itself is driven in a real browser by tests/test_page_browser.py (make test-browser).
"""
from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

from api.app import create_app
from api.page import PAGE_FILES, load_static, wants_html
from api.status import FALLBACK_STALE_AFTER_S, StatusSource
from supervisor.shared.control_client import ControlClient
from tests.api_support import ROOT, TOKEN, get
from tests.fake_control import worker_row

CHROME = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8," \
         "application/signed-exchange;v=b3;q=0.7"
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
SAFARI = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
AXIOS = "application/json, text/plain, */*"


@pytest.mark.parametrize("accept", [CHROME, FIREFOX, SAFARI, "text/html", "TEXT/HTML; q=0.9, application/json;q=0.5"])
def test_browsers_accept_headers_want_the_page(accept):
    assert wants_html(accept) is True


@pytest.mark.parametrize("accept", [None, "", "*/*", "application/json", AXIOS, "text/*", "text/plain",
                                    "text/html;q=0", "text/html;q=0.5, application/json", "text/html;q=nan",
                                    "text/html;q=abc", "application/json, text/html", ",,;;q=", "text/html" * 1000])
def test_other_clients_keep_the_json(accept):
    assert wants_html(accept) is False


def test_a_browser_gets_the_html_page_and_both_answers_vary_on_accept(app):
    page = get(app, "/", headers={"Accept": CHROME})
    assert page.status == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["vary"] == "Accept" and page.headers["cache-control"] == "no-cache"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.body.decode()
    assert html.startswith("<!doctype html>") and 'id="workers"' in html and "{{" not in html
    banner = get(app, "/", headers={"Accept": "*/*"})
    assert banner.headers["content-type"] == "application/json; charset=utf-8" and banner.headers["vary"] == "Accept"
    assert banner.json["service"] == "Options Scanner API"


def test_every_file_the_page_links_is_served_pinned_with_its_type_and_a_long_cache(app):
    html = get(app, "/", headers={"Accept": CHROME}).body.decode()
    links = re.findall(r'(?:href|src)="(/static/[^"?]+)\?v=([0-9a-f]{16})"', html)
    assert sorted(path for path, _ in links) == sorted(f"/static/{name}" for name in PAGE_FILES)
    for path, digest in links:
        answer = get(app, path, f"v={digest}")
        kind = "text/css" if path.endswith(".css") else "text/javascript"
        assert answer.status == 200 and answer.headers["content-type"] == f"{kind}; charset=utf-8", path
        assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert answer.headers["etag"] == f'"{digest}"' and answer.headers["x-content-type-options"] == "nosniff"
        assert answer.body == (Path(ROOT) / "api" / path.lstrip("/")).read_bytes()
    assert b"uPlot" in get(app, "/static/vendor/uPlot.iife.min.js").body


def test_a_static_file_asked_without_its_digest_is_revalidated_and_an_unchanged_one_is_304(app):
    first = get(app, "/static/page.js")
    assert first.status == 200 and first.headers["cache-control"] == "no-cache"
    again = get(app, "/static/page.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status == 304 and again.body == b"" and again.headers["etag"] == first.headers["etag"]
    assert get(app, "/static/page.js", "v=0000000000000000").headers["cache-control"] == "no-cache"
    assert get(app, "/static/page.js", headers={"If-None-Match": '"stale"'}).status == 200


def test_the_uplot_licence_ships_with_it(app):
    licence = get(app, "/static/vendor/LICENSE-uPlot")
    assert licence.status == 200 and licence.headers["content-type"] == "text/plain; charset=utf-8"
    assert b"The MIT License" in licence.body and b"Leon Sorokin" in licence.body


@pytest.mark.parametrize("path", ["/static/nope.js", "/static/../page.py", "/static/%2e%2e/app.py", "/static/",
                                  "/static/vendor", "/static/index.html", "/static/" + "x" * 300])
def test_an_unknown_static_file_is_a_json_404(app, path):
    answer = get(app, path)
    assert answer.status == 404 and answer.headers["content-type"] == "application/json; charset=utf-8"
    assert answer.json["success"] is False and answer.json["error"]
    assert len(answer.json["error"]) < 600  # a long path is cut, whatever the list of endpoints after it


def test_a_static_file_may_not_be_posted(app):
    from tests.api_support import call

    answer = call(app, "POST", "/static/page.js")
    assert answer.status == 405 and answer.json["success"] is False


def test_page_info_says_whether_restarts_are_enabled_without_revealing_the_token(make_app):
    assert get(make_app(), "/api/page").json["restart_enabled"] is False
    answer = get(make_app(token=TOKEN), "/api/page")
    assert answer.status == 200 and answer.json["restart_enabled"] is True
    assert TOKEN.encode() not in answer.body


def test_page_info_gives_the_dataset_limits_and_the_workers_heartbeat_timeouts(make_app, control):
    control.rows[0] = worker_row("watchlist", interval=20.0, heartbeat_timeout=8.0)
    body = get(make_app(), "/api/page").json
    assert body["datasets"]["watchlist"] == {"stale_after_s": 60.0, "writers": ["watchlist"]}  # 3 x its interval
    assert body["datasets"]["macd_scanner"] == {"stale_after_s": 180.0, "writers": ["macd"]}
    del control.rows[2]  # no macd worker any more: nobody writes macd_scanner
    assert get(make_app(), "/api/page").json["datasets"]["macd_scanner"]["writers"] == []
    assert body["workers"]["watchlist"] == {"interval": 20.0, "heartbeat_timeout": 8.0}
    assert set(body["workers"]) == {"watchlist", "whale_flows", "macd", "vpb", "ttm", "api"}
    assert body["supervisor_reachable"] is True and body["poll_s"] > 0 and body["schwab_token"] is None


def test_page_info_without_the_supervisor_says_so_and_gives_the_fallback_limits(make_app, tmp_path):
    body = get(make_app(socket=str(tmp_path / "gone.sock")), "/api/page").json
    assert body["success"] is True and body["supervisor_reachable"] is False and body["workers"] == {}
    assert len(body["datasets"]) == 10  # the five scanners, the cycle scanner and the market structure's four
    assert all(d == {"stale_after_s": FALLBACK_STALE_AFTER_S, "writers": None} for d in body["datasets"].values())


@pytest.mark.parametrize("expiry, shown", [(lambda: 3600.04, 3600.0), (lambda: -5.0, -5.0), (lambda: None, None),
                                           (lambda: float("nan"), None), (lambda: 1 / 0, None)])
def test_page_info_gives_the_schwab_refresh_tokens_life_and_survives_a_broken_reading(state_dir, control, expiry,
                                                                                   shown):
    from workers.store import StoreReader

    app = create_app(StoreReader(state_dir), StatusSource(ControlClient(control.path, timeout=2.0), ttl=0.0),
                     refresh_token_expiry=expiry)
    answer = get(app, "/api/page")
    assert answer.status == 200 and answer.json["schwab_token"] == {"expires_in_s": shown}


def test_the_package_data_ships_every_file_of_the_page():
    """setup.cfg's globs (what a non-editable install copies) match every file under api/static."""
    parser = configparser.ConfigParser()
    parser.read(Path(ROOT) / "setup.cfg")
    shipped = set()
    for package, globs in parser["options.package_data"].items():
        if package == "api.static" or package.startswith("api.static."):
            folder = Path(ROOT, *package.split("."))
            shipped |= {path for pattern in globs.split(",") if pattern.strip()
                        for path in folder.glob(pattern.strip()) if path.is_file()}
    api_dir = Path(ROOT) / "api"
    on_disk = {path for path in (api_dir / "static").rglob("*") if path.is_file() and "__pycache__" not in path.parts}
    assert on_disk and shipped == on_disk


def test_missing_page_files_are_named_when_the_app_is_made(tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html>")
    with pytest.raises(FileNotFoundError, match=r"page\.js.*package data"):
        load_static(tmp_path)
