"""The refresh token's last days, on a fake wall clock: a warning from `warn_before` before its 7 days
end (in the scanners' reports, so in STATUS, mdwctl status and /health), the /metrics gauge, one log
line an hour for all processes, and the issue time read from every token file shape."""
import datetime as dt
import logging
import types

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.status import StatusSource
from api.worker import refresh_token_expiry
from supervisor.shared.control_client import ControlClient
from tests.api_support import get
from tests.schwab_fixture import DAY, fake, schwab_against, write_token_file  # noqa: F401 (fake: a fixture)
from tests.test_scanners import make_scan
from workers import scanner, watchlist
from workers.providers.schwab import open_from_config
from workers.providers.schwab_expiry import span
from workers.providers.schwab_tokens import TokenFile
from workers.quarantine import Quarantine
from workers.store import StoreReader
from tests.clock import Clock

ISSUED = 1_790_000_000.0
DIES = ISSUED + 7 * DAY
WARN_BEFORE = 2 * DAY


@pytest.fixture
def clock():
    return Clock(ISSUED)


@pytest.fixture
def token(tmp_path, fake):
    return write_token_file(tmp_path / "schwab-token.json", fake, issued_at=ISSUED, now=ISSUED, expires_in=10 * DAY)


@pytest.fixture
def provider(fake, tmp_path, token, clock):
    made = schwab_against(fake, tmp_path, 2.0, keep_token_file=True, wall_clock=clock)
    yield made
    made.close()


def test_no_warning_until_warn_before_then_one_naming_the_login_command(provider, clock):
    clock.now = DIES - WARN_BEFORE - 1
    assert provider.warnings() == []
    clock.now = DIES - WARN_BEFORE
    assert provider.warnings() == ["the Schwab refresh token expires in 2 days 0 h "
                                   f"({dt.datetime.fromtimestamp(DIES, dt.timezone.utc):%Y-%m-%d %H:%M} UTC): "
                                   "run mdw-schwab-login"]
    clock.now = DIES - 3 * 3600 - 12 * 60
    assert "expires in 3 h 12 min" in provider.warnings()[0]
    clock.now = DIES + 5 * 3600
    assert "expired 5 h 0 min ago" in provider.warnings()[0]


def test_a_new_login_ends_the_warning(provider, fake, token, clock):
    clock.now = DIES - DAY
    assert provider.warnings()
    write_token_file(token, fake, issued_at=clock.now, now=clock.now)  # what mdw-schwab-login writes
    assert provider.warnings() == []


def test_warn_before_comes_from_the_provider_table(fake, tmp_path, token, clock):
    section = {"kind": "schwab", "base_url": fake.url, "auth_url": fake.url, "warn_before": 3600.0}
    made = open_from_config(section, str(tmp_path), environ={}, wall_clock=clock)
    try:
        clock.now = DIES - 3601
        assert made.warnings() == []
        clock.now = DIES - 3600
        assert "expires in 1 h 0 min" in made.warnings()[0]
    finally:
        made.close()


def test_a_token_file_without_its_issue_time_is_a_warning_saying_how_to_fix_it(fake, tmp_path, clock):
    write_token_file(tmp_path / "schwab-token.json", fake)  # e.g. written by another tool
    made = schwab_against(fake, tmp_path, 2.0, keep_token_file=True, wall_clock=clock)
    try:
        [warning] = made.warnings()
        assert "does not say when its refresh token was issued" in warning and "run mdw-schwab-login" in warning
    finally:
        made.close()


def test_no_token_file_is_no_warning_the_cycles_say_what_is_wrong(fake, tmp_path, clock):
    made = schwab_against(fake, tmp_path, 2.0, keep_token_file=True, token_path=str(tmp_path / "none.json"))
    try:
        assert made.warnings() == []
    finally:
        made.close()


@pytest.mark.parametrize("shape", ["ours", "schwab-py", "old"])
def test_the_issue_time_is_read_from_every_token_file_shape(fake, tmp_path, shape):
    path = write_token_file(tmp_path / "t.json", fake, issued_at=ISSUED, shape=shape)
    assert TokenFile(path).load().refresh_expires_at == DIES


def test_the_old_shape_keeps_its_fields_through_a_refresh(fake, tmp_path, clock):
    """The access token is refreshed into the old schwab_client.json; client and the issue time stay."""
    path = write_token_file(tmp_path / "schwab-token.json", fake, access="expired", expires_in=-10,
                            issued_at=ISSUED, shape="old")
    made = schwab_against(fake, tmp_path, 2.0, keep_token_file=True)
    try:
        made.daily_bars("AAPL", 10)
    finally:
        made.close()
    tokens = TokenFile(path).load()
    assert tokens.access_token in fake.access_tokens and tokens.refresh_issued_at == ISSUED
    assert tokens.document["client"]["api_key"] == fake.app_key


