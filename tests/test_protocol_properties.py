"""Whatever bytes a child writes on its heartbeat pipe, the decoder raises only ProtocolError.

Property-based (hypothesis): arbitrary bytes, arbitrary JSON values in every
field, deep nesting, bad UTF-8, huge and non-finite numbers. A message that
does come out is fully validated: the supervisor can use every field as it
is, without a second check.
"""
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.shared import protocol
from supervisor.shared.protocol import MAX_MESSAGE, MessageDecoder, ProtocolError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ("phase", "item", "key", "ok", "duration", "counts", "error", "quarantined", "quarantined_total",
          "provider_requests", "schedule")


def decode(data, chunk=None):
    """All messages of `data` fed in one piece or in `chunk`-sized pieces; ProtocolError passes through."""
    decoder = MessageDecoder()
    if not chunk:
        return decoder.feed(data)
    out = []
    for i in range(0, len(data), chunk):
        out.extend(decoder.feed(data[i:i + chunk]))
    return out


def check_usable(message):
    """What the supervisor does with a message must work without another check."""
    assert message["t"] in protocol.MESSAGE_TYPES
    if message["t"] == "beat":
        assert isinstance(message["phase"], str) and message["phase"]
        protocol.Beat(message["phase"], message["item"], message["key"]).text()
    elif message["t"] == "cycle":
        assert isinstance(message["ok"], bool) and math.isfinite(message["duration"]) and message["duration"] >= 0
        assert all(math.isfinite(v) for v in message["counts"].values())
        json.dumps(message, allow_nan=False)
    else:
        for outcomes in message["provider_requests"].values():
            assert all(isinstance(n, int) and n >= 0 for n in outcomes.values())
        schedule = message["schedule"]
        assert schedule is None or (isinstance(schedule, str) and 0 < len(schedule) <= protocol.SCHEDULE_TEXT)
        json.dumps(message, allow_nan=False)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 64))
def test_arbitrary_bytes_give_messages_or_protocol_error(data, chunk):
    try:
        messages = decode(data + b"\n", chunk)
    except ProtocolError:
        return
    for message in messages:
        check_usable(message)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(protocol.MESSAGE_TYPES + ("other", 1, None)),
       st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6))
def test_any_json_in_any_field_gives_a_usable_message_or_protocol_error(kind, fields):
    line = json.dumps({"t": kind, **fields}).encode()  # NaN and Infinity go out as JSON's extensions
    try:
        messages = decode(line + b"\n")
    except ProtocolError:
        return
    for message in messages:
        check_usable(message)


@pytest.mark.parametrize("line", [
    b"[" * 1500 + b"]" * 1500, b'{"a":' * 600 + b"1" + b"}" * 600,
    b'{"t":"beat","phase":' + b"[" * 1500 + b"]" * 1500 + b"}",
    b'{"t":"beat","phase":"\xff\xfe"}', b'{"t":"cycle","ok":true,"duration":1e999,"counts":{}}',
    b'{"t":"cycle","ok":true,"duration":NaN,"counts":{}}', b'{"t":"cycle","ok":true,"duration":Infinity,"counts":{}}',
    b'{"t":"cycle","ok":true,"duration":' + b"9" * 4000 + b',"counts":{}}',
    b'{"t":"cycle","ok":true,"duration":1,"counts":{"n":' + b"9" * 4000 + b"}}",
    b'{"t":"status","provider_requests":{"sim":{"ok":-1}}}', b'{"t":"status","quarantined":[1,2]}',
    b'{"t":"beat","phase":"fetch","item":"TSLA","key":"short"}', b'{"t":"cycle","ok":1,"duration":1,"counts":{}}',
    b'{"t":"status","schedule":1}', b'{"t":"status","schedule":""}', b'{"t":"status","schedule":{"regular":1}}',
    b'{"t":"status","schedule":"' + b"r" * 41 + b'"}',
], ids=["deep-list", "deep-object", "deep-field", "bad-utf8", "1e999", "NaN", "Infinity", "huge-int",
        "huge-count", "negative-count", "quarantine-not-objects", "bad-key", "ok-not-bool",
        "schedule-number", "schedule-empty", "schedule-object", "schedule-too-long"])
def test_known_killers_are_protocol_errors(line):
    assert len(line) <= MAX_MESSAGE
    with pytest.raises(ProtocolError):
        decode(line + b"\n")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.fixed_dictionaries({"item": st.text(max_size=300), "why": st.text(max_size=300),
                                       "for_s": st.floats(0, 1e6)}), max_size=60))
def test_status_reports_always_fit_one_message(quarantined):
    data = protocol.encode_status(quarantined, {"sim": {"ok": 10**9, "timeout": 3}})
    assert len(data) <= MAX_MESSAGE
    (message,) = decode(data)
    assert message["quarantined_total"] == len(quarantined)
    assert len(message["quarantined"]) == min(len(quarantined), protocol.STATUS_LIST_LIMIT) or len(data) > 3000


@settings(max_examples=200, deadline=None)
@given(st.none() | st.text(max_size=100))
def test_a_status_report_carries_any_schedule_word_cut_to_size_or_none(schedule):
    (message,) = decode(protocol.encode_status(schedule=schedule))
    assert message["schedule"] == (schedule[:protocol.SCHEDULE_TEXT] if schedule else None)


def test_a_status_report_without_a_schedule_from_an_older_worker_is_read_as_none():
    (message,) = decode(b'{"t":"status","quarantined":[],"provider_requests":{}}\n')
    assert message["schedule"] is None


def test_a_beat_names_its_item_exactly_whatever_its_length():
    batch = ",".join(f"S{i:03d}" for i in range(300))  # 1,499 characters: cut for display
    (message,) = decode(protocol.encode_beat("fetch", batch))
    beat = protocol.Beat(message["phase"], message["item"], message["key"])
    assert len(beat.item) == protocol.MAX_TEXT and beat.names("fetch", batch)
    assert not beat.names("fetch", batch + ",S300") and not beat.names("bars", batch)
