"""The datasets' columns (API.md row fields, in API order) and value conversion.

`to_db_rows()` validates and converts what a worker hands over (a pandas
DataFrame or a list of dicts) into tuples ready for SQLite, raising RowError
before anything touches the database. `from_db_row()` turns a SQLite row back
into a JSON-ready dict (bool, int, float, str, None; never NaN or inf).
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from .errors import RowError

__all__ = [
    "Column", "DATASETS", "SNAPSHOT_DATASETS", "STRUCTURE_DATASETS", "WHALE_FLOWS", "TIMESTAMP_COLUMN",
    "to_db_rows", "from_db_row", "format_ts", "utc",
]

TEXT, REAL, INT, BOOL, DATE, TS = "text", "real", "int", "bool", "date", "timestamp"


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    nullable: bool = True
    choices: tuple[str, ...] = ()
    places: int | None = None  # a real is stored rounded to this many decimals


def _cols(spec: str, **choices: tuple[str, ...]) -> tuple[Column, ...]:
    """'name:kind[!][/places]' words; '!' marks NOT NULL, '/N' rounds a real to N decimals. Booleans
    and timestamps are always NOT NULL; `choices` lists the allowed values of a text column."""
    out = []
    for word in spec.split():
        name, kind = word.split(":")
        kind, _, places = kind.partition("/")
        required = kind.endswith("!")
        kind = kind.rstrip("!")
        out.append(Column(name, kind, nullable=not (required or kind in (BOOL, TS)),
                          choices=choices.get(name, ()), places=int(places) if places else None))
    return tuple(out)


WHALE_FLOWS = "whale_flows"
# Stored precision (issue 12): prices and price changes to cents; percentages, scores, ratios and IV
# (in percent) to 2 places; indicator values (MACD, momentum), delta and a contract's mark (a mid of
# two cent quotes, often a half cent, and the factor of total_premium) to 4. Every reader (API, CSV,
# signal history) sees the same values.
DATASETS: dict[str, tuple[Column, ...]] = {
    "watchlist": _cols(
        "symbol:text! price:real/2 daily_change:real/2 daily_change_pct:real/2 volume:int "
        "updated_at:timestamp"),
    WHALE_FLOWS: _cols(
        "symbol:text! type:text! strike:real!/2 whale_score:real/2 volume:int "
        "open_interest:int vol_oi:real/2 premium:real/4 delta:real/4 expiry:date! dte:int "
        "detected_at:timestamp iv:real/2 underlying_price:real/2 total_premium:real/2", type=("CALL", "PUT")),
    "macd_scanner": _cols(
        "symbol:text! price:real/2 price_change:real/2 price_change_pct:real/2 macd:real/4 "
        "signal:real/4 histogram:real/4 bullish_cross:bool bearish_cross:bool trend:text "
        "scanned_at:timestamp"),
    "vpb_scanner": _cols(
        "symbol:text! price:real/2 price_change:real/2 price_change_pct:real/2 buy_signal:bool "
        "sell_signal:bool volume_surge:bool current_volume:int volume_ma30:real/2 "
        "volume_surge_pct:real/2 highest_high_7:real/2 lowest_low_7:real/2 "
        "breakout_distance_pct:real/2 breakdown_distance_pct:real/2 pattern:text "
        "scanned_at:timestamp"),
    "ttm_squeeze_scanner": _cols(
        "symbol:text! signal:text! squeeze_on:bool momentum:real/4 momentum_direction:text "
        "squeeze_duration:int recent_fire:bool fire_date:date fire_direction:text "
        "price:real/2 bb_upper:real/2 bb_lower:real/2 kc_upper:real/2 kc_lower:real/2 "
        "scanned_at:timestamp"),
    # the market-structure datasets and the cycle scanner (schema v7), on the same precision rule: strikes,
    # spots, walls, flips and dollar exposures to cents; ratios, IV, skew, phase and scores to 2; the cycle
    # value and momentum (indicators), delta and a contract's mark to 4
    "cycle_scanner": _cols(
        "symbol:text! price:real/2 cycle_value:real/4 phase:real/2 strength:real/4 momentum:real/4 "
        "signal_type:text! signal_strength:text action:text extremum_date:date extremum_price:real/2 "
        "last_peak_date:date last_bottom_date:date scanned_at:timestamp",
        signal_type=("PEAK", "BOTTOM", "APPROACHING_PEAK", "APPROACHING_BOTTOM", "NONE")),
    "key_levels": _cols(
        "symbol:text! expiry:text! underlying_price:real/2 call_wall:real/2 put_wall:real/2 call_oi_wall:real/2 "
        "put_oi_wall:real/2 max_gex:real/2 flip_level:real/2 gamma_flip:real/2 net_gex:real/2 pc_ratio:real/2 "
        "total_call_vol:int total_put_vol:int chain_fetched_at:text computed_at:timestamp"),
    "skew_metrics": _cols(
        "symbol:text! expiry:date! dte:int underlying_price:real/2 atm_strike:real/2 atm_iv:real/2 "
        "call_25d_iv:real/2 put_25d_iv:real/2 skew_25d:real/2 put_call_ratio:real/2 total_call_volume:int "
        "total_put_volume:int total_call_oi:int total_put_oi:int unusual_contracts:int max_vol_oi:real/2 "
        "implied_move:real/2 implied_move_pct:real/2 computed_at:timestamp"),
    "oi_flows": _cols(
        "symbol:text! expiry:date! type:text! strike:real!/2 volume:int open_interest:int vol_oi_ratio:real/2 "
        "mark:real/4 notional:real/2 delta:real/4 iv:real/2 underlying_price:real/2 computed_at:timestamp",
        type=("CALL", "PUT")),
    "market_sentiment": _cols(
        "symbol:text! price:real/2 total_call_volume:int total_put_volume:int pc_volume_ratio:real/2 "
        "total_call_oi:int total_put_oi:int pc_oi_ratio:real/2 call_gamma:real/2 put_gamma:real/2 "
        "net_gamma:real/2 avg_iv:real/2 atm_iv:real/2 iv_rank:real/2 iv_history_days:int sentiment_score:real/2 "
        "sentiment_label:text data_quality:text expirations:int timestamp:timestamp",
        sentiment_label=("BULLISH", "SLIGHTLY_BULLISH", "NEUTRAL", "SLIGHTLY_BEARISH", "BEARISH"),
        data_quality=("LOW", "MEDIUM", "HIGH")),
}
SNAPSHOT_DATASETS = ("watchlist", "macd_scanner", "vpb_scanner", "ttm_squeeze_scanner", "cycle_scanner")
STRUCTURE_DATASETS = ("key_levels", "skew_metrics", "oi_flows", "market_sentiment")  # written together
# The one timestamp column per dataset; optional in input, defaults to `now`.
TIMESTAMP_COLUMN = {name: next(c.name for c in cols if c.kind == TS)
                    for name, cols in DATASETS.items()}


def utc(now: dt.datetime) -> dt.datetime:
    """`now` as an aware UTC datetime; a naive one is refused (it is ambiguous)."""
    if not isinstance(now, dt.datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"the clock must return an aware UTC datetime, got {now!r}")
    return now.astimezone(dt.timezone.utc)


def format_ts(moment: dt.datetime) -> str:
    """UTC 'YYYY-MM-DD HH:MM:SS', as SQLite's CURRENT_TIMESTAMP writes it."""
    return utc(moment).strftime("%Y-%m-%d %H:%M:%S")


