"""How many upstream requests a configuration will make, against the shared budget.

`mdwd --check-config` prints this (the registry's `describe`). The steady
state, per worker, in requests per minute on a real provider:

- watchlist: one quotes request per `batch_size` symbols per cycle;
- whale_flows: one chain per symbol and expiration per cycle (`more_expirations`
  for the symbols it names), plus each symbol's expiration list once a day;
- macd, vpb, ttm, cycle_scanner: the daily bars of every symbol they scan, once a day,
  shared by all of them (counted once, on the first of them); today's bar
  comes from the watchlist's quotes. A symbol the watchlist does not quote is
  fetched again by each cycle, so it counts per cycle.

Plus the cold start: the first fill of every history and expiration list.
Above WARN_SHARE of `[provider] requests_per_minute` it warns: retries,
splits of failed batches and token refreshes need room too.
"""
import math

WARN_SHARE = 0.8
DAY_MINUTES = 24 * 60
TECHNICAL = ("macd", "vpb", "ttm", "cycle_scanner")  # market_structure makes no request: it reads the store


def steady_state(config):
    """[(worker name, requests per minute)] for the enabled workers that call the provider."""
    specs = config.enabled_workers
    quoted = {s for spec in specs.values() if spec.kind == "watchlist" for s in spec.options["symbols"]}
    per_minute, bars_counted = [], set()
    for name, spec in specs.items():
        cycles = 60.0 / spec.interval
        symbols = list(spec.options.get("symbols", ()))
        if spec.kind == "watchlist":
            rate = math.ceil(len(symbols) / int(spec.options["batch_size"])) * cycles
        elif spec.kind == "whale_flows":
            more = spec.options.get("more_expirations", {})
            chains = sum(int(more.get(s, spec.options["expirations"])) for s in symbols)
            rate = chains * cycles + len(symbols) / DAY_MINUTES
        elif spec.kind in TECHNICAL:
            daily = [s for s in symbols if s in quoted and s not in bars_counted]
            bars_counted.update(daily)
            rate = len(daily) / DAY_MINUTES + len([s for s in symbols if s not in quoted]) * cycles
        else:
            continue
        per_minute.append((name, rate))
    return per_minute


def cold_start(config):
    """Requests of the first fill: every history once (shared) and every expiration list once."""
    specs = config.enabled_workers.values()
    histories = {s for spec in specs if spec.kind in TECHNICAL for s in spec.options["symbols"]}
    lists = {s for spec in specs if spec.kind == "whale_flows" for s in spec.options["symbols"]}
    return len(histories), len(lists)


def describe(config):
    """The lines `mdwd --check-config` prints about the request budget."""
    provider = config.raw.get("provider", {})
    budget = int(provider.get("requests_per_minute", 120))
    rows = steady_state(config)
    if not rows:
        return []
    total = sum(rate for _, rate in rows)
    share = total / budget
    histories, lists = cold_start(config)
    lines = [
        "request budget, steady state: " + ", ".join(f"{name} {rate:.1f}/min" for name, rate in rows)
        + f"; total {total:.1f} of requests_per_minute {budget} ({share:.0%})",
        f"request budget, cold start: {histories} bar histories and {lists} expiration lists, once",
    ]
    lines += sentiment_warnings(config)
    if provider.get("kind", "sim") == "sim":
        lines.append("(the simulated market has no budget: these are what a real provider would be asked)")
    elif share > WARN_SHARE:
        lines.append(f"warning: the workers would use {share:.0%} of provider.requests_per_minute ({budget}); "
                     f"above {WARN_SHARE:.0%} retries and split batches will run out of budget: "
                     "raise intervals or batch_size, or scan fewer symbols")
    return lines


def sentiment_warnings(config):
    """market_structure reads the chains whale_flows stores: say so when it would want more expirations
    of a sentiment symbol than whale_flows fetches."""
    specs = config.enabled_workers.values()
    fetched = {}
    for spec in specs:
        if spec.kind == "whale_flows":
            more = spec.options.get("more_expirations", {})
            for symbol in spec.options["symbols"]:
                fetched[symbol] = max(fetched.get(symbol, 0), int(more.get(symbol, spec.options["expirations"])))
    out = []
    for spec in specs:
        if spec.kind != "market_structure":
            continue
        wanted = int(spec.options["sentiment_expirations"])
        short = [f"{s} ({fetched.get(s, 0)})" for s in spec.options["sentiment_symbols"] if fetched.get(s, 0) < wanted]
        if short:
            out.append(f"warning: market_structure sentiment_expirations = {wanted}, but whale_flows fetches fewer for "
                       f"{', '.join(short)}: the sentiment reads what is stored; set whale_flows more_expirations")
    return out
