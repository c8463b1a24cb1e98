"""The shipped unit under a real systemd (marker `systemd`; run with `make test-systemd`).

Each test boots systemd as PID 1 of its own PID, mount and cgroup namespaces,
chrooted into an overlay of a cached minimal Debian root (tests/systemd_root.py),
installs systemd/market-data-worker.service there unchanged, and drives it with
systemctl run inside those namespaces. The host's interpreter and this checkout
(with its .venv) are bind-mounted read-only at their own paths, and
/opt/market-data-worker/venv points at that venv.

The one drop-in every test adds (DROP_IN): the borrowed interpreter lives under
/root, which the unit's ProtectHome=yes hides, so the test uses ProtectHome=tmpfs
(every home directory still hidden) with the interpreter bind-mounted back
read-only; and WatchdogSec=3 instead of 30, for speed. The supervisor runs a test
config of `faulty` workers with fast timeouts, one of them importing pandas, so
numpy and pandas run under MemoryDenyWriteExecute and the system call filter.
"""
import json
import os
import re
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests import configs
from tests.systemd_root import Machine, ensure_root, poll

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(900)]  # a cold first run builds the Debian root

REPO = Path(__file__).resolve().parents[1]
UNIT_FILE = REPO / "systemd" / "market-data-worker.service"
SERVICE = "market-data-worker.service"
PROBE = "mdw-probe.service"
INSTALL_DIR = "/opt/market-data-worker"
CONFIG = "/etc/market-data-worker/config.toml"
TEST_DIR = "/opt/mdw-test"  # modules for the test workers, and the hardening probe
WATCHDOG_SEC = 3
RESTART_SEC = 5  # the unit's own
SLOW_START_S = 3.0
STOP_TIMEOUT = configs.FAST["stop_timeout"]
SUPERVISOR = {"startup_timeout": 15.0, "heartbeat_timeout": 2.0}
API_TOKEN = "from-the-env-file"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
PIP_NETWORK_VARS = ("PIP_CERT", "PIP_INDEX_URL", "PIP_DEFAULT_TIMEOUT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
                    "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")


def healthy(**options):
    return {"kind": "faulty", "interval": 1.0, "mode": "healthy", **options}


# "numeric" imports pandas (and numpy) in a child of the hardened service; "steady" has
# an RSS limit, so the supervisor reads its memory with psutil under ProtectProc=invisible.
WORKERS = {"steady": healthy(max_rss_mb=2000), "numeric": healthy(import_modules=["pandas"])}


# -- the machine --------------------------------------------------------------------


