"""Drive the status page in Debian's headless chromium with Playwright (make test-browser).

`browser` (one chromium for the session, Playwright's own driver, no browser
download: executable_path is /usr/bin/chromium or $MDW_CHROMIUM) and `open_page`
(a fresh browser context per page, its console errors and uncaught exceptions
collected; the test fails on any that it did not declare expected). A test
calls `open_page.close_all()` before it stops its tree.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import urllib.request
from dataclasses import dataclass, field

import pytest

CHROMIUM = os.environ.get("MDW_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 740}


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"chromium not found at {CHROMIUM}: `make test-browser` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Root (CI, containers) cannot use chromium's sandbox.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class PageUnderTest:
    page: object
    errors: list = field(default_factory=list)
    expected: list = field(default_factory=list)  # regexes of console errors a test provokes on purpose

    def unexpected_errors(self):
        return [e for e in self.errors if not any(re.search(p, e) for p in self.expected)]


@pytest.fixture
def open_page(browser):
    """open_page(url, viewport=DESKTOP) -> PageUnderTest; fails the test on an unexpected console error."""
    opened = []

    def open_(url, viewport=DESKTOP):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.set_default_timeout(15_000)
        under_test = PageUnderTest(page)
        page.on("console", lambda m: m.type == "error" and under_test.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: under_test.errors.append(f"uncaught: {e}"))
        opened.append((context, under_test))
        page.goto(url)
        return under_test

    def close_all():
        """Close every page opened (before the tree stops: the page would log the refused connections)."""
        while opened:
            context, under_test = opened.pop()
            context.close()
            problems.extend(under_test.unexpected_errors())

    problems = []
    open_.close_all = close_all
    yield open_
    close_all()
    assert not problems, f"errors in the browser's console: {problems}"


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def workers_by_name(base):
    return {row["name"]: row for row in get_json(f"{base}/api/workers")["data"]}


def card(page, name):
    return page.locator(f'.worker[data-worker="{name}"]')


def wait_status(page, name, statuses, timeout_s):
    """Wait until worker `name`'s card shows one of `statuses` (data-status); return the one shown."""
    wanted = json.dumps(list(statuses))
    page.wait_for_function(
        f"""() => {{ const c = document.querySelector('.worker[data-worker="{name}"]');
                   return c && {wanted}.includes(c.dataset.status); }}""", timeout=timeout_s * 1000)
    return card(page, name).get_attribute("data-status")


def no_horizontal_overflow(page, selector):
    return page.evaluate(f"""() => {{ const e = document.querySelector('{selector}');
        return [e.scrollWidth, e.clientWidth, document.documentElement.scrollWidth, window.innerWidth]; }}""")


def drawn_pixels(page, selector):
    """How many non-transparent pixels each canvas under `selector` has (0: an empty chart)."""
    return page.evaluate(f"""() => [...document.querySelectorAll('{selector} canvas')].map((c) => {{
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < data.length; i += 4) if (data[i]) n += 1; return n; }})""")
