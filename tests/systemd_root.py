"""A real systemd for the tests: a cached minimal Debian root, booted in its own namespaces.

`ensure_root()` builds the root once with debootstrap (into a temporary directory
beside the cache, renamed into place when complete) and reuses it while its recipe
is unchanged. `Machine` boots systemd as PID 1 of a fresh PID, mount and cgroup
namespace whose root (pivot_root, not merely chroot) is an overlay of that Debian
root, so nothing a test does reaches the cache or the host: the overlay's upper
layer and the console log live in the test's own directory; /run and /tmp are
the namespace's own tmpfs; /dev/console is a pty whose output the test keeps; and
systemd's cgroups sit under a cgroup of ours that is emptied and removed after.
`unshare --kill-child` and a finalizer that SIGKILLs the namespace's PID 1 (the
kernel then kills everything in it) make sure nothing started there outlives
the test.

The project is not installed into the root: the host's interpreter and the
checkout (with its .venv) are bind-mounted read-only at their own paths, so the
venv's absolute paths resolve; the test links /opt/market-data-worker/venv, where
the shipped unit expects the install, to that venv.
"""
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import tty
import uuid
from pathlib import Path

from tests.proctree import poll

CACHE_DIR = Path(os.environ.get("MDW_SYSTEMD_ROOT_CACHE", "/var/cache/mdw-systemd-root"))
SUITE = "bookworm"
# systemd itself, procps for the unit's /bin/kill, Debian's own Python for systemd/install.sh,
# and the shared libraries that the host's CPython and the venv's wheels (numpy, pandas,
# psutil) link against.
PACKAGES = (
    "systemd", "procps", "python3", "python3-venv",
    "libbz2-1.0", "libexpat1", "libffi8", "libgcc-s1", "liblzma5", "libncursesw6", "libreadline8",
    "libsqlite3-0", "libssl3", "libstdc++6", "libuuid1", "zlib1g",
)
RECIPE_VERSION = 1  # bump when the build steps below change
COMPLETE_MARK = ".mdw-root-complete"
CONTAINER_NAME = "mdw-test"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


# -- the cached root --------------------------------------------------------------


def recipe_key():
    recipe = f"{SUITE} {' '.join(sorted(PACKAGES))} {RECIPE_VERSION}"
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def root_path(cache_dir=CACHE_DIR):
    return Path(cache_dir) / f"{SUITE}-{recipe_key()}"


def is_valid_root(path):
    mark = Path(path) / COMPLETE_MARK
    return mark.is_file() and mark.read_text().strip() == recipe_key() and (Path(path) / "lib/systemd/systemd").exists()


def ensure_root(cache_dir=CACHE_DIR, log=print):
    """The path of a complete Debian root for this recipe, building it first if needed."""
    final = root_path(cache_dir)
    if is_valid_root(final):
        return final
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be building the same root
        if is_valid_root(final):
            return final
        _remove_stale(cache_dir, keep=final)
        build = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir))
        try:
            _debootstrap(build / "root", log)
            (build / "root" / COMPLETE_MARK).write_text(recipe_key() + "\n")
            os.rename(build / "root", final)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return final


def _remove_stale(cache_dir, keep):
    """Older recipes and builds that died half-way (we hold the lock, so none is running)."""
    for entry in cache_dir.iterdir():
        ours = entry.name.startswith((".build-", SUITE + "-"))
        if ours and entry != keep and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
    if keep.exists():  # present but incomplete or from another recipe
        shutil.rmtree(keep)


def _debootstrap(target, log):
    started = time.monotonic()
    log(f"building the Debian root for the systemd tests in {target} (once; cached afterwards)")
    command = ["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE, str(target)]
    mirror = os.environ.get("MDW_DEBIAN_MIRROR")
    if mirror:
        command.append(mirror)
    result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1200)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-4000:]
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{output}")
    log(f"Debian root built in {time.monotonic() - started:.0f}s")


# -- a booted systemd -------------------------------------------------------------


def _cgroup2_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] == "cgroup2":
                return Path(fields[4])
    raise RuntimeError("no cgroup2 file system is mounted on this machine; systemd needs one")


def _own_cgroup():
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip().lstrip("/")
    return ""


