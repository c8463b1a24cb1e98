"""The Schwab provider against a local fake Schwab that misbehaves on request.

Failure tests assert that each call returns or raises within its deadline plus
MARGIN (measured with time.monotonic): a correctness bound, not a benchmark.
"""
import datetime as dt
import json
import os
import stat
import time

import pandas as pd
import numpy as np
import pytest

from tests.fake_schwab import MARKET_TIME, TOKEN_PATH
from workers.providers import create_provider
from workers.providers.base import (BAR_COLUMNS, CHAIN_COLUMNS, QUOTE_COLUMNS, AuthError,
                                    BadPayload, BudgetExhausted, CircuitOpen, DeadlineExceeded,
                                    HttpStatusError, ProviderError)
from workers.providers.schwab import SchwabConfig, SchwabProvider, open_from_config
from tests.schwab_fixture import fake  # noqa: F401 (a fixture: the local FakeSchwab)

DEADLINE = 0.3
MARGIN = 0.3
HISTORY = "/marketdata/v1/pricehistory"
QUOTES = "/marketdata/v1/quotes"
CHAINS = "/marketdata/v1/chains"
GOOD_FRIDAY_WEEK = [dt.date(2026, 4, 2), dt.date(2026, 4, 10), dt.date(2026, 4, 17)]


def write_tokens(path, access, expires_in, refresh="refresh-token-0", nested=False):
    tokens = {"access_token": access, "refresh_token": refresh,
              "expires_at": time.time() + expires_in, "token_type": "Bearer"}
    document = {"creation_timestamp": 1, "token": tokens} if nested else tokens
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
def token_path(tmp_path, fake):
    return write_tokens(tmp_path / "schwab-token.json", fake.issue_access_token(), 1800)


@pytest.fixture
def make(fake, token_path, tmp_path):
    providers = []

    def make(**overrides):
        options = {"token_path": str(token_path), "app_key": fake.app_key,
                   "app_secret": fake.app_secret, "base_url": fake.url, "auth_url": fake.url,
                   "state_dir": str(tmp_path / "state"), "call_timeout_s": DEADLINE,
                   "backoff_factor": 0.02, "read_timeout_s": 5.0,
                   "requests_per_minute": 6000, "request_burst": 100, **overrides}
        provider = SchwabProvider(SchwabConfig.from_mapping(options), clock=lambda: MARKET_TIME)
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        provider.close()


def timed(fn, *args, **kw):
    started = time.monotonic()
    try:
        result = fn(*args, **kw)
    except ProviderError as exc:
        result = exc
    return result, time.monotonic() - started


# -- happy path ---------------------------------------------------------------------

def test_answers_in_the_standard_shapes(make, fake):
    provider = make(call_timeout_s=5.0)
    batch = provider.quotes(["AAPL", "MSFT", "SPY"])
    assert list(batch.columns) == list(QUOTE_COLUMNS)
    assert list(batch.index) == ["AAPL", "MSFT", "SPY"]
    expected = fake.market.quotes(["AAPL", "MSFT", "SPY"])
    pd.testing.assert_series_equal(batch["price"], expected["price"])
    assert batch.errors == {}

    bars = provider.daily_bars("AAPL", 365)
    assert list(bars.columns) == list(BAR_COLUMNS) and (bars.dtypes == "float64").all()
    pd.testing.assert_frame_equal(bars, fake.market.daily_bars("AAPL", 365), check_freq=False)

    intraday = provider.intraday_bars("AAPL", minutes=5, days=1)
    assert str(intraday.index.tz) == "America/New_York" and len(intraday) == 18

    assert provider.expirations("SPY", 3) == GOOD_FRIDAY_WEEK  # dailies reduced to weeklies
    assert provider.expirations("AAPL", 3) == GOOD_FRIDAY_WEEK

    chain = provider.option_chain("SPY", GOOD_FRIDAY_WEEK[0], strike_band_pct=5)
    assert list(chain.columns) == list(CHAIN_COLUMNS) and len(chain) > 10
    spot = chain["underlying_price"].iloc[0]
    assert (abs(chain["strike"] / spot - 1) <= 0.05).all()
    assert (chain["expiry"] == GOOD_FRIDAY_WEEK[0]).all() and (chain["dte"] == 3).all()
    assert set(chain["type"]) == {"CALL", "PUT"}
    sent = fake.market.option_chain("SPY", GOOD_FRIDAY_WEEK[0], 5)
    for greek in ("gamma", "theta", "vega"):  # Schwab's own Greeks, as it sent them
        assert np.allclose(chain[greek], sent[greek], rtol=1e-12), greek


