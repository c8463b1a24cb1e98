"""GET /metrics: a prometheus_client Collector over the supervisor's rows and the store.

Nothing is counted in this process: every scrape asks the StatusSource (at
most one control-socket call per second) and the store, and turns the answers
into metric families on a dedicated CollectorRegistry (never the global one,
so importing this module registers nothing):

    mdw_supervisor_up                               1 if mdwd answered
    mdw_worker_up{worker}                           1 if the worker is healthy
    mdw_worker_wanted{worker}                       1 if it should run (0: stopped on purpose)
    mdw_worker_restarts_total{worker,reason}        restarts by reason (hang, crash, ...); the
                                                    failure reasons are 0 until the first, so an
                                                    alert on increase() sees the first hang kill
    mdw_heartbeat_age_seconds{worker}               since the last heartbeat
    mdw_worker_cycles_total{worker,outcome}         ok / failed cycles
    mdw_cycle_duration_seconds{worker}              histogram of cycle durations
    mdw_provider_requests_total{provider,outcome}   summed over the workers
    mdw_store_up                                    1 if the store could be read
    mdw_dataset_age_seconds{dataset}                since the dataset was last written
    mdw_dataset_stale{dataset}                      1 if older than its staleness limit (counted within
                                                    its writer's schedule, as /health counts it)
    mdw_schwab_refresh_token_expiry_seconds         until the Schwab refresh token dies (negative
                                                    once dead): with [provider] kind = "schwab"
    mdw_alerts_sent_total{url}                      messages the alerts worker delivered, per destination
    mdw_alerts_failed_total{url}                    sends that failed (each retried later with backoff)
    mdw_alerts_dropped_total{url}                   alerts dropped unsent (more than 5000 waiting)
    mdw_alerts_pending{url}                         alerts waiting to be delivered
                                                    (url: scheme and host only, as apprise shows them)

A worker or dataset the supervisor or store cannot tell about is left out
rather than reported as 0; so is the refresh token's expiry while the token
file is missing or does not say when it was issued.
"""
from __future__ import annotations

import logging
from collections import defaultdict

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (CounterMetricFamily, GaugeMetricFamily,
                                            HistogramMetricFamily)
from prometheus_client.utils import floatToGoString

from workers.store import StoreError

from .status import SupervisorUnavailable, schedules

__all__ = ["StatusCollector", "make_registry", "render", "CONTENT_TYPE"]

log = logging.getLogger("api.metrics")

# The restart reasons that are failures (supervisor/states.py StopReason): exported as 0 before
# the first, since a counter series born at 1 shows no increase() to an alerting rule.
FAILURE_REASONS = ("crash", "hang", "stalled", "memory", "protocol")

