"""A fake Yahoo Finance under the real yfinance: `YfData.get` answers from documents built here.

Every yfinance request (history, the timezone lookup, quoteSummary, options,
the batch quote) goes through `yfinance.data.YfData.get`; `FakeYahoo.install`
replaces it, so the whole library runs for real (its parsing, its frames, its
exceptions) and nothing leaves the machine: the cookie and crumb requests,
which live below `get`, are never reached, and `_make_request` is made to fail
loudly should anything call it. The documents have the shape of Yahoo's
answers as yfinance reads them (v8 chart, v7 quote, v7 options, quoteSummary's
404), with deterministic numbers per symbol; they were written from yfinance's
source and Yahoo's field names, not recorded (the tests have no network).

Misbehaviour per symbol, `fake.faults[symbol] = ...`:
  "unknown"     chart and quoteSummary answer 404 "not found"; the batch quote
                leaves it out; options list nothing
  "delisted"    the chart request for data (not the timezone lookup) says "No data found"
  "timeout"     curl_cffi's Timeout (curl error 28), as a real stalled request raises
  "connection"  curl_cffi's ConnectionError (curl error 7)
  "rate_limit"  yfinance's YFRateLimitError, as its session layer raises on HTTP 429
  "http500"     HTTP 500 with an HTML body
  "down"        Yahoo's "Will be right back" page
  "junk"        HTTP 200 with a body that is not JSON
  "hang"        never answers
A quote request fails as a whole when any of its symbols has a fault (but
"unknown"). `fake.edit[symbol]` is a function given each document about the
symbol (and its kind: "chart", "quote", "options", or "lookup" for the timezone
lookup's chart) to damage it in place.
"""
import datetime as dt
import json
import threading
import zlib
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import yfinance  # noqa: F401  at collection: its import adds a warnings filter a test's own marks must follow

from workers.providers.sim import is_trading_day

NEW_YORK = ZoneInfo("America/New_York")
MARKET_TIME = dt.datetime(2026, 11, 25, 20, 0, tzinfo=dt.timezone.utc)  # a Wednesday, 15:00 in New York
VALID_RANGES = ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"]
SESSIONS = {"1d": 1, "5d": 5, "1mo": 21, "3mo": 63, "6mo": 126, "1y": 252, "2y": 504, "5y": 1260,
            "10y": 2520, "max": 2520}
# The weekly expirations Yahoo lists for a symbol, and a few others (Monday/Wednesday dailies).
EXPIRATIONS = (dt.date(2026, 11, 27), dt.date(2026, 11, 30), dt.date(2026, 12, 2), dt.date(2026, 12, 4),
               dt.date(2026, 12, 11), dt.date(2026, 12, 18), dt.date(2026, 12, 24), dt.date(2027, 1, 15))


def spot_of(symbol):
    """A symbol's price in the fake market: 50..250, fixed per symbol."""
    return 50.0 + zlib.crc32(symbol.encode()) % 20000 / 100.0


class FakeResponse:
    def __init__(self, url, status=200, body=None, text=None):
        self.url = url
        self.status_code = status
        self.text = text if text is not None else json.dumps(body)

    def json(self):
        return json.loads(self.text)

    def raise_for_status(self):
        if self.status_code >= 400:
            from yfinance._http import HTTPError

            raise HTTPError(f"HTTP Error {self.status_code}: for url: {self.url}", response=self)