def test_greeks_schwab_marks_not_available_are_nan(make, fake):
    from workers.providers.schwab_payloads import parse_chain

    payload = fake.chains_payload({"symbol": ["SPY"], "fromDate": [GOOD_FRIDAY_WEEK[0].isoformat()]})
    for contracts in payload["callExpDateMap"].values():
        for [contract] in contracts.values():
            contract.update(gamma=-999.0, theta=None)
            contract.pop("vega")
    chain = parse_chain("SPY", payload, GOOD_FRIDAY_WEEK[0], 10.0, GOOD_FRIDAY_WEEK[0] - dt.timedelta(days=3))
    calls, puts = chain[chain["type"] == "CALL"], chain[chain["type"] == "PUT"]
    assert calls[["gamma", "theta", "vega"]].isna().all().all() and puts["gamma"].notna().all()


def test_a_single_symbol_string_is_one_symbol_not_its_letters(make):
    assert list(make().quotes("AAPL").index) == ["AAPL"]


def test_quotes_are_fetched_in_batches(make, fake):
    provider = make(quotes_batch_size=2, call_timeout_s=5.0)
    batch = provider.quotes(["AAPL", "MSFT", "SPY", "QQQ", "IWM"])
    assert len(batch) == 5 and fake.hits(QUOTES) == 3


def test_unknown_and_invalid_symbols_land_in_errors(make, fake):
    fake.invalid_symbols.add("ZZZZ")
    batch = make().quotes(["AAPL", "ZZZZ", "not a symbol"])
    assert list(batch.index) == ["AAPL"]
    assert "invalidSymbols" in batch.errors["ZZZZ"]
    assert "not a valid symbol" in batch.errors["not a symbol"]


# -- every failure mode, each bounded by its deadline --------------------------------

@pytest.mark.parametrize("mode", ["hang", "hang_body", "trickle", "trickle_headers"])
def test_hung_upstream_raises_deadline_exceeded_in_time(make, fake, mode):
    fake.misbehave(HISTORY, mode)
    error, elapsed = timed(make().daily_bars, "AAPL")
    assert isinstance(error, DeadlineExceeded) and error.symbol == "AAPL"
    assert elapsed < DEADLINE + MARGIN


def test_hung_quotes_raise_deadline_exceeded_in_time(make, fake):
    fake.misbehave(QUOTES, "hang")
    error, elapsed = timed(make(quotes_batch_size=2).quotes, ["AAPL", "MSFT", "SPY"])
    assert elapsed < DEADLINE + MARGIN
    assert isinstance(error, DeadlineExceeded) and "deadline" in str(error)


def test_one_failing_quote_batch_does_not_sink_the_others(make, fake):
    fake.misbehave(QUOTES, "status", symbol="MSFT", status=500)
    batch = make(quotes_batch_size=2, call_timeout_s=3.0).quotes(["AAPL", "MSFT", "SPY"])
    assert list(batch.index) == ["SPY"]
    assert "HTTP 500" in batch.errors["AAPL"] and "HTTP 500" in batch.errors["MSFT"]


def test_429_with_retry_after_is_retried_within_the_deadline(make, fake):
    fake.misbehave(HISTORY, "status", status=429, retry_after=0, times=2)
    bars, elapsed = timed(make().daily_bars, "AAPL", 30)
    assert isinstance(bars, pd.DataFrame) and len(bars) > 15
    assert fake.hits(HISTORY) == 3 and elapsed < DEADLINE + MARGIN


