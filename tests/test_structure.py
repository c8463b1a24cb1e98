"""Market-structure computations: tiny chains worked out by hand, and random chains against the
per-contract loops of tests/structure_reference.py."""
import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from tests import structure_reference as ref
from workers import options_math
from workers.structure import analyse, key_levels, oi_flows, prepare, skew_metrics, with_all_expirations
from workers.structure.sentiment import constant_maturity_iv, gamma_part, iv_rank, label, quality, ratio_part

FETCHED = "2026-03-02T15:00:00+00:00"
E1, E2 = "2026-03-20", "2026-04-17"


def contract(kind, strike, volume, oi, gamma=np.nan, mark=1.0, iv=30.0, delta=np.nan, spot=100.0, expiry=E1,
             symbol="X"):
    return dict(symbol=symbol, expiry=expiry, type=kind, strike=float(strike), volume=volume, open_interest=oi,
                gamma=gamma, mark=mark, iv=iv, delta=delta, underlying_price=spot, fetched_at=FETCHED, dte=18,
                bid=mark, ask=mark, last=mark)


# A chain at spot 100 whose gammas are given, so every GEX is gamma x OI x 100 x 100^2 x 0.01 = gamma x OI x 1e4.
HAND_CHAIN = [
    contract("CALL", 95, 10, 100, gamma=0.020, mark=6.0, iv=30, delta=0.80),   # gex +20,000
    contract("CALL", 100, 50, 300, gamma=0.040, mark=3.0, iv=25, delta=0.50),  # +120,000
    contract("CALL", 105, 40, 500, gamma=0.030, mark=1.0, iv=22, delta=0.20),  # +150,000
    contract("PUT", 95, 60, 400, gamma=0.025, mark=1.2, iv=35, delta=-0.20),   # -100,000
    contract("PUT", 100, 30, 200, gamma=0.040, mark=3.2, iv=28, delta=-0.50),  # -80,000
    contract("PUT", 105, 5, 50, gamma=0.020, mark=6.5, iv=26, delta=-0.80),    # -10,000
]


def levels_of(rows):
    levels, strikes = key_levels(prepare(pd.DataFrame(rows)))
    return levels, strikes


def test_gex_per_contract_summed_per_strike_and_the_walls_by_hand():
    levels, strikes = levels_of(HAND_CHAIN)
    by_strike = strikes.set_index("strike")
    assert by_strike["call_gex"].tolist() == pytest.approx([20_000, 120_000, 150_000])
    assert by_strike["put_gex"].tolist() == pytest.approx([-100_000, -80_000, -10_000])
    assert by_strike["net_gex"].tolist() == pytest.approx([-80_000, 40_000, 140_000])
    assert by_strike["net_vol"].tolist() == [50, -20, -35]  # put - call, the old sign
    assert by_strike["call_premium"].tolist() == pytest.approx([6_000, 15_000, 4_000])  # volume x mark x 100
    assert by_strike["distance_pct"].tolist() == pytest.approx([5, 0, 5])
    row = levels.iloc[0]
    assert (row.call_wall, row.put_wall) == (100.0, 95.0)        # most call volume (50), most put volume (60)
    assert (row.call_oi_wall, row.put_oi_wall) == (105.0, 95.0)  # most call OI (500), most put OI (400)
    assert row.max_gex == 105.0 and row.net_gex == pytest.approx(100_000)
    assert row.pc_ratio == pytest.approx(95 / 100) and (row.total_call_vol, row.total_put_vol) == (100, 95)
    assert math.isnan(row.flip_level)  # only strike 100 is within 2 % of spot


def test_gex_across_expirations_is_per_contract_never_summed_gamma_times_summed_oi():
    rows = [contract("CALL", 100, 1, 300, gamma=0.04), contract("CALL", 100, 1, 1000, gamma=0.01, expiry=E2)]
    levels, strikes = key_levels(with_all_expirations(prepare(pd.DataFrame(rows))))
    # (0.04 x 300 + 0.01 x 1000) x 1e4 = 220,000; the old (0.04 + 0.01) x 1300 x 1e4 would be 650,000
    assert strikes["call_gex"].tolist() == pytest.approx([220_000]) and levels["expiry"].tolist() == ["all"]


