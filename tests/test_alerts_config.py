"""[alerts]: where the URLs' secrets may live, the switches and filters, the worker off without a URL,
`mdwctl alert-test`, and the alerts' counters in /metrics."""
import io
import os
import subprocess

import pytest

from supervisor import commands
from supervisor.config import ConfigError
from supervisor.ctl import main as ctl_main_plain
from tests import configs
from tests.alert_receiver import Receiver
from tests.fake_control import worker_row
from tests.test_api_health import metric_families, samples
from workers import service
from workers.alerts import settings as settings_module

DISCORD = "discord://123456789012/aVerySecretWebhookTokenValue"


def build(alerts, workers=None, **supervisor):
    tables = configs.tables(workers or {"a": {"kind": "faulty", "interval": 1.0}}, **supervisor)
    tables["workers"]["alerts"] = {}
    tables["alerts"] = alerts
    return configs.from_tables(tables)


def problems(alerts, **kwargs):
    with pytest.raises(ConfigError) as error:
        build(alerts, **kwargs)
    return error.value.problems


def test_a_url_holding_a_secret_is_refused_saying_where_it_goes_and_never_quoted():
    (problem,) = problems({"urls": [DISCORD]})
    assert problem.startswith("alerts.urls[0]: a discord:// URL may hold a secret")
    assert "/etc/market-data-worker/env" in problem and '"${MDW_ALERT_NAME}"' in problem and "urls_file" in problem
    assert "aVerySecret" not in problem and "123456789012" not in problem


@pytest.mark.parametrize("url", ["json://user:pw@127.0.0.1:9/x", "json://127.0.0.1:9/x?token=abc",
                                 "json://example.com/hook", "jsons://10.0.0.1/hook", "json://127.0.0.1:99999/"])
def test_only_loopback_urls_without_credentials_may_be_written_in_the_config(url):
    (problem,) = problems({"urls": [url]})
    assert "may hold a secret" in problem and url not in problem


@pytest.mark.parametrize("url", ["json://127.0.0.1:8089/hook", "form://localhost:9/x", "json://[::1]:8/",
                                 "${MDW_ALERT_DISCORD}"])
def test_loopback_urls_and_references_are_taken(url):
    config = build({"urls": [url]})
    assert "alerts" in config.enabled_workers and config.off_workers == {}
    assert config.workers["alerts"].stop_last is True


def test_a_reference_must_name_an_alerts_variable_and_be_the_whole_entry():
    assert problems({"urls": ["${DISCORD_URL}"]}) == [
        'alerts.urls[0] = "${DISCORD_URL}": the variable must be named MDW_ALERT_<something>: only the alerts '
        'worker sees those']
    assert "a reference is the whole entry" in problems({"urls": ["json://127.0.0.1:1/${MDW_ALERT_X}"]})[0]


def test_a_misspelt_key_or_a_urls_string_is_never_quoted():
    (typo,) = problems({"url": [DISCORD]})
    assert typo.startswith("alerts.url = (hidden): unknown key; allowed are urls, urls_file") and "Secret" not in typo
    (string,) = problems({"urls": DISCORD})
    assert string == "alerts.urls = (hidden): expected list"


def test_switches_and_signal_filters_are_checked():
    found = problems({"urls": ["json://127.0.0.1:1/"], "events": {"hang": True, "stale": "yes"},
                      "signals": {"macd": {"enabled": True}, "ttm_fire": {"direction": "up", "colour": 1},
                                  "whale_flow": {"min_score": -1, "symbols": ["aapl"]}}})
    assert sorted(found) == sorted([
        "alerts.events.stale = 'yes': expected true or false",
        "alerts.events.hang: unknown event; allowed are killed, flapping, escalated, quarantine, stale, "
        "schwab_login, service",
        "alerts.signals.macd: unknown signal; allowed are whale_flow, macd_cross, ttm_fire, vpb_breakout, "
        "vpb_breakdown, cycle_peak, cycle_bottom, gamma_flip_cross, sentiment_change",
        "alerts.signals.ttm_fire.direction = 'up': allowed is one of any, bullish, bearish",
        "alerts.signals.ttm_fire.colour: unknown key; allowed are enabled, symbols, min_score, direction",
        "alerts.signals.whale_flow.min_score = -1: allowed is a number >= 0",
        "alerts.signals.whale_flow.symbols = ['aapl']: allowed is a list of upper-case ticker symbols ([] = all)",
    ])


