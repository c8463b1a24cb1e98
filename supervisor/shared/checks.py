"""Value checks for configuration keys, shared by the config loader and the worker kinds.

Each check takes a value already of the right type and returns None when it is
fine, or a phrase saying what is allowed ("a number > 0"); the loader turns
that into "key = value: allowed is ...". Standard library only.
"""

NUMBER = (int, float)


def positive(value):
    return None if value > 0 else "a number > 0"


def non_negative(value):
    return None if value >= 0 else "a number >= 0"


def zero_is_off(value):
    return None if value >= 0 else "a number >= 0 (0 = off)"


def whole(low, high=None, note=""):
    """A whole number in low..high (no upper bound when high is None); `note` follows the range."""
    def check(value):
        ok = isinstance(value, int) and value >= low and (high is None or value <= high)
        allowed = f"a whole number {low}..{high}" if high is not None else f"a whole number >= {low}"
        return None if ok else allowed + note
    return check


def one_of(*choices):
    def check(value):
        return None if value in choices else "one of " + ", ".join(choices)
    return check


def text(value):
    return None if value.strip() else "a non-empty string"


def symbols(allow_empty):
    """A list of upper-case ticker symbols."""
    def check(value):
        ok = (allow_empty or value) and all(
            isinstance(s, str) and s and s == s.strip().upper() and len(s) <= 12 for s in value)
        return None if ok else ("a list" if allow_empty else "a non-empty list") + " of upper-case ticker symbols"
    return check
