"""The heartbeat protocol between a worker process and the supervisor.

Newline-delimited JSON objects on a pipe, each at most MAX_MESSAGE bytes
(PIPE_BUF, so a single write is atomic and never interleaves):

    {"t": "beat", "phase": "fetch", "item": "AAPL", "key": "5f0c..."}   progress in the work loop
    {"t": "cycle", "ok": true, "duration": 1.2, "counts": {...}, "error": null}
    {"t": "status", "quarantined": [...], "quarantined_total": 3, "provider_requests": {...},
     "warnings": ["the Schwab refresh token expires in 1 day 4 h: run mdw-schwab-login"],
     "schedule": "regular", "counters": {"alerts_sent": {"json://127.0.0.1:8089": 12}}}

A status message's `warnings` are things a person must act on soon although
the worker still works (a login about to expire): the supervisor shows them
in its STATUS line, `mdwctl status` and /health until the worker stops
sending them. Its `schedule` is a worker's own word for when it works (at most
SCHEDULE_TEXT characters, or null): the supervisor does not read it, it passes
it through in its status rows for the API. Its `counters` are a worker's own
numbers for /metrics (family -> label -> a number >= 0; at most MAX_COUNTERS
families of MAX_COUNTER_LABELS labels, names cut to COUNTER_TEXT characters),
passed through likewise: the alerts worker reports what it sent and failed to.

A beat's `item` is for people: cut to MAX_TEXT characters. Its `key` names
the item exactly, whatever its length (a digest of the whole item, see
`item_key`): the supervisor hands the last beat of a hung child to its
successor, which matches the key against its own items, so a batch of 50
symbols is recognised even though its display text was cut.

Anything else is a ProtocolError, and nothing but a ProtocolError comes out
of the decoder whatever the bytes: bad JSON or UTF-8, nesting deep enough to
exhaust the recursion limit, NaN or infinite numbers, numbers too large for
a float, unknown message types, wrong field types, a line longer than
MAX_MESSAGE. The supervisor then restarts that child (reason "protocol").
The decoder never buffers more than MAX_MESSAGE bytes.

Standard library only: both the supervisor and the workers import this.
"""
import hashlib
import json
import numbers
from typing import NamedTuple, Optional

MAX_MESSAGE = 4096
MESSAGE_TYPES = ("beat", "cycle", "status")
MAX_TEXT = 200
MAX_ERROR_TEXT = 500
KEY_LENGTH = 16  # hex digits of an item key
STATUS_LIST_LIMIT = 10  # quarantined items listed in a status message; the rest are counted
MAX_WARNINGS = 3
WARNING_TEXT = 300
SCHEDULE_TEXT = 40
MAX_COUNTERS = 8
MAX_COUNTER_LABELS = 10
COUNTER_TEXT = 60
_MAX_NUMBER = 1e15  # counts and seconds beyond this are nonsense, not data


class ProtocolError(ValueError):
    """A worker sent something that is not a valid heartbeat message."""


class Beat(NamedTuple):
    """A progress beat as the supervisor keeps it (and hands it to a hung child's successor)."""

    phase: str
    item: Optional[str] = None  # display text, at most MAX_TEXT characters
    key: Optional[str] = None  # item_key() of the whole item

    def text(self):
        return f"{self.phase} {self.item}" if self.item else self.phase

    def names(self, phase, item):
        """Is this the beat a worker sends before `phase` on `item`?"""
        return self.phase == phase and item is not None and self.key == item_key(item)


