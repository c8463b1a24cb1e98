"""Where mdwd keeps its state: one rule for mdwd, mdwctl and mdw-schwab-login, from any directory.

- `[supervisor] state_dir`, when a config file sets it: an absolute path as
  it is; a relative one (or one starting with ~) is taken relative to the
  folder of the config file that sets it, never to the current directory, so
  `mdwd --config F` and `mdwctl --config F` mean the same place wherever they run;
- else systemd's $STATE_DIRECTORY (the unit's StateDirectory=);
- else $XDG_STATE_HOME/market-data-worker, which is
  ~/.local/state/market-data-worker unless XDG_STATE_HOME is set: the same
  for every command a user runs, so `mdwctl` finds a default `mdwd` (`make
  run`) from any directory.

Standard library only.
"""
import os
import pwd

APP_DIR = "market-data-worker"

__all__ = ["default_state_dir", "resolve_state_dir"]


def _home(environ):
    return environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir


def default_state_dir(environ):
    """The state dir when no config file sets one (see the module docstring); absolute."""
    if environ.get("STATE_DIRECTORY"):
        return os.path.abspath(environ["STATE_DIRECTORY"].split(":")[0])
    base = environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative value is invalid and is ignored
        base = os.path.join(_home(environ), ".local", "state")
    return os.path.join(base, APP_DIR)


def resolve_state_dir(value, config_path, environ):
    """The absolute state dir for a config's `state_dir` value (None or blank: not set), read from
    `config_path` ("" or None: no file; a relative value is then relative to the current directory)."""
    if not isinstance(value, str) or not value.strip():
        return default_state_dir(environ)
    if value == "~" or value.startswith("~/"):
        value = os.path.join(_home(environ), value[2:])
    base = os.path.dirname(os.path.abspath(config_path)) if config_path else os.getcwd()
    return os.path.normpath(os.path.join(base, value))
