"""Real processes misbehaving in every way we know; the supervisor must replace each one.

Each case runs a tree of one misbehaving child ("bad") and one healthy child
("good"). It checks that the bad child is detected within heartbeat_timeout
plus one tick, that the log says why, that a successor beats, that the good
child kept beating without a gap, that no zombie is left, and that SIGTERM
then ends the whole tree cleanly.
"""
import re
import signal

import psutil
import pytest

from tests.proctree import poll

HB = 1.0
TICK = 0.5  # scheduling slack on a loaded 2-core CI machine, well under one heartbeat
GOOD = {"kind": "faulty", "interval": 0.2, "mode": "healthy", "beat_interval": 0.05, "beat_log": "good.beats"}


def bad(mode, **extra):
    return {"kind": "faulty", "interval": 10.0, "mode": mode, "after": 0.3, "beat_interval": 0.05,
            "beat_log": "bad.beats", **extra}


CASES = {
    # mode: (extra worker settings, the log line that must say why)
    "hang_sleep": ({}, r"stopping pid \d+ \(hang: no heartbeat for ([\d.]+)s; last beat 'fetch HANG'\)"),
    "busy_loop": ({}, r"stopping pid \d+ \(hang: no heartbeat for ([\d.]+)s; last beat 'compute SPIN'\)"),
    "sigstop": ({}, r"stopping pid \d+ \(hang: no heartbeat for ([\d.]+)s; last beat 'fetch STOPPED'\)"),
    "socket_block": ({}, r"stopping pid \d+ \(hang: no heartbeat for ([\d.]+)s; last beat 'fetch SILENT_SOCKET'\)"),
    "ignore_term": ({}, r"stopping pid \d+ \(hang: no heartbeat for ([\d.]+)s; last beat 'fetch IGNORES_TERM'\)"),
    "grandchild_ignores_term": ({}, r"stopping pid \d+ \(hang: no heartbeat for ([\d.]+)s; last beat 'fetch WITH_GRANDCHILD'\)"),
    "raise": ({}, r"pid \d+ ended: exit 1 \(crash\)"),
    "exit3": ({}, r"pid \d+ ended: exit 3 \(crash\)"),
    "segfault": ({}, r"pid \d+ ended: SIGSEGV \(crash\)"),
    "memory": ({"max_rss_mb": 120, "memory_mb": 300}, r"stopping pid \d+ \(memory: (\d+) MiB resident > max_rss_mb 120\)"),
    "garbage_heartbeat": ({}, r"stopping pid \d+ \(protocol: heartbeat line is not JSON"),
    "oversized_heartbeat": ({}, r"stopping pid \d+ \(protocol: heartbeat line longer than 4096 bytes\)"),
    "nested_heartbeat": ({}, r"stopping pid \d+ \(protocol: heartbeat line nests too deeply"),
    "no_cycles": ({"stale_cycles": 3, "interval": 0.2}, r"stopping pid \d+ \(stalled: no successful cycle for ([\d.]+)s"),
}