# The classic text format that generate_latest writes (every Prometheus version reads it).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _number(value):
    """A finite-or-inf float from a JSON number, or None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _histogram_buckets(durations):
    """[(le, cumulative count), ...] ending with +Inf, and the sum; None if malformed."""
    if not isinstance(durations, dict):
        return None
    buckets = []
    for pair in durations.get("buckets") or ():
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            return None
        le, count = pair
        count = _number(count)
        bound = float("inf") if le in ("+Inf", "inf", "Inf") else _number(le)
        if bound is None or count is None:
            return None
        buckets.append((floatToGoString(bound), count))
    total = _number(durations.get("count"))
    if not buckets or buckets[-1][0] != "+Inf":
        if total is None:
            return None
        buckets.append(("+Inf", total))
    sum_value = _number(durations.get("sum"))
    return buckets, (0.0 if sum_value is None else sum_value)


class StatusCollector:
    """Builds the metric families at scrape time (see the module docstring)."""

    def __init__(self, status, reader, refresh_token_expiry=None):
        """`refresh_token_expiry`: a callable giving the Schwab refresh token's seconds left, or None."""
        self._status = status
        self._reader = reader
        self._refresh_token_expiry = refresh_token_expiry

    def collect(self):
        try:
            rows = self._status.rows()
        except SupervisorUnavailable as exc:
            log.debug("metrics without worker rows: %s", exc)
            rows = None
        up = GaugeMetricFamily("mdw_supervisor_up", "1 if mdwd answered the status request")
        up.add_metric([], 0.0 if rows is None else 1.0)
        yield up
        if rows is not None:
            yield from self._worker_families(rows)
        yield from self._dataset_families(rows)
        yield from self._token_families()

    def _token_families(self):
        seconds = self._refresh_token_expiry() if self._refresh_token_expiry else None
        if seconds is not None:
            yield GaugeMetricFamily("mdw_schwab_refresh_token_expiry_seconds",
                                    "Seconds until the Schwab refresh token dies (negative once dead): "
                                    "run mdw-schwab-login before", value=float(seconds))

    def _worker_families(self, rows):
        worker_up = GaugeMetricFamily("mdw_worker_up", "1 if the worker is healthy", labels=["worker"])
        wanted = GaugeMetricFamily("mdw_worker_wanted", "1 if the worker should run (0: stopped on purpose)",
                                   labels=["worker"])
        restarts = CounterMetricFamily("mdw_worker_restarts_total", "Restarts of the worker by reason",
                                       labels=["worker", "reason"])
        beat_age = GaugeMetricFamily("mdw_heartbeat_age_seconds", "Seconds since the worker's last heartbeat",
                                     labels=["worker"])
        cycles = CounterMetricFamily("mdw_worker_cycles_total", "Cycles the worker reported, by outcome",
                                     labels=["worker", "outcome"])
        durations = HistogramMetricFamily("mdw_cycle_duration_seconds", "Duration of the worker's cycles",
                                          labels=["worker"])
        provider_totals = defaultdict(float)
        for row in rows:
            name = str(row.get("name"))
            worker_up.add_metric([name], 1.0 if row.get("healthy") is True else 0.0)
            if isinstance(row.get("wanted"), bool):
                wanted.add_metric([name], 1.0 if row["wanted"] else 0.0)
            by_reason = dict.fromkeys(FAILURE_REASONS, 0)
            if isinstance(row.get("restarts_by_reason"), dict):
                by_reason.update(row["restarts_by_reason"])
            for reason, count in sorted(by_reason.items()):
                if _number(count) is not None:
                    restarts.add_metric([name, str(reason)], _number(count))
            if _number(row.get("last_beat_age_s")) is not None:
                beat_age.add_metric([name], _number(row["last_beat_age_s"]))
            for outcome, key in (("ok", "cycles_ok"), ("failed", "cycles_failed")):
                if _number(row.get(key)) is not None:
                    cycles.add_metric([name, outcome], _number(row[key]))
            histogram = _histogram_buckets(row.get("cycle_durations"))
            if histogram is not None:
                durations.add_metric([name], histogram[0], histogram[1])
            for provider, outcomes in (row.get("provider_requests") or {}).items():
                for outcome, count in (outcomes or {}).items() if isinstance(outcomes, dict) else ():
                    if _number(count) is not None:
                        provider_totals[(str(provider), str(outcome))] += _number(count)
        providers = CounterMetricFamily("mdw_provider_requests_total",
                                        "Requests to market-data providers, by outcome, over all workers",
                                        labels=["provider", "outcome"])
        for (provider, outcome), count in sorted(provider_totals.items()):
            providers.add_metric([provider, outcome], count)
        yield from (worker_up, wanted, restarts, beat_age, cycles, durations, providers)
        yield from _alert_families(rows)

    def _dataset_families(self, rows):
        store_up = GaugeMetricFamily("mdw_store_up", "1 if the store could be read")
        try:
            updates = self._reader.last_update(stale_after=self._status.limits(rows), schedules=schedules(rows))
        except StoreError as exc:
            log.warning("metrics without dataset ages: %s", exc)
            store_up.add_metric([], 0.0)
            yield store_up
            return
        store_up.add_metric([], 1.0)
        age = GaugeMetricFamily("mdw_dataset_age_seconds", "Seconds since the dataset was last written",
                                labels=["dataset"])
        stale = GaugeMetricFamily("mdw_dataset_stale", "1 if the dataset is older than its staleness limit",
                                  labels=["dataset"])
        for dataset, entry in updates.items():
            if entry is not None:
                age.add_metric([dataset], float(entry["age_s"]))
                stale.add_metric([dataset], 1.0 if entry["stale"] else 0.0)
        yield from (store_up, age, stale)


# The alerts worker's counters (reported.counters, see workers/alerts/service.py) -> metric family.
ALERT_FAMILIES = (
    ("alerts_sent", CounterMetricFamily, "mdw_alerts_sent_total", "Alert messages delivered, per destination"),
    ("alerts_failed", CounterMetricFamily, "mdw_alerts_failed_total", "Alert sends that failed (retried with backoff)"),
    ("alerts_dropped", CounterMetricFamily, "mdw_alerts_dropped_total", "Alerts dropped unsent: too many waiting"),
    ("alerts_pending", GaugeMetricFamily, "mdw_alerts_pending", "Alerts waiting to be delivered"),
)


def _alert_families(rows):
    """The alerts workers' counters, summed per destination; nothing while no alerts worker reports."""
    reported = [row["reported"]["counters"] for row in rows if isinstance(row.get("reported"), dict)
                and isinstance(row["reported"].get("counters"), dict) and "alerts_sent" in row["reported"]["counters"]]
    if not reported:
        return
    for key, family_type, name, help_text in ALERT_FAMILIES:
        totals = defaultdict(float)
        for counters in reported:
            for url, count in (counters.get(key) or {}).items():
                if _number(count) is not None:
                    totals[str(url)] += _number(count)
        family = family_type(name, help_text, labels=["url"])
        for url, count in sorted(totals.items()):
            family.add_metric([url], count)
        yield family


def make_registry(status, reader, refresh_token_expiry=None) -> CollectorRegistry:
    """A registry of its own holding one StatusCollector (collect() runs only on a scrape)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status, reader, refresh_token_expiry))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