def test_429_asking_too_long_fails_fast(make, fake):
    fake.misbehave(HISTORY, "status", status=429, retry_after=60)
    error, elapsed = timed(make().daily_bars, "AAPL")
    assert isinstance(error, HttpStatusError) and error.status == 429
    assert elapsed < DEADLINE + MARGIN


def test_500_is_retried_then_reported_with_status_and_excerpt(make, fake):
    fake.misbehave(HISTORY, "status", status=500, body={"message": "backend on fire"})
    error, elapsed = timed(make(call_timeout_s=2.0).daily_bars, "AAPL")
    assert isinstance(error, HttpStatusError) and error.status == 500
    assert "backend on fire" in error.excerpt and "/marketdata/v1/pricehistory" in str(error)
    assert fake.hits(HISTORY) == 4 and elapsed < 2.0 + MARGIN


@pytest.mark.parametrize("mode, words", [("junk", "invalid JSON"), ("truncate", "truncated body"),
                                         ("html", "HTML page")])
def test_unusable_bodies_are_bad_payloads(make, fake, mode, words):
    fake.misbehave(CHAINS, mode)
    error, elapsed = timed(make(call_timeout_s=2.0).option_chain, "SPY", GOOD_FRIDAY_WEEK[0])
    assert isinstance(error, BadPayload) and words in str(error) and error.symbol == "SPY"
    assert elapsed < 2.0 + MARGIN


@pytest.mark.parametrize("path, body, call, words", [
    (HISTORY, {"symbol": "AAPL", "empty": True}, ("daily_bars", "AAPL"), "no 'candles'"),
    (HISTORY, {"candles": [{"open": 1, "high": 2, "low": 1, "volume": 5, "datetime": 0}]},
     ("daily_bars", "AAPL"), "field 'close' missing"),
    (CHAINS, {"symbol": "SPY", "status": "FAILED"}, ("option_chain", "SPY", GOOD_FRIDAY_WEEK[0]),
     "status FAILED"),
    ("/marketdata/v1/expirationchain", {"expirationList": [{"expirationDate": "soon"}]},
     ("expirations", "SPY"), "bad expirationDate"),
])
def test_missing_fields_are_bad_payloads_naming_the_field(make, fake, path, body, call, words):
    fake.misbehave(path, "status", status=200, body=body)
    error, _ = timed(getattr(make(), call[0]), *call[1:])
    assert isinstance(error, BadPayload) and words in str(error)


def test_quote_without_last_price_is_an_error_for_that_symbol_only(make, fake):
    fake.misbehave(QUOTES, "status", status=200, body={
        "AAPL": {"quote": {"closePrice": 1.0}},
        "MSFT": {"quote": {"lastPrice": 10.0, "closePrice": 8.0, "totalVolume": 7}}})
    batch = make().quotes(["AAPL", "MSFT"])
    assert "field 'lastPrice' missing" in batch.errors["AAPL"]
    assert batch.loc["MSFT", "daily_change_pct"] == pytest.approx(25.0)


# -- OAuth tokens -----------------------------------------------------------------

def test_401_refreshes_the_token_once_then_retries(make, fake, token_path):
    provider = make()
    old = json.loads(token_path.read_text())["access_token"]
    fake.revoke_access_tokens()
    bars, elapsed = timed(provider.daily_bars, "AAPL", 30)
    assert isinstance(bars, pd.DataFrame)
    assert fake.hits(TOKEN_PATH) == 1 and elapsed < DEADLINE + MARGIN
    saved = json.loads(token_path.read_text())
    assert saved["access_token"] != old and saved["access_token"] in fake.access_tokens


