"""Items a scanner skips for a while: the one that hung its predecessor, and repeat failures.

An item (a symbol, or "TSLA 2026-12-04" for an option chain) is quarantined
for `seconds` when the supervisor hands it over as the item a killed
predecessor was stuck on, or after `after_failures` consecutive failures or
timeouts. It comes back by itself when the cool-off ends. The list is kept
in a small JSON file in the state dir (written atomically), so a quarantine
outlives the process that imposed it: the next incarnation, whatever killed
this one, still skips the item.
"""
import json
import logging
import os
import tempfile
import time

log = logging.getLogger("quarantine")


class Quarantine:
    def __init__(self, path, seconds=900.0, after_failures=3, clock=time.time):
        self.path = str(path) if path else None
        self.seconds = float(seconds)
        self.after_failures = int(after_failures)
        self.clock = clock  # wall clock: entries must survive a process restart
        self.failures = {}  # item -> consecutive failures in this process
        self.entries = {}  # item -> {"until": epoch seconds, "why": str}
        self._load()

    def _load(self):
        if not self.path or not os.path.exists(self.path):
            return
        try:
            with open(self.path) as f:
                entries = json.load(f)
            self.entries = {str(k): {"until": float(v["until"]), "why": str(v["why"])} for k, v in entries.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("ignoring unreadable quarantine file %s: %s", self.path, e)
            self.entries = {}
        self._expire()

    def _save(self):
        if not self.path:
            return
        directory = os.path.dirname(self.path) or "."
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".quarantine-")
            with os.fdopen(fd, "w") as f:
                json.dump(self.entries, f)
            os.replace(tmp, self.path)
        except OSError as e:
            log.error("cannot save the quarantine list to %s: %s", self.path, e)

    def _expire(self):
        now = self.clock()
        expired = [item for item, entry in self.entries.items() if entry["until"] <= now]
        for item in expired:
            del self.entries[item]
            log.info("%s is out of quarantine", item)
        if expired:
            self._save()

    def add(self, item, why):
        self.entries[item] = {"until": self.clock() + self.seconds, "why": why}
        self.failures.pop(item, None)
        log.warning("quarantining %s for %gs: %s", item, self.seconds, why)
        self._save()

    def failed(self, item, why):
        """Count a failure; quarantine the item once it has failed `after_failures` times in a row."""
        self.failures[item] = self.failures.get(item, 0) + 1
        if self.after_failures and self.failures[item] >= self.after_failures:
            self.add(item, f"failed {self.failures[item]} times in a row, last: {why}")

    def succeeded(self, item):
        self.failures.pop(item, None)

    def holds(self, item):
        entry = self.entries.get(item)
        if entry is None:
            return False
        if entry["until"] <= self.clock():
            self._expire()
            return False
        return True

    def listing(self):
        self._expire()
        now = self.clock()
        return [{"item": item, "why": e["why"], "for_s": round(e["until"] - now, 1)}
                for item, e in sorted(self.entries.items())]