def item_key(item):
    """A short digest naming `item` exactly (the same in every process)."""
    return hashlib.blake2b(str(item).encode("utf-8", "surrogatepass"), digest_size=KEY_LENGTH // 2).hexdigest()


# -- encoding (the worker's side) ---------------------------------------------


def encode_beat(phase, item=None):
    message = {"t": "beat", "phase": _text(phase), "item": None, "key": None}
    if item is not None:
        message.update(item=_text(item), key=item_key(item))
    return _encode(message)


def encode_cycle(ok, duration, counts=None, error=None):
    counts = {str(k)[:MAX_TEXT]: _plain_number(v) for k, v in dict(counts or {}).items()}
    counts = {k: v for k, v in counts.items() if _is_number(v)}
    message = {"t": "cycle", "ok": bool(ok), "duration": max(0.0, float(duration)), "counts": counts,
               "error": None if error is None else _text(error, MAX_ERROR_TEXT)}
    return _encode(message)


def encode_status(quarantined=(), provider_requests=None, warnings=(), schedule=None, counters=None):
    """A status message that always fits: the first STATUS_LIST_LIMIT items, and their total.

    `quarantined` is a list of {"item", "why", "for_s"}; `provider_requests`
    maps provider -> outcome -> count; `warnings` are short texts (at most
    MAX_WARNINGS, each cut to WARNING_TEXT characters); `schedule` a word of
    at most SCHEDULE_TEXT characters, or None; `counters` maps family -> label
    -> number (the first MAX_COUNTERS families and MAX_COUNTER_LABELS labels)."""
    warnings = [_text(w, WARNING_TEXT) for w in list(warnings)[:MAX_WARNINGS]]
    schedule = None if schedule is None else str(schedule)[:SCHEDULE_TEXT] or None
    items = [{"item": _text(q["item"], 60), "why": _text(q["why"], 120), "for_s": float(q["for_s"])}
             for q in list(quarantined)]
    requests = {str(p)[:40]: {str(o)[:40]: int(n) for o, n in outcomes.items()}
                for p, outcomes in dict(provider_requests or {}).items()}
    counters = {str(family)[:COUNTER_TEXT]: {str(label)[:COUNTER_TEXT]: max(0, _plain_number(n) or 0)
                                              for label, n in list(dict(labels).items())[:MAX_COUNTER_LABELS]}
                for family, labels in list(dict(counters or {}).items())[:MAX_COUNTERS]}
    shown = min(len(items), STATUS_LIST_LIMIT)
    while True:
        message = {"t": "status", "quarantined": items[:shown], "quarantined_total": len(items),
                   "provider_requests": requests, "warnings": warnings, "schedule": schedule, "counters": counters}
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        if len(data) <= MAX_MESSAGE or shown == 0:
            return _encode(message)
        shown -= 1


def _plain_number(value):
    """numpy's numbers as Python's (JSON knows only those); anything else as None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _text(value, limit=MAX_TEXT):
    value = str(value)
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _encode(message):
    data = json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"heartbeat message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    return data


# -- decoding (the supervisor's side) -----------------------------------------


class MessageDecoder:
    """Turns the byte stream of one heartbeat pipe into validated messages."""

    def __init__(self):
        self._partial = b""

    def feed(self, data):
        """Return the complete messages in `data`; raise ProtocolError on the first bad one."""
        *lines, self._partial = (self._partial + data).split(b"\n")
        if len(self._partial) > MAX_MESSAGE:
            raise ProtocolError(f"heartbeat line longer than {MAX_MESSAGE} bytes")
        return [validate(line) for line in lines]


def _no_constants(name):
    raise ValueError(f"{name} is not a number")


def decode_json(line, what="heartbeat line"):
    """JSON from bytes; ProtocolError (only) for anything that is not plain, finite JSON."""
    try:
        return json.loads(line, parse_constant=_no_constants)
    except RecursionError:
        raise ProtocolError(f"{what} nests too deeply: {bytes(line[:60])!r}") from None
    except (ValueError, UnicodeDecodeError, TypeError):
        raise ProtocolError(f"{what} is not JSON: {bytes(line[:60])!r}") from None


def validate(line):
    if len(line) > MAX_MESSAGE:
        raise ProtocolError(f"heartbeat line of {len(line)} bytes exceeds {MAX_MESSAGE}")
    message = decode_json(line)
    if not isinstance(message, dict) or message.get("t") not in MESSAGE_TYPES:
        raise ProtocolError(f"heartbeat message has no known type (one of {', '.join(MESSAGE_TYPES)}): {line[:60]!r}")
    return _VALIDATORS[message["t"]](message)


def _beat(message):
    phase, item, key = message.get("phase"), message.get("item"), message.get("key")
    _require(message, "phase", isinstance(phase, str) and 0 < len(phase) <= MAX_TEXT)
    _require(message, "item", item is None or (isinstance(item, str) and len(item) <= MAX_TEXT))
    _require(message, "key", key is None or (isinstance(key, str) and len(key) == KEY_LENGTH))
    return {"t": "beat", "phase": phase, "item": item, "key": key}


def _cycle(message):
    ok, duration, counts, error = (message.get(k) for k in ("ok", "duration", "counts", "error"))
    _require(message, "ok", isinstance(ok, bool))
    _require(message, "duration", _is_number(duration) and duration >= 0)
    _require(message, "counts", isinstance(counts, dict) and all(_is_number(v) for v in counts.values()))
    _require(message, "error", error is None or isinstance(error, str))
    return {"t": "cycle", "ok": ok, "duration": float(duration), "counts": counts, "error": error}


def _status(message):
    quarantined = message.get("quarantined", [])
    total = message.get("quarantined_total", len(quarantined) if isinstance(quarantined, list) else 0)
    requests = message.get("provider_requests", {})
    warnings = message.get("warnings", [])
    schedule = message.get("schedule")
    counters = message.get("counters", {})
    _require(message, "counters", isinstance(counters, dict) and len(counters) <= MAX_COUNTERS and all(
        isinstance(f, str) and len(f) <= COUNTER_TEXT and isinstance(labels, dict)
        and len(labels) <= MAX_COUNTER_LABELS and all(
            isinstance(label, str) and len(label) <= COUNTER_TEXT and _is_number(n) and n >= 0
            for label, n in labels.items()) for f, labels in counters.items()))
    _require(message, "schedule",
             schedule is None or (isinstance(schedule, str) and 0 < len(schedule) <= SCHEDULE_TEXT))
    _require(message, "warnings", isinstance(warnings, list) and len(warnings) <= MAX_WARNINGS and all(
        isinstance(w, str) and 0 < len(w) <= WARNING_TEXT for w in warnings))
    _require(message, "quarantined", isinstance(quarantined, list) and all(
        isinstance(q, dict) and isinstance(q.get("item"), str) and isinstance(q.get("why"), str)
        and _is_number(q.get("for_s")) for q in quarantined))
    _require(message, "quarantined_total", _is_whole(total) and total >= len(quarantined))
    _require(message, "provider_requests", isinstance(requests, dict) and all(
        isinstance(outcomes, dict) and all(_is_whole(n) and n >= 0 for n in outcomes.values())
        for outcomes in requests.values()))
    return {"t": "status", "quarantined": quarantined, "quarantined_total": total, "provider_requests": requests,
            "warnings": warnings, "schedule": schedule, "counters": counters}


_VALIDATORS = {"beat": _beat, "cycle": _cycle, "status": _status}


def _is_number(value):
    """A finite int or float of sensible size (abs() first: a huge int cannot become a float)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= _MAX_NUMBER


def _is_whole(value):
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= _MAX_NUMBER


def _require(message, key, ok):
    if not ok:
        raise ProtocolError(f"heartbeat {message['t']!r} message has a bad {key!r}: {message.get(key)!r:.80}")
