"""HTTP hygiene against a real local server: deadlines, retries, payload errors, redaction.

Every failure test measures elapsed time with time.monotonic() and asserts an
upper bound of deadline + MARGIN: a correctness bound (the call must not hang),
not a performance target.
"""
import shutil
import socket
import subprocess
import threading
import time

import psutil
import pytest

from tests.fake_schwab import FakeSchwab
from workers.providers.base import (AuthError, BadPayload, BudgetExhausted, DeadlineExceeded,
                                    HttpStatusError, ProviderError)
from workers.providers.http import HttpClient, HttpConfig, deadline_in, excerpt, redact
from tests.schwab_fixture import fake  # noqa: F401 (a fixture: the local FakeSchwab)

DEADLINE = 0.25
MARGIN = 0.25
TOKEN = "SeCrEt-access-token-0123456789"


@pytest.fixture
def client():
    # read timeout far above the deadline: only the total deadline can stop a trickle
    http = HttpClient(HttpConfig(read_timeout_s=5.0, backoff_factor=0.02, max_retries=3))
    yield http
    http.close()


def call(client, fake, deadline=DEADLINE, **kw):
    """(result or exception, elapsed seconds) of one GET /echo."""
    started = time.monotonic()
    try:
        result = client.get_json(fake.url + "/echo", deadline=started + deadline, **kw)
    except ProviderError as exc:
        result = exc
    return result, time.monotonic() - started


# -- the total deadline -------------------------------------------------------------

@pytest.mark.parametrize("mode", ["hang", "hang_body", "trickle", "trickle_headers"])
def test_hung_or_trickling_upstream_is_cut_off_at_the_deadline(client, fake, mode):
    fake.misbehave("/echo", mode, interval=0.05)  # a byte every 50 ms beats any read timeout
    error, elapsed = call(client, fake)
    assert isinstance(error, DeadlineExceeded), error
    assert DEADLINE - 0.05 <= elapsed < DEADLINE + MARGIN
    assert "0.25s deadline" in str(error) and "/echo" in str(error)


def test_timed_out_connections_are_closed_and_no_thread_is_left_behind(client, fake):
    port = int(fake.url.rsplit(":", 1)[1])
    for mode in ("hang", "hang_body", "trickle"):
        fake.clear()
        fake.misbehave("/echo", mode)
        error, _ = call(client, fake, deadline=0.15)
        assert isinstance(error, DeadlineExceeded)
    mine = [c for c in psutil.Process().net_connections(kind="tcp")
            if c.raddr and c.raddr.port == port]
    assert mine == [], "client kept sockets of timed-out requests open"
    helpers = [t.name for t in threading.enumerate()
               if t is not threading.main_thread() and t.name != "fake-schwab"
               and "process_request_thread" not in t.name]
    assert helpers == []


def test_a_read_timeout_with_time_left_is_retried(fake):
    http = HttpClient(HttpConfig(read_timeout_s=0.1, backoff_factor=0.01))
    try:
        fake.misbehave("/echo", "hang_body", times=1)
        result, elapsed = call(http, fake, deadline=1.0)
    finally:
        http.close()
    assert result["ok"] is True and fake.hits("/echo") == 2
    assert elapsed < 1.0


def test_healthy_calls_share_one_pooled_connection(client, fake):
    for i in range(5):
        result, _ = call(client, fake, params={"i": i})
        assert result == {"ok": True, "query": {"i": [str(i)]}}
    assert fake.connections == 1


def test_refused_connection_is_retried_within_the_deadline_then_reported(client):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ProviderError, match="connection failed") as info:
        client.get_json(f"http://127.0.0.1:{port}/echo", deadline=started + DEADLINE)
    assert not isinstance(info.value, DeadlineExceeded)
    assert time.monotonic() - started < DEADLINE + MARGIN


# -- retries ----------------------------------------------------------------------

