"""What a person reads: one message per alert, or one digest for many.

A message is (title, body). An alert alone gets a title naming what happened
("watchlist killed: hang on fetch TSLA", "MACD bullish cross: AAPL") and a
body with the details. A digest (several alerts waiting when the rate limit
lets the next message go) has one line per operational alert and one line
per kind of signal, naming the symbols:
"MACD bullish cross on AAPL, MSFT, NVDA, ... (+22 more) (30)" under the title "30 signals". Every body stays
under MAX_BODY characters (Discord's limit is 2000), saying how much it left out.
"""
MAX_BODY = 1800
SYMBOLS_PER_LINE = 8
SIGNAL_NAMES = {
    "whale_flow": "whale flow",
    "macd_cross": "MACD cross",
    "ttm_fire": "TTM Squeeze fire",
    "vpb_breakout": "VPB breakout",
    "vpb_breakdown": "VPB breakdown",
    "cycle_peak": "cycle peak",
    "cycle_bottom": "cycle bottom",
    "gamma_flip_cross": "gamma flip crossing",
    "sentiment_change": "sentiment change",
}
HEADLINES = {
    "killed": lambda a: f"{a.get('worker')} killed: {a.get('reason')}" + (
        f" on {a['doing']}" if a.get("doing") and a.get("reason") in ("hang", "stalled") else ""),
    "flapping": lambda a: f"{a.get('worker')} is in a crash loop",
    "recovered": lambda a: f"{a.get('worker')} recovered from its crash loop",
    "escalated": lambda a: "escalated to systemd: the whole service restarts",
    "quarantined": lambda a: f"{a.get('item')} quarantined ({a.get('worker')})",
    "released": lambda a: f"{a.get('item')} released ({a.get('worker')})",
    "stale": lambda a: f"dataset {a.get('dataset')} is stale",
    "fresh": lambda a: f"dataset {a.get('dataset')} is fresh again",
    "token_expiring": lambda a: "the Schwab login expires soon: run mdw-schwab-login",
    "token_dead": lambda a: "the Schwab login is dead: run mdw-schwab-login",
    "started": lambda a: "service started",
    "stopping": lambda a: "service stopping",
    "stopped": lambda a: "service stopped",
    "test": lambda a: "test message",
}


def signal_name(alert):
    """'MACD bullish cross', 'VPB breakout', 'whale flow (bearish)'."""
    name = SIGNAL_NAMES.get(alert["kind"], alert["kind"])
    direction = alert.get("direction")
    if alert["kind"] == "macd_cross" and direction:
        return f"MACD {direction} cross"
    if alert["kind"] in ("vpb_breakout", "vpb_breakdown", "cycle_peak", "cycle_bottom") or not direction:
        return name
    return f"{name} ({direction})"


def _number(value, digits=2):
    return f"{value:,.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"


def signal_details(alert):
    """One line of the values that matter for this kind of signal."""
    v, kind = alert.get("values") or {}, alert["kind"]
    price = f"at {_number(v.get('price') or v.get('underlying_price'))}"
    if kind == "whale_flow":
        return (f"{v.get('type', '?')} {_number(v.get('strike'), 0)} {v.get('expiry', '?')}: notional "
                f"{_number(v.get('total_premium'), 0)} USD, volume {_number(v.get('volume'), 0)}, vol/OI "
                f"{_number(v.get('vol_oi'))}, score {_number(alert.get('score'), 0)}; underlying {price[3:]}")
    if kind == "macd_cross":
        return f"{price} ({_number(v.get('price_change_pct'))} %): MACD {_number(v.get('macd'), 3)}, signal " \
               f"{_number(v.get('signal'), 3)}"
    if kind in ("vpb_breakout", "vpb_breakdown"):
        edge = f"7-bar high {_number(v.get('highest_high_7'))}" if kind == "vpb_breakout" else \
            f"7-bar low {_number(v.get('lowest_low_7'))}"
        return f"{price}, beyond the {edge}, volume {_number(v.get('volume_surge_pct'), 0)} % over its 30-bar average"
    if kind == "ttm_fire":
        return f"{price}: fired {v.get('fire_date', '?')} after {v.get('squeeze_duration', '?')} bars, momentum " \
               f"{_number(v.get('momentum'), 3)}"
    if kind in ("cycle_peak", "cycle_bottom"):
        return f"on {v.get('extremum_date', '?')} at {_number(v.get('extremum_price'))}, confirmed five bars later; " \
               f"now {_number(v.get('price'))}, cycle {_number(v.get('cycle_value'))}, phase {_number(v.get('phase'), 0)}"
    if kind == "gamma_flip_cross":
        side = "above" if alert.get("direction") == "bullish" else "below"
        return f"spot {_number(v.get('underlying_price'))} moved {side} its gamma flip {_number(v.get('gamma_flip'))} " \
               f"(was {_number(v.get('previous_underlying_price'))} against {_number(v.get('previous_gamma_flip'))})"
    if kind == "sentiment_change":
        return f"{v.get('previous_label', '?')} -> {v.get('sentiment_label', '?')}: score " \
               f"{_number(alert.get('score'))}, put/call volume {_number(v.get('pc_volume_ratio'))}, IV rank " \
               f"{_number(v.get('iv_rank'))}"
    return ", ".join(f"{k} {val}" for k, val in list(v.items())[:8])


def headline(alert):
    if alert.get("signal"):
        return f"{signal_name(alert)}: {alert.get('symbol')}"
    make = HEADLINES.get(alert["kind"])
    return make(alert) if make else alert["kind"]


def single(alert, origin):
    """(title, body) of one alert; `origin` names the service (host) in the title."""
    if alert.get("signal"):
        body = f"{alert.get('symbol')} {signal_name(alert)} {signal_details(alert)}"
    else:
        body = alert.get("text") or headline(alert)
    return f"[{origin}] {headline(alert)}", _cut(f"{body}\n({alert['at']} UTC)")


def digest(alerts, origin):
    """(title, body) of one message for many alerts: operational ones a line each, signals grouped."""
    lines, groups = [], {}
    for alert in alerts:
        if alert.get("signal"):
            groups.setdefault(signal_name(alert), []).append(alert.get("symbol"))
        else:
            lines.append(f"{alert['at'][11:]} {alert.get('text') or headline(alert)}")  # the text says it all
    for name, symbols in groups.items():
        unique = list(dict.fromkeys(symbols))
        shown = ", ".join(unique[:SYMBOLS_PER_LINE])
        more = f", ... (+{len(unique) - SYMBOLS_PER_LINE} more)" if len(unique) > SYMBOLS_PER_LINE else ""
        lines.append(f"{name} on {shown}{more}" + (f" ({len(unique)})" if len(unique) > 1 else ""))
    operational = sum(1 for a in alerts if not a.get("signal"))
    counts = [(operational, "event"), (len(alerts) - operational, "signal")]
    title = " and ".join(f"{n} {word}{'s' if n > 1 else ''}" for n, word in counts if n)
    return f"[{origin}] {title}", _cut_lines(lines)


def _cut(text):
    return text if len(text) <= MAX_BODY else text[:MAX_BODY - 3] + "..."


def _cut_lines(lines):
    out, size = [], 0
    for n, line in enumerate(lines):
        line = _cut(line)
        if size + len(line) + 1 > MAX_BODY - 40:
            out.append(f"(+{len(lines) - n} more lines)")
            break
        out.append(line)
        size += len(line) + 1
    return "\n".join(out)
