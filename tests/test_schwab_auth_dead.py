"""When the Schwab login is dead (the refresh token refused, or no token file): every cycle fails at once
with one reason naming the login command, nothing is quarantined, and the token endpoint is asked again
only after a backoff shared by every process using the token file; a new login ends it at once."""
import configparser
import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from supervisor.shared.control_client import ControlClient
from tests.proctree import poll
from tests.schwab_fixture import DAY, TOKEN_PATH, fake, schwab_against, write_token_file  # noqa: F401 (fake: a fixture)
from tests.test_scanners import make_scan
from workers import kinds, technical, watchlist, whale_flows
from workers.providers.base import AuthError
from workers.providers.schwab_auth import REFUSAL_BACKOFF_S
from workers.quarantine import Quarantine
from workers.scanner import ProviderDown
from tests.clock import Clock

ROOT = Path(__file__).resolve().parent.parent
LOGIN = "mdw-schwab-login"
SCANS = [(watchlist.WatchlistScan, "watchlist"), (whale_flows.WhaleFlowsScan, "whale_flows"),
         (technical.MacdScan, "macd"), (technical.VpbScan, "vpb"), (technical.TtmScan, "ttm")]


@pytest.fixture
def dead(tmp_path, fake):
    """A token file whose access token has expired and whose refresh token Schwab no longer takes."""
    return write_token_file(tmp_path / "schwab-token.json", fake, access="expired-access", expires_in=-60,
                            refresh="dead-refresh-token", issued_at=1_790_000_000.0 - 8 * DAY)


@pytest.fixture
def providers(fake, tmp_path):
    made = []

    def make(**overrides):
        provider = schwab_against(fake, tmp_path, 2.0, keep_token_file=True, **overrides)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


def refused(call):
    with pytest.raises(AuthError) as caught:
        call()
    return str(caught.value)


def test_a_refused_refresh_token_is_not_retried_by_any_process_until_its_backoff_ends(dead, fake, providers):
    clock = Clock(1_790_000_000.0)
    first, second = providers(wall_clock=clock), providers(wall_clock=clock)
    reason = refused(lambda: first.daily_bars("AAPL", 10))
    assert "refused the refresh token (invalid_grant)" in reason and f"run {LOGIN}" in reason
    assert "7 days" in reason and "dead-refresh-token" not in reason
    for _ in range(5):
        assert refused(lambda: second.daily_bars("MSFT", 10)) == reason  # the same words, Schwab not asked
        assert refused(lambda: first.quotes(["AAPL"])) == reason
    assert fake.hits(TOKEN_PATH) == 1
    clock.now += REFUSAL_BACKOFF_S
    refused(lambda: second.daily_bars("AAPL", 10))
    assert fake.hits(TOKEN_PATH) == 2
    clock.now += REFUSAL_BACKOFF_S  # the wait doubled after the second refusal
    refused(lambda: first.daily_bars("AAPL", 10))
    assert fake.hits(TOKEN_PATH) == 2
    clock.now += REFUSAL_BACKOFF_S
    refused(lambda: first.daily_bars("AAPL", 10))
    assert fake.hits(TOKEN_PATH) == 3


def test_a_new_login_is_used_at_once_despite_the_backoff(dead, fake, providers):
    clock = Clock(1_790_000_000.0)
    provider = providers(wall_clock=clock)
    refused(lambda: provider.daily_bars("AAPL", 10))
    write_token_file(dead, fake, access="expired-access", expires_in=-60, now=clock.now)  # the login's new token
    assert len(provider.daily_bars("AAPL", 10)) > 0
    assert fake.hits(TOKEN_PATH) == 2


def test_refused_app_credentials_back_off_too_and_new_ones_are_tried_at_once(tmp_path, fake, providers):
    write_token_file(tmp_path / "schwab-token.json", fake, access="expired-access", expires_in=-60)
    clock = Clock(1_790_000_000.0)
    wrong = providers(app_secret="wrong-secret-value", wall_clock=clock)
    reason = refused(lambda: wrong.daily_bars("AAPL", 10))
    assert "refused the app key and secret (invalid_client) from SCHWAB_APP_KEY/SCHWAB_APP_SECRET" in reason
    assert refused(lambda: providers(app_secret="wrong-secret-value", wall_clock=clock).quotes(["AAPL"])) == reason
    assert fake.hits(TOKEN_PATH) == 1 and "wrong-secret-value" not in reason
    assert len(providers(wall_clock=clock).daily_bars("AAPL", 10)) > 0  # the fixed secret: asked at once
    assert fake.hits(TOKEN_PATH) == 2


@pytest.mark.parametrize("scan_class, kind", SCANS, ids=[k for _, k in SCANS])
def test_every_scanner_fails_its_cycles_with_the_login_command_and_quarantines_nothing(
        dead, fake, providers, tmp_path, scan_class, kind):
    provider = providers()
    quarantine = Quarantine(tmp_path / f"q-{kind}.json", after_failures=1)
    scan, _ = make_scan(scan_class, kind, tmp_path, provider=provider, quarantine=quarantine)
    for _ in range(3):
        with pytest.raises(ProviderDown, match=f"refused our credentials: Schwab refused the refresh token.*{LOGIN}"):
            scan.run_cycle()
    assert quarantine.listing() == [] and quarantine.failures == {} and quarantine.suspects == {}
    assert fake.hits(TOKEN_PATH) == 1 and len(fake.requests) == 1  # no market data asked for either


