"""Client side of the control socket (used by mdwctl and the API worker).

The protocol: the client sends one JSON object on one line, e.g.
{"cmd": "status", "names": ["whale_flows"]}; the supervisor answers with one
JSON line {"ok": true, ...} or {"ok": false, "error": "...", "kind": "..."}.
`tail` with "follow": true keeps answering, one JSON line per log line,
until the client disconnects.

Connecting to a unix socket whose listen backlog is full fails at once with
EAGAIN (a burst of clients while mdwd is busy): the client retries that,
backing off from 1 ms to 50 ms, for up to its timeout. Any other failure
(ENOENT, or ECONNREFUSED: nothing listens there, mdwd is gone) is reported
at once.
"""
import json
import os
import socket
import time

SOCKET_NAME = "mdwd.sock"
MAX_REPLY = 16 * 2**20
RETRY_FIRST = 0.001  # seconds before connecting again to a full backlog
RETRY_MAX = 0.05
CONNECT_TIMEOUT = 5.0  # when the client has no timeout of its own


class ControlError(Exception):
    """The supervisor could not be reached, or its answer was not understood."""


def socket_path(state_dir, environ=os.environ):
    """Where mdwd listens: $RUNTIME_DIRECTORY under systemd, else state_dir."""
    runtime = environ.get("RUNTIME_DIRECTORY")
    return os.path.join(runtime.split(":")[0] if runtime else state_dir, SOCKET_NAME)


class ControlClient:
    def __init__(self, path, timeout=5.0):
        self.path = str(path)
        self.timeout = timeout

    def _connect(self):
        """A connected socket; a full backlog is retried until the timeout, other failures end at once."""
        budget = CONNECT_TIMEOUT if self.timeout is None else self.timeout
        deadline = time.monotonic() + budget
        delay = RETRY_FIRST
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.path)
                return sock
            except BlockingIOError:  # EAGAIN: mdwd's backlog is full
                sock.close()
                if time.monotonic() + delay > deadline:
                    raise ControlError(f"mdwd at {self.path} is too busy: its queue of connections stayed full "
                                       f"for {budget:g}s") from None
            except OSError as e:
                sock.close()
                raise ControlError(f"cannot reach mdwd at {self.path}: {e.strerror or e}; is mdwd running?") from None
            time.sleep(delay)
            delay = min(RETRY_MAX, delay * 2)

    def call(self, cmd, **args):
        """Send one request; return the decoded answer (which may say ok: false)."""
        answers = self.stream(cmd, **args)
        try:
            return next(answers)
        except StopIteration:
            raise ControlError(f"mdwd at {self.path} closed the connection without answering") from None
        finally:
            answers.close()

    def stream(self, cmd, **args):
        """Send one request; yield every answer line until the supervisor closes the connection."""
        sock = self._connect()
        try:
            try:
                sock.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # mdwd may answer at once and close (refused: another uid, too busy): read why
            buffer = b""
            while True:
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    raise ControlError(f"mdwd at {self.path} did not answer within {self.timeout:g}s") from None
                except OSError as e:
                    raise ControlError(f"connection to mdwd at {self.path} failed: {e}") from None
                if not data:
                    if buffer.strip():
                        raise ControlError("mdwd closed the connection in the middle of an answer")
                    return
                buffer += data
                if len(buffer) > MAX_REPLY:
                    raise ControlError("mdwd sent an answer larger than 16 MiB")
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    try:
                        yield json.loads(line)
                    except ValueError:
                        raise ControlError(f"mdwd sent something that is not JSON: {line[:80]!r}") from None
        finally:
            sock.close()
