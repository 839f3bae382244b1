"""Uncertainty of accuracies under attack, and paired comparison of two runs.

An AUA is a proportion: the number of attacked examples on which the attack failed (``k``)
out of the number attacked (``n``). With ``n = 100`` its sampling error is several
percentage points, so two runs that differ by a few points may well be equally robust. This
module gives

* :func:`wilson_interval` — the score interval of one proportion (Wilson 1927);
* :func:`mcnemar_exact` — the exact McNemar test of two runs attacked on the *same*
  examples (only the examples on which they disagree carry information);
* :func:`paired_difference_interval` — the interval of the difference of two such paired
  proportions (Newcombe 1998, "method 10");
* :func:`pooled` — one proportion pooled over several runs (seeds), with the mean and sample
  standard deviation of the per-run percentages.

Units: every argument and result is a count or a proportion in [0, 1], except the fields of
:class:`Pooled` whose names end in ``_pct`` (percentages, 0-100). Callers that print
percentages (``rbnlp compare``) multiply by 100 themselves.

References:
    E. B. Wilson (1927). Probable inference, the law of succession, and statistical
    inference. J. Am. Stat. Assoc. 22:209-212.
    R. G. Newcombe (1998a). Two-sided confidence intervals for the single proportion:
    comparison of seven methods. Stat. Med. 17:857-872.
    R. G. Newcombe (1998b). Improved confidence intervals for the difference between
    binomial proportions based on paired data. Stat. Med. 17:2635-2650.
    Q. McNemar (1947). Note on the sampling error of the difference between correlated
    proportions or percentages. Psychometrika 12:153-157.
    M. W. Fagerland, S. Lydersen, P. Laake (2017). Statistical Analysis of Contingency
    Tables, ch. 8 (the paired 2x2 table), whose worked example this module's tests reproduce.
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import asdict, dataclass

__all__ = ["wilson_interval", "mcnemar_exact", "paired_difference_interval", "pooled",
           "Pooled"]


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value:
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be ≥ 0, got {value!r}")
    return int(value)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson (1927) score interval of the proportion ``successes / n``.

    The limits are the two roots ``p`` of ``|k/n − p| = z·sqrt(p(1 − p)/n)`` with ``z`` the
    ``(1 + confidence)/2`` normal quantile, i.e. (Newcombe 1998a, method 3)::

        (2k + z² ± z·sqrt(z² + 4k(1 − k/n))) / (2(n + z²))

    computed in that closed form (cheap enough for every cell of a leaderboard; the z
    quantile from :func:`statistics.NormalDist.inv_cdf`). It agrees with
    ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")`` and with Newcombe 1998a,
    Table I (both checked in the tests).

    Args:
        successes: ``k``, a count in ``0..n``.
        n: the number of trials (≥ 0).
        confidence: the coverage, in (0, 1).

    Returns:
        ``(low, high)``, proportions in [0, 1]; ``(nan, nan)`` when ``n == 0``.

    Raises:
        ValueError: a negative or fractional count, ``successes > n``, or a confidence
            outside (0, 1).
    """
    k, n = _check_count("successes", successes), _check_count("n", n)
    _check_confidence(confidence)
    if k > n:
        raise ValueError(f"successes ({k}) cannot exceed n ({n})")
    if n == 0:
        return math.nan, math.nan
    low, high = wilson_limits([k], [n], confidence)
    return float(low[0]), float(high[0])


