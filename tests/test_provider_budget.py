"""Cross-process request budget: exact unit tests on a fake clock, then real processes."""
import bisect
import fcntl
import json
import multiprocessing
import os
import signal
import stat
import time

import pytest

from workers.providers.base import BudgetExhausted
from workers.providers.budget import RequestBudget


class FakeTime:
    """A clock plus a sleep that advances it, recording each sleep."""

    def __init__(self, now=500.0):
        self.now = now
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake():
    return FakeTime()


def make(tmp_path, fake, **kw):
    kw = {"limit": 12, "window_s": 6.0, "burst": 3, **kw}  # refills 1.5 tokens/s
    return RequestBudget(tmp_path / "state" / "bucket", clock=fake.clock, sleep=fake.sleep, **kw)


def test_new_bucket_grants_its_burst_then_paces_at_the_refill_rate(tmp_path, fake):
    budget = make(tmp_path, fake)
    grants = [budget.acquire(deadline=fake.now + 100) for _ in range(6)]
    assert grants[:3] == [500.0, 500.0, 500.0]
    assert fake.sleeps == pytest.approx([1 / 1.5] * 3)
    assert grants[3:] == pytest.approx([500 + 1 / 1.5, 500 + 2 / 1.5, 500 + 3 / 1.5])


def test_empty_bucket_fails_at_once_when_next_token_is_after_the_deadline(tmp_path, fake):
    budget = make(tmp_path, fake)
    for _ in range(3):
        budget.acquire(deadline=fake.now + 1)
    with pytest.raises(BudgetExhausted, match=r"next token in 0\.67s, only 0\.50s left"):
        budget.acquire(deadline=fake.now + 0.5)
    assert fake.sleeps == []  # did not burn the caller's time waiting in vain


def test_refill_is_capped_at_the_burst(tmp_path, fake):
    budget = make(tmp_path, fake)
    budget.acquire(deadline=fake.now)
    fake.now += 3600
    for _ in range(3):
        budget.acquire(deadline=fake.now)
    with pytest.raises(BudgetExhausted):
        budget.acquire(deadline=fake.now)


def test_state_is_shared_through_the_file(tmp_path, fake):
    first, second = make(tmp_path, fake), make(tmp_path, fake)
    first.acquire(deadline=fake.now)
    second.acquire(deadline=fake.now)
    first.acquire(deadline=fake.now)
    with pytest.raises(BudgetExhausted):
        second.acquire(deadline=fake.now)


@pytest.mark.parametrize("content", [b"garbage", b"MDWBKT01" + b"\xff" * 16])
def test_corrupt_bucket_file_restarts_empty(tmp_path, fake, content):
    budget = make(tmp_path, fake)
    with open(budget.path, "wb") as f:
        f.write(content)
    with pytest.raises(BudgetExhausted):
        budget.acquire(deadline=fake.now + 0.1)
    assert budget.acquire(deadline=fake.now + 1) == pytest.approx(500 + 1 / 1.5)


def test_stamp_from_before_a_reboot_restarts_empty(tmp_path, fake):
    budget = make(tmp_path, fake)
    budget.acquire(deadline=fake.now)
    fake.now = 10.0  # monotonic clock restarted
    with pytest.raises(BudgetExhausted):
        budget.acquire(deadline=fake.now + 0.1)


def test_bucket_file_is_private(tmp_path, fake):
    budget = make(tmp_path, fake)
    budget.acquire(deadline=fake.now)
    assert stat.S_IMODE(os.stat(budget.path).st_mode) == 0o600


def test_rejects_a_burst_that_leaves_nothing_to_refill(tmp_path, fake):
    with pytest.raises(ValueError):
        make(tmp_path, fake, burst=12)


def test_lock_held_elsewhere_does_not_block_past_the_deadline(tmp_path):
    budget = RequestBudget(tmp_path / "bucket", limit=10, window_s=1, burst=2)
    fd = os.open(budget.path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a stuck holder (e.g. a SIGSTOPped worker)
        started = time.monotonic()
        with pytest.raises(BudgetExhausted, match="lock held"):
            budget.acquire(deadline=started + 0.2)
        assert time.monotonic() - started < 0.2 + 0.1
    finally:
        os.close(fd)
    budget.acquire(deadline=time.monotonic() + 0.2)


# -- real processes ---------------------------------------------------------

LIMIT, WINDOW, BURST, RUN_FOR, PROCESSES = 20, 0.5, 4, 1.25, 4


def _hammer(path, stop_at, out):
    """Child: take tokens as fast as the bucket allows until stop_at; write grant times."""
    budget = RequestBudget(path, limit=LIMIT, window_s=WINDOW, burst=BURST)
    grants = []
    while time.monotonic() < stop_at:
        try:
            grants.append(budget.acquire(deadline=min(stop_at, time.monotonic() + 0.3)))
        except BudgetExhausted:
            pass
    with open(out, "w") as f:
        json.dump(grants, f)


@pytest.fixture
def spawned():
    procs = []
    yield procs
    for proc in procs:
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=5)


def test_processes_hammering_the_bucket_never_exceed_the_limit_in_any_window(tmp_path, spawned):
    ctx = multiprocessing.get_context("fork")  # no re-import: the test measures the bucket
    path = str(tmp_path / "bucket")
    stop_at = time.monotonic() + RUN_FOR
    outs = [tmp_path / f"grants-{i}.json" for i in range(PROCESSES)]
    for out in outs:
        proc = ctx.Process(target=_hammer, args=(path, stop_at, str(out)), daemon=True)
        spawned.append(proc)
        proc.start()
    for proc in spawned:
        proc.join(timeout=stop_at - time.monotonic() + 10)
        assert proc.exitcode == 0, f"hammer process {proc.pid} ended with {proc.exitcode}"

    per_process = [json.loads(out.read_text()) for out in outs]
    grants = sorted(t for times in per_process for t in times)
    worst = max(bisect.bisect_left(grants, t + WINDOW) - i for i, t in enumerate(grants))
    assert worst <= LIMIT, f"{worst} grants within {WINDOW}s, limit {LIMIT}"
    ceiling = BURST + (LIMIT - BURST) / WINDOW * RUN_FOR
    assert len(grants) >= 0.8 * ceiling, f"only {len(grants)} of ~{ceiling:.0f} possible grants"
    assert all(per_process), "a process got no token at all"
