"""Robustness curves derived exactly from a run's stored per-example rows (no new queries).

TextDefender caps the share of words an attack may change at 30%. Here accuracy under attack
(AUA, :mod:`robustbench_nlp.metrics`: failed / attacked × 100, skipped examples in the
denominator) is reported as a function of

* the **word share** ``k``: the largest share of words the attack may change, 0-50% in steps
  of 5 (:data:`WORD_SHARES`), as textattack's ``MaxWordsPerturbed(max_percent=k)`` would
  enforce it; and
* the **query budget** ``b``: the most victim queries per example, as
  ``UntargetedClassification(query_budget=b)`` enforces it;

computed from the rows of one *unconstrained* TextFooler run (``GreedyWordSwapWIR`` with
``wir_method="delete"``, ``RepeatModification``, one-word swaps, no query budget). A row is
the dict :meth:`robustbench_nlp.db.Store.examples` returns: ``result``, ``queries``,
``num_words``, ``perturbed_words`` and ``extra`` (TextFooler records ``extra["total_words"]``,
``extra["min_budget"]`` and ``extra["success_budgets"]``, see
:meth:`robustbench_nlp.attacks.textfooler.TextFooler.run`).

Why the word-share derivation is exact
--------------------------------------
Sources: ``textattack/constraints/overlap/max_words_perturbed.py``,
``textattack/search_methods/greedy_word_swap_wir.py``, ``textattack/attack.py`` (0.3.11).

``MaxWordsPerturbed(max_percent=k)`` is a (post-transformation) constraint comparing each
candidate with the *original* text: it passes when
``len(candidate.all_words_diff(original)) <= math.ceil(min(len(candidate.words),
len(original.words)) * k)``; ``words`` are all words of all segments (for a pair task the
frozen segment counts too, hence ``extra["total_words"]``, not ``num_words``). A TextFooler
swap replaces one word by one word of the embedding's vocabulary (every word of the offline
vocabularies is one word under textattack's split), so the word count never changes and the
cap is ``c = word_cap(total_words, k)``. ``RepeatModification`` forbids changing a word twice
and a swap always changes its word, so a state reached after ``j`` accepted swaps differs
from the original in exactly ``j`` words.

The constraint only filters candidates: it does not take part in the word-importance ranking
(``get_indices_to_order`` applies pre-transformation constraints only, and the leave-one-out
deletions are scored without constraints), nor in the query count. Follow the capped search
next to the unconstrained one: while the current state has ``j < c`` swaps, every candidate
has ``j + 1 <= c`` changed words, passes the cap, and the candidate list (and hence the
batch scored, its order and the accepted swap) is the unconstrained one. So the two searches
coincide up to the state with ``c`` swaps. From there every candidate has ``c + 1`` changed
words; all are filtered out, the search ``continue``-s through the remaining indices without
a query and returns its current, not successful, state. Hence:

* successful with ``m = perturbed_words <= c`` swaps: the success happens on the shared path
  (same batch, same chosen candidate): still *successful*;
* successful with ``m > c``: the shared path's state after ``c`` swaps is a non-successful
  state the search stops in: *failed*;
* *failed*: every state the capped search visits is one the unconstrained search visited
  without success: still failed; *skipped* is decided on the clean text, before any search.

Rounding: :func:`word_cap` is textattack's own expression ``math.ceil(n * k)`` on the same
float ``k``. The values of :data:`WORD_SHARES` are the floats a user gets by writing ``0.05``
... ``0.5`` (``round(i * 0.05, 2)``); for them, float and decimal arithmetic give the same
cap for every ``n < 100000`` (``10 * 0.3 == 3.0``, cap 3). An unrounded share differs:
``6 * 0.05 == 0.30000000000000004`` and ``math.ceil(10 * 0.30000000000000004) == 4``; a
share such as ``0.07`` rounds up too (``100 * 0.07 == 7.000000000000001``, cap 8), as it does
in textattack.

Share 0 is the one point that is *not* textattack's: ``MaxWordsPerturbed`` tests ``if
self.max_percent:``, so ``max_percent=0.0`` (and ``max_num_words=0``) disables the cap. Here
share 0 means what it says, no word may change (cap 0): every successful example counts as
failed, so AUA at share 0 is the clean accuracy on the attacked set.

Why the query-budget derivation is exact
----------------------------------------
Sources: ``GoalFunction.get_results`` and ``init_attack_example``
(``textattack/goal_functions/goal_function.py``), ``GreedyWordSwapWIR.perform_search``.

With ``query_budget=b`` each ``get_results`` call scores only its first ``b - used``
texts (``used`` = queries so far in this example; a cached text still counts), and returns
``search_over = (used == b)``. One example's calls are, in order: the clean text (1 query,
``check_skip=True``; its ``search_over`` is ignored), the leave-one-out deletions of the word
ranking (``search_over`` after them ends the search, before any swap), then one call per
search step with that step's candidates (sorted by text). ``used`` before each call, and so
which call a budget ends in, is the same as in the unconstrained search for every call before
the one where the budget binds (the first call with ``used + len(batch) >= b``). At that
binding call only a prefix of ``r = b - used`` candidates is scored, the search takes the
best-scoring one of the prefix (``sorted`` by ``-score`` is stable: the first maximum), accepts
it when it beats the current score and returns it when it succeeds; otherwise the search is
over and the example is *failed*. Every ``b >= 1`` ends in exactly one call, so the set of
budgets under which an example succeeds is a union of ranges that a trace of the calls
(queries before each call; each candidate's score and success) determines:
:func:`success_budgets`. TextFooler records it (``extra["success_budgets"]``) and its last,
unbounded range's start (``extra["min_budget"]``) for every attacked example.

For a two-class task (every built-in task) this reduces to the simple rule: a candidate
succeeds iff its score ``1 - p(gold)`` exceeds every non-succeeding candidate's (success
means ``p(gold) < 1/2``, or ``== 1/2`` losing ``argmax``'s tie, and non-success the
converse), so a batch's best-scoring candidate is a success iff any candidate is, and it beats
the current (non-successful) score. Hence no call before the last holds a success, the
deletions of the ranking are never returned, and

* an example that succeeded unconstrained succeeds under ``b`` iff ``b >= min_budget`` =
  queries before its last call + the 1-based position of that call's first successful
  candidate (``min_budget <= queries``);
* failed and skipped examples stay failed / skipped under every ``b >= 1`` (skipping is
  decided by the first query, which every budget allows).

With three or more classes the best-scoring candidate of a prefix may succeed where the full
batch's best does not, so success need not be monotone in ``b`` and a failed example may
succeed under some budget; ``extra["success_budgets"]`` is exact there too, while
``min_budget`` alone is exact only from ``min_budget`` on.

Both derivations assume the victim gives a text the same probabilities whichever batch it
is scored in (:class:`~robustbench_nlp.attacks.wrapper.ClassifierWrapper` caches them, so this
holds within a run; across fresh processes padded batches could differ in the last float
bits, which matters only for exact ties).

The same arguments hold for a run that already had constraints of its own: the curves are
those of the stored run's attack with the cap or budget *added* (for a run with a query
budget ``B``, budget ``b`` means ``min(b, B)``; the default budgets stop at the largest stored
query count, ``<= B``).

Rows of older runs
------------------
A row without ``extra["total_words"]`` falls back to ``num_words`` (the modifiable segment's
words): exact for one-segment tasks; for pair tasks the cap is then computed on fewer words,
so the curve is an upper bound (:func:`robustbench_nlp.rescore.with_total_words` fills the
count in). A successful row without ``min_budget`` / ``success_budgets`` is counted as
broken under ``b`` only when ``queries <= b``; since its true ``min_budget <= queries``, the
budget curve is then an upper bound on AUA and :func:`query_budget_curve` says
``"exact": False``.

This module imports neither textattack nor torch.
"""

