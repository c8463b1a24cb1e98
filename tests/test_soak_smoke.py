"""Keep the chaos soak (tests/soak/) from rotting: its accounting, and a short run of the real thing.

The short run checks the harness, not the service: it must finish (exit 0
PASS or 1 FAIL, never 2, the soak's own failure), apply faults, send traffic,
print its figures, name every violation by a check it knows, and leave
neither a process of its tree nor its directory behind. What the service
does wrong is the soak's report to read, not this test's to judge.
"""
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.soak.ledger import Span, raw_gaps, stretches
from tests.soak.tree import has_tag

import psutil

CHECKS = {"dataset-gap", "http-5xx", "fd-growth", "rss-growth", "zombie", "leftover", "shutdown", "second-sigterm",
          "integrity", "mdwd-died", "broken-reload", "reload", "control", "api-restart"}


def test_a_fault_excuses_a_gap_only_until_its_limit_starts_again():
    spans = [Span(25, 25, "SIGKILL", "w"), Span(70, 80, "SIGSTOP", "w")]
    owed = [(s.start, s.end) for s in stretches([10, 20, 60], spans, 0, 100)]
    assert owed == [(0, 10), (10, 20), (20, 25), (25, 60), (60, 70), (80, 100)]


def test_a_stretch_starts_at_the_last_write_before_observation():
    assert [(s.start, s.end) for s in stretches([3, 30], [], 5, 40)] == [(3, 30), (30, 40)]
    assert raw_gaps([3, 30], 5, 40) == [27, 10]


def test_an_open_fault_owes_nothing_until_it_ends():
    assert [(s.start, s.end) for s in stretches([], [Span(5, float("inf"), "lock", "db")], 0, 50)] == [(0, 5)]


@pytest.mark.slow
def test_a_short_soak_runs_applies_faults_passes_and_leaves_nothing_behind():
    """The harness itself, kept from rotting (make soak, in CI, runs it for minutes): a 12 s run of every
    fault class must pass; 12 s is shorter than any dataset's gap limit, so a failure is a broken promise."""
    tag = uuid.uuid4().hex
    done = subprocess.run([sys.executable, "-m", "tests.soak", "--minutes", "0.2", "--seed", "20240601", "--quiet",
                           "--tag", tag],
                          capture_output=True, text=True, timeout=110, cwd=Path(__file__).parent.parent)
    out = done.stdout
    assert done.returncode == 0, f"exit {done.returncode}:\n{out}\n{done.stderr}"
    assert re.search(r"===== mdw soak: PASS =====", out), out
    assert int(re.search(r"faults applied \((\d+)\)", out).group(1)) > 0, out
    assert int(re.search(r"HTTP requests \((\d+)\)", out).group(1)) > 0, out
    assert "integrity_check: ok" in out, out
    checks = re.findall(r"^  \+\s*[\d.]+s ([a-z0-9-]+): ", out.split("violations (", 1)[1], re.M)
    assert set(checks) <= CHECKS, out
    directory = re.search(r"dir (\S+)", out).group(1)
    assert not Path(directory).exists()
    assert not [p.pid for p in psutil.process_iter() if has_tag(p, tag)]