@pytest.mark.parametrize("mode", sorted(CASES))
def test_misbehaving_child_is_detected_and_replaced(make_tree, mode):
    extra, why = CASES[mode]
    tree = make_tree({"bad": bad(mode, **extra), "good": GOOD}, heartbeat_timeout=HB, stop_timeout=0.5,
                     backoff_initial=0.1, backoff_max=0.5).start()
    first = poll(lambda: tree.beat_pids("bad.beats"), 10, what="the bad child's first beat")[0]
    match = tree.wait_log(rf"bad: {why}")
    if mode in ("hang_sleep", "busy_loop", "sigstop", "socket_block", "ignore_term", "grandchild_ignores_term"):
        assert float(match.group(1)) <= HB + TICK, "hang detected too late"
    if mode == "no_cycles":
        assert float(match.group(1)) <= 3 * 0.2 + TICK
    if mode == "ignore_term":
        tree.wait_log(r"bad: pid \d+ still alive 0.5s after SIGTERM; sending SIGKILL to its group")
    if mode == "raise":
        assert "RuntimeError: scanner failed on purpose" in tree.log()
    if mode == "grandchild_ignores_term":
        grandchild = int(tree.wait_log(r"bad: grandchild pid (\d+)").group(1))
        poll(lambda: not psutil.pid_exists(grandchild), 5, what="the grandchild to be killed and reaped")
    successor = poll(lambda: [p for p in tree.beat_pids("bad.beats") if p != first], 10,
                     what="a successor to beat")[0]
    assert successor != first
    poll(lambda: not psutil.pid_exists(first), 2, what="the replaced child to be reaped")
    poll(lambda: not tree.zombies(), 2, what="no zombie children")
    assert tree.stop() == 0
    summary = tree.wait_log(r"good: 1 process started, 0 restarts; .*; longest heartbeat gap ([\d.]+)s")
    assert float(summary.group(1)) < 0.5, "the healthy child's beats were not read in time"
    assert tree.max_beat_gap("good.beats") < 0.5
    poll(lambda: not tree.survivors(), 2, what="every process of the tree to be gone")


def test_flooding_child_neither_slows_the_supervisor_nor_the_others(make_tree):
    tree = make_tree({"flood": {"kind": "faulty", "interval": 10.0, "mode": "flood_stdout", "after": 0.1,
                                "log_lines_per_second": 200},
                      "good": GOOD}, heartbeat_timeout=HB).start()
    tree.wait_log(r"flood: \d+ lines not forwarded \(over log_lines_per_second 200\)", count=3)
    assert "flood: stopping" not in tree.log()
    assert tree.stop() == 0
    summary = tree.wait_log(r"good: 1 process started, 0 restarts; .*; longest heartbeat gap ([\d.]+)s")
    assert float(summary.group(1)) < 0.5
    assert tree.max_beat_gap("good.beats") < 0.5


def test_crash_looping_child_backs_off_turns_flapping_and_leaves_the_cpu_idle(make_tree):
    tree = make_tree({"loop": {"kind": "faulty", "interval": 1.0, "mode": "crash_at_start"}, "good": GOOD},
                     backoff_initial=0.1, backoff_max=0.8).start()
    sup = psutil.Process(tree.pid)
    tree.wait_log(r"loop: pid \d+ ended: exit 1 \(crash\)")
    cpu_before, wall_before = sum(sup.cpu_times()[:2]), psutil.time.monotonic()
    tree.wait_log(r"loop: pid \d+ ended: exit 1 \(crash\); respawn in [\d.]+s \[FLAPPING\]", count=4)
    delays = [float(d) for d in re.findall(r"loop: pid \d+ ended: exit 1 \(crash\); respawn in ([\d.]+)s", tree.log())]
    cpu = sum(sup.cpu_times()[:2]) - cpu_before
    wall = psutil.time.monotonic() - wall_before
    assert delays[:4] == sorted(delays[:4]), f"backoff did not grow: {delays}"
    assert all(d <= 0.8 for d in delays) and delays[-1] >= 0.7  # the cap, less 10 % jitter, as logged (0.1 s)
    assert cpu / wall < 0.2, f"supervisor used {cpu:.2f}s of CPU in {wall:.2f}s while a child crash-looped"
    assert tree.stop() == 0


def test_no_child_survives_the_supervisor_being_killed(make_tree):
    tree = make_tree({"a": GOOD, "b": {**GOOD, "beat_log": "b.beats"}}).start()
    poll(lambda: tree.beat_pids("good.beats") and tree.beat_pids("b.beats"), 10, what="both children beating")
    children = [c.pid for c in psutil.Process(tree.pid).children()]
    assert len(children) == 2
    tree.signal(signal.SIGKILL)
    tree.proc.wait(5)
    poll(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                         for p in children), 2, what="the children to die with their supervisor")