def test_without_a_token_file_every_cycle_fails_naming_the_login_command(fake, providers, tmp_path):
    scan, _ = make_scan(technical.MacdScan, "macd", tmp_path, provider=providers(), quarantine=Quarantine(None))
    with pytest.raises(ProviderDown, match=f"schwab-token.json not found: run {LOGIN} to create it"):
        scan.run_cycle()
    assert fake.requests == []


# -- the messages name what exists ------------------------------------------------------------------


def console_scripts():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return {line.split("=")[0].strip() for line in parser["options.entry_points"]["console_scripts"].splitlines()
            if line.strip()}


def test_every_auth_message_names_a_real_key_variable_and_the_real_login_command(dead, fake, providers, tmp_path):
    messages = [refused(lambda: providers().daily_bars("AAPL", 10)),
                refused(lambda: providers(app_key="", app_secret="").daily_bars("AAPL", 10)),
                refused(lambda: providers(app_key="", app_secret="", secrets_file=str(tmp_path / "none.json"))
                        .daily_bars("AAPL", 10)),
                refused(lambda: providers(token_path=str(tmp_path / "none.json")).daily_bars("AAPL", 10))]
    dead.write_text("{")
    messages.append(refused(lambda: providers().daily_bars("AAPL", 10)))
    dead.write_text("{}")
    messages.append(refused(lambda: providers().daily_bars("AAPL", 10)))
    keys = kinds.SECTIONS["provider"].keys
    for message in messages:
        for key in re.findall(r"\[provider\] (\w+)", message):
            assert key in keys, message
        for variable in re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", message):
            assert variable in ("SCHWAB_APP_KEY", "SCHWAB_APP_SECRET"), message
        for command in re.findall(r"\bmdw-[\w-]+", message):
            assert command in console_scripts(), message
        assert "app_key" not in message and "app_secret" not in message, message  # keys check-config rejects
    assert sum(LOGIN in m for m in messages) == 4  # the refusal and each broken token file
    assert sum("[provider] secrets_file" in m for m in messages) == 2


# -- the whole tree, on the embedded defaults ----------------------------------------------------------


def statuses(tree):
    return {row["name"]: row for row in ControlClient(tree.state_dir / "mdwd.sock").call("status")["workers"]}


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.slow
def test_a_dead_login_on_the_defaults_fails_every_scanner_once_each_cycle_and_asks_schwab_once(make_tree, fake):
    scanners = [kind for _, kind in SCANS]
    sections = {"provider": {"kind": "schwab", "base_url": fake.url, "auth_url": fake.url}, "api": {"port": 0},
                "workers": {name: {"interval": 2.0, "schedule": "always"} for name in scanners}}  # on Schwab they
    # would otherwise wait for the session (workers/market_hours.py)
    tree = make_tree(None, sections, heartbeat_timeout=5.0, startup_timeout=10.0, backoff_initial=0.5,
                     backoff_max=5.0)
    tree.state_dir.mkdir()
    issued = time.time() - 8 * DAY
    write_token_file(tree.state_dir / "schwab-token.json", fake, access="expired-access", expires_in=-60,
                     refresh="dead-refresh-token", issued_at=issued)
    tree.start(SCHWAB_APP_KEY=fake.app_key, SCHWAB_APP_SECRET=fake.app_secret)
    port = tree.api_port()

    def failing_thrice():
        rows = statuses(tree)
        done = all((rows[n].get("cycles_failed") or 0) >= 3 and LOGIN in (rows[n].get("failing") or "")
                   for n in scanners)
        return done and rows

    rows = poll(failing_thrice, 60, interval=0.2, what=lambda: f"every scanner failing 3 cycles: {statuses(tree)}")
    for name in scanners:
        assert "the provider refused our credentials: Schwab refused the refresh token" in rows[name]["failing"]
        assert rows[name]["reported"]["quarantined"] == []
    assert fake.hits(TOKEN_PATH) == 1, fake.requests  # five processes, 15+ cycles: one question to Schwab
    assert [path for _, path, _ in fake.requests] == [TOKEN_PATH]
    warning = rows["watchlist"]["warnings"][0]
    assert warning.startswith("the Schwab refresh token expired 1 day 0 h ago") and warning.endswith(f"run {LOGIN}")
    status = ControlClient(tree.state_dir / "mdwd.sock").call("status")["supervisor"]["status"]
    assert status.count(f"warning: {warning}") == 1
    code, body = poll(lambda: (a := http_get(port, "/health"))[0] == 503 and f"warning: {warning}" in a[1] and a,
                      30, interval=0.5, what=lambda: f"/health with the warning: {http_get(port, '/health')}")
    problems = json.loads(body)["problems"]
    assert problems.count(f"warning: {warning}") == 1
    assert all(any(f"worker {n} is not healthy" in p and LOGIN in p for p in problems) for n in scanners)
    code, metrics = http_get(port, "/metrics")
    gauge = re.search(r"^mdw_schwab_refresh_token_expiry_seconds (\S+)$", metrics, re.M)
    assert gauge and -DAY - 120 < float(gauge.group(1)) < -DAY + 5
    for name in scanners:
        file = tree.state_dir / f"quarantine-{name}.json"
        assert not file.exists() or json.loads(file.read_text())["entries"] == {}
    assert tree.stop() == 0
    assert fake.hits(TOKEN_PATH) == 1
