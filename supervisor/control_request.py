"""Decoding one control request line into a request dict, whatever the bytes.

`decode_request(line)` returns a dict, or raises `RequestError` (and nothing
else) with a message that names the problem. A valid request is a JSON object
in UTF-8, at most MAX_REQUEST bytes, nested at most MAX_DEPTH levels, whose
numbers are finite with at most MAX_INT_DIGITS digits (no NaN or Infinity),
whose strings are valid Unicode (no lone surrogates), with

    cmd     a non-empty string (which commands exist is commands.py's business)
    names   a list of strings                           (optional)
    lines   a whole number, not true/false              (optional)
    follow  true or false                               (optional)

Other fields pass through to the command untouched (commands ignore what they
do not know). The depth is checked before `json.loads` runs, by counting
brackets outside strings: the C decoder recurses per level and raises
RecursionError on about 1,000 of `[`, which is not a ValueError.
"""
import itertools
import json
import math
import re

MAX_REQUEST = 64 * 1024
MAX_DEPTH = 16
MAX_INT_DIGITS = 20
# A string runs to its closing quote, or to the end of the line if it has none. The possessive `*+` and
# the unterminated case keep this linear: the backtracking `"(?:[^"\\]|\\.)*"` is quadratic on a line
# of `"\` pairs (about 13 s for 64 KB, all of it inside the supervisor loop).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class RequestError(ValueError):
    """A control request line that cannot be served; the message says why (and goes back to the client)."""


def decode_request(line):
    """The request dict that `line` (bytes, without its newline) encodes, or RequestError."""
    if len(line) > MAX_REQUEST:
        raise RequestError(f"request longer than {MAX_REQUEST} bytes")
    _check_depth(line)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(f"request is not UTF-8 (byte {e.start})") from None
    try:
        request = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant)
    except RecursionError:  # unreachable after _check_depth; kept so no other error type can escape
        raise RequestError(f"request nested deeper than {MAX_DEPTH} levels") from None
    except RequestError:
        raise
    except ValueError as e:
        raise RequestError(f"request is not valid JSON: {e}") from None
    return _checked(request)


def _check_depth(line):
    """RequestError if brackets outside strings nest deeper than MAX_DEPTH.

    Where the line is not JSON the count may be off, but over the prefix that
    json.loads accepts, strings end where its strings end, so the count is
    never below the depth it recurses to."""
    outside = _STRING.sub(b"", line)
    if outside.count(b"[") + outside.count(b"{") <= MAX_DEPTH:
        return  # the usual case: too few openers to nest that deep
    structure = _BRACKETS.findall(outside)
    deepest = max(itertools.accumulate(_DEPTH_STEP[b[0]] for b in structure), default=0)
    if deepest > MAX_DEPTH:
        raise RequestError(f"request nested deeper than {MAX_DEPTH} levels")


def _parse_int(digits):
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise RequestError(f"request has a number with more than {MAX_INT_DIGITS} digits")
    return int(digits)


def _parse_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise RequestError(f"request has a number too large for a float: {text[:20]}")
    return value


def _refuse_constant(name):
    raise RequestError(f"request has {name}, which is not JSON")


def _checked(request):
    """The request itself if its fields have the documented types."""
    if not isinstance(request, dict):
        raise RequestError(f"request is a JSON {_json_type(request)}, not an object")
    for key, value in request.items():
        _check_text(key, "a field name")
        if isinstance(value, str):
            _check_text(value, f"field {key!r}")
    cmd = request.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise RequestError(f"request needs 'cmd', a non-empty string (got {_json_type(cmd)})")
    names = request.get("names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RequestError("'names' must be a list of strings")
    for name in names:
        _check_text(name, "'names'")
    lines = request.get("lines", 0)
    if not isinstance(lines, int) or isinstance(lines, bool):
        raise RequestError(f"'lines' must be a whole number (got {_json_type(lines)})")
    if not isinstance(request.get("follow", False), bool):
        raise RequestError(f"'follow' must be true or false (got {_json_type(request['follow'])})")
    return request


def _check_text(text, where):
    """RequestError if `text` holds a lone surrogate (JSON lets \\ud800 through; UTF-8 cannot carry it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(f"{where} is not valid Unicode (a lone surrogate)") from None


def _json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string", int: "number", float: "number"}.get(type(value), "value")