def _is_missing(value: Any) -> bool:
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    try:  # NaN of any float type; anything else is not missing
        return bool(value != value)
    except (TypeError, ValueError):
        return False


def _is_bool(value: Any) -> bool:
    """bool, or a numpy boolean scalar (its type name differs across numpy versions)."""
    return isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", "") == "b"


def _convert(col: Column, value: Any) -> Any:
    """One value to its SQLite form; raise ValueError with the reason."""
    if _is_missing(value) or (isinstance(value, float) and math.isinf(value)):
        if col.nullable:
            return None
        raise ValueError("is missing (None/NaN) but the column is required")
    kind = col.kind
    if kind == TEXT:
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {type(value).__name__}")
        text = str(value)
        if col.choices:
            text = text.upper()
            if text not in col.choices:
                raise ValueError(f"must be one of {', '.join(col.choices)}, got {value!r}")
        return text
    if kind == BOOL:
        if _is_bool(value):
            return int(bool(value))
        if isinstance(value, numbers.Integral) and int(value) in (0, 1):
            return int(value)
        raise ValueError(f"must be a boolean, got {value!r}")
    if kind in (REAL, INT):
        if _is_bool(value) or not isinstance(value, numbers.Real):
            raise ValueError(f"must be a number, got {value!r}")
        number = float(value)
        if math.isinf(number):
            if col.nullable:
                return None
            raise ValueError("is infinite but the column is required")
        if kind == REAL:
            return number if col.places is None else round(number, col.places)
        if isinstance(value, numbers.Integral):
            return int(value)
        if not number.is_integer():
            raise ValueError(f"must be a whole number, got {value!r}")
        return int(number)
    if kind == DATE:
        if isinstance(value, dt.datetime):
            return value.date().isoformat()
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value).isoformat()
            except ValueError:
                pass
        raise ValueError(f"must be a date or 'YYYY-MM-DD', got {value!r}")
    if kind == TS:
        if isinstance(value, str):
            try:
                moment = dt.datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(f"must be an ISO-8601 UTC time, got {value!r}") from None
            if moment.tzinfo is None:  # 'YYYY-MM-DD HH:MM:SS' is UTC by contract
                moment = moment.replace(tzinfo=dt.timezone.utc)
            return format_ts(moment)
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                raise ValueError(f"is a naive datetime {value!r}; give an aware UTC one")
            return format_ts(value)
        raise ValueError(f"must be an aware datetime or ISO-8601 string, got {value!r}")
    raise AssertionError(f"unknown column kind {kind}")