def test_the_defaults_keep_the_alerts_worker_off_and_say_so_in_status():
    config = configs.load(None, environ={})
    assert "alerts" not in config.enabled_workers
    assert config.off_workers == {"alerts": "no [alerts] urls or urls_file: nothing to deliver alerts to"}
    from tests.test_supervisor_events import make  # the fake host

    sup, host, _ = make()
    sup.config = config
    answer, _ = commands.handle(sup, {"cmd": "status"})
    assert answer["supervisor"]["off"] == config.off_workers


def test_enabled_true_without_a_url_is_an_error():
    tables = configs.tables({"a": {"kind": "faulty", "interval": 1.0}})
    tables["workers"]["alerts"] = {"enabled": True}
    with pytest.raises(ConfigError) as error:
        configs.from_tables(tables)
    assert error.value.problems == ["workers.alerts.enabled = true: no [alerts] urls or urls_file: nothing to "
                                    "deliver alerts to"]


def test_a_urls_file_readable_by_others_is_refused_and_a_private_one_read(tmp_path):
    path = tmp_path / "alert-urls"
    path.write_text(f"# Discord\n{DISCORD}\n\njson://127.0.0.1:9/x\n")
    path.chmod(0o644)
    (target,) = settings_module.targets({"urls_file": "alert-urls"}, str(tmp_path))
    assert target.url is None and "is readable by others (mode 0644)" in target.problem
    assert "chmod 600" in target.problem
    path.chmod(0o600)
    found = settings_module.targets({"urls_file": "alert-urls"}, str(tmp_path))
    assert [(t.source, t.url) for t in found] == [("urls_file line 2", DISCORD), ("urls_file line 4",
                                                                                  "json://127.0.0.1:9/x")]
    assert "alerts" in build({"urls_file": "alert-urls"}).enabled_workers


def test_references_resolve_from_the_environment_the_alerts_kind_alone_sees():
    found = settings_module.targets({"urls": ["${MDW_ALERT_D}"]}, "/", {"MDW_ALERT_D": DISCORD})
    assert found[0].url == DISCORD
    from supervisor.shared.registry import hidden_secrets
    from workers import kinds

    environ = {"MDW_ALERT_D": DISCORD, "MDW_API_TOKEN": "t"}
    assert hidden_secrets(environ, kinds.REGISTRY.secret_env, kinds.KINDS["alerts"].secrets) == ["MDW_API_TOKEN"]
    assert "MDW_ALERT_D" in hidden_secrets(environ, kinds.REGISTRY.secret_env, kinds.KINDS["watchlist"].secrets)


def test_check_config_describes_the_alerts_and_warns_of_a_short_heartbeat(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[alerts]\nurls = ["json://127.0.0.1:8089/hook", "${MDW_ALERT_D}"]\n'
                    '[alerts.events]\nstale = false\n[alerts.signals.macd_cross]\nenabled = true\n'
                    '[workers.alerts]\nheartbeat_timeout = 5.0\n')
    result = subprocess.run([*configs.MDWD, "--check-config", str(path)], capture_output=True, text=True, timeout=60,
                            env=configs.mdwd_environ())
    assert result.returncode == 0, result.stderr
    assert ("9 workers enabled: watchlist, whale_flows, macd, vpb, ttm, cycle_scanner, market_structure, api, "
            "alerts") in result.stdout
    assert (f"{path}: alerts: to json://127.0.0.1:8089/hook, ${{MDW_ALERT_D}}; operational events: all but stale; "
            f"signals: macd_cross") in result.stdout
    assert "warning: workers.alerts.heartbeat_timeout 5 is not above 2 x [alerts] timeout (5s) + 1" in result.stderr
    path.write_text(f'[alerts]\nurls = ["{DISCORD}"]\n')
    result = subprocess.run([*configs.MDWD, "--check-config", str(path)], capture_output=True, text=True, timeout=60,
                            env=configs.mdwd_environ())
    assert result.returncode == 2 and "may hold a secret" in result.stderr and "aVerySecret" not in result.stderr


# -- mdwctl alert-test ---------------------------------------------------------


