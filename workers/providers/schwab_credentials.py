"""Where the Schwab app key and secret come from: the environment, or a private file named in config.

- SCHWAB_APP_KEY and SCHWAB_APP_SECRET in the environment (under systemd:
  the env file /etc/market-data-worker/env, see systemd/env.example); when
  both are set they are used;
- otherwise the JSON file named by `[provider] secrets_file` (relative to
  state_dir), either ours

      {"app_key": "...", "app_secret": "...", "callback_url": "https://127.0.0.1:8182"}

  or the old system's schwab_client.json as it is

      {"client": {"api_key": "...", "app_secret": "...", "callback": "..."}, "token": {...}}

  (`callback_url` / `client.callback` are optional; mdw-schwab-login uses
  them when `[provider] callback_url` is not set in the config file).

Never from config.toml, which anyone on the box may read: check-config
rejects app_key/app_secret keys there. A secrets file that its group or
others may read or write is refused, naming its mode: the app secret in it
would be open to other users of the box, and `chmod 600` fixes it.

The file is read each time the credentials are needed (a token refresh, a
login), so fixing it needs no restart. Every failure is an AuthError whose
message names the file or variable and what to do; never a secret's value.
"""
from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from typing import Mapping

from .base import AuthError

KEY_VARIABLE, SECRET_VARIABLE = "SCHWAB_APP_KEY", "SCHWAB_APP_SECRET"
ENVIRONMENT = f"{KEY_VARIABLE}/{SECRET_VARIABLE} in the environment"
ENV_HINT = f"set {KEY_VARIABLE} and {SECRET_VARIABLE} in the environment (the systemd env file)"
HOW_TO_SET = f"{ENV_HINT}, or name a mode 0600 JSON file in [provider] secrets_file"


@dataclass(frozen=True)
class AppCredentials:
    """The app's key and secret, and where they came from (for messages)."""

    key: str = field(repr=False)
    secret: str = field(repr=False)
    source: str
    callback_url: str | None = None


def app_credentials(environ: Mapping[str, str], secrets_file: str | None) -> AppCredentials:
    """The environment's pair when both are set, else the secrets file's; AuthError otherwise."""
    key, secret = environ.get(KEY_VARIABLE, ""), environ.get(SECRET_VARIABLE, "")
    if key and secret:
        return AppCredentials(key, secret, ENVIRONMENT)
    if secrets_file:
        return read_secrets_file(secrets_file)
    missing = " and ".join(name for name, value in ((KEY_VARIABLE, key), (SECRET_VARIABLE, secret))
                           if not value)
    raise AuthError(f"Schwab app key and secret not configured ({missing} not set, no "
                    f"[provider] secrets_file): {HOW_TO_SET}")


def read_secrets_file(path: str) -> AppCredentials:
    """The key and secret in `path` (ours or the old system's shape), refused unless private."""
    where = f"Schwab secrets file {path} ([provider] secrets_file)"
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            _refuse_if_open(where, path, mode)
            document = json.loads(f.read(1024 * 1024))
    except FileNotFoundError:
        raise AuthError(f"{where} not found: create it (mode 0600), or {ENV_HINT}") from None
    except (OSError, ValueError) as exc:
        raise AuthError(f"{where} is unreadable ({type(exc).__name__}): it must be a JSON object "
                        f"readable by the service's user") from None
    client = document.get("client") if isinstance(document, dict) else None
    if isinstance(client, dict):  # the old system's schwab_client.json
        fields, key, secret, callback = ("client.api_key", "client.app_secret"), \
            client.get("api_key"), client.get("app_secret"), client.get("callback")
    elif isinstance(document, dict):
        fields, key, secret, callback = ("app_key", "app_secret"), document.get("app_key"), \
            document.get("app_secret"), document.get("callback_url")
    else:
        raise AuthError(f"{where} does not hold a JSON object with app_key and app_secret")
    if not (isinstance(key, str) and key and isinstance(secret, str) and secret):
        raise AuthError(f"{where} lacks {fields[0]} or {fields[1]} (non-empty strings)")
    return AppCredentials(key, secret, f"[provider] secrets_file {path}",
                          callback if isinstance(callback, str) and callback else None)


def _refuse_if_open(where: str, path: str, mode: int) -> None:
    open_to = [who for who, bits in (("its group", stat.S_IRWXG), ("others", stat.S_IRWXO))
               if mode & bits]
    if open_to:
        raise AuthError(f"{where} is open to {' and '.join(open_to)} (mode "
                        f"{stat.S_IMODE(mode):04o}): refused, because the app secret in it would "
                        f"be readable by other users; make it private: chmod 600 {path}")