def test_429_retry_after_is_honoured(client, fake):
    fake.misbehave("/echo", "status", status=429, retry_after=1, times=1)
    result, elapsed = call(client, fake, deadline=3.0)
    assert result["ok"] is True
    assert 0.95 <= elapsed < 1.0 + MARGIN
    assert fake.hits("/echo") == 2


def test_429_asking_for_longer_than_the_deadline_fails_at_once(client, fake):
    fake.misbehave("/echo", "status", status=429, retry_after=30)
    error, elapsed = call(client, fake)
    assert isinstance(error, HttpStatusError) and error.status == 429
    assert error.retry_after == 30
    assert "would pass the deadline" in str(error)
    assert elapsed < 0.2 and fake.hits("/echo") == 1


def test_unparsable_retry_after_falls_back_to_backoff(client, fake):
    fake.misbehave("/echo", "status", status=503, retry_after="soon", times=1)
    result, _ = call(client, fake, deadline=2.0)
    assert result["ok"] is True and fake.hits("/echo") == 2


def test_5xx_is_retried_with_backoff_then_succeeds(client, fake):
    fake.misbehave("/echo", "status", status=500, times=2)
    result, elapsed = call(client, fake, deadline=2.0)
    assert result["ok"] is True and fake.hits("/echo") == 3
    assert elapsed >= 0.04  # backoff 0 then 0.04 s


def test_5xx_gives_up_after_max_retries(client, fake):
    fake.misbehave("/echo", "status", status=503)
    error, elapsed = call(client, fake, deadline=2.0)
    assert isinstance(error, HttpStatusError) and error.status == 503
    assert fake.hits("/echo") == 4
    assert elapsed < 2.0


def test_backoff_sleeps_never_pass_the_deadline(fake):
    http = HttpClient(HttpConfig(backoff_factor=1.0, max_retries=5))  # waits 0, 2, 4, ... s
    try:
        fake.misbehave("/echo", "status", status=502)
        error, elapsed = call(http, fake)
    finally:
        http.close()
    assert isinstance(error, HttpStatusError) and "not retried" in str(error)
    assert elapsed < DEADLINE + MARGIN and fake.hits("/echo") == 2


@pytest.mark.parametrize("status", [400, 403, 404])
def test_other_4xx_are_not_retried(client, fake, status):
    fake.misbehave("/echo", "status", status=status)
    error, _ = call(client, fake)
    assert isinstance(error, HttpStatusError) and error.status == status
    assert fake.hits("/echo") == 1


def test_401_raises_auth_error_without_retry(client, fake):
    fake.misbehave("/echo", "status", status=401)
    error, _ = call(client, fake)
    assert isinstance(error, AuthError) and "401" in str(error)
    assert fake.hits("/echo") == 1


# -- payloads -------------------------------------------------------------------

def test_junk_json_is_a_bad_payload_naming_the_problem(client, fake):
    fake.misbehave("/echo", "junk")
    error, _ = call(client, fake)
    assert isinstance(error, BadPayload) and "invalid JSON" in str(error)
    assert fake.hits("/echo") == 1


def test_truncated_body_is_retried_then_reported(client, fake):
    fake.misbehave("/echo", "truncate")
    error, elapsed = call(client, fake, deadline=2.0)
    assert isinstance(error, BadPayload) and "truncated body" in str(error)
    assert "more were announced" in str(error)
    assert fake.hits("/echo") == 4


def test_truncated_body_once_then_complete_succeeds(client, fake):
    fake.misbehave("/echo", "truncate", times=1)
    result, _ = call(client, fake)
    assert result["ok"] is True


def test_html_page_with_200_is_a_bad_payload(client, fake):
    fake.misbehave("/echo", "html")
    error, _ = call(client, fake)
    assert isinstance(error, BadPayload)
    assert "HTML page" in str(error) and "502 Bad Gateway" in str(error)


def test_html_error_page_status_is_reported_with_its_title(client, fake):
    fake.misbehave("/echo", "html", status=502)
    error, _ = call(client, fake, deadline=2.0)
    assert isinstance(error, HttpStatusError) and error.status == 502
    assert "HTML error page: 502 Bad Gateway" in str(error)
    assert "<" not in str(error)


