"""Items a scanner skips for a while, and items it fetches one by one until they prove healthy.

An item (a symbol, or "TSLA 2026-12-04" for an option chain) is
**quarantined** for `seconds`

- when a previous process of the worker was killed while fetching it (the
  supervisor hands that item to its successor), or
- after `after_failures` consecutive failures of its own: errors that say
  something about the item (a timeout, a bad payload, an HTTP 5xx), never a
  provider-wide failure (the scanner decides which; see workers/outcomes.py).

It comes back by itself when the cool-off ends. An item is a **suspect**
when it was part of a batch that hung or failed as a whole: the watchlist
then fetches it alone, so the one guilty symbol of a batch of 50 is found
and quarantined while the other 49 are quoted. A suspect (and an item with
failures counted) is cleared by its next success.

Everything is kept in a small JSON file in the state dir, written
atomically, so it outlives the process that recorded it: the next
incarnation, whatever killed this one, forms the same batches and skips the
same items.
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
        self.entries = {}  # item -> {"until": epoch seconds, "why": str}
        self.failures = {}  # item -> consecutive failures
        self.suspects = {}  # item -> why it is fetched alone
        self._load()

    # -- the file ----------------------------------------------------------

    def _load(self):
        if not self.path or not os.path.exists(self.path):
            return
        try:
            with open(self.path) as f:
                document = json.load(f)
            if "entries" not in document:  # the first format: the entries alone
                document = {"entries": document}
            self.entries = {str(k): {"until": float(v["until"]), "why": str(v["why"])}
                            for k, v in document["entries"].items()}
            self.failures = {str(k): int(v) for k, v in document.get("failures", {}).items() if int(v) > 0}
            self.suspects = {str(k): str(v) for k, v in document.get("suspects", {}).items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("ignoring unreadable quarantine file %s: %s", self.path, e)
            self.entries, self.failures, self.suspects = {}, {}, {}
        self._expire()

    def save(self):
        if not self.path:
            return
        directory = os.path.dirname(self.path) or "."
        document = {"entries": self.entries, "failures": self.failures, "suspects": self.suspects}
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".quarantine-")
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(document, f)
                os.replace(tmp, self.path)
            except BaseException:
                _unlink(tmp)
                raise
        except OSError as e:
            log.error("cannot save the quarantine list to %s: %s", self.path, e)

    def _expire(self):
        now = self.clock()
        expired = [item for item, entry in self.entries.items() if entry["until"] <= now]
        for item in expired:
            del self.entries[item]
            log.info("%s is out of quarantine", item)
        if expired:
            self.save()

    # -- recording -----------------------------------------------------------

    def add(self, item, why):
        self.entries[item] = {"until": self.clock() + self.seconds, "why": why}
        self.failures.pop(item, None)
        self.suspects.pop(item, None)
        log.warning("quarantining %s for %gs: %s", item, self.seconds, why)
        self.save()

    def suspect(self, items, why):
        """Fetch these items alone from now on, until each succeeds (or is quarantined)."""
        for item in items:
            if item not in self.entries:
                self.suspects[item] = why
        self.save()

    def failed(self, item, why):
        """Count a failure of the item's own; quarantine it once it has failed `after_failures` times in a row.

        The caller saves (once per cycle)."""
        self.failures[item] = self.failures.get(item, 0) + 1
        if self.after_failures and self.failures[item] >= self.after_failures:
            self.add(item, f"failed {self.failures[item]} times in a row, last: {why}")

    def succeeded(self, item):
        self.failures.pop(item, None)
        self.suspects.pop(item, None)

    # -- questions -----------------------------------------------------------

    def holds(self, item):
        entry = self.entries.get(item)
        if entry is None:
            return False
        if entry["until"] <= self.clock():
            self._expire()
            return False
        return True

    def alone(self, item):
        """Should this item be fetched on its own (a suspect, or failing lately)?"""
        return item in self.suspects or item in self.failures

    def listing(self):
        self._expire()
        now = self.clock()
        return [{"item": item, "why": e["why"], "for_s": round(e["until"] - now, 1)}
                for item, e in sorted(self.entries.items())]


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass
