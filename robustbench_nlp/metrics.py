"""Robustness metrics, following TextAttack's definitions (``textattack/metrics``).

N attacked examples end as successful S, failed F or skipped K:

* clean accuracy on the attacked set = (N − K) / N × 100
* AUA (accuracy under attack) = F / N × 100
* attack success rate ASR = S / (S + F) × 100
* average perturbed-word % = mean over successful examples of perturbed / words × 100
* average queries = mean over non-skipped examples
* AVG = (ACC + AUA) / 2 with ACC the clean accuracy on the full evaluation split (PEAFT paper)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Mapping

#: a run is flagged degenerate when its majority predicted class exceeds that class's share
#: of gold labels by more than this many percentage points
DEGENERATE_MARGIN = 15.0


@dataclass
class AttackSummary:
    """Aggregate metrics of one attacked run (percentages in 0-100)."""

    attacked: int
    successful: int
    failed: int
    skipped: int
    attacked_clean_acc: float | None
    aua: float
    asr: float | None
    avg_queries: float | None
    avg_perturbed_pct: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(results: Iterable[Mapping], query_based: bool = True) -> AttackSummary:
    """Aggregate per-example results (mappings with ``result``, ``queries``, ``num_words``,
    ``perturbed_words``) into an :class:`AttackSummary`.

    ``query_based=False`` (a fixed adversarial set such as AdvGLUE, whose examples are all
    attacked and whose "queries" are classifier calls, not a search) leaves
    ``attacked_clean_acc`` and ``avg_queries`` as ``None``.

    Raises:
        ValueError: an unknown result type.
    """
    s = f = k = 0
    queries: list[int] = []
    perturbed: list[float] = []
    for r in results:
        kind = r["result"]
        if kind == "successful":
            s += 1
            perturbed.append(100.0 * r["perturbed_words"] / max(r["num_words"], 1))
        elif kind == "failed":
            f += 1
        elif kind == "skipped":
            k += 1
            continue
        else:
            raise ValueError(f"unknown result type {kind!r}")
        queries.append(r["queries"])
    n = s + f + k
    pct = (lambda x: 100.0 * x / n) if n else (lambda x: 0.0)
    return AttackSummary(
        attacked=n, successful=s, failed=f, skipped=k,
        attacked_clean_acc=pct(n - k) if query_based else None, aua=pct(f),
        asr=100.0 * s / (s + f) if s + f else None,
        avg_queries=sum(queries) / len(queries) if queries and query_based else None,
        avg_perturbed_pct=sum(perturbed) / len(perturbed) if perturbed else None,
    )


def avg_score(acc: float, aua: float) -> float:
    """The PEAFT paper's AVG = (ACC + AUA) / 2."""
    return (acc + aua) / 2.0


def degenerate(pred_share: Mapping[str, float], gold_share: Mapping[str, float],
               margin: float = DEGENERATE_MARGIN) -> bool:
    """True when the most-predicted class's share (%) exceeds its gold share by > ``margin``
    points: such a model cannot be attacked on most inputs and so looks robust."""
    if not pred_share:
        return False
    top = max(pred_share, key=pred_share.get)
    return pred_share[top] - gold_share.get(top, 0.0) > margin


def robustness_summary(rows: list[Mapping], query_based: bool = True, word_swaps: bool = True,
                       lexicon=None, curves: bool = True) -> dict:
    """What the stored per-example rows of one run say beyond AUA, with no new queries.

    Args:
        rows: the run's example rows (:meth:`robustbench_nlp.db.Store.examples` dicts);
            ``extra["total_words"]`` (textattack's word count over all segments) and
            ``extra["min_budget"]`` make the curves exact (:mod:`robustbench_nlp.curves`).
        query_based: the attack searches with queries (TextFooler); a fixed set (AdvGLUE)
            has no curves.
        word_swaps: the attack swaps words, so polarity-reversing swaps are counted
            (:func:`robustbench_nlp.attacks.polarity.invalid_swap_stats`).
        curves: derive the robustness curves (``False`` for an attack whose rows do not
            determine them, e.g. the ensemble: under a word cap a later recipe might have
            broken an example the first successful one broke with too many words).
        lexicon: an :class:`~robustbench_nlp.attacks.polarity.OpinionLexicon` (default: the
            Hu & Liu lexicon, loaded on first use); when it cannot be loaded the invalid-swap
            rate is ``None`` and ``robustness["invalid_swaps"]["error"]`` says why.

    Returns:
        ``{"aua_at_10", "aua_at_30", "curve_area", "invalid_swap_rate", "robustness"}``:
        percentages (``None`` where not applicable); ``robustness`` holds the word-share
        curve ``[[share, AUA %], ...]``, the query-budget curve and the invalid-swap counts
        with the most frequent reversing swaps.
    """
    from . import curves as C

    rows = list(rows)
    out: dict = {"aua_at_10": None, "aua_at_30": None, "curve_area": None,
                 "invalid_swap_rate": None, "robustness": {}}
    if query_based and curves and rows:
        out.update(C.curve_summary(rows))
        out["robustness"]["word_share_curve"] = [list(p) for p in C.word_share_curve(rows)]
        out["robustness"]["query_budget_curve"] = C.query_budget_curve(rows)
    if word_swaps and rows:
        from robustbench_nlp.errors import RBNLPError

        from .attacks.polarity import invalid_swap_stats

        try:
            stats = invalid_swap_stats(rows, lexicon)
        except RBNLPError as e:
            out["robustness"]["invalid_swaps"] = {"error": str(e)}
        else:
            out["invalid_swap_rate"] = stats["invalid_swap_rate"]
            out["robustness"]["invalid_swaps"] = stats
    return out
