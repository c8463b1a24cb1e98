"""The systemd unit, checked offline with systemd-analyze (runs in plain `make test`).

`systemd-analyze verify` insists that ExecStart's binary exists, and
/opt/market-data-worker/venv/bin/mdwd exists only after systemd/install.sh; so
verify runs on a copy whose ExecStart names this test's own interpreter. Every
other line is the shipped file's. The real behaviour under a running systemd is
tests/test_systemd_real.py's job (`make test-systemd`).
"""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "market-data-worker.service"
ENV_EXAMPLE = UNIT.with_name("env.example")
EXPOSURE_OK_MAX = 4.9  # systemd-analyze's bands: SAFE < 1.0 <= OK < 5.0 <= MEDIUM
EXPOSURE_TARGET = 1.5  # what the shipped unit scores today; a regression above it must be deliberate

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian package 'systemd')",
)


def analyze(*args):
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def verifiable_unit(tmp_path):
    """A copy of the unit under its own name whose ExecStart binary exists on this machine."""
    text = UNIT.read_text()
    text, count = re.subn(r"(?m)^ExecStart=\S+", f"ExecStart={sys.executable}", text)
    assert count == 1
    path = tmp_path / UNIT.name
    path.write_text(text)
    return path


def directives(path=UNIT):
    """{(section, key): [values]} of a unit file; repeated keys keep every value."""
    values = {}
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        values.setdefault((section, key.strip()), []).append(value.strip())
    return values


def test_systemd_analyze_verify_accepts_the_unit(verifiable_unit):
    result = analyze("verify", str(verifiable_unit))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_security_exposure_is_in_the_ok_band_or_better(verifiable_unit):
    result = analyze("security", "--offline=yes", "--no-pager", str(verifiable_unit))
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout
    exposure, band = float(match.group(1)), match.group(2)
    assert band in ("PERFECT", "SAFE", "OK"), result.stdout
    assert exposure <= EXPOSURE_OK_MAX
    assert exposure <= EXPOSURE_TARGET, f"exposure rose to {exposure} {band}:\n{result.stdout}"


@pytest.mark.parametrize("key, value", [
    ("Type", "notify"),
    ("NotifyAccess", "main"),
    ("WatchdogSec", "30"),
    ("Restart", "on-failure"),
    ("RestartSec", "5"),
    ("KillMode", "mixed"),
    ("StateDirectory", "market-data-worker"),
    ("RuntimeDirectory", "market-data-worker"),
    ("DynamicUser", "yes"),
    ("EnvironmentFile", "-/etc/market-data-worker/env"),
    ("ExecStart", "/opt/market-data-worker/venv/bin/mdwd --config /etc/market-data-worker/config.toml"),
    ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ("SystemCallFilter", "@system-service"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectControlGroups", "yes"),
    ("RestrictNamespaces", "yes"),
    ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("CapabilityBoundingSet", ""),
    ("UMask", "0077"),
    ("RestartPreventExitStatus", "2"),
    ("OOMPolicy", "continue"),
])
def test_unit_sets_the_directives_the_service_relies_on(key, value):
    assert value in directives().get(("Service", key), []), f"[Service] {key}={value} missing"


def test_memory_is_capped():
    (value,) = directives()[("Service", "MemoryMax")]
    assert re.fullmatch(r"\d+[KMGT]?", value)


def test_stop_timeout_leaves_room_for_the_supervisors_own():
    """systemd must not SIGKILL mdwd while it is still stopping its children (stop_timeout 5 s)."""
    (value,) = directives()[("Service", "TimeoutStopSec")]
    assert float(value) >= 3 * 5


def test_watchdog_is_fed_well_within_its_limit():
    """mdwd pings every WatchdogSec/2; the start timeout covers the default startup_timeout of 30 s."""
    values = directives()
    assert float(values[("Service", "TimeoutStartSec")][0]) > 30
    assert values[("Install", "WantedBy")] == ["multi-user.target"]


def test_env_example_documents_only_commented_or_empty_settings():
    """The example must be safe to copy as is: no real secret, every variable explained."""
    settings = [line for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")]
    for line in settings:
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), line
        assert value == "", f"{key} carries a value in the example"
    assert any(line.startswith("MDW_API_TOKEN=") for line in settings)



def test_every_file_install_sh_takes_from_the_checkout_exists():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    script = (root / "systemd" / "install.sh").read_text()
    unit = re.search(r'^UNIT=(\S+)', script, re.M)
    paths = {p.replace("$UNIT", unit.group(1).strip('"') if unit else "$UNIT")
             for p in re.findall(r'"\$SRC/([^"]+)"', script)}
    assert "workers/default_config.toml" in paths
    assert [p for p in sorted(paths) if not (root / p).is_file()] == []
