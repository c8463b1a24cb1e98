"""The status page in a real headless browser (Debian's chromium, Playwright): `make test-browser`.

Each test runs a real tree on an ephemeral API port in its tmp dir (killed in
the make_tree finalizer), loads GET / and fails on any console error it did
not provoke on purpose. Screenshots go to the test's tmp dir.
"""
import contextlib
import os
import re
import signal
import time

import pytest

from tests.browser_support import (PHONE, browser, card, drawn_pixels, get_json, no_horizontal_overflow,  # noqa: F401
                                   open_page, wait_status, workers_by_name)
from tests.proctree import poll

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

TOKEN = "page-token-1"
SYMBOLS = ["AAPL", "MSFT", "NVDA"]
REFUSED = r"status of 401"  # chromium logs every 4xx answer to a fetch as a console error


SLACK = {"heartbeat_timeout": 5.0}  # over FAST's 1 s: chromium shares two cores with the tree


def base_of(tree):
    return f"http://127.0.0.1:{tree.api_port()}"


def healthy(base, timeout=30):
    """Wait until /health answers 200 (every worker healthy, every dataset fresh)."""
    def answered():
        try:
            return get_json(f"{base}/health")["status"] == "healthy"
        except OSError:  # 503 (HTTPError) while a worker or dataset is not there yet, or not listening
            return False
    poll(answered, timeout, interval=0.2, what=f"{base}/health to answer 200")


def test_the_page_on_the_embedded_defaults_shows_every_worker_and_dataset_on_a_desktop_and_a_phone(
        make_tree, open_page, tmp_path):
    tree = make_tree(None, sections={"api": {"port": 0}}).start()
    base = base_of(tree)
    healthy(base, timeout=120)
    poll(lambda: all(get_json(f"{base}/api/last_update")[d] for d in
                     ("watchlist", "whale_flows", "macd_scanner", "vpb_scanner", "ttm_squeeze_scanner")),
         90, interval=0.5, what="every dataset written once")
    names = set(workers_by_name(base))
    assert names == {"watchlist", "whale_flows", "macd", "vpb", "ttm", "cycle_scanner", "market_structure", "api"}

    desktop = open_page(base + "/")
    page = desktop.page
    for name in names:
        assert wait_status(page, name, ["ok"], 20) == "ok"
        assert card(page, name).locator(".badge").inner_text() == "\u2714 OK"  # in words, not colour alone
    assert page.locator(".worker").count() == len(names)
    page.wait_for_selector(f'#summary:text("{len(names)}/{len(names)} healthy")')
    for dataset in ("watchlist", "whale_flows", "macd_scanner", "vpb_scanner", "ttm_squeeze_scanner"):
        row = page.locator(f'#datasets li[data-dataset="{dataset}"]')
        assert row.get_attribute("data-status") == "ok" and "FRESH" in row.inner_text()
        assert re.search(r"old, limit \d+ min", row.inner_text())  # age against its limit: 3 x the interval
    assert "Schwab token" in page.locator("#schwab").inner_text()
    assert re.search(r"pre-market|regular|after-hours|closed", page.locator("#market").inner_text())
    # No token configured: no restart buttons, no token form.
    assert page.locator("#token-form").is_hidden() and page.locator("button.restart:visible").count() == 0
    page.wait_for_selector("#watchlist-table tbody tr")
    page.wait_for_selector('.cycle-chart[data-worker="watchlist"] canvas')
    # Sorting the watchlist by a header button, from the keyboard.
    page.locator('#watchlist-table button[data-key="symbol"]').focus()
    page.keyboard.press("Enter")
    symbols = page.locator("#watchlist-table tbody th").all_inner_texts()
    assert symbols == sorted(symbols) and len(symbols) > 100
    assert page.locator('#watchlist-table th[aria-sort="ascending"] button').get_attribute("data-key") == "symbol"
    # The health section and the cycle charts (docs/page.png), then the whole page.
    page.screenshot(path=str(tmp_path / "page-desktop.png"), full_page=True,
                    clip={"x": 0, "y": 0, "width": 1280, "height": 1300})
    page.screenshot(path=str(tmp_path / "page-desktop-full.png"), full_page=True)

    phone = open_page(base + "/", viewport=PHONE).page
    for name in names:
        wait_status(phone, name, ["ok"], 20)
    health, health_visible, document, window = no_horizontal_overflow(phone, "#health")
    assert health <= health_visible and document <= window, "the health section overflows a phone's width"
    phone.screenshot(path=str(tmp_path / "page-phone.png"), full_page=True)
    open_page.close_all()
    assert tree.stop() == 0