@pytest.fixture(scope="session")
def debian_root():
    if os.geteuid() != 0:
        pytest.skip("booting systemd in namespaces needs root")
    missing = [tool for tool in ("debootstrap", "unshare", "nsenter") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: `make test-systemd` installs them (Debian packages "
                    "debootstrap and util-linux)")
    if sys.prefix == sys.base_prefix:
        pytest.fail("run the tests with the project's venv interpreter (make test-systemd)")
    if Path(sys.base_prefix) == Path("/usr"):
        pytest.skip("the interpreter is the system's own (/usr): it cannot be bind-mounted into the Debian root")
    return ensure_root(log=lambda line: print(line, file=sys.stderr))


@pytest.fixture
def boot(debian_root, tmp_path):
    """boot(workers, config_text=None) -> a booted Machine with the service installed (not started)."""
    machines = []

    def make(workers=WORKERS, config_text=None, **supervisor):
        machine = Machine(debian_root, tmp_path / f"machine{len(machines)}")
        machines.append(machine)
        install(machine, config_text or configs.to_toml(configs.tables(workers, **{**SUPERVISOR, **supervisor})))
        return machine.boot()

    yield make
    for machine in machines:
        machine.shutdown()


def install(machine, config_text):
    """What systemd/install.sh would put in place, with the host's venv standing in for its own."""
    venv, base = Path(sys.prefix), Path(sys.base_prefix)
    sources = [REPO, base] + ([] if REPO in venv.parents else [venv])
    for source in sources:
        machine.add_bind(source)
    machine.add_symlink(f"{INSTALL_DIR}/venv", str(venv))
    machine.add_file(f"/etc/systemd/system/{SERVICE}", UNIT_FILE.read_text())
    machine.add_file(CONFIG, config_text)
    machine.add_file("/etc/market-data-worker/env", f"MDW_API_TOKEN={API_TOKEN}\n", mode=0o600)
    machine.add_file(f"{TEST_DIR}/mdw_test_slow_start.py",
                     f'"""Delays a test worker\'s first beat."""\nimport time\n\ntime.sleep({SLOW_START_S})\n')
    machine.add_file(f"{TEST_DIR}/probe.py", PROBE_SCRIPT)
    borrowed = "\n".join(f"BindReadOnlyPaths={source}" for source in sources)
    drop_in = f"[Service]\nProtectHome=tmpfs\n{borrowed}\n"
    machine.add_file(f"/etc/systemd/system/{SERVICE}.d/test.conf",
                     drop_in + f"WatchdogSec={WATCHDOG_SEC}\nEnvironment=PYTHONPATH={TEST_DIR}\n"
                     "Environment=MDW_DRILLS=1\n")  # the faulty test workers are drill kinds
    probe_unit = re.sub(r"(?m)^ExecStart=.*$", f"ExecStart={INSTALL_DIR}/venv/bin/python {TEST_DIR}/probe.py",
                        UNIT_FILE.read_text())
    machine.add_file(f"/etc/systemd/system/{PROBE}", probe_unit)
    machine.add_file(f"/etc/systemd/system/{PROBE}.d/test.conf", drop_in + "Restart=no\n")


def start(machine):
    """systemctl start: returns once systemd has READY=1 (Type=notify)."""
    result = machine.systemctl("start", SERVICE, check=False, timeout=60)
    assert result.returncode == 0, result.stderr + machine.journal(SERVICE)[-5000:]
    return machine.show(SERVICE, "MainPID", "NRestarts", "ActiveState", "SubState")


def workers(machine):
    """{worker name: its pid} of the machine's `mdw:NAME` children."""
    return {p["name"][4:]: p["pid"] for p in machine.processes() if p["name"].startswith("mdw:")}


def wait_journal(machine, unit, pattern, timeout=10):
    """The unit's journal once regex `pattern` is in it (journald writes asynchronously)."""
    return poll(lambda: re.search(pattern, machine.journal(unit)) and machine.journal(unit), timeout, 0.1,
                what=lambda: f"{pattern!r} in the journal of {unit}:\n{machine.journal(unit)[-4000:]}")


def wait_status(machine, text, timeout=15):
    poll(lambda: machine.show(SERVICE, "StatusText")["StatusText"] == text, timeout, 0.1,
         what=lambda: f"STATUS={text!r}; it is {machine.show(SERVICE, 'StatusText')}")


# -- the tests ----------------------------------------------------------------------


def test_service_is_active_only_after_ready_and_shows_its_status_line(boot):
    machine = boot({"slow": healthy(import_modules=["mdw_test_slow_start", "pandas"]), "steady": healthy()})
    machine.systemctl("start", "--no-block", SERVICE)
    seen = []

    def running():
        props = machine.show(SERVICE, "ActiveState", "SubState")
        state = (props["ActiveState"], props["SubState"])
        if not seen or seen[-1] != state:
            seen.append(state)
        return state == ("active", "running")

    poll(running, 60, 0.1, what=lambda: f"active (running); seen {seen}\n{machine.journal(SERVICE)[-3000:]}")
    assert seen.index(("activating", "start")) < seen.index(("active", "running")), seen
    times = machine.show(SERVICE, "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic")
    waited = (int(times["ActiveEnterTimestampMonotonic"]) - int(times["ExecMainStartTimestampMonotonic"])) / 1e6
    assert waited >= SLOW_START_S, f"active {waited:.2f}s after start, before the slow worker's first beat"
    wait_status(machine, "2/2 healthy")
    status = machine.systemctl("status", SERVICE).stdout
    assert "Active: active (running)" in status, status
    assert 'Status: "2/2 healthy"' in status, status
    journal = wait_journal(machine, SERVICE, "ready: 2/2 healthy")
    assert "systemd variables inherited: none" in journal, "a child saw NOTIFY_SOCKET or WATCHDOG_*"
    assert "systemd variables inherited: NOTIFY" not in journal
    assert set(workers(machine)) == {"slow", "steady"}


def test_frozen_supervisor_is_killed_by_the_watchdog_and_the_service_restarted(boot):
    machine = boot()
    before = start(machine)
    assert machine.show(SERVICE, "WatchdogUSec")["WatchdogUSec"] == f"{WATCHDOG_SEC}s"
    old_main, old_workers = int(before["MainPID"]), workers(machine)
    old_hosts = {machine.host_pid(pid) for pid in old_workers.values()}
    os.kill(machine.host_pid(old_main), signal.SIGSTOP)
    frozen_at = time.monotonic()
    poll(lambda: machine.show(SERVICE, "ActiveState")["ActiveState"] != "active", WATCHDOG_SEC + 5, 0.05,
         what="systemd to notice the frozen supervisor")
    noticed = time.monotonic() - frozen_at
    assert noticed <= WATCHDOG_SEC + 1.0, f"the watchdog fired {noticed:.1f}s after the freeze"

    def restarted():
        props = machine.show(SERVICE, "ActiveState", "MainPID", "NRestarts")
        return props if props["ActiveState"] == "active" and int(props["MainPID"]) not in (0, old_main) else None

    after = poll(restarted, RESTART_SEC + 30, 0.1, what=lambda: machine.journal(SERVICE)[-3000:])
    assert after["NRestarts"] == "1"
    wait_journal(machine, SERVICE, r"Watchdog timeout \(limit 3s\)")
    alive = {p["host_pid"] for p in machine.processes()}
    assert not old_hosts & alive, "a worker of the frozen supervisor survived its restart"
    poll(lambda: set(workers(machine)) == set(WORKERS), 15, what=lambda: f"new workers, have {workers(machine)}")


def test_killed_worker_is_respawned_by_mdwd_without_restarting_the_service(boot):
    machine = boot()
    before = start(machine)
    wait_status(machine, "2/2 healthy")
    victim = workers(machine)["steady"]
    os.kill(machine.host_pid(victim), signal.SIGKILL)
    poll(lambda: workers(machine).get("steady") not in (None, victim), 15, 0.05,
         what=lambda: f"a new mdw:steady; have {workers(machine)}\n{machine.journal(SERVICE)[-3000:]}")
    wait_status(machine, "2/2 healthy")
    after = machine.show(SERVICE, "MainPID", "NRestarts", "ActiveState", "SubState")
    assert (after["MainPID"], after["NRestarts"]) == (before["MainPID"], "0")
    assert (after["ActiveState"], after["SubState"]) == ("active", "running")
    wait_journal(machine, SERVICE, rf"steady: pid {victim} ended: SIGKILL")


def test_stop_ends_every_process_within_the_supervisors_stop_timeout(boot):
    stubborn = {"kind": "faulty", "interval": 60.0, "mode": "ignore_term", "heartbeat_timeout": 60.0,
                "stale_cycles": 0}
    forker = {**stubborn, "mode": "grandchild_ignores_term"}
    machine = boot({"steady": healthy(), "stubborn": stubborn, "forker": forker})
    start(machine)

    def forker_and_grandchild():
        return [p for p in machine.processes() if p["name"] == "mdw:forker"]

    poll(lambda: len(forker_and_grandchild()) == 2, 15, what=lambda: f"the grandchild: {machine.processes()}")
    service_uid = forker_and_grandchild()[0]["uid"]
    assert service_uid != 0
    began = time.monotonic()
    machine.systemctl("stop", SERVICE, timeout=60)
    took = time.monotonic() - began
    assert took < STOP_TIMEOUT + 3.0, f"systemctl stop took {took:.1f}s"
    props = machine.show(SERVICE, "ActiveState", "Result", "ExecMainStatus")
    assert props == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    left = [p for p in machine.processes() if p["uid"] == service_uid or p["name"].startswith("mdw")]
    assert left == []
    journal = wait_journal(machine, SERVICE, "all children stopped; exiting")
    assert re.search(r"stubborn: pid \d+ still alive 1\.0s after SIGTERM; sending SIGKILL", journal), journal
    assert "timed out" not in journal and "Killing process" not in journal, journal


def test_reload_rereads_the_config_without_restarting_the_service(boot):
    machine = boot({"steady": healthy()})
    before = start(machine)
    machine.write(CONFIG, configs.to_toml(configs.tables({"steady": healthy(), "extra": healthy()}, **SUPERVISOR)))
    machine.systemctl("reload", SERVICE)
    poll(lambda: "extra" in workers(machine), 15, what=lambda: machine.journal(SERVICE)[-3000:])
    wait_status(machine, "2/2 healthy")
    after = machine.show(SERVICE, "MainPID", "NRestarts")
    assert (after["MainPID"], after["NRestarts"]) == (before["MainPID"], "0")
    wait_journal(machine, SERVICE, "reload: extra added")


def test_mdwctl_run_by_root_controls_mdwd_through_the_runtime_directory_socket(boot):
    """The control socket under DynamicUser, PrivateUsers and UMask: root passes SO_PEERCRED, mode is 0600."""
    machine = boot()
    start(machine)
    socket_path = "/run/market-data-worker/mdwd.sock"
    owner = machine.run("stat", "-c", "%a %u", socket_path).stdout.split()
    assert owner[0] == "600" and owner[1] != "0", owner
    mdwctl = [f"{INSTALL_DIR}/venv/bin/mdwctl", "--socket", socket_path]
    result = machine.run(*mdwctl, "status")
    assert re.search(r"(?m)^steady\s+RUNNING", result.stdout), result.stdout
    victim = workers(machine)["numeric"]
    machine.run(*mdwctl, "restart", "numeric")
    poll(lambda: workers(machine).get("numeric") not in (None, victim), 15, what="mdwctl restart to take effect")
    assert machine.show(SERVICE, "NRestarts")["NRestarts"] == "0"


def test_bad_config_fails_the_start_without_a_restart_loop(boot):
    machine = boot(config_text="[supervisor]\nheartbeat_timeout = -1\n")
    result = machine.systemctl("start", SERVICE, check=False)
    assert result.returncode != 0
    props = machine.show(SERVICE, "ActiveState", "SubState", "Result", "ExecMainStatus", "NRestarts")
    assert props == {"ActiveState": "failed", "SubState": "failed", "Result": "exit-code", "ExecMainStatus": "2",
                     "NRestarts": "0"}, "exit 2 (bad config) must not be retried every RestartSec"
    wait_journal(machine, SERVICE, r"supervisor\.heartbeat_timeout = -1")


def test_hardening_leaves_mdwd_everything_it_needs(boot):
    """The unit's sandbox, proven from inside by a probe with the same unit text but another ExecStart."""
    machine = boot()
    machine.write("/tmp/mdw-host-marker", "the machine's /tmp, which the unit's PrivateTmp must hide\n")
    result = machine.systemctl("start", PROBE, check=False, timeout=60)
    assert result.returncode == 0, wait_journal(machine, PROBE, "FAILED|Failed")
    assert machine.show(PROBE, "StatusText")["StatusText"] == f"probe: {PROBE_CHECKS} checks passed"
    journal = wait_journal(machine, PROBE, "probe: private_tmp: ok")
    assert journal.count(": ok") == PROBE_CHECKS, journal
    machine.systemctl("stop", PROBE)
    assert machine.show(PROBE, "Result")["Result"] == "success"


def test_the_api_serves_from_inside_the_sandbox_with_the_env_files_token(boot):
    """granian's processes start, listen and answer under the unit's seccomp filter and W^X memory."""
    tables = configs.tables({"steady": healthy(), "api": {"kind": "api", "interval": 1.0}}, **SUPERVISOR)
    tables["api"] = {"port": 0, "processes": 2, "threads": 2}
    machine = boot(config_text=configs.to_toml(tables))
    start(machine)
    wait_status(machine, "2/2 healthy")  # the api worker beats only after answering a request to itself
    serving = r"serving the API on 127\.0\.0\.1:(\d+)"
    port = int(re.search(serving, wait_journal(machine, SERVICE, serving)).group(1))
    names = [p["name"] for p in machine.processes()]
    assert names.count("mdw:api.http") == 3, names  # granian's manager and its two serving processes
    base = f"http://127.0.0.1:{port}"  # the machine shares the host's network
    seen = []

    def health():  # the API's view of the supervisor is up to a second old (its status cache)
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=10) as response:
                seen.append((response.status, json.loads(response.read())))
        except urllib.error.HTTPError as error:
            seen.append((error.code, json.loads(error.read())))
        return seen[-1] == (200, {"status": "healthy"})

    poll(health, 15, 0.2, what=lambda: f"/health to answer 200 healthy; it answered {seen[-3:]}")
    restart = urllib.request.Request(f"{base}/api/workers/steady/restart", method="POST",
                                     headers={"Authorization": f"Bearer {API_TOKEN}"})
    with urllib.request.urlopen(restart, timeout=10) as response:
        assert response.status == 202  # the token came from EnvironmentFile=
    wait_journal(machine, SERVICE, r"steady: pid \d+ ended: SIGTERM \(manual: restart requested\)")
    assert machine.show(SERVICE, "NRestarts")["NRestarts"] == "0"


