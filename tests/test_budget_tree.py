"""The request budget holds for the whole tree: several scanner processes, one Schwab limit."""
import json
import time

from tests.fake_schwab import FakeSchwab
from tests.proctree import poll

PER_MINUTE = 30
BURST = 10  # the provider's default burst for this limit


def test_scanner_processes_together_never_exceed_the_shared_request_budget(make_tree, tmp_path):
    fake = FakeSchwab().start()
    try:
        tree = make_tree(
            # schedule always: on Schwab they would otherwise wait for the session (workers/market_hours.py)
            {name: {"kind": name, "interval": 60.0, "schedule": "always"} for name in ("macd", "vpb", "ttm")},
            sections={"provider": {"kind": "schwab", "base_url": fake.url, "auth_url": fake.url,
                                   "requests_per_minute": PER_MINUTE, "request_timeout": 5.0}},
            heartbeat_timeout=30.0)
        tree.state_dir.mkdir()
        (tree.state_dir / "schwab-token.json").write_text(json.dumps({
            "access_token": fake.issue_access_token(), "refresh_token": fake.refresh_token,
            "expires_at": time.time() + 1800, "token_type": "Bearer"}))
        tree.start(SCHWAB_APP_KEY=fake.app_key, SCHWAB_APP_SECRET=fake.app_secret)
        poll(lambda: len(fake.request_times) >= BURST + 2, 30, what="the scanners to use up the burst")
        started = fake.request_times[0]
        poll(lambda: fake.request_times[-1] - started >= 6.0, 30, what="six seconds of traffic")
        assert tree.stop() == 0
    finally:
        fake.stop()
    times = list(fake.request_times)
    rate = (PER_MINUTE - BURST) / 60.0
    for i, t0 in enumerate(times):  # every window starting at a request
        for j in range(i, len(times)):
            allowed = BURST + rate * (times[j] - t0) + 1  # +1: a token may refill as the window opens
            assert j - i + 1 <= allowed, f"{j - i + 1} requests in {times[j] - t0:.2f}s (budget allows {allowed:.1f})"