from __future__ import annotations

import json
import math
from typing import Iterable, Mapping, Sequence

#: word shares of the curve, 0 to 0.5 in steps of 0.05: exactly the floats ``0.0, 0.05, ...,
#: 0.5`` a user would write (``round(i * 0.05, 2)``; ``6 * 0.05`` would be
#: ``0.30000000000000004``)
WORD_SHARES: tuple[float, ...] = tuple(round(i * 0.05, 2) for i in range(11))

_RESULTS = ("successful", "failed", "skipped")


def word_cap(total_words: int, share: float) -> int:
    """Most words an attack may change in a text of ``total_words`` words under a cap of
    ``share`` (a fraction in [0, 1], not a percent): textattack's
    ``math.ceil(total_words * share)`` (``MaxWordsPerturbed``), float rounding included.

    Examples: ``word_cap(10, 0.3) == 3``, ``word_cap(9, 0.1) == 1``,
    ``word_cap(20, 0.0) == 0``, ``word_cap(100, 0.07) == 8``.

    Raises:
        ValueError: ``total_words`` is not a non-negative integer, or ``share`` is not a
            number in [0, 1].
    """
    if isinstance(total_words, bool) or not isinstance(total_words, int) or total_words < 0:
        raise ValueError(f"total_words must be a non-negative int, got {total_words!r}")
    _check_share(share)
    return math.ceil(total_words * share)


