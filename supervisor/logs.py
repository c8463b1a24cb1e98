"""Logging: the supervisor's own records, and the output of its children.

Children write to a pipe; the supervisor drains it without blocking, keeps
the last lines per child (for `mdwctl tail`) and forwards lines to its own
stderr, prefixed with the child's name and, under systemd, with a `<N>`
syslog priority that journald understands. Forwarding is rate-limited per
child (a token bucket), so a child that floods cannot slow the supervisor or
drown the others; what is not forwarded is counted and reported.
"""
import logging
import os
import time

MAX_LINE = 8192
PRIORITIES = {"CRITICAL": 2, "ERROR": 3, "Traceback": 3, "WARNING": 4, "INFO": 6, "DEBUG": 7}
DEFAULT_PRIORITY = 6


def under_journal(environ=os.environ):
    """True when our stderr goes to journald (systemd sets JOURNAL_STREAM)."""
    return bool(environ.get("JOURNAL_STREAM"))


def priority_of(line):
    word = line.split(" ", 1)[0].rstrip(":")
    return PRIORITIES.get(word, DEFAULT_PRIORITY)


class LineFormatter:
    def __init__(self, journal):
        self.journal = journal

    def format(self, source, line, priority=None):
        if self.journal:
            return f"<{priority if priority is not None else priority_of(line)}>{source}: {line}\n"
        return f"{time.strftime('%Y-%m-%d %H:%M:%S')} {source}: {line}\n"


def received_at(wall_time):
    """The stamp a tail line carries: local time to the millisecond, '2026-12-02 09:30:00.123'."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall_time)) + f".{int(wall_time * 1000) % 1000:03d}"


class ChildOutput:
    """Line splitting, tail and rate limiting for one child's output pipe.

    The tail (`mdwctl tail`) keeps each line with the time mdwd received it;
    `wall` is the wall clock (the host's), read once per batch of lines."""

    def __init__(self, worker, formatter, now, wall=time.time):
        self.wall = wall
        self.worker = worker  # its log_tail and log_lines_dropped outlive this incarnation's pipe
        self.name = worker.name
        self.tail = worker.log_tail
        self.rate = float(worker.spec.log_lines_per_second)
        self.tokens = self.rate
        self.refilled_at = now
        self.formatter = formatter
        self.partial = b""
        self.dropped = 0  # lines not forwarded since the last drop notice
        self.drop_notice_at = now
        self.listener = None  # called with every batch of new lines (mdwctl tail -f)

    def feed(self, data, now):
        """Consume bytes from the pipe; return the text to forward (possibly empty)."""
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) > MAX_LINE:
            lines.append(self.partial[:MAX_LINE] + b" [line truncated]")
            self.partial = b""
        return self._forward(lines, now)

    def close(self, now):
        """The pipe ended: forward what is left of an unterminated last line."""
        lines, self.partial = ([self.partial] if self.partial else []), b""
        out = self._forward(lines, now)
        if self.dropped:
            out += self._drop_notice(now)
        return out

    def _forward(self, lines, now):
        if not lines:
            return ""
        self.tokens = min(self.rate, self.tokens + (now - self.refilled_at) * self.rate)
        self.refilled_at = now
        allowed = min(len(lines), int(self.tokens))
        self.tokens -= allowed
        stamp = received_at(self.wall())
        recent = [f"{stamp} {line.decode('utf-8', 'replace')}" for line in lines[-self.tail.maxlen:]]
        self.tail.extend(recent)
        if self.listener:
            self.listener(recent)
        self.dropped += len(lines) - allowed
        self.worker.log_lines_dropped += len(lines) - allowed
        out = "".join(self.formatter.format(self.name, line.decode("utf-8", "replace")) for line in lines[:allowed])
        if self.dropped and now - self.drop_notice_at >= 1.0:
            out += self._drop_notice(now)
        return out

    def _drop_notice(self, now):
        text = f"{self.dropped} lines not forwarded (over log_lines_per_second {self.rate:g}); see mdwctl tail"
        self.dropped, self.drop_notice_at = 0, now
        return self.formatter.format(self.name, text, priority=4)


class StderrHandler(logging.Handler):
    """The supervisor's own log records, formatted like the children's lines."""

    def __init__(self, formatter, write):
        super().__init__()
        self.line_formatter = formatter
        self.write = write

    def emit(self, record):
        try:
            priority = PRIORITIES.get(record.levelname, DEFAULT_PRIORITY)
            text = self.format(record)
            self.write(self.line_formatter.format(record.name, text, priority).encode())
        except Exception:
            self.handleError(record)


def setup_logging(journal, write, level=logging.INFO):
    handler = StderrHandler(LineFormatter(journal), write)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