def alert_test(tmp_path, urls, environ=None):
    path = tmp_path / "c.toml"
    path.write_text(configs.to_toml({"supervisor": {"state_dir": str(tmp_path)}, "alerts": {"urls": urls}}))
    out, err = io.StringIO(), io.StringIO()
    from workers.alerts import alert_test as module

    code = module.run(str(path), service.alert_config, environ=environ or {}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_alert_test_sends_to_each_url_and_says_how_each_went(tmp_path):
    with Receiver() as good, Receiver() as bad:
        bad.mode = "fail"
        code, out, _ = alert_test(tmp_path, [good.url, bad.url, "${MDW_ALERT_GONE}"])
        (body,) = good.bodies
    assert code == 1
    lines = [line.split(None, 1) for line in out.splitlines()]
    assert lines[0] == [f"json://127.0.0.1:{good.port}", "OK"]
    assert lines[1][0] == f"json://127.0.0.1:{bad.port}" and lines[1][1].startswith("FAILED: ") and "500" in lines[1][1]
    assert lines[2] == ["${MDW_ALERT_GONE}", "FAILED: MDW_ALERT_GONE is not set in the environment: put "
                        "MDW_ALERT_GONE=<url> in the env file (/etc/market-data-worker/env) and restart the service"]
    assert body["title"].endswith("test message") and "mdwctl alert-test" in body["message"]


def test_alert_test_exits_0_when_every_message_went_out(tmp_path):
    with Receiver() as good:
        code, out, _ = alert_test(tmp_path, ["${MDW_ALERT_LOCAL}"], {"MDW_ALERT_LOCAL": good.url})
        assert len(good.bodies) == 1
    assert code == 0 and out.endswith("OK\n")


def test_alert_test_without_urls_or_with_a_bad_config_exits_2(tmp_path, capsys):
    assert service.ctl_main(["alert-test"]) == 2
    assert "no alert URL is configured in the embedded defaults" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[alerts]\nurls = ["{DISCORD}"]\n')
    assert service.ctl_main(["--config", str(bad), "alert-test"]) == 2
    err = capsys.readouterr().err
    assert "may hold a secret" in err and "aVerySecret" not in err


def test_the_installed_mdwctl_has_alert_test_and_the_plain_one_does_not(capsys):
    mdwctl = os.path.join(os.path.dirname(os.sys.executable), "mdwctl")
    result = subprocess.run([mdwctl, "--help"], capture_output=True, text=True, timeout=30)
    assert "alert-test" in result.stdout
    with pytest.raises(SystemExit):
        ctl_main_plain(["alert-test"])


# -- /metrics ----------------------------------------------------------------------


def test_metrics_export_the_alerts_workers_counters(app, control):
    local = "json://127.0.0.1:9"
    counters = {"alerts_sent": {local: 12, "discord://1...2": 3}, "alerts_failed": {local: 4},
                "alerts_dropped": {}, "alerts_pending": {local: 2, "discord://1...2": 0}}
    control.rows.append(worker_row("alerts", reported={"counters": counters}))
    families = metric_families(app)
    assert samples(families["mdw_alerts_sent"]) == {
        ("mdw_alerts_sent_total", (("url", "discord://1...2"),)): 3.0,
        ("mdw_alerts_sent_total", (("url", "json://127.0.0.1:9"),)): 12.0}
    assert samples(families["mdw_alerts_failed"]) == {("mdw_alerts_failed_total", (("url", local),)): 4.0}
    assert samples(families["mdw_alerts_pending"])[("mdw_alerts_pending", (("url", "json://127.0.0.1:9"),))] == 2.0


def test_metrics_have_no_alert_families_without_an_alerts_worker(app):
    assert "mdw_alerts_sent" not in metric_families(app)


def test_mdwd_warns_at_start_about_a_urls_file_others_can_read(tmp_path, caplog):
    from supervisor.main import warn_about_open_secrets

    config = build({"urls_file": "alert-urls"}, state_dir=str(tmp_path))
    (tmp_path / "alert-urls").write_text("json://127.0.0.1:9/x\n")
    (tmp_path / "alert-urls").chmod(0o640)
    warn_about_open_secrets(config, environ={})
    assert f"the alert URLs file ([alerts] urls_file) {tmp_path}/alert-urls is readable by its group (mode 0640)" \
        in caplog.text
