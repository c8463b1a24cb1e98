"""Symbol lists: the default watchlist and the whale-flow subset.

The watchlist is the old system's (`scripts/market_data_worker.py`), grouped the
same way, with duplicates removed (CRWD, ZS, S and AXP were listed twice) and two
corrections: Block trades as XYZ since January 2025 (was SQ), and the typo ATLR
(no such listing; Atlassian is TEAM, already present) is dropped. BRK.B is kept
in the dotted form the old system sent.

Order is stable and meaningful: the sim provider derives each symbol's cycle
phase from its position in `DEFAULT_UNIVERSE`, which spreads technical events
evenly over the trading days.
"""
from __future__ import annotations

SECTORS: dict[str, tuple[str, ...]] = {
    "index_etfs": ("SPY", "QQQ", "IWM", "DIA", "VTI", "VOO"),
    "mega_cap_tech": ("AAPL", "MSFT", "GOOGL", "GOOG", "AMZN", "META", "NVDA", "TSLA"),
    "ai": ("PLTR", "AI", "SOUN", "BBAI", "SMCI"),
    "cloud_saas": ("SNOW", "DDOG", "NET", "CRWD", "ZS", "OKTA", "CFLT", "S", "MDB", "ESTC",
                   "NOW", "CRM", "ADBE", "WDAY", "VEEV", "HUBS", "ZM", "DOCN", "FROG"),
    "semiconductors": ("AMD", "AVGO", "TSM", "QCOM", "MU", "INTC", "MRVL", "ARM", "AMAT",
                       "LRCX", "ASML", "KLAC", "MPWR", "ON"),
    "cybersecurity": ("PANW", "FTNT", "CRWD", "ZS", "S", "CHKP", "TENB"),
    "fintech": ("XYZ", "COIN", "PYPL", "AFRM", "SOFI", "NU", "HOOD", "UPST"),
    "ecommerce": ("SHOP", "MELI", "BABA", "SE", "CPNG", "ABNB", "DASH", "UBER", "LYFT"),
    "software": ("U", "GTLB", "TEAM", "MNDY", "BILL", "PATH"),
    "ev_battery": ("RIVN", "LCID", "NIO", "XPEV", "LI", "PLUG", "CHPT"),
    "high_growth": ("RBLX", "PINS", "SNAP", "TWLO", "ROKU", "SPOT", "NFLX", "DIS"),
    "financials": ("JPM", "BAC", "WFC", "C", "GS", "MS", "BLK", "SCHW", "USB", "PNC",
                   "BRK.B", "AXP", "MET", "PRU", "AFL"),
    "payments": ("V", "MA", "AXP"),
    "healthcare": ("UNH", "JNJ", "ABBV", "LLY", "MRK", "PFE", "TMO", "ABT", "DHR", "BMY",
                   "AMGN", "GILD", "CVS", "CI", "HUM"),
    "staples_retail": ("WMT", "COST", "TGT", "HD", "LOW", "PG", "KO", "PEP", "MCD", "SBUX",
                       "NKE", "TJX", "DG", "DLTR"),
    "energy": ("XOM", "CVX", "COP", "SLB", "EOG", "OXY", "PSX", "VLO"),
    "industrials": ("BA", "CAT", "DE", "GE", "HON", "UPS", "RTX", "LMT", "MMM", "EMR"),
    "telecom_media": ("T", "VZ", "TMUS", "CMCSA", "CHTR"),
    "reits": ("AMT", "PLD", "EQIX", "PSA", "SPG", "O"),
    "utilities": ("NEE", "DUK", "SO", "D", "AEP"),
}


def _unique(groups) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for group in groups:
        for symbol in group:
            seen.setdefault(symbol, None)
    return tuple(seen)


WATCHLIST: tuple[str, ...] = _unique(SECTORS.values())

# High options volume subset scanned for whale flows: one options chain per
# symbol and expiration, so this list sets the whale scanner's request count.
WHALE_SYMBOLS: tuple[str, ...] = (
    "SPY", "QQQ", "IWM", "DIA",
    "AAPL", "MSFT", "GOOGL", "AMZN", "META", "NVDA", "TSLA",
    "PLTR", "AMD", "CRWD", "SNOW", "COIN", "HOOD", "SOFI",
    "SHOP", "UBER", "ABNB", "DASH", "RBLX",
    "TSM", "AVGO",
)

# Everything a default deployment touches, watchlist order first.
DEFAULT_UNIVERSE: tuple[str, ...] = _unique((WATCHLIST, WHALE_SYMBOLS))


def sector_of(symbol: str) -> str | None:
    """Return the first sector that lists `symbol`, or None."""
    for name, members in SECTORS.items():
        if symbol in members:
            return name
    return None