def _check_share(share) -> None:
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise ValueError(f"share must be a fraction in [0, 1], got {share!r}")


def _check_budget(budget) -> None:
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget >= 1 \
            or (isinstance(budget, float) and budget != math.inf and not budget.is_integer()):
        raise ValueError(f"budget must be an integer >= 1 (or math.inf), got {budget!r}")


def _extra(row: Mapping) -> dict:
    extra = row.get("extra") or {}
    if isinstance(extra, str):  # a JSON column read without decoding
        extra = json.loads(extra) or {}
    return extra


def _result(row: Mapping) -> str:
    kind = row["result"]
    if kind not in _RESULTS:
        raise ValueError(f"unknown result type {kind!r}")
    return kind


def total_words_of(row: Mapping) -> int:
    """The row's word count over all segments: ``extra["total_words"]``, else ``num_words``."""
    n = _extra(row).get("total_words")
    return int(row["num_words"] if n is None else n)


def outcome_under_word_cap(row: Mapping, share: float) -> str:
    """The result type (``"successful"``, ``"failed"``, ``"skipped"``) ``row`` would have had
    with ``MaxWordsPerturbed(max_percent=share)`` added to the attack (share 0: no word may
    change; see the module docstring).

    Args:
        row: a stored example row of an unconstrained run.
        share: the cap as a fraction in [0, 1].

    Raises:
        ValueError: an unknown result type or a share outside [0, 1].
    """
    _check_share(share)
    kind = _result(row)
    if kind != "successful":
        return kind
    ok = int(row["perturbed_words"]) <= word_cap(total_words_of(row), share)
    return "successful" if ok else "failed"


def outcome_under_budget(row: Mapping, budget: int | float) -> str:
    """The result type ``row`` would have had with ``query_budget=budget``.

    Uses ``extra["success_budgets"]`` when recorded (exact for any number of classes), else
    ``extra["min_budget"]`` (exact for two-class tasks), else, for a successful row of an
    older run, ``queries <= budget`` (so that AUA is an upper bound).

    Args:
        row: a stored example row of an unconstrained run.
        budget: queries per example, an integer >= 1, or ``math.inf`` (no budget).

    Raises:
        ValueError: an unknown result type or a budget below 1.
    """
    _check_budget(budget)
    kind = _result(row)
    if kind == "skipped":
        return kind
    extra = _extra(row)
    ranges = extra.get("success_budgets")
    if ranges is not None:
        hit = any(lo <= budget and (hi is None or budget <= hi) for lo, hi in ranges)
        return "successful" if hit else "failed"
    if kind == "failed":
        return kind
    threshold = extra.get("min_budget")
    if threshold is None:
        threshold = row["queries"]
    return "successful" if budget >= threshold else "failed"


def _aua(kinds: Sequence[str]) -> float:
    """failed / all × 100 (0.0 for no rows, as :func:`robustbench_nlp.metrics.summarize`)."""
    return 100.0 * sum(k == "failed" for k in kinds) / len(kinds) if kinds else 0.0


def word_share_curve(rows: Iterable[Mapping], shares: Sequence[float] = WORD_SHARES
                     ) -> list[tuple[float, float]]:
    """AUA (%) under each word-share cap: ``[(share, aua), ...]`` in the order of ``shares``
    (fractions in [0, 1]). AUA counts skipped rows in the denominator; no rows give 0.0.

    Raises:
        ValueError: an unknown result type or a share outside [0, 1].
    """
    rows = list(rows)
    return [(s, _aua([outcome_under_word_cap(r, s) for r in rows])) for s in shares]