def test_flip_level_is_the_first_net_volume_sign_change_within_two_percent_of_spot():
    rows = []
    for strike, net in ((97.0, -9), (98.5, 10), (99.5, 5), (100.5, -5), (101.5, 3)):  # 97 is 3 % away
        rows += [contract("CALL", strike, 20, 100), contract("PUT", strike, 20 + net, 100)]
    levels, _ = levels_of(rows)
    assert levels["flip_level"].tolist() == [99.5]  # +5 at 99.5, then -5 at 100.5


def test_gamma_flip_is_the_closed_form_zero_of_a_call_above_and_a_put_below():
    # One call at 110 and one put at 90, same iv, time and OI: their gammas are equal where
    # d1(S, 110) = -d1(S, 90), i.e. S = sqrt(110 x 90) x exp(-(r + sigma^2 / 2) T).
    rows = [contract("CALL", 110, 0, 1000, iv=20.0), contract("PUT", 90, 0, 1000, iv=20.0)]
    prepared = prepare(pd.DataFrame(rows))
    years = prepared["years"].iloc[0]
    expected = math.sqrt(110 * 90) * math.exp(-(options_math.RISK_FREE_RATE + 0.02) * years)
    levels, _ = key_levels(prepared)
    assert levels["gamma_flip"].iloc[0] == pytest.approx(expected, abs=0.02)


def test_gamma_flip_is_null_when_the_exposure_never_changes_sign():
    levels, _ = levels_of([contract("CALL", k, 5, 100) for k in (95, 100, 105)])
    assert math.isnan(levels["gamma_flip"].iloc[0])


def test_missing_gamma_is_black_scholes_from_the_contracts_iv():
    prepared = prepare(pd.DataFrame([contract("CALL", 105, 1, 10, iv=25.0)]))
    want = options_math.gamma(100.0, 105.0, 0.25, prepared["years"].iloc[0])
    assert prepared["gamma"].iloc[0] == pytest.approx(float(want)) and prepared["gex"].iloc[0] == pytest.approx(
        float(want) * 10 * 1e4)


def test_twenty_five_delta_skew_is_interpolated_in_delta_by_hand():
    skew = skew_metrics(prepare(pd.DataFrame(HAND_CHAIN))).iloc[0]
    # calls: delta 0.20 (iv 22) .. 0.50 (iv 25): at 0.25, 22 + 3 x 0.05 / 0.30 = 22.5
    # puts: delta -0.50 (iv 28) .. -0.20 (iv 35): at -0.25, 28 + 7 x 0.25 / 0.30 = 33.8333
    assert skew.call_25d_iv == pytest.approx(22.5) and skew.put_25d_iv == pytest.approx(28 + 7 * 0.25 / 0.3)
    assert skew.skew_25d == pytest.approx(28 + 7 * 0.25 / 0.3 - 22.5)
    assert skew.atm_strike == 100 and skew.atm_iv == pytest.approx((25 + 28) / 2)  # spot on a strike
    assert skew.implied_move == pytest.approx(3.0 + 3.2) and skew.implied_move_pct == pytest.approx(6.2)
    assert skew.put_call_ratio == pytest.approx(0.95)


def test_atm_iv_between_strikes_and_no_extrapolated_twenty_five_delta():
    rows = [{**c, "underlying_price": 101.0} for c in HAND_CHAIN if c["delta"] not in (0.20, -0.20)]
    skew = skew_metrics(prepare(pd.DataFrame(rows))).iloc[0]
    # strike 100: (25 + 28) / 2 = 26.5; strike 105: iv 26 (its put alone); at 101: 26.5 - 0.5 x 1 / 5
    assert skew.atm_iv == pytest.approx(26.4)
    assert math.isnan(skew.call_25d_iv) and math.isnan(skew.put_25d_iv) and math.isnan(skew.skew_25d)


