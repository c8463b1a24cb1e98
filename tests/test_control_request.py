"""The control request decoder: one documented error type (RequestError) whatever the bytes."""
import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.control_request import MAX_DEPTH, MAX_REQUEST, RequestError, decode_request


def decoded_or_refused(line):
    """The decoded request, checked against the documented shape; None if refused with RequestError."""
    try:
        request = decode_request(line)
    except RequestError as e:
        assert str(e), "a RequestError must say what is wrong"
        return None
    assert isinstance(request, dict)
    assert isinstance(request["cmd"], str) and request["cmd"]
    names = request.get("names", [])
    assert isinstance(names, list) and all(isinstance(n, str) for n in names)
    assert type(request.get("lines", 0)) is int
    assert isinstance(request.get("follow", False), bool)
    return request


scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=20))
json_like = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                         | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=30)
request_like = st.fixed_dictionaries({"cmd": json_like | st.sampled_from(["status", "tail", ""])},
                                     optional={"names": json_like | st.lists(st.text(max_size=10), max_size=4),
                                               "lines": json_like, "follow": json_like, "other": json_like})
TOKENS = ["[", "]", "{", "}", '"', "\\", ",", ":", " ", "1e999", "-1e400", "NaN", "Infinity", "-Infinity",
          "9" * 30, "9" * 5000, "0.5", '"cmd"', '"names"', '"status"', "\\ud800", "\\u0000", "true", "null",
          "\xff", "\u2028", "\ufeff"]
json_ish = st.lists(st.sampled_from(TOKENS), max_size=60).map(lambda parts: "".join(parts).encode("utf-8", "surrogatepass"))


@given(st.binary(max_size=4096))
def test_arbitrary_bytes_decode_to_a_request_or_a_request_error(line):
    decoded_or_refused(line)


@given(json_like)
def test_arbitrary_json_values_decode_to_a_request_or_a_request_error(value):
    decoded_or_refused(json.dumps(value, allow_nan=True).encode())


@given(request_like)
def test_request_shaped_objects_decode_to_a_request_or_a_request_error(value):
    request = decoded_or_refused(json.dumps(value, allow_nan=True).encode())
    if request is not None:
        assert request == value


@given(json_ish)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_json_ish_token_soup_decodes_to_a_request_or_a_request_error(line):
    decoded_or_refused(line)


@given(st.integers(MAX_DEPTH + 1, 20000), st.sampled_from([b"[", b"{", b'{"a":', b'[{"x":"]\\"",', b'{"cmd":[']),
       st.sampled_from([b"", b'"', b"\\", b'"\\', b"]" * 5]))
def test_deep_nesting_is_refused_whatever_surrounds_it(depth, opener, tail):
    line = (opener * depth + tail)[:MAX_REQUEST]
    assert decoded_or_refused(line) is None


@given(st.lists(st.text(alphabet="[]{}\"\\ab", max_size=12), max_size=8))
def test_brackets_inside_strings_do_not_count_as_nesting(names):
    assert decode_request(json.dumps({"cmd": "status", "names": names}).encode())["names"] == names


@pytest.mark.parametrize("line, phrase", [
    (b"[" * 1500, "nested deeper than 16 levels"),
    (b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, "not an object"),  # deep enough, and no deeper: decoded, then refused
    (b'{"cmd":"status\xff"}', "not UTF-8 (byte 14)"),
    (b"1e999", "too large for a float"),
    (b'{"cmd":"tail","lines":' + b"1" * 5000 + b"}", "more than 20 digits"),
    (b'{"cmd":"status","lines":NaN}', "NaN"),
    (b"Infinity", "Infinity"),
    (b"[]", "a JSON array, not an object"),
    (b'"status"', "a JSON string, not an object"),
    (b'{"names":["alpha"]}', "needs 'cmd', a non-empty string (got null)"),
    (b'{"cmd":7}', "needs 'cmd', a non-empty string (got number)"),
    (b'{"cmd":"status","names":"alpha"}', "'names' must be a list of strings"),
    (b'{"cmd":"status","names":[["alpha"]]}', "'names' must be a list of strings"),
    (b'{"cmd":"tail","lines":"5"}', "'lines' must be a whole number (got string)"),
    (b'{"cmd":"tail","lines":true}', "'lines' must be a whole number (got boolean)"),
    (b'{"cmd":"tail","follow":"yes"}', "'follow' must be true or false (got string)"),
    (b'{"cmd":"status","names":["\\udc80"]}', "not valid Unicode"),
    (b'{"cmd":"status"', "not valid JSON"),
    (b"x" * (MAX_REQUEST + 1), f"longer than {MAX_REQUEST} bytes"),
])
def test_each_documented_problem_is_named(line, phrase):
    with pytest.raises(RequestError, match=phrase.replace("(", r"\(").replace(")", r"\)")):
        decode_request(line)


def test_valid_requests_come_back_as_sent():
    for request in ({"cmd": "status"}, {"cmd": "status", "names": ["alpha", "beta"]},
                    {"cmd": "tail", "names": ["alpha"], "lines": 20, "follow": True}, {"cmd": "pid", "names": []}):
        assert decode_request(json.dumps(request).encode()) == request


def test_a_line_of_quote_backslash_pairs_is_decoded_in_linear_time():
    """A backtracking string pattern takes ~13 s on this 64 KB line, all of it inside the supervisor loop."""
    started = time.perf_counter()
    with pytest.raises(RequestError):
        decode_request(b'"\\' * (MAX_REQUEST // 2))
    assert time.perf_counter() - started < 1.0
