"""The heartbeat protocol between a worker process and the supervisor.

Newline-delimited JSON objects on a pipe, each at most MAX_MESSAGE bytes
(PIPE_BUF, so a single write is atomic and never interleaves):

    {"t": "beat", "phase": "fetch", "item": "AAPL"}           progress in the work loop
    {"t": "cycle", "ok": true, "duration": 1.2, "counts": {...}, "error": null}
    {"t": "status", "quarantined": [...], ...}                 worker-reported extras

Anything else (bad JSON, unknown type, wrong field types, a line longer than
MAX_MESSAGE) is a ProtocolError: the supervisor marks that child unhealthy and
restarts it. The decoder never raises for input it has not yet seen whole, and
it never buffers more than MAX_MESSAGE bytes.
"""
import json

MAX_MESSAGE = 4096
MESSAGE_TYPES = ("beat", "cycle", "status")
_MAX_TEXT = 200


class ProtocolError(ValueError):
    """A worker sent something that is not a valid heartbeat message."""


def encode_beat(phase, item=None):
    return _encode({"t": "beat", "phase": _text(phase), "item": None if item is None else _text(item)})


def encode_cycle(ok, duration, counts=None, error=None):
    message = {"t": "cycle", "ok": bool(ok), "duration": float(duration), "counts": dict(counts or {})}
    message["error"] = None if error is None else _text(error, 500)
    return _encode(message)


def encode_status(**fields):
    return _encode({"t": "status", **fields})


def _text(value, limit=_MAX_TEXT):
    value = str(value)
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _encode(message):
    data = json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"heartbeat message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    return data


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


def validate(line):
    if len(line) > MAX_MESSAGE:
        raise ProtocolError(f"heartbeat line of {len(line)} bytes exceeds {MAX_MESSAGE}")
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError(f"heartbeat line is not JSON: {line[:60]!r}") from None
    if not isinstance(message, dict) or message.get("t") not in MESSAGE_TYPES:
        raise ProtocolError(f"heartbeat message has no known type (one of {', '.join(MESSAGE_TYPES)}): {line[:60]!r}")
    kind = message["t"]
    if kind == "beat":
        _require(message, "phase", str)
        _require(message, "item", (str, type(None)))
    elif kind == "cycle":
        _require(message, "ok", bool)
        _require(message, "duration", (int, float))
        _require(message, "counts", dict)
    return message


def _require(message, key, types):
    if not isinstance(message.get(key), types):
        raise ProtocolError(f"heartbeat {message['t']!r} message has a bad {key!r}: {message.get(key)!r}")