def test_unusual_contracts_have_volume_at_least_three_times_open_interest():
    rows = [contract("CALL", 100, 300, 100, delta=0.5), contract("PUT", 100, 299, 100, delta=-0.5),
            contract("CALL", 105, 40, 0, delta=0.3)]  # OI 0 counts as 1
    prepared = prepare(pd.DataFrame(rows))
    skew = skew_metrics(prepared).iloc[0]
    assert skew.unusual_contracts == 2 and skew.max_vol_oi == 40.0
    flows = oi_flows(prepared)
    assert flows[["strike", "type", "vol_oi_ratio"]].values.tolist() == [[105.0, "CALL", 40.0], [100.0, "CALL", 3.0]]
    assert flows["notional"].tolist() == pytest.approx([40 * 100.0, 300 * 100.0])


# -- against the per-contract loops ------------------------------------------------------------

@st.composite
def chains(draw):
    rows = []
    for symbol in draw(st.lists(st.sampled_from(["AAA", "BBB", "CCC"]), min_size=1, max_size=3, unique=True)):
        spot = draw(st.floats(20, 800))
        for expiry in draw(st.lists(st.sampled_from([E1, E2, "2026-05-15"]), min_size=1, max_size=2, unique=True)):
            years = options_math.years_to_expiry(pd.Timestamp(FETCHED), expiry)
            count = draw(st.integers(2, 12))
            strikes = sorted(draw(st.lists(st.integers(-30, 30), min_size=count, max_size=count, unique=True)))
            for step in strikes:
                strike = round(spot * (1 + step / 200), 2)
                for kind in ("CALL", "PUT"):
                    iv = draw(st.one_of(st.just(float("nan")), st.floats(8, 150)))
                    delta = float(options_math.greeks(kind == "CALL", spot, strike, (iv if iv == iv else 30) / 100,
                                                      years)["delta"])
                    gamma = draw(st.one_of(st.just(float("nan")), st.floats(0, 0.2)))
                    rows.append(contract(kind, strike, draw(st.integers(0, 5000)), draw(st.integers(0, 20000)),
                                         gamma=gamma, mark=draw(st.floats(0.01, 80)), iv=iv, delta=delta, spot=spot,
                                         expiry=expiry, symbol=symbol))
    return rows


