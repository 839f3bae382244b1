"""Quantities of a stored run derived from its example rows: no model, no new queries.

A finished run's example rows fix its attack protocol (the indices it attacked,
:mod:`robustbench_nlp.attacks.protocol`), its robustness curves and its invalid-swap rate
(:func:`robustbench_nlp.metrics.robustness_summary`). :func:`derive_run` computes them and
stores them with the run (``runs.protocol``/``protocol_hash``, ``metrics.aua_at_10`` ...);
:func:`robustbench_nlp.runner.finish_run` calls it for every new run, and ``rbnlp rescore``
(:func:`rescore`) for the runs of a database written before these quantities existed, or
after the way they are computed changed. It is idempotent.
"""

from __future__ import annotations

from typing import Callable

from .errors import RBNLPError


def total_words(segments) -> int:
    """textattack's word count of a text over all its segments (``AttackedText.words`` of
    the whole input; :func:`robustbench_nlp.attacks.polarity.text_words`)."""
    from .attacks.polarity import text_words

    return len(text_words(tuple(str(x) for x in segments)))


def with_total_words(rows: list[dict]) -> list[dict]:
    """``rows`` where each row of a multi-segment text lacking ``extra["total_words"]`` (runs
    stored before it was recorded) gets it computed from its original segments; a
    one-segment row's ``num_words`` already is that count. The stored rows are not changed."""
    out = []
    for r in rows:
        extra = r.get("extra") or {}
        if "total_words" not in extra and len(r.get("original") or ()) > 1:
            r = {**r, "extra": {**extra, "total_words": total_words(r["original"])}}
        out.append(r)
    return out


def derive_run(store, run_id: str, lexicon=None) -> dict:
    """Compute and store the protocol and the robustness summary of run ``run_id``.

    Args:
        store: the run's :class:`~robustbench_nlp.db.Store`.
        run_id: a run with its attacked examples stored.
        lexicon: the opinion lexicon (:func:`robustbench_nlp.attacks.polarity.load_opinion_lexicon`
            by default).

    Returns:
        ``{"protocol", "protocol_hash", **robustness_summary}``.

    Raises:
        ConfigError: no such run.
    """
    from .attacks.protocol import protocol_hash, run_protocol
    from .metrics import robustness_summary
    from .registry import ATTACKS

    run = store.get_run(run_id)
    rows = store.examples(run_id)
    record = run_protocol(run.attack, run.task, (run.config or {}).get("attack"),
                          run.resources, [r["index"] for r in rows])
    try:
        cls = ATTACKS.get(run.attack)
        query_based, word_swaps = cls.query_based, cls.word_swaps
        curves = cls.derived_curves
    except RBNLPError:  # a plugin not installed here: treat it as a word-swap search
        cls, (query_based, word_swaps, curves) = None, (True, True, True)
    summary = robustness_summary(with_total_words(rows) if query_based else rows,
                                 query_based=query_based, word_swaps=word_swaps,
                                 lexicon=lexicon, curves=curves)
    own = (cls.rows_summary(rows, (run.config or {}).get("attack"))
           if cls is not None and rows else None)
    if own is not None:
        summary["robustness"]["attack"] = own
    h = protocol_hash(record)
    store.update_run(run_id, protocol=record, protocol_hash=h)
    if run.metrics is not None:
        store.save_metrics(run_id, **summary)
    return {"protocol": record, "protocol_hash": h, **summary}


def rescore(store, run_ids: list[str] | None = None, echo: Callable[[str], None] = print) -> int:
    """:func:`derive_run` for ``run_ids`` (default: every finished run of ``store``).

    Returns:
        the number of runs rescored.

    Raises:
        ConfigError: an unknown run id.
    """
    if run_ids is None:
        frame = store.runs_frame()
        run_ids = [] if frame.empty else \
            frame.loc[frame["status"] == "finished", "id"].tolist()
    lexicon = None
    try:
        from .attacks.polarity import load_opinion_lexicon

        lexicon = load_opinion_lexicon()
    except RBNLPError as e:
        echo(f"note: {e}; invalid-swap rates are left empty")
    for i, run_id in enumerate(run_ids, 1):
        d = derive_run(store, run_id, lexicon=lexicon)
        echo(f"[{i}/{len(run_ids)}] {run_id}: protocol {d['protocol_hash']}, AUA@30 "
             f"{_fmt(d['aua_at_30'])}, invalid swaps % {_fmt(d['invalid_swap_rate'])}")
    return len(run_ids)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}"