def wilson_limits(successes, n, confidence: float = 0.95):
    """:func:`wilson_interval` element-wise, unchecked, for whole table columns.

    Args:
        successes, n: array-likes of the same shape ``[N]`` (floats; NaN allowed).

    Returns:
        ``(low, high)``, two float arrays ``[N]`` of proportions in [0, 1]; NaN where ``n``
        is missing or 0 or ``successes`` is missing. The limits are exact at the boundaries
        (``k = 0``: low 0; ``k = n``: high 1).
    """
    import numpy as np

    k = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    z = _z(confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = z * np.sqrt(z * z + 4 * k * (1 - k / n))
        low = (2 * k + z * z - half) / (2 * (n + z * z))
        high = (2 * k + z * z + half) / (2 * (n + z * z))
    low = np.where(k == 0, 0.0, np.clip(low, 0.0, 1.0))
    high = np.where(k == n, 1.0, np.clip(high, 0.0, 1.0))
    bad = ~(n > 0) | np.isnan(k)
    return np.where(bad, np.nan, low), np.where(bad, np.nan, high)


@functools.lru_cache(maxsize=16)
def _z(confidence: float) -> float:
    """The two-sided normal quantile of ``confidence`` (1.959964 for 0.95)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf((1 + confidence) / 2)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """The two-sided exact McNemar p-value of paired binary outcomes.

    Under the null hypothesis (both marginal proportions equal) each of the
    ``only_a + only_b`` discordant pairs falls on either side with probability 1/2, so the
    test is the exact binomial test of ``only_a`` successes in ``only_a + only_b`` trials with
    ``p = 0.5`` (McNemar 1947; ``scipy.stats.binomtest``, two-sided: the total probability of
    outcomes no more likely than the one observed, which for ``p = 0.5`` is twice the smaller
    tail, capped at 1). E.g. 1 vs 6 discordant pairs: ``2·(1 + 7)/2⁷ = 0.125``.

    Args:
        only_a: pairs with the outcome under A only (a count).
        only_b: pairs with the outcome under B only (a count).

    Returns:
        the p-value in [0, 1]; 1.0 when there are no discordant pairs.

    Raises:
        ValueError: a negative or fractional count.
    """
    b, c = _check_count("only_a", only_a), _check_count("only_b", only_b)
    if b + c == 0:
        return 1.0
    from scipy.stats import binomtest

    return min(1.0, float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue))


def _newcombe_phi(a: int, b: int, c: int, d: int) -> float:
    """Newcombe's (1998b) continuity-corrected phi coefficient of the 2×2 table
    ``[[a, b], [c, d]]``: with ``A = ad − bc`` and ``P`` the product of the four margins,
    ``(A − n/2)/√P`` if ``A > n/2``, ``0`` if ``0 ≤ A ≤ n/2``, ``A/√P`` if ``A < 0``; and 0
    when a margin is empty (``P = 0``)."""
    n = a + b + c + d
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    if margins == 0:
        return 0.0
    cross = a * d - b * c
    if cross > n / 2:
        return (cross - n / 2) / math.sqrt(margins)
    if cross >= 0:
        return 0.0
    return cross / math.sqrt(margins)


def paired_difference_interval(both: int, only_a: int, only_b: int, neither: int,
                               confidence: float = 0.95) -> tuple[float, float]:
    """The confidence interval of ``p_A − p_B`` for paired binary outcomes.

    Each of ``n`` units (attacked examples) has an outcome under A and under B (robust or
    not): ``both`` units have it under both, ``only_a`` / ``only_b`` under one, ``neither``
    under none; ``p_A = (both + only_a)/n``, ``p_B = (both + only_b)/n``. The interval is
    Newcombe's (1998b) method 10, the hybrid score interval ("square and add" of the two
    marginal Wilson intervals, corrected for their correlation). Writing ``a, b, c, d`` for
    ``both, only_a, only_b, neither``:

    1. ``n = a + b + c + d``, ``p_A = (a + b)/n``, ``p_B = (a + c)/n``,
       ``Δ = p_A − p_B = (b − c)/n``.
    2. ``(l_A, u_A)`` = Wilson interval of ``a + b`` of ``n``; ``(l_B, u_B)`` = Wilson
       interval of ``a + c`` of ``n`` (:func:`wilson_interval`, same confidence).
    3. ``φ`` = the phi coefficient of the table with Newcombe's continuity correction: with
       ``A = ad − bc`` and ``P = (a + b)(c + d)(a + c)(b + d)``, ``φ = (A − n/2)/√P`` if
       ``A > n/2``, ``0`` if ``0 ≤ A ≤ n/2``, ``A/√P`` if ``A < 0``; ``φ = 0`` if ``P = 0``.
    4. ``δ = sqrt((p_A − l_A)² − 2φ(p_A − l_A)(u_B − p_B) + (u_B − p_B)²)`` and
       ``ε = sqrt((u_A − p_A)² − 2φ(u_A − p_A)(p_B − l_B) + (p_B − l_B)²)``.
    5. The interval is ``(Δ − δ, Δ + ε)``.

    With ``φ = 0`` this is Newcombe's interval for independent proportions (1998, Stat. Med.
    17:873, method 10). The correction for ``φ`` and the result reproduce the published
    example of Fagerland, Lydersen & Laake (2017, ch. 8; Cavo et al. 2012 data, 59/6/16/80:
    −0.1186 to −0.0046), see ``tests/test_stats.py``.

    Args:
        both, only_a, only_b, neither: the four counts of the paired 2×2 table.
        confidence: the coverage, in (0, 1).

    Returns:
        ``(low, high)``, differences of proportions in [−1, 1]; ``(nan, nan)`` when
        ``n == 0``. The interval always contains ``Δ``; when ``only_a == only_b`` it is
        symmetric, ``(−x, x)``.

    Raises:
        ValueError: a negative or fractional count, or a confidence outside (0, 1).
    """
    a, b = _check_count("both", both), _check_count("only_a", only_a)
    c, d = _check_count("only_b", only_b), _check_count("neither", neither)
    _check_confidence(confidence)
    n = a + b + c + d
    if n == 0:
        return math.nan, math.nan
    p_a, p_b = (a + b) / n, (a + c) / n
    diff = p_a - p_b
    l_a, u_a = wilson_interval(a + b, n, confidence)
    l_b, u_b = wilson_interval(a + c, n, confidence)
    phi = _newcombe_phi(a, b, c, d)
    lo_a, hi_b = p_a - l_a, u_b - p_b
    hi_a, lo_b = u_a - p_a, p_b - l_b
    # the radicands are ≥ 0 for |φ| ≤ 1; max() only absorbs rounding
    delta = math.sqrt(max(0.0, lo_a ** 2 - 2 * phi * lo_a * hi_b + hi_b ** 2))
    eps = math.sqrt(max(0.0, hi_a ** 2 - 2 * phi * hi_a * lo_b + lo_b ** 2))
    return max(-1.0, diff - delta), min(1.0, diff + eps)


@dataclass(frozen=True)
class Pooled:
    """A proportion pooled over several runs (e.g. seeds of one configuration).

    Attributes:
        successes: total successes over the runs (count).
        n: total trials over the runs (count).
        runs: number of runs.
        proportion: ``successes / n`` in [0, 1] (``nan`` when ``n == 0``).
        low, high: its Wilson interval (:func:`wilson_interval`), proportions in [0, 1].
        confidence: the interval's coverage.
        mean_pct: mean of the per-run percentages ``100·k_i/n_i`` (runs with ``n_i > 0``).
        sd_pct: their sample standard deviation (``n − 1`` denominator), in percentage
            points; ``nan`` with fewer than two such runs.
    """

    successes: int
    n: int
    runs: int
    proportion: float
    low: float
    high: float
    confidence: float
    mean_pct: float
    sd_pct: float

    def to_dict(self) -> dict:
        return asdict(self)


def pooled(successes: list[int], ns: list[int], confidence: float = 0.95) -> Pooled:
    """Pool per-run successes over several runs.

    The pooled proportion treats all trials as one sample (``Σk_i / Σn_i``) and gets the
    Wilson interval of that sample; the mean and sample standard deviation of the per-run
    percentages show the spread between runs (e.g. between seeds), which the pooled
    interval does not include.

    Args:
        successes: ``k_i`` per run.
        ns: ``n_i`` per run, same length.
        confidence: the interval's coverage, in (0, 1).

    Returns:
        :class:`Pooled`.

    Raises:
        ValueError: no runs, lists of different lengths, a negative or fractional count,
            ``k_i > n_i``, or a confidence outside (0, 1).
    """
    ks, ns = list(successes), list(ns)
    if not ks:
        raise ValueError("pooled() needs at least one run")
    if len(ks) != len(ns):
        raise ValueError(f"{len(ks)} success counts but {len(ns)} trial counts")
    for i, (k, n) in enumerate(zip(ks, ns)):
        _check_count(f"successes[{i}]", k)
        _check_count(f"ns[{i}]", n)
        if k > n:
            raise ValueError(f"run {i}: successes ({k}) cannot exceed n ({n})")
    k_tot, n_tot = int(sum(ks)), int(sum(ns))
    low, high = wilson_interval(k_tot, n_tot, confidence)
    pcts = [100.0 * k / n for k, n in zip(ks, ns) if n > 0]
    return Pooled(successes=k_tot, n=n_tot, runs=len(ks),
                  proportion=k_tot / n_tot if n_tot else math.nan, low=low, high=high,
                  confidence=confidence,
                  mean_pct=statistics.fmean(pcts) if pcts else math.nan,
                  sd_pct=statistics.stdev(pcts) if len(pcts) > 1 else math.nan)
