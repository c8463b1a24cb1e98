"""The API's one listening socket: bound by us without SO_REUSEPORT, inherited by granian's processes.

Why: granian 2.x on Linux has every serving process bind its own listener
with SO_REUSEPORT (and SO_REUSEADDR). Linux lets any socket of the same user
that also sets SO_REUSEPORT join such a group, so a second tree configured on
the same port started fine and the kernel split the clients between two
servers answering from two databases. Here the API worker binds and listens
on one socket itself, with SO_REUSEADDR (a restart is not refused because of
connections in TIME_WAIT) but without SO_REUSEPORT: while it listens, every
other bind of that address by anyone fails with EADDRINUSE, with or without
SO_REUSEPORT. All of granian's processes accept from that one socket, which
they inherit over fork; the kernel hands each connection to whichever of them
accepts first.

`reserve(host, port)` does the binding before anything is forked, so a port
in use or a host that does not resolve is reported at once, and port 0
becomes a real port. `granian_on(listener, ...)` builds the granian server
that serves it: the one place that touches granian's internals (see there).
`holders(port)` names the processes of ours that listen on a port, for the
error message when it is taken.
"""
from __future__ import annotations

import multiprocessing
import socket
import threading

import psutil

__all__ = ["reserve", "granian_on", "holders", "SignalSafeEvent", "BACKLOG"]

BACKLOG = 1024  # capped by net.core.somaxconn (4096 on current kernels)


def reserve(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """A socket listening on host:port that no other socket can share.

    OSError (EADDRINUSE) if any socket holds the address, socket.gaierror (an
    OSError) if `host` does not resolve, other OSErrors if it is not ours.
    Connections that arrive before the server accepts wait in the backlog.
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def holders(port: int, most: int = 4) -> list[str]:
    """'pid N (name)' of the processes we can see listening on TCP `port`: every process that shares
    the socket (our own user's only, unless root), the first `most` by pid, then how many more."""
    found = []
    for process in psutil.process_iter(["pid", "name"]):
        try:
            if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                   for c in process.net_connections("tcp")):
                found.append(f"pid {process.info['pid']} ({process.info['name']})")
        except (psutil.Error, OSError):
            continue
    return found[:most] + ([f"{len(found) - most} more"] if len(found) > most else [])


class SignalSafeEvent:
    """threading.Event's is_set/set/clear/wait on a re-entrant lock, so set() may run in a signal handler.

    A Python signal handler runs in the main thread between two bytecodes,
    also while that thread holds the lock of an Event it waits on (Event.wait
    holds it right after waking). threading.Event's lock is not re-entrant, so
    a handler calling set() then blocks forever on its own thread's lock.
    """

    def __init__(self):
        self._cond = threading.Condition(threading.RLock())
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        with self._cond:
            self._flag = True
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._flag = False

    def wait(self, timeout=None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._flag, timeout)


def granian_on(listener: socket.socket, **options):
    """A granian server (granian.Granian(**options)) whose processes all accept on `listener`.

    The granian internals we rely on, isolated here:

    1. The socket. granian 2.x has no public way to serve a socket it did not
       create (its issue #786 asks for systemd's LISTEN_FDS). Its servers
       build what their workers listen on in `_init_shared_socket()`: a pair
       (ListenerSpec, SocketHolder), of which a worker uses the SocketHolder
       when there is one (granian's own path on platforms without
       SO_REUSEPORT balancing: one socket bound in the manager, inherited by
       the workers) and otherwise binds its own from the ListenerSpec (the
       Linux path that shares the port). We fill in the SocketHolder with our
       socket and no ListenerSpec. The workers inherit the descriptor over
       fork, so the start method is pinned to fork in this (our own, forked)
       process. tests/test_api_listener.py checks that every serving process
       accepts on our socket and that nothing else can bind the port.
    2. The stop. granian's manager waits on `main_loop_interrupt`, a
       threading.Event that its SIGTERM/SIGINT handler sets. A second stop
       signal landing while the manager wakes (the supervisor's SIGTERM to
       the group, then ours) deadlocked it in that handler (see
       SignalSafeEvent), so it never stopped its serving processes or said
       how it ended. We give it a SignalSafeEvent instead.
    """
    from granian import Granian
    from granian.net import SocketHolder

    if not callable(getattr(Granian, "_init_shared_socket", None)):
        raise RuntimeError("this granian version has no _init_shared_socket(); api/listener.py needs updating")
    fd = listener.fileno()
    backlog = int(options.get("backlog", BACKLOG))

    class OurGranian(Granian):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            if not isinstance(getattr(self, "main_loop_interrupt", None), threading.Event):
                raise RuntimeError("this granian version has no main_loop_interrupt Event; "
                                   "api/listener.py needs updating")
            self.main_loop_interrupt = SignalSafeEvent()

        def _init_shared_socket(self):
            self._ssp = None
            self._shd = SocketHolder(fd, False, backlog)
            self._sfd = fd
            self._sso = None

    multiprocessing.set_start_method("fork", force=True)
    return OurGranian(**options)