def test_token_is_refreshed_before_it_expires(make, fake, token_path):
    write_tokens(token_path, "about-to-expire", 60)  # inside the 120 s refresh margin
    make().quotes(["AAPL"])
    assert fake.hits(TOKEN_PATH) == 1
    saved = json.loads(token_path.read_text())
    assert saved["access_token"] in fake.access_tokens
    assert saved["expires_at"] == pytest.approx(time.time() + 1800, abs=30)


def test_token_file_is_rewritten_atomically_private_and_in_its_own_shape(make, fake, token_path):
    write_tokens(token_path, "expired", -10, nested=True)  # schwab-py's layout
    make().daily_bars("AAPL", 10)
    assert stat.S_IMODE(os.stat(token_path).st_mode) == 0o600
    saved = json.loads(token_path.read_text())
    assert saved["creation_timestamp"] == 1 and saved["token"]["access_token"] in fake.access_tokens
    leftovers = [p.name for p in token_path.parent.iterdir() if p.name.startswith(".schwab-token")]
    assert leftovers == []


def test_a_refresh_by_another_process_is_reused_not_repeated(make, fake):
    first, second = make(), make()
    first.daily_bars("AAPL", 10)
    second.daily_bars("AAPL", 10)
    fake.revoke_access_tokens()
    first.daily_bars("AAPL", 10)   # 401 -> refresh, writes the file
    second.daily_bars("AAPL", 10)  # 401 -> finds the new token in the file
    assert fake.hits(TOKEN_PATH) == 1


def test_expired_refresh_token_is_a_clear_auth_error_without_secrets(make, fake, token_path):
    write_tokens(token_path, "expired-access-token-value", -10, refresh="old-refresh-token-value")
    error, _ = timed(make().daily_bars, "AAPL")
    assert isinstance(error, AuthError) and "invalid_grant" in str(error)
    assert "mdw-schwab-login" in str(error)
    for secret in ("old-refresh-token-value", "expired-access-token-value", fake.app_secret):
        assert secret not in str(error)


def test_wrong_app_secret_is_a_clear_auth_error(make, fake, token_path):
    write_tokens(token_path, "x", -10)
    error, _ = timed(make(app_secret="wrong-secret-value").daily_bars, "AAPL")
    assert isinstance(error, AuthError) and "invalid_client" in str(error)
    assert "wrong-secret-value" not in str(error)


def test_missing_token_file_says_how_to_fix_it(make, tmp_path):
    error, _ = timed(make(token_path=str(tmp_path / "nope.json")).daily_bars, "AAPL")
    assert isinstance(error, AuthError) and "not found" in str(error) and "login" in str(error)


@pytest.mark.parametrize("content, words", [("[1, 2]", "JSON object"), ("{", "unreadable"),
                                            ('{"access_token": "a"}', "no refresh_token")])
def test_broken_token_file_is_a_clear_auth_error(make, token_path, content, words):
    token_path.write_text(content)
    error, _ = timed(make().daily_bars, "AAPL")
    assert isinstance(error, AuthError) and words in str(error)


def test_still_401_after_refresh_gives_up_with_auth_error(make, fake):
    fake.misbehave(HISTORY, "status", status=401)
    # a deadline this test is not about: under load, 0.3 s for a 401, a refresh and a retry can run out first
    error, elapsed = timed(make(call_timeout_s=5.0).daily_bars, "AAPL")
    assert isinstance(error, AuthError) and "still rejected" in str(error)
    assert fake.hits(TOKEN_PATH) == 1 and fake.hits(HISTORY) == 2
    fake.misbehave(QUOTES, "status", status=401)
    with pytest.raises(AuthError):
        make(call_timeout_s=5.0).quotes(["AAPL"])  # quotes never hide an auth failure in `errors`


def test_hung_token_endpoint_is_bounded_by_the_call_deadline(make, fake, token_path):
    write_tokens(token_path, "expired", -10)
    fake.misbehave(TOKEN_PATH, "hang")
    error, elapsed = timed(make().daily_bars, "AAPL")
    assert isinstance(error, DeadlineExceeded) and elapsed < DEADLINE + MARGIN


