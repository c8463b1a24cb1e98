"""A settable clock for tests: `clock()` answers `clock.now`, which the test moves by hand."""


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now