class FakeYahoo:
    def __init__(self, now=MARKET_TIME):
        self.now = now
        self.faults = {}
        self.edit = {}
        self.requests = []  # (path, params) of every request, timezone lookups included
        self.hanging = threading.Event()  # set while a request hangs (for the tests that wait for it)

    def install(self, monkeypatch):
        """Answer every yfinance request from here; fresh yfinance caches and counters for this test."""
        from yfinance import base, cache, data

        monkeypatch.setattr(data.YfData, "get", lambda _, url, params=None, timeout=30: self.get(url, params, timeout))
        monkeypatch.setattr(data.YfData, "_make_request", _no_network)
        data.YfData.cache_get.cache_clear()
        monkeypatch.setattr(base, "_tz_info_fetch_ctr", 0)
        for manager, name in ((cache._TzCacheManager, "_tz_cache"), (cache._CookieCacheManager, "_Cookie_cache"),
                              (cache._ISINCacheManager, "_isin_cache")):
            monkeypatch.setattr(manager, name, None)
        for manager in (cache._TzDBManager, cache._CookieDBManager, cache._ISINDBManager):
            monkeypatch.setattr(manager, "_db", None)
        return self

    def data_requests(self, kind):
        """The requests of one kind ("chart", "quote", "options"), timezone lookups left out."""
        return [(path, params) for path, params in self.requests
                if f"/{kind}" in path and params.get("range") != "1d"]

    # -- routing ---------------------------------------------------------------------------

    def get(self, url, params, timeout):
        parts = urlsplit(url)
        params = {**{k: v[0] for k, v in parse_qs(parts.query).items()}, **dict(params or {})}
        self.requests.append((parts.path, params))
        path = parts.path.rstrip("?")
        if path.startswith("/v8/finance/chart/"):
            return self.chart(url, path.rsplit("/", 1)[1], params)
        if path == "/v7/finance/quote":
            return self.quote(url, params["symbols"].split(","))
        if path.startswith("/v7/finance/options/"):
            return self.options(url, path.rsplit("/", 1)[1], params.get("date"))
        if path.startswith("/v10/finance/quoteSummary/"):
            symbol = path.rsplit("/", 1)[1]
            self.misbehave(url, [symbol])
            return FakeResponse(url, 404, {"quoteSummary": {"result": None, "error": {
                "code": "Not Found", "description": f"Quote not found for symbol: {symbol}"}}})
        raise AssertionError(f"the fake Yahoo has no route for {url}")

    def misbehave(self, url, symbols):
        """Raise or answer as the symbols' faults say; None when they have none."""
        for symbol in symbols:
            fault = self.faults.get(symbol)
            if fault in (None, "unknown", "delisted"):
                continue
            if fault == "hang":
                self.hanging.set()
                while True:
                    threading.Event().wait(3600)
            from curl_cffi.requests import exceptions
            from yfinance.exceptions import YFRateLimitError

            if fault == "timeout":
                raise exceptions.Timeout("Failed to perform, curl: (28) Operation timed out after 10001 milliseconds",
                                         28)
            if fault == "connection":
                raise exceptions.ConnectionError("Failed to perform, curl: (7) Failed to connect to "
                                                 "query2.finance.yahoo.com port 443", 7)
            if fault == "rate_limit":
                raise YFRateLimitError()
            if fault == "http500":
                return FakeResponse(url, 500, text="<html><body>Internal Server Error</body></html>")
            if fault == "down":
                return FakeResponse(url, 200, text="<html><h1>Will be right back...</h1></html>")
            if fault == "junk":
                return FakeResponse(url, 200, text='{"chart": {"result": [{"meta"')
            raise AssertionError(f"unknown fault {fault!r}")
        return None

    def edited(self, symbol, kind, document):
        if symbol in self.edit:
            self.edit[symbol](kind, document)
        return document

    # -- documents -------------------------------------------------------------------------

    def chart(self, url, symbol, params):
        bad = self.misbehave(url, [symbol])
        if bad is not None:
            return bad
        fault = self.faults.get(symbol)
        lookup = params.get("range") == "1d"  # yfinance's timezone lookup
        if fault == "unknown" or (fault == "delisted" and not lookup):
            return FakeResponse(url, 404, {"chart": {"result": None, "error": {
                "code": "Not Found", "description": "No data found, symbol may be delisted"}}})
        interval = params.get("interval", "1d")
        document = intraday_chart(symbol, self.now, params["range"], int(interval[:-1])) if interval.endswith("m") \
            else daily_chart(symbol, self.now, SESSIONS[params["range"]])
        return FakeResponse(url, 200, self.edited(symbol, "lookup" if lookup else "chart", document))

    def quote(self, url, symbols):
        bad = self.misbehave(url, symbols)
        if bad is not None:
            return bad
        records = [self.edited(s, "quote", quote_record(s, self.now)) for s in symbols
                   if self.faults.get(s) != "unknown"]
        return FakeResponse(url, 200, {"quoteResponse": {"result": records, "error": None}})

    def options(self, url, symbol, date):
        bad = self.misbehave(url, [symbol])
        if bad is not None:
            return bad
        if self.faults.get(symbol) == "unknown":
            return FakeResponse(url, 200, {"optionChain": {"result": [], "error": None}})
        expiry = EXPIRATIONS[0] if date is None else dt.datetime.fromtimestamp(int(date), dt.timezone.utc).date()
        document = options_document(symbol, expiry, self.now)
        return FakeResponse(url, 200, self.edited(symbol, "options", document))


def fake_yahoo(monkeypatch):
    """A fixture body: a FakeYahoo installed for one test; yfinance's raising switch put back after it."""
    import yfinance

    hide = yfinance.config.debug.hide_exceptions  # the provider sets it False, process-wide
    try:
        yield FakeYahoo().install(monkeypatch)
    finally:
        yfinance.config.debug.hide_exceptions = hide


def _no_network(*args, **kwargs):
    raise AssertionError("yfinance tried to reach the network in a test")


def _session_open(day):
    return int(dt.datetime.combine(day, dt.time(9, 30), NEW_YORK).timestamp())


def _meta(symbol, now, range_, granularity, price, previous):
    return {"currency": "USD", "symbol": symbol, "exchangeName": "NMS", "fullExchangeName": "NasdaqGS",
            "instrumentType": "EQUITY", "firstTradeDate": 345479400, "regularMarketTime": int(now.timestamp()),
            "hasPrePostMarketData": True, "gmtoffset": -18000, "timezone": "EST",
            "exchangeTimezoneName": "America/New_York", "regularMarketPrice": price, "chartPreviousClose": previous,
            "previousClose": previous, "scale": 3, "priceHint": 2, "dataGranularity": granularity, "range": range_,
            "validRanges": VALID_RANGES}


