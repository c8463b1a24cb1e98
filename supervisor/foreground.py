"""Run a command as the terminal's foreground job, so that a Ctrl-C reaches it and not `make`.

    python -m supervisor.foreground COMMAND [ARG...]      (how `make run` starts mdwd)

A Ctrl-C sends SIGINT to the terminal's whole foreground process group. Under
`make run` that group holds make too, and make dies of the signal (exit 130)
however cleanly mdwd stopped. Here the command runs in a process group of its
own made the terminal's foreground group, as a shell's job control does, so
the SIGINT reaches the command alone; this process waits for it, gives the
terminal back and exits with its status (128 + N if signal N killed it). A
SIGTERM or SIGHUP sent to this process (make passes its own on) is passed on
to the command. Ctrl-Z stops the command, then this process's group (make
with it), so the shell's `fg` resumes the lot.

Without a controlling terminal, or from a background job, it simply execs the command.
"""
import os
import signal
import sys

EXIT_USAGE = 2
EXIT_CANNOT_RUN = 127


def main(argv):
    if not argv:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return EXIT_USAGE
    tty = _terminal()
    if tty is None:
        _exec(argv)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # tcsetpgrp() from what becomes a background group
    pid = os.fork()
    if pid == 0:
        _child(argv, tty)
    _own_group(pid)
    _hand_terminal(tty, pid)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        # One kill(2) and nothing else: passes the signal on, whatever this process is doing.
        signal.signal(signum, lambda signum, frame: _kill(pid, signum))
    try:
        status = _wait(pid, tty)
    finally:
        _hand_terminal(tty, os.getpgrp())
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _terminal():
    """A descriptor of our controlling terminal if our process group is in its foreground, else None."""
    try:
        tty = os.open("/dev/tty", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if os.tcgetpgrp(tty) == os.getpgrp():
            return tty
    except OSError:
        pass
    os.close(tty)
    return None


def _exec(argv):
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        print(f"{argv[0]}: {e.strerror}", file=sys.stderr)
        os._exit(EXIT_CANNOT_RUN)


def _child(argv, tty):
    """In the child: a process group of its own, the terminal's foreground, then the command."""
    try:
        os.setpgid(0, 0)
        _hand_terminal(tty, os.getpgrp())  # the parent does it too: whichever runs first wins the race
        signal.signal(signal.SIGTTOU, signal.SIG_DFL)
        os.close(tty)
    finally:
        _exec(argv)


def _own_group(pid):
    try:
        os.setpgid(pid, pid)
    except OSError:  # the child did it already, and may have exec'd (EACCES) or ended (ESRCH)
        pass


def _hand_terminal(tty, pgid):
    try:
        os.tcsetpgrp(tty, pgid)
    except OSError:  # the group is gone, or the terminal was hung up
        pass


def _kill(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _wait(pid, tty):
    """The command's wait status; a stop (Ctrl-Z) stops our group too, and a `fg` resumes the command."""
    while True:
        _, status = os.waitpid(pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):
            return status
        _hand_terminal(tty, os.getpgrp())
        os.killpg(os.getpgrp(), signal.SIGTSTP)  # until the shell's fg continues our group
        _hand_terminal(tty, pid)
        os.killpg(pid, signal.SIGCONT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
