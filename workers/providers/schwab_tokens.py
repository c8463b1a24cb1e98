"""The Schwab token file: its shapes, private atomic writes, and when its refresh token dies.

Schwab's OAuth gives two tokens: an access token (30 minutes, renewed with
the refresh token as often as needed) and a refresh token, which dies
REFRESH_TOKEN_LIFETIME_S (7 days) after the login that issued it, however
often it is used. Only a new login (`mdw-schwab-login`, LOGIN_COMMAND)
issues a new one. So the file records when the refresh token was issued.

Three shapes are read, and each is written back in its own shape, so a file
keeps working with the program that made it:

- ours (flat), as mdw-schwab-login writes a new file:
      {"access_token": "...", "refresh_token": "...", "expires_at": 1767225600.0,
       "token_type": "Bearer", "scope": "api", "refresh_token_issued_at": 1766620800.0}
- schwab-py's: the token fields nested under "token", beside
  "creation_timestamp" (when its login created the token);
- the old system's schwab_client.json: {"client": {"api_key", "app_secret",
  "callback", ...}, "token": {..., "refresh_token_created_at"}}.

The issue time is read from `refresh_token_issued_at`, else
`token.refresh_token_created_at`, else `creation_timestamp`; a login writes
the first, and also updates the other two where the file has them. Times
are wall clock (epoch seconds) because they must survive restarts and are
shared between processes.

Writes are atomic (temp file in the same directory, fsync, rename, fsync of
the directory) with mode 0600. Tokens never appear in reprs or messages.
"""
from __future__ import annotations

import json
import math
import os
import tempfile

from .base import AuthError

LOGIN_COMMAND = "mdw-schwab-login"
REFRESH_TOKEN_LIFETIME_S = 7 * 24 * 3600.0
DEFAULT_TOKEN_FILE = "schwab-token.json"
TEMP_PREFIX = ".schwab-token-"  # mdwd removes leftovers of interrupted writes at start
ISSUED_KEY = "refresh_token_issued_at"


class Tokens:
    """The current tokens plus the file's document (to write back in its own shape)."""

    __slots__ = ("access_token", "refresh_token", "expires_at", "refresh_issued_at", "document")

    def __init__(self, access_token: str, refresh_token: str, expires_at: float, document: dict,
                 refresh_issued_at: float | None = None):
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.expires_at = expires_at
        self.refresh_issued_at = refresh_issued_at
        self.document = document

    @property
    def refresh_expires_at(self) -> float | None:
        """When the refresh token dies (epoch seconds), or None if the file does not say when it
        was issued."""
        if self.refresh_issued_at is None:
            return None
        return self.refresh_issued_at + REFRESH_TOKEN_LIFETIME_S

    def __repr__(self):
        return f"Tokens(expires_at={self.expires_at:.0f}, access_token=<redacted>)"


def token_path(section, state_dir: str) -> str:
    """The token file a [provider] table names (`token_file`, relative to state_dir)."""
    return os.path.join(state_dir, section.get("token_file", DEFAULT_TOKEN_FILE))


def _epoch(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def _holder(document: dict) -> dict:
    """Where the token fields are: the document itself, or its "token" table."""
    return document["token"] if isinstance(document.get("token"), dict) else document


def _issued_at(document: dict) -> float | None:
    holder = _holder(document)
    for table, key in ((document, ISSUED_KEY), (holder, "refresh_token_created_at"),
                       (document, "creation_timestamp")):
        found = _epoch(table.get(key))
        if found is not None:
            return found
    return None


class TokenFile:
    def __init__(self, path: str | os.PathLike):
        self.path = os.path.abspath(os.fspath(path))

    def read_document(self) -> dict:
        """The file's JSON object; AuthError naming what is wrong and how to fix it."""
        try:
            with open(self.path, encoding="utf-8") as f:
                document = json.load(f)
        except FileNotFoundError:
            raise AuthError(f"Schwab token file {self.path} not found: run {LOGIN_COMMAND} to "
                            f"create it") from None
        except (OSError, ValueError) as exc:
            raise AuthError(f"Schwab token file {self.path} is unreadable "
                            f"({type(exc).__name__}); run {LOGIN_COMMAND} to write a new one") \
                from None
        if not isinstance(document, dict):
            raise AuthError(f"Schwab token file {self.path} does not hold a JSON object; run "
                            f"{LOGIN_COMMAND} to write a new one")
        return document

    def load(self) -> Tokens:
        document = self.read_document()
        holder = _holder(document)
        refresh = holder.get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            raise AuthError(f"Schwab token file {self.path} has no refresh_token: run "
                            f"{LOGIN_COMMAND} again")
        access = holder.get("access_token")
        return Tokens(access if isinstance(access, str) else "", refresh,
                      _epoch(holder.get("expires_at")) or 0.0, document, _issued_at(document))

    def save(self, tokens: Tokens, owner: tuple[int, int] | None = None) -> None:
        """Write `tokens` into their document, atomically, mode 0600 (and owned by `owner`,
        uid and gid, when given: a login run as root hands the file to the service's user)."""
        document = dict(tokens.document)
        nested = isinstance(document.get("token"), dict)
        holder = dict(document["token"]) if nested else document
        holder.update(access_token=tokens.access_token, refresh_token=tokens.refresh_token,
                      expires_at=tokens.expires_at)
        if tokens.refresh_issued_at is not None:
            document[ISSUED_KEY] = tokens.refresh_issued_at
            if "refresh_token_created_at" in holder:
                holder["refresh_token_created_at"] = int(tokens.refresh_issued_at)
            if "creation_timestamp" in document:
                document["creation_timestamp"] = int(tokens.refresh_issued_at)
        if nested:
            document["token"] = holder
        write_private(self.path, json.dumps(document).encode(), owner)
        tokens.document = document


def write_private(path: str, data: bytes, owner: tuple[int, int] | None = None) -> None:
    """Replace `path` by `data` atomically, mode 0600; the directory entry is made durable too."""
    directory = os.path.dirname(path)
    fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, 0o600)
        if owner is not None:
            os.chown(temp, *owner)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