def test_a_sigstopped_worker_turns_red_within_its_heartbeat_timeout_and_recovers(make_tree, open_page, tmp_path):
    heartbeat_timeout = 12.0  # stale_cycles off: only the silence counts, not the missing cycles
    tree = make_tree({"api": {"kind": "api", "interval": 0.5},
                      "watchlist": {"kind": "watchlist", "interval": 1.0, "symbols": SYMBOLS,
                                    "heartbeat_timeout": heartbeat_timeout, "stale_cycles": 0}},
                     sections={"api": {"port": 0}}, **SLACK).start()
    base = base_of(tree)
    healthy(base)
    page = open_page(base + "/").page
    wait_status(page, "watchlist", ["ok"], 15)
    pid = workers_by_name(base)["watchlist"]["pid"]

    # SIGCONT before the supervisor's kill: red while silent, green again once it beats.
    os.kill(pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        assert wait_status(page, "watchlist", ["late", "bad"], heartbeat_timeout) in ("late", "bad")
        red_after = time.monotonic() - stopped_at
        badge = card(page, "watchlist").locator(".badge").inner_text()
        assert "NO BEAT" in badge or "FAILING" in badge
        assert "no heartbeat for" in card(page, "watchlist").locator(".why").inner_text()
        assert "failing: watchlist" in page.locator("#summary").inner_text()
        page.screenshot(path=str(tmp_path / "page-stopped.png"))
    finally:
        with contextlib.suppress(ProcessLookupError):  # already killed: the failure above says why
            os.kill(pid, signal.SIGCONT)
    assert red_after < heartbeat_timeout
    wait_status(page, "watchlist", ["ok"], 15)
    assert workers_by_name(base)["watchlist"]["pid"] == pid

    # Left stopped: the supervisor kills it; red while it is replaced, green with a new pid.
    os.kill(pid, signal.SIGSTOP)
    wait_status(page, "watchlist", ["late", "bad"], heartbeat_timeout)
    tree.wait_log(rf"watchlist: pid {pid} ended: SIGKILL|watchlist: pid {pid} ended: SIGTERM",
                  timeout=heartbeat_timeout + 10)
    wait_status(page, "watchlist", ["ok"], 30)
    row = workers_by_name(base)["watchlist"]
    assert row["pid"] != pid and row["restarts"] == 1
    assert card(page, "watchlist").locator("dd").nth(2).inner_text() == "1"  # Restarts
    assert "hang" in card(page, "watchlist").inner_text()  # its last exit, and why
    open_page.close_all()
    assert tree.stop() == 0


def test_a_restart_from_the_page_needs_the_token_and_is_refused_without_it(make_tree, open_page, tmp_path):
    tree = make_tree({"api": {"kind": "api", "interval": 0.5},
                      "watchlist": {"kind": "watchlist", "interval": 1.0, "symbols": SYMBOLS}},
                     sections={"api": {"port": 0, "token": TOKEN}}, **SLACK).start()
    base = base_of(tree)
    healthy(base)
    under_test = open_page(base + "/")
    under_test.expected.append(REFUSED)
    page = under_test.page
    wait_status(page, "watchlist", ["ok"], 15)
    old_pid = workers_by_name(base)["watchlist"]["pid"]
    button = card(page, "watchlist").locator("button.restart")
    assert page.locator("#token-form").is_visible() and button.is_visible()

    button.click()  # no token entered: the API refuses, the page says so
    page.wait_for_selector('#restart-message[data-status="bad"]')
    assert "Refused (401): no token entered" in page.locator("#restart-message").inner_text()
    page.fill("#token", "wrong-token")
    page.press("#token", "Enter")
    button.click()
    page.wait_for_selector('#restart-message:text("wrong token")')
    assert page.locator("#token-state").inner_text() == "No token entered."  # a refused token is forgotten
    assert workers_by_name(base)["watchlist"]["pid"] == old_pid
    assert len([e for e in under_test.errors if re.search(REFUSED, e)]) == 2

    page.fill("#token", TOKEN)
    page.click('#token-form button[type="submit"]')
    assert page.locator("#token-state").inner_text() == "A token is set for this session."
    assert page.evaluate("() => sessionStorage.getItem('mdw-api-token')") == TOKEN
    assert page.evaluate("() => localStorage.length") == 0  # for the browser session only
    button.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector('#restart-message[data-status="ok"]')
    assert "Restart of watchlist queued" in page.locator("#restart-message").inner_text()
    tree.wait_log(rf"watchlist: pid {old_pid} ended: SIGTERM \(manual: restart requested\)")
    new_pid = poll(lambda: (lambda p: p if p and p != old_pid else None)(workers_by_name(base)["watchlist"]["pid"]),
                   15, what="a new watchlist pid")
    page.wait_for_selector(f'.worker[data-worker="watchlist"] dd:text("pid {new_pid},")')
    page.screenshot(path=str(tmp_path / "page-restarted.png"))
    assert open_page(base + "/").page.evaluate("() => sessionStorage.getItem('mdw-api-token')") is None
    open_page.close_all()
    assert tree.stop() == 0


def test_choosing_a_symbol_draws_its_price_macd_squeeze_and_breakout_charts(make_tree, open_page, tmp_path):
    tree = make_tree({"api": {"kind": "api", "interval": 0.5},
                      "macd": {"kind": "macd", "interval": 2.0, "symbols": SYMBOLS}},
                     sections={"api": {"port": 0}}, **SLACK).start()
    base = base_of(tree)
    tree.wait_log(r"macd: INFO scanner: macd_scanner cycle: symbols 3, fresh 3, stored 3", timeout=30)
    page = open_page(base + "/").page
    symbol = page.locator('#macd-table button.sym[data-symbol="NVDA"]')
    symbol.wait_for()
    symbol.focus()
    page.keyboard.press("Enter")  # by keyboard
    page.wait_for_selector("#symbol-charts figure:nth-child(3) canvas")
    assert page.locator("#symbol-title").inner_text() == "NVDA"
    assert page.evaluate("() => document.activeElement.id") == "symbol-title"
    figures = page.locator("#symbol-charts figure")
    assert figures.count() == 3
    assert [int(figures.nth(i).get_attribute("data-points")) for i in range(3)] == [120] * 3
    captions = " ".join(figures.locator("figcaption").all_inner_texts())
    assert "MACD" in captions and "Squeeze" in captions and "VPB breakouts" in captions
    assert all(n > 500 for n in drawn_pixels(page, "#symbol-charts")), "a chart drew nothing"
    assert re.search(r"NVDA on \d{4}-\d\d-\d\d: close [\d.]+; MACD .*squeeze (ON|off) for \d+ bars?",
                     page.locator("#symbol-summary").inner_text())
    page.locator("#symbol").screenshot(path=str(tmp_path / "page-symbol.png"))
    page.click("#symbol-close")
    assert page.locator("#symbol").is_hidden()
    assert page.evaluate("() => document.activeElement.dataset.symbol") == "NVDA"  # focus back where it was
    open_page.close_all()
    assert tree.stop() == 0


def test_choosing_a_symbol_and_expiry_by_keyboard_draws_its_key_levels_and_the_sentiment_gauges_show(
        make_tree, open_page, tmp_path):
    tree = make_tree(None, sections={"api": {"port": 0}}).start()
    base = base_of(tree)

    def market_structure_wrote():
        try:
            return bool(get_json(f"{base}/api/last_update")["market_sentiment"]["value"]
                        and get_json(f"{base}/api/chains")["count"])
        except (OSError, KeyError, TypeError):  # not listening yet, or not written yet
            return False
    poll(market_structure_wrote, 120, interval=0.5, what="market_structure's first rows and whale_flows' chains")
    chains = get_json(f"{base}/api/chains")["data"]

    page = open_page(base + "/").page
    page.wait_for_selector("#levels-symbol option:nth-child(2)", state="attached")
    assert page.locator('label[for="levels-symbol"]').inner_text() == "Symbol"
    assert page.locator('label[for="levels-expiry"]').inner_text() == "Expiration"
    page.locator("#levels-symbol").focus()
    page.keyboard.press("ArrowDown")  # the first symbol, by keyboard
    symbol = page.eval_on_selector("#levels-symbol", "e => e.value")
    assert symbol == min(c["symbol"] for c in chains)
    page.locator("#levels-expiry").focus()
    page.keyboard.press("ArrowDown")  # from "all expirations" to the nearest one
    expiry = page.eval_on_selector("#levels-expiry", "e => e.value")
    assert expiry == min(c["expiry"] for c in chains if c["symbol"] == symbol)
    page.wait_for_function(f"""() => document.querySelector('#levels-note').textContent
                                     .startsWith('{symbol} {expiry}: spot')""")
    page.wait_for_selector("#levels-chart figure:nth-child(2) canvas")
    assert all(n > 500 for n in drawn_pixels(page, "#levels-chart")), "a key-levels chart drew nothing"
    assert int(page.locator("#levels-chart figure").first.get_attribute("data-points")) > 5
    legend = page.locator("#levels-legend li")
    assert [legend.nth(i).get_attribute("data-marker") for i in range(legend.count())] == [
        "spot", "call_wall", "put_wall", "call_oi_wall", "put_oi_wall", "gamma_flip", "flip_level"]
    assert re.search(r"Gamma flip .*: ([\d.]+|none)", page.locator("#levels-legend").inner_text())
    assert "calls up" in page.locator("#levels-chart figcaption").first.inner_text()

    page.wait_for_selector('.sentiment[data-symbol="QQQ"]')
    for name in ("QQQ", "SPY"):
        gauge = page.locator(f'.sentiment[data-symbol="{name}"]')
        label = gauge.get_attribute("data-label")
        assert label in ("BULLISH", "SLIGHTLY_BULLISH", "NEUTRAL", "SLIGHTLY_BEARISH", "BEARISH")
        assert label.replace("_", " ") in gauge.locator(".badge").inner_text()  # in words, not colour alone
        assert 0 <= float(gauge.locator('[role="meter"]').get_attribute("aria-valuenow")) <= 100
        assert re.search(r"IV rank\s+(collecting \(\d+ of 20 days\)|[\d.]+)", gauge.inner_text())
    page.locator("#structure").screenshot(path=str(tmp_path / "page-structure.png"))

    phone = open_page(base + "/", viewport=PHONE).page
    phone.wait_for_selector('.sentiment[data-symbol="SPY"] [role="meter"]')
    section, section_visible, document, window = no_horizontal_overflow(phone, "#structure")
    assert section <= section_visible and document <= window, "the market-structure section overflows a phone's width"
    open_page.close_all()
    assert tree.stop() == 0