def same(a, b):
    if b is None:
        return a is None or a != a
    return a == pytest.approx(b, rel=1e-7, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(rows=chains())
def test_key_levels_equal_the_per_contract_loop(rows):
    prepared = prepare(pd.DataFrame(rows))
    levels, strikes = key_levels(prepared)
    contracts = prepared.to_dict("records")
    for (symbol, expiry), chain in ref.by_chain(contracts).items():
        want, want_rows = ref.chain_levels(chain)
        got = levels[(levels.symbol == symbol) & (levels.expiry == expiry)].iloc[0]
        for field, value in want.items():
            assert same(got[field], value), (field, got[field], value)
        mine = strikes[(strikes.symbol == symbol) & (strikes.expiry == expiry)].set_index("strike")
        for strike, row in want_rows.items():
            for field, value in row.items():
                assert same(mine.at[strike, field], value), (strike, field)


@settings(max_examples=60, deadline=None)
@given(rows=chains())
def test_skew_equals_the_per_contract_loop(rows):
    prepared = prepare(pd.DataFrame(rows))
    skew = skew_metrics(prepared)
    for (symbol, expiry), chain in ref.by_chain(prepared.to_dict("records")).items():
        got = skew[(skew.symbol == symbol) & (skew.expiry == expiry)].iloc[0]
        for field, value in ref.chain_skew(chain).items():
            assert same(got[field], value), (field, got[field], value)


# -- sentiment ----------------------------------------------------------------------------------

def test_sentiment_parts_and_bands_by_hand():
    assert ratio_part(80, 100) == pytest.approx(40) and ratio_part(50, 100) == pytest.approx(70)
    assert ratio_part(200, 100) == 0 and ratio_part(5, 0) == 0 and ratio_part(0, 0) == 50
    assert gamma_part(3.0, 1.0) == 75.0 and gamma_part(0.0, 0.0) == 50.0
    assert [label(s) for s in (65, 64.99, 55, 45, 35, 34.99)] == [
        "BULLISH", "SLIGHTLY_BULLISH", "SLIGHTLY_BULLISH", "NEUTRAL", "SLIGHTLY_BEARISH", "BEARISH"]
    assert [quality(v) for v in (999, 1000, 9999, 10000)] == ["LOW", "MEDIUM", "MEDIUM", "HIGH"]


def test_iv_rank_is_null_until_twenty_days_then_ranks_today_in_its_history():
    assert iv_rank(20.0, [10.0] * 18) == (None, 19)
    assert iv_rank(20.0, [10.0] * 10 + [30.0] * 9) == (50.0, 20)  # (20 - 10) / (30 - 10)
    assert iv_rank(40.0, [10.0] * 300) == (100.0, 252)  # the last 252 days count
    assert iv_rank(None, [10.0] * 30) == (None, 30) and iv_rank(10.0, [10.0] * 30) == (None, 31)  # flat


def test_thirty_day_atm_iv_interpolates_total_variance():
    # 20 % at 10 days, 30 % at 40 days: variance-time 0.04 x 10/365 and 0.09 x 40/365; at 30 days
    # (0.04 x 10 + (0.09 x 40 - 0.04 x 10) x 20/30) / 30 = 0.08444...: sqrt = 29.06 %
    got = constant_maturity_iv([20.0, 30.0], [10 / 365, 40 / 365])
    assert got == pytest.approx(math.sqrt((0.04 * 10 + (3.6 - 0.4) * 2 / 3) / 30) * 100)
    assert constant_maturity_iv([20.0], [5 / 365]) == 20.0 and constant_maturity_iv([], []) is None


def test_sentiment_of_a_hand_chain():
    rows = [{**c, "symbol": "SPY"} for c in HAND_CHAIN]
    result = analyse(pd.DataFrame(rows), sentiment_symbols=("SPY",), iv_histories={"SPY": [10.0] * 25})
    s = result.sentiment.iloc[0]
    assert (s.total_call_volume, s.total_put_volume, s.total_call_oi, s.total_put_oi) == (100, 95, 900, 650)
    assert s.call_gamma == pytest.approx(290_000) and s.put_gamma == pytest.approx(190_000)
    assert s.net_gamma == pytest.approx(100_000) and s.avg_iv == pytest.approx((30 + 25 + 22 + 35 + 28 + 26) / 6)
    volume, oi, gamma = (1.2 - 0.95) * 100, (1.2 - 650 / 900) * 100, 50 + 50 * 100_000 / 480_000
    assert s.sentiment_score == pytest.approx(round(0.4 * volume + 0.3 * oi + 0.3 * gamma, 2))  # 10 + 14.33 + 18.13
    assert s.sentiment_label == "SLIGHTLY_BEARISH" and s.data_quality == "LOW" and s.expirations == 1
    assert s.atm_iv == pytest.approx(26.5) and s.iv_rank == 100.0 and s.iv_history_days == 26


def test_sentiment_reads_only_the_nearest_expirations():
    rows = [contract("CALL", 100, 10, 10, symbol="SPY", expiry=e, gamma=0.01) for e in (E1, E2, "2026-05-15")]
    s = analyse(pd.DataFrame(rows), sentiment_symbols=("SPY",), sentiment_expirations=2).sentiment.iloc[0]
    assert s.expirations == 2 and s.total_call_volume == 20


def test_analyse_of_nothing_is_empty_frames():
    empty = pd.DataFrame(columns=list(HAND_CHAIN[0]))
    result = analyse(empty, now=dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc))
    assert all(len(frame) == 0 for frame in result)
