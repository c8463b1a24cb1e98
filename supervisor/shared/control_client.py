"""Client side of the control socket (used by mdwctl and the API worker).

The protocol: the client sends one JSON object on one line, e.g.
{"cmd": "status", "names": ["whale_flows"]}; the supervisor answers with one
JSON line {"ok": true, ...} or {"ok": false, "error": "...", "kind": "..."}.
`tail` with "follow": true keeps answering, one JSON line per log line,
until the client disconnects.
"""
import json
import os
import socket

SOCKET_NAME = "mdwd.sock"
MAX_REPLY = 16 * 2**20


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
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as e:
            sock.close()
            raise ControlError(f"cannot reach mdwd at {self.path}: {e.strerror or e}; is mdwd running?") from None
        return sock

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
