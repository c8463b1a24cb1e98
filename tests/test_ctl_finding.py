"""mdwctl finds the daemon from any directory: the default state dir is the same for every command
of a user, a config's relative state_dir is relative to the config file, and a config mdwctl cannot
read still leaves it the other rules (real processes, run from another working directory)."""
import os
import subprocess
import sys

from tests import configs
from supervisor.ctl import SERVICE_SOCKET
from tests.proctree import SYSTEMD_VARS, Tree

GOOD = {"kind": "faulty", "interval": 0.2, "mode": "healthy", "beat_interval": 0.05}


def mdwctl(*args, cwd, env):
    environ = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARS}
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "supervisor.ctl", *args], capture_output=True, text=True,
                          timeout=30, cwd=cwd, env=environ)


def test_mdwctl_finds_a_default_daemon_from_any_directory_even_past_a_broken_config(make_tree, tmp_path):
    xdg = {"XDG_STATE_HOME": str(tmp_path / "xdg")}
    tree = make_tree({"alpha": GOOD})
    tree.config_path.write_text(configs.to_toml(configs.tables({"alpha": GOOD})))  # no state_dir: the default
    tree.start(**xdg)
    tree.wait_log(r"ready: 1/1 healthy")
    assert f"state in {tmp_path / 'xdg' / 'market-data-worker'};" in tree.log()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = mdwctl("status", cwd=elsewhere, env=xdg)
    assert result.returncode == 0 and result.stdout.split()[:2] == ["alpha", "RUNNING"], result.stderr
    broken = elsewhere / "broken.toml"
    broken.write_text("[supervisor\nstate_dir = 'x'\n")
    result = mdwctl("--config", str(broken), "status", cwd=elsewhere, env=xdg)
    assert result.returncode == 0 and result.stdout.split()[:2] == ["alpha", "RUNNING"], result.stderr
    assert result.stderr.startswith(f"mdwctl: cannot use the config to find the socket ({broken}: not valid TOML")
    assert "trying the default places" in result.stderr


def test_a_relative_state_dir_is_the_config_files_wherever_mdwd_and_mdwctl_run(make_tree, tmp_path):
    tree = make_tree({"alpha": GOOD}, state_dir="run/state")
    tree.start()
    tree.wait_log(r"ready: 1/1 healthy")
    assert (tmp_path / "run" / "state" / "mdwd.sock").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = mdwctl("--config", str(tree.config_path), "status", cwd=elsewhere,
                    env={"XDG_STATE_HOME": str(tmp_path / "nobody-here")})
    assert result.returncode == 0 and result.stdout.split()[:2] == ["alpha", "RUNNING"], result.stderr


def test_without_a_daemon_mdwctl_names_the_default_socket_it_tried(tmp_path):
    result = mdwctl("status", cwd=tmp_path, env={"XDG_STATE_HOME": str(tmp_path / "xdg")})
    default = tmp_path / "xdg" / "market-data-worker" / "mdwd.sock"
    tried = SERVICE_SOCKET if os.path.exists(SERVICE_SOCKET) else str(default)
    assert result.returncode == 4 and tried in result.stderr, result.stderr


def test_an_mdwd_started_with_a_state_dir_is_found_from_anywhere_and_unlinks_itself_at_exit(make_tree, tmp_path):
    """`make run` keeps its state in ./var: mdwd --state-dir links the default place to its socket."""
    xdg = {"XDG_STATE_HOME": str(tmp_path / "xdg")}
    link = tmp_path / "xdg" / "market-data-worker" / "mdwd.sock"
    tree = make_tree({"alpha": GOOD})
    tree.config_path.write_text(configs.to_toml(configs.tables({"alpha": GOOD})))
    tree.start("--state-dir", str(tmp_path / "checkout" / "var"), **xdg)
    tree.wait_log(r"ready: 1/1 healthy")
    assert os.readlink(link) == str(tmp_path / "checkout" / "var" / "mdwd.sock")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = mdwctl("status", cwd=elsewhere, env=xdg)
    assert result.returncode == 0 and result.stdout.split()[:2] == ["alpha", "RUNNING"], result.stderr
    assert tree.stop(30) == 0
    assert not os.path.lexists(link) and not (tmp_path / "checkout" / "var" / "mdwd.sock").exists()


def test_a_default_mdwds_socket_is_never_replaced_by_a_link(make_tree, tmp_path):
    xdg = {"XDG_STATE_HOME": str(tmp_path / "xdg")}
    default = make_tree({"alpha": GOOD})
    default.config_path.write_text(configs.to_toml(configs.tables({"alpha": GOOD})))
    default.start(**xdg)
    default.wait_log(r"ready: 1/1 healthy")
    socket = tmp_path / "xdg" / "market-data-worker" / "mdwd.sock"
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = Tree(other_dir, {"beta": GOOD}, state_dir=str(tmp_path / "unused"))
    try:
        other.start("--state-dir", str(tmp_path / "var"), **xdg)
        other.wait_log(r"ready: 1/1 healthy")
        assert "another mdwd's socket is there" in other.log()
        assert not os.path.islink(socket)
        result = mdwctl("status", cwd=tmp_path, env=xdg)
        assert result.stdout.split()[:2] == ["alpha", "RUNNING"], result.stderr
    finally:
        other.kill_everything()