def default_budgets(max_queries: int) -> list[int]:
    """The default query budgets of :func:`query_budget_curve`: the 1-2-5 series (1, 2, 5,
    10, 20, 50, 100, ...) below ``max_queries``, then ``max_queries`` itself (from there on
    every row has its unconstrained result); ``[1]`` when ``max_queries <= 1``."""
    out, base = [], 1
    while True:
        for m in (1, 2, 5):
            if base * m >= max_queries:
                return out + [max(int(max_queries), 1)]
            out.append(base * m)
        base *= 10


def query_budget_curve(rows: Iterable[Mapping], budgets: Sequence[int] | None = None) -> dict:
    """AUA (%) under each query budget.

    Args:
        rows: stored example rows of an unconstrained run.
        budgets: queries per example (integers >= 1); default :func:`default_budgets` of the
            largest stored query count.

    Returns:
        ``{"points": [(budget, aua), ...], "exact": bool}``; ``exact`` is False when a
        successful row records neither ``min_budget`` nor ``success_budgets`` (the points are
        then upper bounds on AUA).

    Raises:
        ValueError: an unknown result type or a budget below 1.
    """
    rows = list(rows)
    if budgets is None:
        budgets = default_budgets(max((int(r["queries"]) for r in rows
                                       if _result(r) != "skipped"), default=0))
    points = [(b, _aua([outcome_under_budget(r, b) for r in rows])) for b in budgets]
    exact = all(_extra(r).get("min_budget") is not None
                or _extra(r).get("success_budgets") is not None
                for r in rows if _result(r) == "successful")
    return {"points": points, "exact": exact}


def curve_summary(rows: Iterable[Mapping]) -> dict:
    """``{"aua_at_10", "aua_at_30", "curve_area"}``, all percentages: AUA under the 10% and
    30% word caps, and the trapezoid area under the word-share curve over [0, 0.5] divided by
    0.5, i.e. the curve's mean AUA over caps of 0-50% of the words
    (``(a_0/2 + a_5 + ... + a_45 + a_50/2) / 10`` on :data:`WORD_SHARES`).

    Raises:
        ValueError: an unknown result type.
    """
    curve = word_share_curve(rows, WORD_SHARES)
    at = dict(curve)
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(curve, curve[1:]))
    return {"aua_at_10": at[0.1], "aua_at_30": at[0.3],
            "curve_area": area / (WORD_SHARES[-1] - WORD_SHARES[0])}


def success_budgets(trace: Sequence[tuple[int, Sequence[tuple[float, bool]]]],
                    first_step: int = 2) -> list[list]:
    """The query budgets under which a ``GreedyWordSwapWIR`` search succeeds, from a trace of
    its unconstrained run (module docstring, "Why the query-budget derivation is exact").

    Args:
        trace: one entry per ``GoalFunction.get_results`` call of one example, in call order:
            ``(queries_before, [(score, succeeded), ...])`` with the goal-function score and
            success of each scored candidate in the call's order. Call 0 is the clean text;
            calls ``1 .. first_step - 1`` rank the words (never returned as a result); later
            calls are search steps.
        first_step: index of the first search-step call (2 for ``wir_method="delete"``).

    Returns:
        sorted disjoint closed ranges ``[lo, hi]`` of budgets (``hi`` ``None``: no upper
        end); the last range is unbounded iff the unconstrained search succeeded, and then its
        ``lo`` is the ``min_budget``. ``[]`` when no budget gives a success.

    Raises:
        ValueError: an empty first call, calls whose query counts do not follow on, or a
            trace that goes on after a successful step.
    """
    if not trace or not trace[0][1]:
        raise ValueError("the trace must start with the clean text's call")
    for (q0, c0), (q1, _) in zip(trace, trace[1:]):
        if q1 != q0 + len(c0):
            raise ValueError(f"a call starts at {q1} queries, expected {q0 + len(c0)}")
    cur = float(trace[0][1][0][0])
    ranges: list[list] = []
    steps = list(trace[first_step:])
    for j, (q, cands) in enumerate(steps):
        best, best_ok, win = -math.inf, False, False
        for r, (score, ok) in enumerate(cands, 1):
            if score > best:
                best, best_ok = float(score), bool(ok)
            win = best_ok and best > cur
            if win:
                b = q + r
                if ranges and ranges[-1][1] == b - 1:
                    ranges[-1][1] = b
                else:
                    ranges.append([b, b])
        if win:  # the full batch succeeded: the search returned here
            if j != len(steps) - 1:
                raise ValueError("the trace goes on after a successful search step")
            ranges[-1][1] = None
        if best > cur:
            cur = best
    return ranges