class Machine:
    """One systemd booted in its own namespaces, on an overlay of `root` under `workdir`."""

    def __init__(self, root, workdir):
        self.root = Path(root)
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.upper, self.ovl_work, self.merged = self.dir / "upper", self.dir / "ovl-work", self.dir / "merged"
        for d in (self.upper, self.ovl_work, self.merged):
            d.mkdir(mode=0o755)
            d.chmod(0o755)  # the upper layer's top directory becomes the machine's "/"
        self.console_path = self.dir / "console.log"
        self.console_path.touch()
        self.console_tty = None  # the pty whose other end is the machine's /dev/console
        self.console_reader = None  # `cat` copying what arrives there into console_path
        self.binds = []  # (host path, path inside, read-only)
        self.cgroup = _cgroup2_mount() / _own_cgroup() / f"mdw-systemd-test-{uuid.uuid4().hex[:8]}"
        self.proc = None
        self.pid1 = None  # systemd's pid as the host sees it
        self.pidns = None

    # -- before boot: what the machine holds besides the Debian root ---------------

    def add_file(self, path, text, mode=0o644):
        """Place a file in the machine (written into the overlay's upper layer before boot)."""
        target = self._upper(path)
        target.write_text(text)
        target.chmod(mode)

    def add_symlink(self, path, points_to):
        os.symlink(points_to, self._upper(path))

    def add_bind(self, host_path, inside=None, read_only=True):
        self.binds.append((str(host_path), str(inside or host_path), read_only))

    def _upper(self, path):
        assert self.proc is None, "files are placed before boot"
        target = self.upper / str(path).lstrip("/")
        for parent in reversed(target.relative_to(self.upper).parents[:-1]):
            (self.upper / parent).mkdir(mode=0o755, exist_ok=True)
        return target

    # -- boot and shutdown ---------------------------------------------------------

    def boot(self, timeout=60):
        self.add_symlink("/etc/systemd/system/console-getty.service", "/dev/null")  # nobody logs in
        self.add_file("/etc/systemd/journald.conf.d/console.conf", "[Journal]\nForwardToConsole=yes\n")
        self._open_console()
        script = self.dir / "boot.sh"
        script.write_text(self._boot_script())
        self.cgroup.mkdir()
        enter_cgroup = f'echo $$ > "{self.cgroup}/cgroup.procs" && exec "$@"'
        command = ["sh", "-c", enter_cgroup, "sh", "unshare", "--fork", "--pid", "--mount", "--cgroup",
                   "--propagation", "private", "--kill-child", "bash", str(script)]
        with open(self.dir / "unshare.log", "wb") as out:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, env={"PATH": PATH})
        self.pid1 = poll(self._find_pid1, 20, what=self._boot_failure)
        self.pidns = os.readlink(f"/proc/{self.pid1}/ns/pid")
        poll(lambda: self.run("systemctl", "is-system-running", check=False).stdout.strip() not in ("", "offline"),
             timeout, 0.1, what=self._boot_failure)
        state = self.run("systemctl", "is-system-running", "--wait", check=False, timeout=timeout).stdout.strip()
        if state != "running":
            failed = self.run("systemctl", "list-units", "--failed", "--no-legend", check=False).stdout
            raise AssertionError(f"systemd booted into state {state!r}; failed units:\n{failed}\n"
                                 f"{self.console()[-3000:]}")
        return self

    def _boot_script(self):
        m = self.merged
        lines = [
            "set -euo pipefail",
            f"mount -t overlay overlay -o lowerdir={self.root},upperdir={self.upper},workdir={self.ovl_work} {m}",
            f"mount -t proc -o nosuid,nodev,noexec proc {m}/proc",
            f"mount -t sysfs -o ro,nosuid,nodev,noexec sysfs {m}/sys",
            f"mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 {m}/sys/fs/cgroup",
            f"mount -t tmpfs -o mode=755,nosuid,nodev tmpfs {m}/run",
            f"mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs {m}/tmp",
            f"mount -t tmpfs -o mode=755,nosuid tmpfs {m}/dev",
            f"for d in {' '.join(DEVICES)}; do touch {m}/dev/$d; mount --bind /dev/$d {m}/dev/$d; done",
            f"mkdir -m 755 {m}/dev/pts && mkdir -m 1777 {m}/dev/shm",
            f"mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts {m}/dev/pts && ln -s pts/ptmx {m}/dev/ptmx",
            f"mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs {m}/dev/shm",
            f"ln -s /proc/self/fd {m}/dev/fd",
            f"touch {m}/dev/console && mount --bind {os.ttyname(self.console_tty)} {m}/dev/console",
        ]
        if os.path.exists("/etc/resolv.conf"):  # the host's resolver, as it is today
            lines.append(f"mount --bind -o ro /etc/resolv.conf {m}/etc/resolv.conf")
        for host_path, inside, read_only in self.binds:
            target = f"{m}/{inside.lstrip('/')}"
            lines.append(f"mkdir -p '{target}' && mount --bind {'-o ro ' if read_only else ''}'{host_path}' '{target}'")
        # pivot_root rather than chroot: the kernel refuses to create a user namespace (PrivateUsers=)
        # for a chrooted process, and systemd runs best when "/" is its mount namespace's root.
        lines += [f"cd {m}", "pivot_root . mnt", "cd /", "umount -l /mnt",
                  f"exec /usr/bin/env -i container={CONTAINER_NAME} PATH={PATH} /lib/systemd/systemd"]
        return "\n".join(lines) + "\n"

    def _open_console(self):
        """systemd and journald write only to a terminal: give them a pty and log what they write."""
        master, self.console_tty = os.openpty()
        tty.setraw(self.console_tty)  # no CR added to each line
        with open(self.console_path, "ab") as log:
            self.console_reader = subprocess.Popen(["cat"], stdin=master, stdout=log, start_new_session=True)
        os.close(master)

    def _find_pid1(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"the namespace ended at once ({self.proc.returncode}):\n{self._boot_failure()}")
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            if children and Path(f"/proc/{children[0]}/comm").read_text().strip() == "systemd":
                return int(children[0])
        except OSError:
            pass
        return None

    def _boot_failure(self):
        return (f"unshare/boot script output:\n{(self.dir / 'unshare.log').read_text(errors='replace')[-3000:]}\n"
                f"console:\n{self.console()[-3000:]}")

    def shutdown(self):
        """SIGKILL the namespace's PID 1 (the kernel then kills every process in it) and clean up."""
        if self.proc is not None and self.proc.poll() is None:
            if self.pid1:
                _kill(self.pid1)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                _kill(-self.proc.pid)
                self.proc.wait(10)
        if self.console_reader is not None:
            _kill(self.console_reader.pid)
            self.console_reader.wait(10)
            os.close(self.console_tty)
        if self.cgroup.exists():
            kill_file = self.cgroup / "cgroup.kill"
            if kill_file.exists():
                kill_file.write_text("1")
            poll(lambda: "populated 0" in (self.cgroup / "cgroup.events").read_text(), 10,
                 what=f"{self.cgroup} to empty")
            for path in sorted((p for p in self.cgroup.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                path.rmdir()
            self.cgroup.rmdir()

    # -- driving it --------------------------------------------------------------

    def run(self, *argv, check=True, timeout=30, input=None):
        """Run a command inside the machine (its namespaces and root), as root."""
        command = ["nsenter", f"--target={self.pid1}", "--mount", "--pid", "--cgroup", "--root", "--wd", "--", *argv]
        env = {"PATH": PATH, "LANG": "C.UTF-8", "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "TERM": "dumb"}
        result = subprocess.run(command, input=input, capture_output=True, text=True, timeout=timeout, env=env)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def systemctl(self, *args, check=True, timeout=60):
        return self.run("systemctl", "--no-pager", *args, check=check, timeout=timeout)

    def show(self, unit, *properties):
        out = self.systemctl("show", unit, "-p", ",".join(properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit=None):
        args = ["journalctl", "--no-pager", "-o", "short-monotonic", "-b"] + (["-u", unit] if unit else [])
        return self.run(*args, check=False).stdout

    def write(self, path, text):
        """Change a file inside the running machine."""
        self.run("sh", "-c", 'cat > "$1"', "sh", path, input=text)

    def console(self):
        return self.console_path.read_text(errors="replace").replace("\r", "")

    def processes(self):
        """[{host_pid, pid, ppid, name}] of every process in the machine (pid and ppid as it sees them)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") != self.pidns:
                    continue
                status = dict(line.split(":\t", 1) for line in Path(f"/proc/{entry}/status").read_text().splitlines()
                              if ":\t" in line)
            except OSError:
                continue
            if status.get("State", "").startswith("Z"):
                continue
            found.append({"host_pid": int(entry), "pid": int(status["NSpid"].split()[-1]),
                          "name": status["Name"].strip(), "uid": int(status["Uid"].split()[0])})
        return found

    def host_pid(self, pid):
        return next(p["host_pid"] for p in self.processes() if p["pid"] == pid)


def _kill(pid):
    try:
        if pid < 0:
            os.killpg(-pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