def _records(dataset: str, rows: Any) -> tuple[list[str] | None, list[Mapping[str, Any]]]:
    """(DataFrame columns or None, list of mappings) from a DataFrame or list of dicts."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a pandas DataFrame
        columns = [str(c) for c in rows.columns]
        return columns, rows.to_dict("records")
    if isinstance(rows, Mapping) or isinstance(rows, (str, bytes)) \
            or not isinstance(rows, Iterable):
        raise RowError(f"{dataset}: rows must be a pandas DataFrame or a list of dicts, "
                       f"got {type(rows).__name__}")
    records = list(rows)
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise RowError(f"{dataset}: row {i} is a {type(record).__name__}, not a dict")
    return None, records


def _check_columns(dataset: str, names: Iterable[str], where: str) -> None:
    cols = DATASETS[dataset]
    allowed = {c.name for c in cols}
    given = set(names)
    unknown = sorted(given - allowed)
    if unknown:
        raise RowError(f"{dataset}: unknown column {unknown[0]!r}{where} "
                       f"(allowed: {', '.join(c.name for c in cols)})")
    optional = TIMESTAMP_COLUMN[dataset]
    missing = [c.name for c in cols if c.name not in given and c.name != optional]
    if missing:
        raise RowError(f"{dataset}: missing column {missing[0]!r}{where} "
                       f"(required: {', '.join(c.name for c in cols if c.name != optional)})")


def to_db_rows(dataset: str, rows: Any, now: dt.datetime) -> list[tuple]:
    """Validate `rows` for `dataset` and return tuples in DATASETS column order.

    The timestamp column (updated_at/detected_at/scanned_at) may be left out;
    it then gets `now`. Raises RowError naming the dataset, row and column.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r} (allowed: {', '.join(DATASETS)})")
    columns, records = _records(dataset, rows)
    if columns is not None:
        if len(set(columns)) != len(columns):
            dup = next(c for c in columns if columns.count(c) > 1)
            raise RowError(f"{dataset}: column {dup!r} appears twice")
        _check_columns(dataset, columns, "")
    stamp = format_ts(now)
    ts_name = TIMESTAMP_COLUMN[dataset]
    out: list[tuple] = []
    for i, record in enumerate(records):
        if columns is None:
            _check_columns(dataset, (str(k) for k in record), f" in row {i}")
        values = []
        for col in DATASETS[dataset]:
            raw = record.get(col.name)
            if col.name == ts_name and _is_missing(raw):
                values.append(stamp)
                continue
            try:
                values.append(_convert(col, raw))
            except ValueError as exc:
                raise RowError(f"{dataset}: row {i} column {col.name!r} {exc}") from None
        out.append(tuple(values))
    return out


def check_unique(dataset: str, rows: Sequence[tuple], key_len: int = 1) -> None:
    """Refuse two rows with the same leading key (symbol) in one snapshot."""
    seen: dict[tuple, int] = {}
    for i, row in enumerate(rows):
        key = row[:key_len]
        if key in seen:
            raise RowError(f"{dataset}: rows {seen[key]} and {i} have the same "
                           f"symbol {key[0]!r}; a snapshot holds one row per symbol")
        seen[key] = i


def from_db_row(dataset: str, row: Sequence[Any]) -> dict[str, Any]:
    """A SQLite row (DATASETS column order) as a JSON-ready dict."""
    out: dict[str, Any] = {}
    for col, value in zip(DATASETS[dataset], row):
        if value is None:
            out[col.name] = None
        elif col.kind == BOOL:
            out[col.name] = bool(value)
        elif col.kind == REAL:
            number = float(value)
            out[col.name] = number if math.isfinite(number) else None
        elif col.kind == INT:
            out[col.name] = int(value)
        else:
            out[col.name] = str(value)
    return out