def test_the_warning_is_logged_once_an_hour_for_all_processes_sharing_the_token(fake, tmp_path, token, clock,
                                                                                  caplog):
    first = schwab_against(fake, tmp_path, 2.0, keep_token_file=True, wall_clock=clock)
    second = schwab_against(fake, tmp_path, 2.0, keep_token_file=True, wall_clock=clock)

    def logged():
        return [r for r in caplog.records if "refresh token expires in" in r.getMessage()]
    try:
        with caplog.at_level(logging.WARNING, logger="workers.providers.schwab_expiry"):
            clock.now = DIES - DAY
            for _ in range(3):
                first.warnings()
                second.warnings()
            assert len(logged()) == 1
            clock.now += 3599
            first.warnings(), second.warnings()
            assert len(logged()) == 1
            clock.now += 1
            second.warnings(), first.warnings()
            assert len(logged()) == 2 and logged()[-1].levelno == logging.WARNING
    finally:
        first.close()
        second.close()


def test_span_reads_as_days_and_hours_or_hours_and_minutes():
    assert [span(s) for s in (59, 60, 3600 + 120, DAY, 2 * DAY + 3 * 3600 + 59)] == [
        "0 min", "1 min", "1 h 2 min", "1 day 0 h", "2 days 3 h"]


# -- where it shows ----------------------------------------------------------------------------


class ReportingContext:
    def __init__(self, inner):
        self.inner, self.reports = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def report(self, **fields):
        self.reports.append(fields)


def test_the_scanners_status_report_carries_the_warning_until_a_new_login(provider, fake, token, clock, tmp_path):
    quarantine = Quarantine(None)
    scan, ctx = make_scan(watchlist.WatchlistScan, "watchlist", tmp_path, provider=provider, quarantine=quarantine,
                          symbols=["AAPL", "MSFT"])
    reporting = ReportingContext(ctx)
    clock.now = DIES - WARN_BEFORE + 60
    scan.run_cycle()
    scanner.report(reporting, scan, quarantine)
    assert reporting.reports[-1]["warnings"] == provider.warnings() != []
    write_token_file(token, fake, issued_at=clock.now, now=clock.now, expires_in=10 * DAY)
    scanner.report(reporting, scan, quarantine)
    assert reporting.reports[-1]["warnings"] == []


def test_a_provider_whose_warnings_fail_costs_only_the_warnings(tmp_path, caplog):
    class Broken:
        name = "broken"

        def warnings(self):
            raise KeyError("planted bug")

    reporting = ReportingContext(types.SimpleNamespace())
    scanner.report(reporting, types.SimpleNamespace(provider=Broken(), requests={}), Quarantine(None))
    assert reporting.reports[-1]["warnings"] == [] and "planted bug" in caplog.text


def test_metrics_export_the_seconds_the_refresh_token_has_left(state_dir, control, fake, tmp_path):
    token = write_token_file(tmp_path / "state" / "schwab-token.json", fake, issued_at=ISSUED)
    ctx = types.SimpleNamespace(state_dir=str(tmp_path / "state"), spec=types.SimpleNamespace(
        sections={"provider": {"kind": "schwab", "token_file": token.name}}))
    expiry = refresh_token_expiry(ctx)
    app = create_app(StoreReader(state_dir), StatusSource(ControlClient(control.path, timeout=2.0), ttl=0.0),
                     refresh_token_expiry=expiry)
    families = {f.name: f for f in text_string_to_metric_families(get(app, "/metrics").body.decode())}
    [sample] = families["mdw_schwab_refresh_token_expiry_seconds"].samples
    assert sample.value == pytest.approx(expiry(), abs=5) and sample.value == pytest.approx(
        DIES - dt.datetime.now(dt.timezone.utc).timestamp(), abs=5)
    token.unlink()
    assert "mdw_schwab_refresh_token_expiry_seconds" not in get(app, "/metrics").body.decode()


def test_no_gauge_on_the_simulated_market(tmp_path):
    ctx = types.SimpleNamespace(state_dir=str(tmp_path), spec=types.SimpleNamespace(sections={"provider": {
        "kind": "sim"}}))
    assert refresh_token_expiry(ctx) is None