def host_pip_environment(machine):
    """How this host reaches PyPI (a proxy, the CA bundle of a TLS-inspecting one), for pip inside."""
    passed = [f"{name}={os.environ[name]}" for name in PIP_NETWORK_VARS if os.environ.get(name)]
    if not os.environ.get("PIP_CERT") and Path(HOST_CA_BUNDLE).exists():
        passed.append(f"PIP_CERT={HOST_CA_BUNDLE}")
    if Path(HOST_CA_BUNDLE).parent.is_dir():
        machine.add_bind(Path(HOST_CA_BUNDLE).parent)
    return passed


def test_install_script_sets_up_the_service_as_shipped(debian_root, tmp_path):
    """systemd/install.sh with Debian's own Python; the unit runs without any drop-in."""
    machine = Machine(debian_root, tmp_path / "machine")
    try:
        source = "/usr/src/market-data-worker"
        shutil.copytree(REPO, machine.upper / source.lstrip("/"), symlinks=True, ignore=shutil.ignore_patterns(
            ".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".work"))
        shipped_kinds = {"watchlist": {"kind": "watchlist", "interval": 5.0}, "macd": {"kind": "macd", "interval": 5.0}}
        machine.add_file(CONFIG, configs.to_toml(configs.tables(shipped_kinds, **SUPERVISOR)))  # kept by install.sh
        pip_cache = debian_root.parent / "pip-cache"  # beside the root, reused by later runs
        pip_cache.mkdir(exist_ok=True)
        machine.add_bind(pip_cache, "/var/cache/mdw-pip", read_only=False)
        pip_env = host_pip_environment(machine)
        machine.boot()
        result = machine.run("env", "PIP_CACHE_DIR=/var/cache/mdw-pip", "PIP_DISABLE_PIP_VERSION_CHECK=1", *pip_env,
                             "bash", f"{source}/systemd/install.sh", check=False, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr + machine.journal(SERVICE)[-3000:]
        props = machine.show(SERVICE, "ActiveState", "SubState", "DropInPaths", "UnitFileState", "MainPID")
        assert (props["ActiveState"], props["SubState"], props["DropInPaths"]) == ("active", "running", "")
        assert props["UnitFileState"] == "enabled"
        assert machine.run("cat", f"/etc/systemd/system/{SERVICE}").stdout == UNIT_FILE.read_text()
        exe = machine.run("readlink", f"/proc/{props['MainPID']}/exe").stdout.strip()
        assert exe.startswith("/usr/bin/python3"), exe
        wait_status(machine, "2/2 healthy")
        env_file = machine.run("stat", "-c", "%a %U", "/etc/market-data-worker/env").stdout.split()
        assert env_file == ["600", "root"]
        assert "[workers.macd]" in machine.run("cat", CONFIG).stdout, "install.sh replaced an existing config"
    finally:
        machine.shutdown()


# -- the probe: runs inside the hardened unit ---------------------------------------------

PROBE_CHECKS = 7
PROBE_SCRIPT = f'''"""Hardening probe for tests/test_systemd_real.py: everything mdwd does, inside the sandbox."""
import mmap
import os
import signal
import socket
import sqlite3
import struct
import sys
import time

from supervisor.shared import linux
from supervisor.host import PosixHost
from supervisor.notify import SystemdNotifier


def confined():
    status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
    assert os.getuid() != 0 and os.geteuid() != 0, "runs as root"
    assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2", status
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, status
    assert os.umask(0o077) == 0o077
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except PermissionError:
        pass
    else:
        raise AssertionError("writable+executable memory was allowed: MemoryDenyWriteExecute is off")
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)
    except OSError:
        pass
    else:
        raise AssertionError("AF_NETLINK was allowed: RestrictAddressFamilies is off")
    assert os.environ.get("MDW_API_TOKEN") == "{API_TOKEN}", "EnvironmentFile not read"


def prctl_fork_and_group_kill():
    linux.set_child_subreaper()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)
            linux.set_parent_death_signal(signal.SIGKILL)
            linux.set_process_name("mdw:probe-child")
            os.write(w, b"x")
            time.sleep(60)
        finally:
            os._exit(0)
    os.read(r, 1)
    assert open(f"/proc/{{pid}}/comm").read().strip() == "mdw:probe-child"
    assert os.getpgid(pid) == pid
    assert PosixHost.tree_rss_mb(os.getpid()) > 0  # psutil over our own tree
    os.killpg(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM, status


def control_socket_with_peer_credentials():
    path = os.path.join(os.environ["RUNTIME_DIRECTORY"], "mdwd.sock")
    assert path == "/run/market-data-worker/mdwd.sock", path
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    assert os.stat(path).st_mode & 0o077 == 0, oct(os.stat(path).st_mode)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(path)
    conn, _ = server.accept()
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    assert struct.unpack("3i", creds) == (os.getpid(), os.getuid(), os.getgid())


def state_directory_holds_sqlite():
    assert os.environ["STATE_DIRECTORY"] == "/var/lib/market-data-worker"
    db = sqlite3.connect(os.path.join(os.environ["STATE_DIRECTORY"], "probe.sqlite"))
    assert db.execute("pragma journal_mode=wal").fetchone() == ("wal",)
    db.execute("create table t (x)")
    db.execute("insert into t values (1)")
    db.commit()
    for read_only in ("/usr", "/etc", "/opt"):
        assert not os.access(read_only, os.W_OK), read_only


def loopback_tcp():
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname(), timeout=5)
    conn, _ = server.accept()
    client.sendall(b"ping")
    assert conn.recv(4) == b"ping"


def numpy_and_pandas():
    import numpy
    import pandas

    frame = pandas.DataFrame({{"close": numpy.linspace(1.0, 2.0, 500)}})
    ema = frame["close"].ewm(span=12, adjust=False).mean()
    assert numpy.isfinite(ema.to_numpy()).all()


def private_tmp():
    with open("/tmp/probe", "w") as f:
        f.write("x")
    assert not os.path.exists("/tmp/mdw-host-marker")


CHECKS = [confined, prctl_fork_and_group_kill, control_socket_with_peer_credentials,
          state_directory_holds_sqlite, loopback_tcp, numpy_and_pandas, private_tmp]
assert len(CHECKS) == {PROBE_CHECKS}

failed = 0
for check in CHECKS:
    try:
        check()
        print(f"probe: {{check.__name__}}: ok", flush=True)
    except Exception as e:
        failed += 1
        print(f"probe: {{check.__name__}}: FAILED: {{e!r}}", flush=True)
if failed:
    sys.exit(1)
signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGTERM}})
SystemdNotifier(time.monotonic()).send_ready(f"probe: {{len(CHECKS)}} checks passed")
signal.sigwait({{signal.SIGTERM}})
'''
