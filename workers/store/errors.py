"""The store's exceptions: one for the database, one for the caller's rows.

`StoreError` means "the write or read did not happen, for a reason outside
the caller's code" (disk full, locked past the busy timeout, not a database,
a schema newer than this code). A worker logs it and tries again next cycle;
the previous data is still there.

`RowError` is a `ValueError`: the rows handed to the writer do not match the
dataset (missing or unknown column, bad value). It is raised before anything
is written and retrying will not help.
"""

from __future__ import annotations

import sqlite3

__all__ = ["StoreError", "SchemaTooNewError", "RowError", "describe_sqlite_error"]


class StoreError(Exception):
    """A store operation failed; `dataset` and `cause` say which and why."""

    def __init__(self, dataset: str | None, cause: str, *, path: str | None = None):
        self.dataset = dataset
        self.cause = cause
        self.path = path
        what = f"dataset {dataset!r}" if dataset else "the store"
        where = f" ({path})" if path else ""
        super().__init__(f"{what}: {cause}{where}")


class SchemaTooNewError(StoreError):
    """The database was written by newer code than this one."""

    def __init__(self, found: int, supported: int, *, path: str | None = None,
                 dataset: str | None = None):
        self.found = found
        self.supported = supported
        super().__init__(
            dataset,
            f"database schema version {found} is newer than this code supports "
            f"({supported}); upgrade the code or point it at another state_dir",
            path=path,
        )


class RowError(ValueError):
    """The rows given for a dataset do not fit its columns."""


def describe_sqlite_error(exc: BaseException, busy_timeout_ms: int | None = None) -> str:
    """Turn an sqlite3/OS error into a short cause a person can act on."""
    text = str(exc)
    low = text.lower()
    if "disk is full" in low or "disk full" in low:
        return f"database or disk is full ({text})"
    if "locked" in low or "busy" in low:
        waited = f" past the busy timeout of {busy_timeout_ms} ms" if busy_timeout_ms else ""
        return f"database is locked by another connection{waited} ({text})"
    if "not a database" in low or "malformed" in low:
        return f"file is not a database or is corrupt ({text})"
    if isinstance(exc, sqlite3.Error):
        return f"sqlite error: {text}"
    return f"{type(exc).__name__}: {text}"
