"""The metric names a PromQL expression reads, for tests that keep rules and dashboards honest.

    metric_names('sum by (worker) (rate(mdw_worker_cycles_total{outcome!="ok"}[5m])) > 0')
    == {"mdw_worker_cycles_total"}

Not a parser: it removes what cannot be a metric name (strings, label matchers,
ranges, grouping label lists, Grafana's $variables, numbers and durations) and
keeps each remaining identifier that is neither a keyword nor a function or
aggregation (followed by "("). A selector written as {__name__="x"} is not seen;
the files checked here do not use one.
"""
import re

__all__ = ["metric_names", "grafana_label_values_metric"]

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset",
            "bool", "inf", "nan", "atan2"}

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")
_TOKENS = re.compile(r"(?P<number>\d[\w.]*)|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)")


def metric_names(expr: str) -> set[str]:
    text = _VARIABLES.sub(" ", _STRINGS.sub('""', expr))
    for pattern in (_MATCHERS, _RANGES, _GROUPING):
        text = pattern.sub(" ", text)
    names = set()
    for token in _TOKENS.finditer(text):
        name = token.group("name")
        if name is None or name.lower() in KEYWORDS or text[token.end():].lstrip().startswith("("):
            continue
        names.add(name)
    return names


def grafana_label_values_metric(query: str):
    """The expression inside a Grafana `label_values(EXPR, label)` variable query (None if another form)."""
    found = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query, re.S)
    return found.group(1) if found else None