def daily_chart(symbol, now, sessions):
    """A v8 chart answer: `sessions` NYSE trading days up to today's partial session, prices drifting up."""
    today = now.astimezone(NEW_YORK).date()
    days = []
    day = today
    while len(days) < sessions:
        if is_trading_day(day):
            days.append(day)
        day -= dt.timedelta(days=1)
    days.reverse()
    base = spot_of(symbol)
    closes = [round(base * (1 + 0.001 * (i - len(days) + 1)), 4) for i in range(len(days))]
    quote = {"open": [round(c * 0.995, 4) for c in closes], "high": [round(c * 1.01, 4) for c in closes],
             "low": [round(c * 0.985, 4) for c in closes], "close": closes,
             "volume": [1_000_000 + 1000 * i for i in range(len(days))]}
    return {"chart": {"result": [{
        "meta": _meta(symbol, now, f"{sessions}d", "1d", closes[-1], closes[0]),
        "timestamp": [_session_open(d) for d in days],
        "indicators": {"quote": [quote], "adjclose": [{"adjclose": [round(c * 0.99, 4) for c in closes]}]},
    }], "error": None}}


def intraday_chart(symbol, now, range_, minutes):
    """A v8 intraday chart answer: today's bars from the open until `now`."""
    today = now.astimezone(NEW_YORK).date()
    start, end = _session_open(today), int(dt.datetime.combine(today, dt.time(16), NEW_YORK).timestamp())
    stamps = list(range(start, min(end, int(now.timestamp())), minutes * 60))
    base = spot_of(symbol)
    closes = [round(base + 0.01 * i, 4) for i in range(len(stamps))]
    period = {"timezone": "EST", "start": start, "end": end, "gmtoffset": -18000}
    meta = {**_meta(symbol, now, range_, f"{minutes}m", closes[-1], base), "tradingPeriods": [[period]],
            "currentTradingPeriod": {"pre": period, "regular": period, "post": period}}
    quote = {"open": closes, "high": [c + 0.05 for c in closes], "low": [c - 0.05 for c in closes],
             "close": closes, "volume": [10_000] * len(stamps)}
    return {"chart": {"result": [{"meta": meta, "timestamp": stamps, "indicators": {"quote": [quote]}}],
                      "error": None}}


def quote_record(symbol, now):
    """One record of the v7 batch quote: up 1.5 % on the day."""
    price = spot_of(symbol)
    previous = round(price / 1.015, 4)
    return {"language": "en-US", "region": "US", "quoteType": "EQUITY", "currency": "USD", "marketState": "REGULAR",
            "exchange": "NMS", "symbol": symbol, "regularMarketPrice": price,
            "regularMarketChange": round(price - previous, 4),
            "regularMarketChangePercent": round((price / previous - 1) * 100, 4),
            "regularMarketPreviousClose": previous, "regularMarketVolume": 12_345_678,
            "regularMarketOpen": previous, "regularMarketDayHigh": round(price * 1.002, 4),
            "regularMarketDayLow": round(previous * 0.998, 4), "regularMarketTime": int(now.timestamp())}


def _epoch(day):
    return int(dt.datetime.combine(day, dt.time(0), dt.timezone.utc).timestamp())


def options_document(symbol, expiry, now):
    """A v7 options answer for one expiration: strikes every 1 % of spot from -20 % to +20 %."""
    spot = spot_of(symbol)
    strikes = [round(spot * (1 + k / 100), 1) for k in range(-20, 21)]

    def contract(kind, strike):
        moneyness = strike / spot - 1
        itm = moneyness < 0 if kind == "C" else moneyness > 0
        mid = max(0.05, round(spot * 0.02 + max(0.0, -moneyness if kind == "C" else moneyness) * spot, 2))
        return {"contractSymbol": f"{symbol}{expiry:%y%m%d}{kind}{int(strike * 1000):08d}", "strike": strike,
                "currency": "USD", "lastPrice": mid, "change": 0.1, "percentChange": 2.0, "volume": 1200,
                "openInterest": 300, "bid": round(mid - 0.05, 2), "ask": round(mid + 0.05, 2),
                "contractSize": "REGULAR", "expiration": _epoch(expiry), "lastTradeDate": int(now.timestamp()) - 60,
                "impliedVolatility": 0.30, "inTheMoney": itm}

    return {"optionChain": {"result": [{
        "underlyingSymbol": symbol, "expirationDates": [_epoch(d) for d in EXPIRATIONS], "strikes": strikes,
        "hasMiniOptions": False, "quote": quote_record(symbol, now),
        "options": [{"expirationDate": _epoch(expiry), "hasMiniOptions": False,
                     "calls": [contract("C", k) for k in strikes], "puts": [contract("P", k) for k in strikes]}],
    }], "error": None}}
