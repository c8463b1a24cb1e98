"""How a process ended, in words. Standard library only."""
import signal


def signal_name(code):
    """The name of the signal that ended a process, from its exit code as
    os.waitstatus_to_exitcode gives it (negative for a signal); None if it exited."""
    if code is not None and code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return None