# -- secrets ----------------------------------------------------------------------

def test_tokens_echoed_by_the_server_never_reach_error_messages(client, fake):
    fake.misbehave("/echo", "echo_secrets")
    error, _ = call(client, fake, deadline=2.0, headers={"Authorization": f"Bearer {TOKEN}"})
    assert isinstance(error, HttpStatusError)
    assert TOKEN not in str(error) and TOKEN not in error.excerpt
    assert "[redacted]" in str(error)


def test_redact_removes_known_secrets_and_token_shapes():
    text = ('{"access_token": "abc.def", "refresh_token":"r-1"} Bearer xyz '
            'grant_type=refresh_token&refresh_token=r-2 plain-known-secret')
    out = redact(text, ["plain-known-secret"])
    for secret in ("abc.def", "r-1", "xyz", "r-2", "plain-known-secret"):
        assert secret not in out
    assert "grant_type=refresh_token" in out
    assert excerpt(b"<html><title>Oops &amp; down</title></html>") == "Oops & down"


# -- budget -----------------------------------------------------------------------

class CountingBudget:
    def __init__(self, fail=False):
        self.calls, self.fail = 0, fail

    def acquire(self, deadline):
        self.calls += 1
        if self.fail:
            raise BudgetExhausted("request budget exhausted (test)")
        return time.monotonic()


def test_every_attempt_takes_a_budget_token(fake):
    budget = CountingBudget()
    http = HttpClient(HttpConfig(backoff_factor=0.01), budget=budget)
    try:
        fake.misbehave("/echo", "status", status=500, times=2)
        result, _ = call(http, fake, deadline=2.0)
    finally:
        http.close()
    assert result["ok"] is True and budget.calls == 3


class SlowBudget:
    """Grants a token exactly at the deadline, as a contended bucket may."""

    def acquire(self, deadline):
        while time.monotonic() < deadline:
            time.sleep(max(deadline - time.monotonic(), 0))
        return deadline


def test_a_token_granted_at_the_deadline_is_not_used_for_a_late_request(fake):
    http = HttpClient(budget=SlowBudget())
    try:
        error, elapsed = call(http, fake)
    finally:
        http.close()
    assert isinstance(error, DeadlineExceeded) and "request budget" in str(error)
    assert elapsed < DEADLINE + MARGIN and fake.hits("/echo") == 0


def test_no_budget_token_means_no_request(fake):
    http = HttpClient(budget=CountingBudget(fail=True))
    try:
        error, _ = call(http, fake)
    finally:
        http.close()
    assert isinstance(error, BudgetExhausted) and fake.hits("/echo") == 0


# -- TLS --------------------------------------------------------------------------

@pytest.fixture
def tls_fake(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=30)
    combined = tmp_path / "server.pem"
    combined.write_bytes(key.read_bytes() + cert.read_bytes())
    server = FakeSchwab(certfile=str(combined)).start()
    yield server, str(cert)
    server.stop()


def test_deadline_holds_over_tls_too(tls_fake):
    fake, ca = tls_fake
    http = HttpClient(HttpConfig(read_timeout_s=5.0, verify=ca))
    try:
        assert http.get_json(fake.url + "/echo", deadline=deadline_in(2.0))["ok"] is True
        fake.misbehave("/echo", "trickle", interval=0.05)
        error, elapsed = call(http, fake)
    finally:
        http.close()
    assert isinstance(error, DeadlineExceeded)
    assert elapsed < DEADLINE + MARGIN


def test_untrusted_certificate_is_a_clear_error_and_not_retried(tls_fake):
    fake, _ = tls_fake
    http = HttpClient(HttpConfig(max_retries=3))  # system CAs do not know the test cert
    try:
        error, elapsed = call(http, fake, deadline=2.0)
    finally:
        http.close()
    assert isinstance(error, ProviderError)
    assert "TLS failure (certificate verify failed" in str(error)
    assert elapsed < 1.0
