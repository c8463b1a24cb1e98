"""`?format=csv`: a listing as CSV, for a spreadsheet.

One header row (the row fields in the API's order, so an empty listing still says
what its columns are), then one line per row, RFC 4180 quoting, CRLF line ends,
UTF-8. Values: empty for null, `true`/`false` for booleans, numbers as JSON writes
them, nested objects (a signal's `values`) as compact JSON. A text cell starting
with = + - or @ is prefixed with ' so a spreadsheet shows it instead of running it.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Iterable, Mapping, Sequence

CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
_FORMULA_STARTS = ("=", "+", "-", "@")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def to_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(name)) for name in columns])
    return out.getvalue().encode("utf-8")
