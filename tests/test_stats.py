"""robustbench_nlp.stats against published and hand-computed values (not against itself)."""

from __future__ import annotations

import math

import pytest

from robustbench_nlp.stats import (Pooled, mcnemar_exact, paired_difference_interval, pooled,
                                   wilson_interval)


@pytest.mark.parametrize("k, n, low, high", [
    # Newcombe (1998a) Stat. Med. 17:857, Table I, method 3 (Wilson score, no correction)
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_newcombe_table_1(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert round(lo, 4) == low and round(hi, 4) == high


def test_wilson_edges_and_errors():
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    lo, hi = wilson_interval(20, 20)
    assert hi == 1.0 and round(lo, 4) == round(1 - 0.1611, 4)  # mirror of 0/20
    # a wider interval at higher confidence
    assert wilson_interval(81, 263, 0.99)[0] < 0.2553 < 0.3662 < wilson_interval(81, 263, 0.99)[1]
    for bad in [(5, 4), (-1, 4), (1, -4), (1.5, 4)]:
        with pytest.raises(ValueError):
            wilson_interval(*bad)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 4, confidence=1.0)


def test_mcnemar_exact():
    # 1 vs 6 discordant: P(X ≤ 1) for X ~ Bin(7, 1/2) is (1 + 7)/128; two-sided doubles it
    assert mcnemar_exact(1, 6) == pytest.approx(2 * (1 + 7) / 128, abs=1e-12)
    assert mcnemar_exact(6, 1) == pytest.approx(0.125, abs=1e-12)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 3) == 1.0  # the most likely outcome: capped at 1
    # 0 vs 10: 2 / 2^10
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 1024, abs=1e-15)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_paired_interval_published_example():
    # Fagerland, Lydersen & Laake (2017), ch. 8, Newcombe square-and-add interval for the
    # Cavo et al. (2012) complete-response table [[59, 6], [16, 80]]: estimate −0.0621,
    # 95% CI −0.1186 to −0.0046 (also the expected output in the test suite of their R
    # package `contingencytables`, tests/testthat/test-ch8.R)
    lo, hi = paired_difference_interval(59, 6, 16, 80)
    assert (round(lo, 4), round(hi, 4)) == (-0.1186, -0.0046)


def test_paired_interval_hand_computed():
    # both a = 3, only A b = 5, only B c = 1, neither d = 11; n = 20, z = 1.959964
    # p_A = 8/20 = 0.4, p_B = 4/20 = 0.2, Δ = 0.2
    # Wilson 8/20: (2·8 + z² ∓ z·sqrt(z² + 4·8·(1 − 0.4))) / (2·(20 + z²))
    #            = (19.8415 ∓ 1.959964·4.8002) / 47.6829 = (0.218807, 0.613418)
    # Wilson 4/20: (2·4 + z² ∓ z·sqrt(z² + 4·4·(1 − 0.2))) / (2·(20 + z²))
    #            = (11.8415 ∓ 1.959964·4.0794) / 47.6829 = (0.080658, 0.416017)
    # φ: A = ad − bc = 33 − 5 = 28 > n/2 = 10, so φ = (28 − 10)/sqrt(8·12·4·16)
    #    = 18/sqrt(6144) = 0.229640
    # δ = sqrt(0.181193² − 2·0.229640·0.181193·0.216017 + 0.216017²) = 0.248028
    #     (p_A − l_A = 0.181193, u_B − p_B = 0.216017)
    # ε = sqrt(0.213418² − 2·0.229640·0.213418·0.119342 + 0.119342²) = 0.219299
    #     (u_A − p_A = 0.213418, p_B − l_B = 0.119342)
    # limits: 0.2 − 0.248028 = −0.048028, 0.2 + 0.219299 = 0.419299
    lo, hi = paired_difference_interval(3, 5, 1, 11)
    assert (round(lo, 4), round(hi, 4)) == (-0.0480, 0.4193)
    # swapping A and B mirrors the interval
    lo2, hi2 = paired_difference_interval(3, 1, 5, 11)
    assert lo2 == pytest.approx(-hi, abs=1e-12) and hi2 == pytest.approx(-lo, abs=1e-12)


@pytest.mark.parametrize("table", [(3, 5, 1, 11), (59, 6, 16, 80), (0, 0, 7, 3), (10, 0, 0, 0),
                                   (0, 4, 0, 0), (1, 2, 3, 4), (40, 1, 0, 59)])
def test_paired_interval_contains_estimate(table):
    a, b, c, d = table
    n = a + b + c + d
    lo, hi = paired_difference_interval(*table)
    assert -1.0 <= lo <= (b - c) / n <= hi <= 1.0


@pytest.mark.parametrize("table", [(10, 4, 4, 82), (0, 3, 3, 0), (20, 0, 0, 80), (5, 7, 7, 1)])
def test_paired_interval_symmetric(table):
    lo, hi = paired_difference_interval(*table)
    assert lo == pytest.approx(-hi, abs=1e-12) and hi > 0


def test_paired_interval_edges():
    assert all(math.isnan(x) for x in paired_difference_interval(0, 0, 0, 0))
    with pytest.raises(ValueError):
        paired_difference_interval(1, -1, 0, 0)
    # a wider interval at higher confidence
    lo95, hi95 = paired_difference_interval(3, 5, 1, 11)
    lo99, hi99 = paired_difference_interval(3, 5, 1, 11, confidence=0.99)
    assert lo99 < lo95 and hi99 > hi95


def test_pooled():
    # three seeds: 81/263 and 15/148 and 4/89 → 100 of 500
    p = pooled([81, 15, 4], [263, 148, 89])
    assert isinstance(p, Pooled)
    assert (p.successes, p.n, p.runs) == (100, 500, 3)
    assert p.proportion == pytest.approx(0.2)
    # Wilson 100/500: (200 + z² ∓ z·sqrt(z² + 400·0.8)) / (2·(500 + z²))
    #               = (203.8415 ∓ 1.959964·17.9956) / 1007.6829 = (0.167285, 0.237289)
    assert (round(p.low, 4), round(p.high, 4)) == (0.1673, 0.2373)
    # per-run percentages 30.7985, 10.1351, 4.4944: mean 15.1427, sample sd 13.8486
    pcts = [100 * 81 / 263, 100 * 15 / 148, 100 * 4 / 89]
    mean = sum(pcts) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in pcts) / 2)
    assert p.mean_pct == pytest.approx(mean) and round(p.mean_pct, 4) == 15.1427
    assert p.sd_pct == pytest.approx(sd) and round(p.sd_pct, 4) == 13.8486
    one = pooled([15], [148])
    assert math.isnan(one.sd_pct) and (round(one.low, 4), round(one.high, 4)) == (0.0624, 0.1605)
    for bad in [([], []), ([1, 2], [3]), ([5], [4]), ([-1], [4])]:
        with pytest.raises(ValueError):
            pooled(*bad)


def test_wilson_closed_form_agrees_with_scipy():
    """The closed form equals scipy's independent implementation over a grid of counts."""
    from scipy.stats import binomtest

    from robustbench_nlp.stats import wilson_interval

    for n in (1, 2, 7, 20, 100, 872):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            for conf in (0.9, 0.95, 0.99):
                ci = binomtest(k, n).proportion_ci(confidence_level=conf, method="wilson")
                lo, hi = wilson_interval(k, n, conf)
                assert lo == pytest.approx(max(0.0, ci.low), abs=1e-12)
                assert hi == pytest.approx(min(1.0, ci.high), abs=1e-12)
