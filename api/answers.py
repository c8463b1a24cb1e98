"""How the API answers: JSON bodies as the old Flask service wrote them, and the error mapping
every endpoint shares (`json_endpoint`). Route modules (api/app.py and its siblings) build their
answers with these, so every answer the API's own code shapes is the same JSON."""
from __future__ import annotations

import functools
import json
import logging
from typing import Any, Callable, Optional

import bottle

from workers.store import StoreError

from workers.store.rows import DATASETS

from . import validation as V
from .export import CSV_CONTENT_TYPE, to_csv
from .status import SupervisorUnavailable

__all__ = ["JSON_CONTENT_TYPE", "dumps", "json_answer", "json_failure", "json_endpoint", "request_query", "listing",
           "dataset_fields"]

log = logging.getLogger("api")

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def dumps(obj: Any) -> bytes:
    """JSON as Flask's jsonify wrote it: sorted keys, compact, ASCII, newline-terminated."""
    return (_encode(obj) + "\n").encode("ascii")


def json_answer(status: int, obj: Any, headers: Optional[dict] = None) -> bottle.HTTPResponse:
    response = bottle.HTTPResponse(body=dumps(obj), status=status)
    response.content_type = JSON_CONTENT_TYPE
    for name, value in (headers or {}).items():
        response.set_header(name, value)
    return response


def json_failure(status: int, error: str, headers: Optional[dict] = None) -> bottle.HTTPResponse:
    return json_answer(status, {"success": False, "error": error}, headers)


def json_endpoint(handler: Callable) -> Callable:
    """Map the errors a handler may meet to JSON answers (400, 503)."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except V.ParamError as exc:
            return json_failure(400, str(exc))
        except StoreError as exc:
            log.warning("store read failed: %s", exc)
            return json_failure(503, f"the store cannot be read: {exc}")
        except SupervisorUnavailable as exc:
            return json_failure(503, f"the supervisor cannot be reached: {exc}")

    return wrapper


def request_query() -> dict[str, str]:
    """The current request's query parameters (the first value of each: api/validation.py)."""
    return V.parse_query(bottle.request.environ.get("QUERY_STRING", ""))


def listing(rows: list, columns, **echo) -> bottle.HTTPResponse:
    """The rows as the old JSON listing, or as CSV (`format=csv`) with `columns` (api/export.py)."""
    if V.output_format(request_query()) == "csv":
        response = bottle.HTTPResponse(body=to_csv(columns, rows), status=200)
        response.content_type = CSV_CONTENT_TYPE
        return response
    return json_answer(200, {"success": True, "count": len(rows), **echo, "data": rows})


def dataset_fields(dataset: str) -> list[str]:
    """A stored dataset's row fields, in the API's order (workers/store/rows.py)."""
    return [column.name for column in DATASETS[dataset]]