def test_secrets_echoed_by_the_server_are_redacted(make, fake, token_path):
    access = json.loads(token_path.read_text())["access_token"]
    fake.misbehave(HISTORY, "echo_secrets")
    provider = make(call_timeout_s=2.0)
    error, _ = timed(provider.daily_bars, "AAPL")
    assert isinstance(error, HttpStatusError) and access not in str(error)
    assert fake.app_secret not in repr(provider.config) and access not in repr(provider.auth)


# -- breaker and budget ------------------------------------------------------------

def test_failing_symbol_opens_its_circuit_and_stops_calling_upstream(make, fake):
    provider = make(breaker_failures=2, breaker_cooldown_s=60)
    fake.misbehave(HISTORY, "hang", symbol="TSLA")
    for _ in range(2):
        assert isinstance(timed(provider.daily_bars, "TSLA")[0], DeadlineExceeded)
    hits = fake.hits(HISTORY)
    error, elapsed = timed(provider.daily_bars, "TSLA")
    assert isinstance(error, CircuitOpen) and "TSLA" in str(error)
    assert elapsed < 0.05 and fake.hits(HISTORY) == hits
    assert isinstance(provider.daily_bars("AAPL", 10), pd.DataFrame)  # others unaffected
    assert "circuit open" in provider.quotes(["TSLA", "AAPL"]).errors["TSLA"]


def test_shared_budget_exhaustion_fails_fast(make, fake):
    provider = make(requests_per_minute=3, request_burst=2)  # then one token per 60 s
    provider.daily_bars("AAPL", 10)
    provider.daily_bars("MSFT", 10)
    error, elapsed = timed(provider.daily_bars, "SPY")
    assert isinstance(error, BudgetExhausted) and elapsed < 0.1
    assert fake.hits(HISTORY) == 2


# -- configuration -------------------------------------------------------------------

def test_config_rejects_unknown_options_and_reads_secrets_from_the_environment(tmp_path):
    with pytest.raises(ValueError, match="unknown schwab provider option.*tokn_path"):
        SchwabConfig.from_mapping({"token_path": "x", "tokn_path": "y"})
    config = SchwabConfig.from_mapping({"token_path": "x"},
                                       environ={"SCHWAB_APP_KEY": "k", "SCHWAB_APP_SECRET": "s"})
    assert (config.app_key, config.app_secret) == ("k", "s") and "'s'" not in repr(config)
    with pytest.raises(ValueError, match="base_url must be an http"):
        SchwabConfig(token_path="x", base_url="api.schwabapi.com")
    with pytest.raises(ValueError, match="call_timeout_s must be > 0"):
        SchwabConfig(token_path="x", call_timeout_s=0)
    provider = create_provider("schwab", {"token_path": str(tmp_path / "t.json")},
                               state_dir=str(tmp_path / "state"))
    try:
        assert provider.http.budget.path == str(tmp_path / "state" / "schwab-requests.bucket")
    finally:
        provider.close()
    with pytest.raises(ValueError, match="unknown provider"):
        create_provider("polygon")


def test_builds_from_the_supervisor_provider_table(fake, tmp_path):
    """[provider] in the supervisor config: token_file is relative to state_dir."""
    write_tokens(tmp_path / "schwab-token.json", fake.issue_access_token(), 1800)
    section = {"kind": "schwab", "request_timeout": 2.5, "requests_per_minute": 100,
               "base_url": fake.url, "auth_url": fake.url, "token_file": "schwab-token.json",
               "sim_seed": 0, "sim_hang_symbols": []}
    provider = open_from_config(section, str(tmp_path), environ={
        "SCHWAB_APP_KEY": fake.app_key, "SCHWAB_APP_SECRET": fake.app_secret})
    try:
        assert provider.config.call_timeout_s == 2.5
        assert provider.http.budget.path == str(tmp_path / "schwab-requests.bucket")
        assert list(provider.quotes(["AAPL"]).index) == ["AAPL"]
    finally:
        provider.close()
