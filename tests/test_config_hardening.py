"""A config file is untrusted input: whatever it holds, one line per problem and exit 2, never a traceback;
on reload it is rejected and the running tree is kept."""
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import config as config_module
from supervisor.shared.control_client import ControlClient
from tests import configs

GOOD = {"kind": "faulty", "interval": 0.5, "mode": "healthy", "beat_interval": 0.05}
BAD_FILES = {
    "not-utf8": b"[supervisor]\nheartbeat_timeout = 5 # caf\xe9\n",
    "supervisor-not-a-table": b"supervisor = 1\n",
    "workers-not-a-table": b"workers = [1, 2]\n",
    "worker-not-a-table": b"[workers]\nwatchlist = 'on'\n",
    "provider-not-a-table": b"provider = 'schwab'\n",
    "inf-duration": b"[supervisor]\nheartbeat_timeout = inf\n",
    "nan-duration": b"[supervisor]\nstop_timeout = nan\n",
    "deep-array": b"x = " + b"[" * 3000 + b"]" * 3000 + b"\n",
    "binary": bytes(range(256)),
}
EXPECTED = {
    "not-utf8": "not UTF-8 text: byte 0xe9 at offset",
    "supervisor-not-a-table": "supervisor = 1: expected a table [supervisor]",
    "workers-not-a-table": "workers = [1, 2]: expected a table [workers]",
    "worker-not-a-table": "workers.watchlist = 'on': expected a table [workers.watchlist]",
    "provider-not-a-table": "provider = 'schwab': expected a table [provider]",
    "inf-duration": "supervisor.heartbeat_timeout = inf: allowed is a finite number",
    "nan-duration": "supervisor.stop_timeout = nan: allowed is a finite number",
    "deep-array": "nest too deeply",
    "binary": "not UTF-8 text",
}


def run_mdwd(*args):
    return subprocess.run([*configs.MDWD, *args], capture_output=True, text=True, timeout=60,
                          env=configs.mdwd_environ())


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_config_file_is_one_line_and_exit_2(tmp_path, name):
    path = tmp_path / "c.toml"
    path.write_bytes(BAD_FILES[name])
    for args in (["--check-config", str(path)], ["--config", str(path)]):
        result = run_mdwd(*args)
        assert result.returncode == 2, result.stderr
        assert EXPECTED[name] in result.stderr and "Traceback" not in result.stderr


def test_check_config_rejects_a_preload_module_that_cannot_be_imported(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[supervisor]\npreload = ["pandas", "no_such_module_here"]\n')
    result = run_mdwd("--check-config", str(path))
    assert result.returncode == 2
    assert "preload module 'no_such_module_here' cannot be imported: ModuleNotFoundError" in result.stderr


@pytest.mark.parametrize("text, shown, secret", [
    ("[api]\ntoken = 12345\n", "api.token = (hidden): expected str", "12345"),
    ("[provider]\napp_secret = 'hunter2'\n", "provider.app_secret = (hidden): unknown key", "hunter2"),
    ("[provider]\napi_key = 'k-999'\n", "provider.api_key = (hidden): unknown key", "k-999"),
    ("[api]\npassword = 'swordfish'\n", "api.password = (hidden): unknown key", "swordfish"),
])
def test_errors_never_echo_a_secret_looking_value(tmp_path, text, shown, secret):
    path = tmp_path / "c.toml"
    path.write_text(text)
    result = run_mdwd("--check-config", str(path))
    assert result.returncode == 2 and shown in result.stderr and secret not in result.stderr


def test_sim_fault_switches_are_refused_for_a_real_provider():
    with pytest.raises(config_module.ConfigError, match="only the simulated market"):
        configs.from_tables({"provider": {"kind": "schwab", "sim_hang_symbols": ["TSLA"]}})


toml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)
SECTION_NAMES = st.sampled_from(["supervisor", "workers", "provider", "api", "other"]) | st.text(max_size=8)
KEYS = st.sampled_from(["state_dir", "heartbeat_timeout", "kind", "interval", "token", "port", "watchlist",
                        "sim_hang_symbols", "stale_after", "preload", "symbols", "backoff_max"]) | st.text(max_size=8)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(SECTION_NAMES, toml_values | st.dictionaries(KEYS, toml_values, max_size=4), max_size=4))
def test_any_tables_give_a_config_or_config_error(tables):
    try:
        config = configs.from_tables(tables, environ={})
    except config_module.ConfigError as e:
        assert e.problems and all(isinstance(p, str) and "\n" not in p for p in e.problems)
        return
    assert config.enabled_workers


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_file_gives_a_config_or_config_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("cfg") / "c.toml"
    path.write_bytes(data)
    try:
        configs.load(path, environ={})
    except config_module.ConfigError:
        pass


@pytest.mark.parametrize("name", ["not-utf8", "supervisor-not-a-table", "workers-not-a-table", "inf-duration"])
def test_reload_of_a_bad_file_keeps_the_running_tree(make_tree, name):
    tree = make_tree({"alpha": GOOD}).start()
    pid = int(tree.wait_log(r"alpha: started pid (\d+)").group(1))
    good_config = tree.config_path.read_bytes()
    tree.config_path.write_bytes(good_config + b"\n" + BAD_FILES[name] if name != "supervisor-not-a-table"
                                 else BAD_FILES[name])
    ctl = subprocess.run([sys.executable, "-m", "supervisor.ctl", "--socket", str(tree.state_dir / "mdwd.sock"),
                          "reload"], capture_output=True, text=True, timeout=30)
    assert ctl.returncode == 2 and "config rejected" in ctl.stderr
    tree.signal(__import__("signal").SIGHUP)
    tree.wait_log(r"reload: config rejected; the running tree is kept unchanged", count=2)
    assert tree.proc.poll() is None
    rows = ControlClient(tree.state_dir / "mdwd.sock").call("status")["workers"]
    assert [(r["name"], r["pid"], r["state"]) for r in rows] == [("alpha", pid, "RUNNING")]
    assert tree.stop() == 0
