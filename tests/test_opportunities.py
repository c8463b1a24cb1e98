"""The composite score and the fear/greed label, by hand."""
import pytest

from workers.structure.opportunities import (fear_greed, fear_greed_label, skew_part, top_opportunities,
                                             vol_oi_part, whale_part)


def skew(symbol, expiry, at, skew_25d, max_vol_oi=0.0, pcr=1.0):
    return dict(symbol=symbol, expiry=expiry, computed_at=at, skew_25d=skew_25d, max_vol_oi=max_vol_oi,
                put_call_ratio=pcr)


def test_the_three_parts_and_their_thresholds():
    assert [whale_part(s) for s in (81, 80, 61, 60, 41, 40, 39.9, 0)] == [35, 25, 25, 15, 15, 4, 3, 0]
    assert [vol_oi_part(r) for r in (8.1, 8.0, 6.1, 4.1, 4.0, 3.0, 0)] == [35, 30, 30, 20, 12, 9, 0]
    assert [skew_part(s) for s in (6.1, 6.0, -1.1, -1.0, None)] == [30, 5, 25, 5, 5]


def test_each_whale_with_its_chain_and_each_chain_without_a_whale():
    whales = [dict(symbol="SPY", expiry="2026-03-20", strike=600.0, type="CALL", whale_score=70.0),
              dict(symbol="SPY", expiry="2026-03-20", strike=600.0, type="CALL", whale_score=85.0),  # same contract
              dict(symbol="QQQ", expiry="2026-03-20", strike=500.0, type="PUT", whale_score=45.0)]
    skews = [skew("SPY", "2026-03-20", "10:00", 7.0, 5.0), skew("SPY", "2026-03-20", "10:05", 2.0, 9.0, pcr=0.8),
             skew("IWM", "2026-03-27", "10:05", -3.0, 3.5)]
    rows = top_opportunities(whales, skews, limit=10)
    assert [(r["symbol"], r["strike"], r["composite_score"]) for r in rows] == [
        ("SPY", 600.0, 35 + 35 + 5),  # its highest score 85; the chain's largest vol/OI 9; its latest skew 2
        ("IWM", None, 0 + 10 + 25),   # no whale: vol/OI 3.5 -> 10; skew -3 -> 25
        ("QQQ", 500.0, 15 + 0 + 5)]   # a whale whose chain was not scanned: no vol/OI, no skew
    assert rows[0]["skew_25d"] == 2.0 and rows[0]["put_call_ratio"] == 0.8 and rows[0]["whale_score"] == 85.0
    assert len(top_opportunities(whales, skews, limit=1)) == 1


def test_fear_greed_bands_and_the_latest_skew_of_each_chain():
    assert [fear_greed_label(s) for s in (5.01, 5.0, 3.01, 1.01, 1.0, -2.0, -2.01)] == [
        "EXTREME_FEAR", "FEAR", "FEAR", "SLIGHT_FEAR", "NEUTRAL", "NEUTRAL", "GREED"]
    skews = [skew("SPY", "A", "1", 9.0), skew("SPY", "A", "2", 4.0, pcr=1.2), skew("QQQ", "A", "2", 2.0, pcr=0.6),
             skew("IWM", "A", "2", None)]
    assert fear_greed(skews) == {"sentiment": "SLIGHT_FEAR", "avg_skew": 3.0, "avg_put_call_ratio": 0.9,  # not > 3
                                 "symbols_analyzed": 2, "chains_analyzed": 2}
    assert fear_greed([skew("IWM", "A", "2", float("nan"))]) is None and fear_greed([]) is None


@pytest.mark.parametrize("limit", [1, 3])
def test_limit_cuts_after_sorting(limit):
    skews = [skew(s, "A", "1", 0.0, r) for s, r in (("A", 1.0), ("B", 9.0), ("C", 5.0))]
    assert [r["symbol"] for r in top_opportunities([], skews, limit)] == ["B", "C", "A"][:limit]
