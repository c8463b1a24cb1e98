"""Alerts from what the worker reads: the supervisor's events, its status rows, the store's last writes
and new signals. Pure functions of their inputs and the last view, so a fake clock and fake rows
test them exactly.

The status has no events of its own, so the worker keeps the last view of
it (in the outbox, with the alerts it caused) and alerts on the changes:
- an item quarantined, and released: the rows' `reported.quarantined`. A
  worker whose report is missing (it is restarting) keeps its last view; an
  item counts as released only when the report lists every quarantined item
  (`quarantined_total`), since only the first few are listed;
- a dataset stale, and fresh again: the store's last writes, with the
  staleness limits and schedules /health uses;
- the Schwab refresh token near its end (a worker's warning naming
  mdw-schwab-login) and dead (a failing reason naming it, or the warning
  saying it expired): an alert when it gets worse, none when it gets better.
Every derived alert gets the id `view:<n>`, n counting in the view itself.
"""
from workers.providers.schwab_tokens import LOGIN_COMMAND

TOKEN_STATES = ("ok", "expiring", "dead")
EMPTY_VIEW = {"quarantined": {}, "stale": [], "token": "ok", "serial": 0}


def from_events(events):
    """The supervisor's journal events as alerts (their ids are already unique)."""
    fields = ("text", "worker", "reason", "detail", "doing", "item", "failures", "last", "status", "why")
    return [{"event_id": e["id"], "kind": e["kind"], "at": e["at"],
             **{k: e[k] for k in fields if e.get(k) is not None}} for e in events]


def from_signals(signals):
    """Rows of the store's signals table as alerts, one per signal (its key is its identity)."""
    return [{"event_id": f"signal:{s['id']}", "kind": s["kind"], "at": s["at"], "symbol": s["symbol"],
             "direction": s.get("direction"), "score": s.get("score"), "values": s.get("values") or {},
             "signal": True} for s in signals]


class ViewDiff:
    """Compares the status rows and the store's last writes with the last view (a JSON-ready dict)."""

    def __init__(self, view, now_text):
        self.old = {**EMPTY_VIEW, **(view or {})}
        self.view = {**self.old, "quarantined": dict(self.old["quarantined"])}
        self.now_text = now_text  # UTC 'YYYY-MM-DD HH:MM:SS' of this pass
        self.alerts = []

    def _alert(self, kind, text, **fields):
        self.view["serial"] += 1
        self.alerts.append({"event_id": f"view:{self.view['serial']}", "kind": kind, "at": self.now_text,
                            "text": text, **fields})

    def quarantine(self, rows):
        seen = set()
        for row in rows:
            name, reported = row.get("name"), row.get("reported") or {}
            seen.add(name)
            listed = reported.get("quarantined")
            if not isinstance(listed, list):
                continue  # no report from this incarnation yet: keep what was seen
            items = {q["item"]: q for q in listed if isinstance(q, dict) and isinstance(q.get("item"), str)}
            before = self.old["quarantined"].get(name, [])
            for item, entry in items.items():
                if item not in before:
                    self._alert("quarantined", f"{item} quarantined by {name} for {entry.get('for_s', 0):.0f}s: "
                                f"{entry.get('why', '')}".rstrip(": "), worker=name, item=item)
            gone = [item for item in before if item not in items]
            if reported.get("quarantined_total", len(listed)) > len(listed):
                self.view["quarantined"][name] = sorted(set(items) | set(gone))  # not listed is not released
                continue
            for item in gone:
                self._alert("released", f"{item} released by {name}: it is fetched again", worker=name, item=item)
            self.view["quarantined"][name] = sorted(items)
        for name in [n for n in self.view["quarantined"] if n not in seen]:
            del self.view["quarantined"][name]  # no longer supervised

    def staleness(self, updates, limits):
        stale = set(self.old["stale"])
        for dataset, entry in sorted(updates.items()):
            if entry is None:
                continue
            if entry["stale"] and dataset not in stale:
                stale.add(dataset)
                self._alert("stale", f"dataset {dataset} is stale: last written {entry['age_s']:.0f}s ago (limit "
                            f"{limits.get(dataset, 0):.0f}s)", dataset=dataset)
            elif not entry["stale"] and dataset in stale:
                stale.discard(dataset)
                self._alert("fresh", f"dataset {dataset} is fresh again: written {entry['age_s']:.0f}s ago",
                            dataset=dataset)
        self.view["stale"] = sorted(stale)

    def schwab_login(self, rows):
        wanted = [r for r in rows if r.get("wanted", True)]
        dead = [r["failing"] for r in wanted if LOGIN_COMMAND in str(r.get("failing") or "")]
        warnings = [w for r in wanted for w in r.get("warnings") or () if LOGIN_COMMAND in str(w)]
        dead += [w for w in warnings if "refresh token expired" in w]
        state = "dead" if dead else "expiring" if warnings else "ok"
        if TOKEN_STATES.index(state) > TOKEN_STATES.index(self.old["token"]):
            if state == "dead":
                self._alert("token_dead", f"the Schwab login is dead: {dead[0]}")
            else:
                self._alert("token_expiring", warnings[0][0].upper() + warnings[0][1:])
        self.view["token"] = state
