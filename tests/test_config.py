"""Configuration: defaults, key-by-key overrides, and errors that name key, value and what is allowed."""
import subprocess
import sys

import pytest

from supervisor import config as config_module
from tests import configs


def check(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return subprocess.run([*configs.MDWD, "--check-config", str(path)],
                          capture_output=True, text=True, timeout=60, env=configs.mdwd_environ())


def test_embedded_defaults_are_valid_and_run_something():
    config = configs.load(None, environ={"HOME": "/home/ann"})
    assert config.enabled_workers
    assert config.state_dir == "/home/ann/.local/state/market-data-worker"  # whatever the current directory


def test_the_default_state_dir_follows_xdg_state_home_and_systemd():
    assert configs.load(None, environ={"HOME": "/h", "XDG_STATE_HOME": "/xdg"}).state_dir == "/xdg/market-data-worker"
    assert configs.load(None, environ={"HOME": "/h", "XDG_STATE_HOME": "rel"}).state_dir == \
        "/h/.local/state/market-data-worker"  # a relative XDG_STATE_HOME is invalid: ignored, as the spec says
    assert configs.load(None, environ={"HOME": "/h", "STATE_DIRECTORY": "/var/lib/m"}).state_dir == "/var/lib/m"


def test_a_relative_state_dir_is_relative_to_the_config_files_folder(tmp_path, monkeypatch):
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "mdwd.toml"
    path.write_text('[supervisor]\nstate_dir = "../state"\n')
    monkeypatch.chdir(tmp_path / "etc")
    here = configs.load(path, environ={}).state_dir
    monkeypatch.chdir("/")
    assert configs.load(path, environ={}).state_dir == here == str(tmp_path / "state")
    path.write_text('[supervisor]\nstate_dir = "~/mdw"\n')
    assert configs.load(path, environ={"HOME": "/home/ann"}).state_dir == "/home/ann/mdw"


def test_file_overrides_defaults_key_by_key():
    config = configs.from_tables({"supervisor": {"heartbeat_timeout": 10}}, environ={})
    defaults = configs.load(None, environ={})
    assert set(config.enabled_workers) == set(defaults.enabled_workers)
    assert all(spec.heartbeat_timeout == 10.0 for spec in config.workers.values())


def test_worker_table_overrides_supervisor_settings_for_that_worker_only():
    config = configs.build({"a": {"kind": "faulty", "interval": 1, "heartbeat_timeout": 0.5},
                            "b": {"kind": "faulty", "interval": 1}}, heartbeat_timeout=3)
    assert config.workers["a"].heartbeat_timeout == 0.5
    assert config.workers["b"].heartbeat_timeout == 3.0


def test_state_dir_comes_from_systemd_unless_configured():
    assert configs.load(None, environ={"STATE_DIRECTORY": "/var/lib/mdw"}).state_dir == "/var/lib/mdw"
    configured = configs.from_tables({"supervisor": {"state_dir": "/srv/x"}}, environ={"STATE_DIRECTORY": "/v"})
    assert configured.state_dir == "/srv/x"


def test_enabled_false_switches_a_default_worker_off():
    name = next(iter(configs.defaults()["workers"]))
    tables = configs.tables({"extra": {"kind": "faulty", "interval": 1}})
    tables["workers"][name] = {"enabled": False}
    assert name not in configs.from_tables(tables).enabled_workers


@pytest.mark.parametrize("text, expected", [
    ("[supervisor]\nheartbeat_timeout = 0\n", "supervisor.heartbeat_timeout = 0: allowed is a number > 0"),
    ("[supervisor]\nheartbeat_timout = 5\n", "supervisor.heartbeat_timout = 5: unknown key; allowed are state_dir"),
    ("[supervisor]\nstop_timeout = 'soon'\n", "supervisor.stop_timeout = 'soon': expected int or float"),
    ("[supervisor]\nescalate_after = true\n", "supervisor.escalate_after = True: expected int"),
    ("[workers.x]\nkind = 'nope'\ninterval = 1\n", "workers.x.kind = 'nope': allowed is one of "),
    ("[workers.x]\nkind = 'faulty'\n", "workers.x.interval is missing"),
    ("[workers.x]\nkind = 'faulty'\ninterval = 1\nmode = 'explode'\n", "workers.x.mode = 'explode': allowed is one of healthy"),
    ("[workers.x]\nkind = 'faulty'\ninterval = 1\ncolour = 1\n", "workers.x.colour = 1: unknown key; allowed are kind"),
    ("[workers.x]\nkind = 'faulty'\ninterval = 1\nbackoff_initial = 9\nbackoff_max = 2\n",
     "workers.x.backoff_max = 2: allowed is a number >= backoff_initial (9)"),
    ("[sueprvisor]\n", "[sueprvisor]: unknown section"),
    ("this is = = not toml", "not valid TOML"),
])
def test_check_config_names_key_value_and_what_is_allowed(tmp_path, text, expected):
    result = check(tmp_path, text)
    assert result.returncode == 2
    assert expected in result.stderr, result.stderr


@pytest.mark.parametrize("text, expected", [
    ("[supervisor]\nbackoff_initial = 10\nbackoff_max = 1\n",
     "supervisor.backoff_max = 1: allowed is a number >= backoff_initial (10)"),
    ("[supervisor]\nbackoff_initial = 100\n",
     "supervisor.backoff_initial = 100: allowed is a number <= backoff_max (60)"),
    ("[supervisor]\nbackoff_max = 0.5\n", "supervisor.backoff_max = 0.5: allowed is a number >= backoff_initial (1)"),
    ("[supervisor]\nbackoff_max = 2\n[workers.macd]\nbackoff_initial = 10\n",
     "workers.macd.backoff_initial = 10: allowed is a number <= backoff_max (2)"),
])
def test_backoff_limits_in_conflict_are_reported_once_where_they_were_set(tmp_path, text, expected):
    """Not once per worker that inherits them (the embedded defaults run six)."""
    result = check(tmp_path, text)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [f"{tmp_path / 'c.toml'}: {expected}"]


def test_check_config_reports_every_problem_one_per_line(tmp_path):
    result = check(tmp_path, "[supervisor]\nheartbeat_timeout = -1\nstop_timeout = -2\nfoo = 3\n")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 3


def test_check_config_accepts_a_good_file(tmp_path):
    result = check(tmp_path, "[supervisor]\nheartbeat_timeout = 10\n")
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_missing_config_file_is_a_clear_error(tmp_path):
    result = subprocess.run([*configs.MDWD, "--check-config", str(tmp_path / "none.toml")],
                            capture_output=True, text=True, timeout=60, env=configs.mdwd_environ())
    assert result.returncode == 2 and "cannot read config file: No such file or directory" in result.stderr


def test_api_stale_after_names_datasets_and_positive_seconds():
    one = configs.tables({"w": {"kind": "faulty", "interval": 1}})
    good = configs.from_tables({**one, "api": {"stale_after": {"watchlist": 300}}})
    assert good.raw["api"]["stale_after"] == {"watchlist": 300}
    with pytest.raises(config_module.ConfigError, match=r"api.stale_after = \{'watchlst': 300\}: allowed is a table"):
        configs.from_tables({**one, "api": {"stale_after": {"watchlst": 300}}})


def test_unusable_state_dir_is_a_clear_start_up_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    path = tmp_path / "c.toml"
    path.write_text(f'[supervisor]\nstate_dir = "{blocker}/state"\n')
    result = subprocess.run([*configs.MDWD, "--config", str(path)],
                            capture_output=True, text=True, timeout=60, env=configs.mdwd_environ())
    assert result.returncode == 2
    assert f"cannot create state_dir {blocker}/state: Not a directory" in result.stderr
