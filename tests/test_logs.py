"""Child output: line splitting, journald priorities, the tail, and the forwarding rate limit."""
import time

from supervisor.logs import ChildOutput, LineFormatter, priority_of
from tests import configs
from supervisor.worker import Worker


def output(journal=True, rate=1000):
    spec = configs.build({"w": {"kind": "faulty", "interval": 1, "log_lines_per_second": rate}}).workers["w"]
    worker = Worker(spec, 0.0)
    return ChildOutput(worker, LineFormatter(journal), 0.0), worker


def test_lines_get_the_worker_name_and_a_syslog_priority_under_journald():
    out, _ = output()
    text = out.feed(b"ERROR scanner: boom\nINFO scanner: fine\nWARNING x\nTraceback (most recent call last):\n", 0.0)
    assert text.splitlines() == ["<3>w: ERROR scanner: boom", "<6>w: INFO scanner: fine", "<4>w: WARNING x",
                                 "<3>w: Traceback (most recent call last):"]
    assert priority_of("DEBUG y") == 7 and priority_of("plain print output") == 6


def test_partial_lines_wait_for_their_end_and_overlong_lines_are_cut():
    out, worker = output()
    assert out.feed(b"half a li", 0.0) == ""
    assert out.feed(b"ne\n", 0.0) == "<6>w: half a line\n"
    text = out.feed(b"x" * 20000, 0.0)
    assert "[line truncated]" in text and len(text) < 9000
    assert out.close(0.0) == ""


def test_flood_is_rate_limited_counted_and_still_in_the_tail():
    out, worker = output(rate=100)
    text = out.feed(b"".join(b"line %d\n" % i for i in range(5000)), 0.0)
    assert text.count("\n") == 100
    assert worker.log_lines_dropped == 4900
    assert len(worker.log_tail) == 1000 and worker.log_tail[-1].endswith(" line 4999")
    notice = out.feed(b"one more\n", 1.5)  # a second later: tokens refilled, and the drop is reported
    assert "one more" in notice and "4900 lines not forwarded (over log_lines_per_second 100)" in notice


def test_without_journald_lines_carry_a_timestamp_instead():
    out, _ = output(journal=False)
    line = out.feed(b"hello\n", 0.0)
    assert line.endswith(" w: hello\n") and not line.startswith("<")


def test_tail_lines_carry_the_time_mdwd_received_them():
    spec = configs.build({"w": {"kind": "faulty", "interval": 1}}).workers["w"]
    worker, clock = Worker(spec, 0.0), [1_780_000_000.25]
    out = ChildOutput(worker, LineFormatter(True), 0.0, wall=lambda: clock[0])
    out.feed(b"first\nsecond\n", 0.0)
    clock[0] += 61.5
    out.feed(b"third\n", 61.5)
    day = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_780_000_000))
    later = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_780_000_061))
    assert list(worker.log_tail) == [f"{day}.250 first", f"{day}.250 second", f"{later}.750 third"]
