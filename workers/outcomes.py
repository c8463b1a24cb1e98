"""What a cycle's upstream requests say: something about their items, or about the provider.

A failed request is either the item's own problem (a timeout, a bad payload,
an HTTP 5xx for that symbol) or a sign that nothing can work right now (the
login is dead, the shared request budget is spent, the provider answers
everything with the same error). Only the first may count toward an item's
quarantine: quarantining every symbol because the token expired, or because
the budget ran out, would sideline healthy symbols for 15 minutes.

`CycleTally` watches one cycle. It calls the cycle provider-wide failed
(`provider_down()` returns why) when

- any request failed to authenticate, or
- the first PROVIDER_DOWN_AFTER requests of the cycle all failed the same way
  (checked after each request, so a dead provider costs five deadlines, not
  one per symbol), or
- at the end, at least PROVIDER_DOWN_AFTER requests failed and at least
  PROVIDER_DOWN_SHARE of all requests failed in one way.

`settle(quarantine)` then records the items' own failures and successes,
unless the cycle was provider-wide failed: then only successes count.
"""
import collections

from workers.providers.base import AuthError, BudgetExhausted, CircuitOpen, HttpStatusError

PROVIDER_DOWN_AFTER = 5
PROVIDER_DOWN_SHARE = 0.5

# Exception class -> the outcome label of mdw_provider_requests_total.
OUTCOMES = {
    "DeadlineExceeded": "timeout", "HttpStatusError": "http_error", "BadPayload": "bad_payload",
    "AuthError": "auth_error", "CircuitOpen": "circuit_open", "BudgetExhausted": "budget_exhausted",
}


def outcome(error):
    return OUTCOMES.get(type(error).__name__, "error")


def about_the_item(error):
    """Does this failure say something about the item itself (and so count toward its quarantine)?"""
    if isinstance(error, (AuthError, BudgetExhausted, CircuitOpen)):
        return False
    return not (isinstance(error, HttpStatusError) and error.status == 429)


def _way(error):
    """How a request failed, coarsely enough that one broken provider fails every request the same way."""
    if isinstance(error, HttpStatusError):
        return f"HTTP {error.status}"
    return type(error).__name__


class CycleTally:
    def __init__(self):
        self.requests = collections.Counter()  # outcome -> upstream requests (ok, timeout, ...)
        self.successes = 0
        self.succeeded = {}  # items that answered for themselves (a dict: ordered, unique)
        self.failed = {}  # item -> its error (the last, for an item tried more than once)
        self.ways = collections.Counter()  # way -> failures
        self.examples = {}  # way -> one error message
        self.auth_failure = None

    def record(self, item, error=None, request=True, own=True):
        """One outcome. `request`: it was an upstream request (a symbol's answer inside a batch is not);
        `own`: the item answers for it (a batch's failure is no one symbol's)."""
        if request:
            self.requests[outcome(error) if error is not None else "ok"] += 1
        if error is None:
            if own:  # a batch's success is told by its members' answers
                self.successes += 1
                self.succeeded[item] = None
                self.failed.pop(item, None)
            return
        if isinstance(error, CircuitOpen):
            return  # refused before asking: the provider's own breaker, not news about anything
        if own:
            if item in self.succeeded:  # an answer that turned out to lack this item after all
                del self.succeeded[item]
                self.successes -= 1
            self.failed[item] = error
        way = _way(error)
        self.ways[way] += 1
        self.examples.setdefault(way, str(error))
        if isinstance(error, AuthError) and self.auth_failure is None:
            self.auth_failure = str(error)

    def provider_down(self, final=False):
        """Why this cycle's failures look provider-wide, or None."""
        if self.auth_failure:
            return f"the provider refused our credentials: {self.auth_failure}"
        if not self.ways:
            return None
        way, count = self.ways.most_common(1)[0]
        tried = self.successes + sum(self.ways.values())
        early = self.successes == 0 and count >= PROVIDER_DOWN_AFTER and count == tried
        late = final and count >= PROVIDER_DOWN_AFTER and count >= PROVIDER_DOWN_SHARE * tried
        if early or late:
            return (f"{count} of {tried} requests failed the same way ({way}), so the provider itself is "
                    f"failing, not single symbols; e.g. {self.examples[way]}")
        return None

    def settle(self, quarantine):
        """Record this cycle in the quarantine (and save it once)."""
        provider_wide = self.provider_down(final=True) is not None
        for item in self.succeeded:
            quarantine.succeeded(item)
        if not provider_wide:
            for item, error in self.failed.items():
                if about_the_item(error):
                    quarantine.failed(item, str(error))
        quarantine.save()
