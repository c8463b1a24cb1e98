"""The few Linux-only calls the supervisor needs: prctl(2) through ctypes, and /proc."""
import ctypes
import os

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
TASK_COMM_LEN = 16  # including the terminating NUL

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _prctl(option, arg):
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def set_parent_death_signal(signum):
    """Have the kernel send `signum` to this process when its parent dies."""
    _prctl(PR_SET_PDEATHSIG, signum)


def set_child_subreaper():
    """Orphaned descendants are re-parented to this process (so it can reap them)."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def set_process_name(name):
    """Set the name `ps` and /proc/PID/comm show, truncated to 15 bytes."""
    raw = name.encode()[: TASK_COMM_LEN - 1]
    buf = ctypes.create_string_buffer(raw)
    if _libc.prctl(PR_SET_NAME, ctypes.cast(buf, ctypes.c_void_p).value, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def children(pid):
    """The pids of a process's children, from /proc/PID/task/TID/children; [] if it is gone.

    Reads only that process's own files, rather than scanning every process
    on the machine as psutil's children() does.
    """
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", "rb") as f:
                found.extend(int(child) for child in f.read().split())
    except OSError:  # gone, or no fd left to look with
        return []
    return found
