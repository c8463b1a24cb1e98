"""Schwab test helpers: a provider wired to a FakeSchwab with a valid token file, token files of
every shape, and a stand-in for the browser of a login."""
import json
import os
import re
import time
import urllib.error
import urllib.request

import pytest

from tests.fake_schwab import CALLBACK_URL, MARKET_TIME, TOKEN_PATH, FakeSchwab
from workers.providers.schwab import SchwabConfig, SchwabProvider

DAY = 86400.0


def write_token_file(path, fake, *, access=None, expires_in=1800.0, refresh=None, issued_at=None,
                     shape="ours", now=None):
    """A token file in one of the three shapes the provider reads: ours (flat), schwab-py's, or the
    old system's schwab_client.json (which also holds the app key and secret)."""
    now = time.time() if now is None else now
    token = {"access_token": fake.issue_access_token() if access is None else access,
             "refresh_token": fake.refresh_token if refresh is None else refresh,
             "expires_at": now + expires_in, "token_type": "Bearer", "scope": "api"}
    if shape == "ours":
        document = {**token, **({"refresh_token_issued_at": issued_at} if issued_at else {})}
    elif shape == "schwab-py":
        document = {"creation_timestamp": int(issued_at or now), "token": token}
    elif shape == "old":
        created = {"refresh_token_created_at": int(issued_at)} if issued_at else {}
        document = {"client": {"api_key": fake.app_key, "app_secret": fake.app_secret, "callback": CALLBACK_URL,
                               "setup": "2026-03-01 12:00:00"},
                    "token": {**token, "expires_in": 1800, "refresh_token_expires_in": 604800, **created}}
    else:
        raise ValueError(shape)
    with open(path, "w") as f:
        json.dump(document, f)
    os.chmod(path, 0o600)
    return path


def schwab_against(fake, directory, deadline, *, keep_token_file=False, **overrides):
    """A SchwabProvider on `fake`, with a fresh valid token file in `directory` (unless
    `keep_token_file`: then the one a test wrote there)."""
    token = os.path.join(directory, "schwab-token.json")
    if not keep_token_file:
        write_token_file(token, fake)
    options = {"token_path": token, "app_key": fake.app_key, "app_secret": fake.app_secret,
               "base_url": fake.url, "auth_url": fake.url, "state_dir": str(directory),
               "call_timeout_s": deadline, "backoff_factor": 0.02, "requests_per_minute": 100000,
               "request_burst": 1000, **overrides}
    wall_clock = options.pop("wall_clock", time.time)
    return SchwabProvider(SchwabConfig.from_mapping(options), clock=lambda: MARKET_TIME, wall_clock=wall_clock)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def browser_visit(authorize_url, timeout=5.0):
    """What a browser would land on after the login at `authorize_url`: the Location of the redirect."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(authorize_url, timeout=timeout) as answer:
            raise AssertionError(f"the authorize URL answered {answer.status}, not a redirect")
    except urllib.error.HTTPError as answer:
        if answer.code != 302:
            raise AssertionError(f"the authorize URL answered {answer.code}: {answer.read()[:200]!r}") from None
        return answer.headers["Location"]


def authorize_url_in(text):
    found = re.search(r"(https?://\S+/v1/oauth/authorize\?\S+)", text)
    assert found, f"no authorize URL in:\n{text}"
    return found.group(1)


class Browser:
    """stdin for mdw-schwab-login: reads the authorize URL it printed, "logs in" at the fake, and pastes
    where the browser landed (or what `paste(location)` makes of it)."""

    def __init__(self, printed, paste=lambda location: location):
        self.printed, self.paste = printed, paste
        self.visited = None

    def readline(self):
        self.visited = authorize_url_in(self.printed.getvalue())
        return self.paste(browser_visit(self.visited)) + "\n"


__all__ = ["Browser", "CALLBACK_URL", "DAY", "FakeSchwab", "MARKET_TIME", "TOKEN_PATH", "browser_visit",
           "schwab_against", "write_token_file"]


@pytest.fixture
def fake():
    """A local FakeSchwab (tests/fake_schwab.py), stopped with its handler threads when the test ends."""
    server = FakeSchwab().start()
    yield server
    server.stop()
