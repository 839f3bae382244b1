"""Database reads and table shaping for the leaderboard app (no Streamlit here).

The leaderboard needs only the run and metrics rows (:meth:`Store.runs_frame`); example rows
are read one run at a time (:func:`examples_frame`, an indexed ``run_id`` lookup), so a
database with many runs opens as fast as its run table reads.
"""

from __future__ import annotations

import math

import pandas as pd
from sqlalchemy import select

#: TextAttack result types, as :data:`robustbench_nlp.attacks.base.RESULT_TYPES` (kept here so
#: the app does not import the attack plugins)
RESULT_TYPES = ("successful", "failed", "skipped")

EXAMPLE_COLUMNS = ["idx", "gold", "pred_before", "pred_after", "result", "queries",
                   "num_words", "perturbed_words", "attacked_segment", "original", "adversarial"]


def label_names(task: str) -> list[str] | None:
    """Label names of a known task (index = label id), else ``None``."""
    from robustbench_nlp.tasks import TASKS

    t = TASKS.get(task)
    return list(t.label_names) if t is not None else None


def segment_names(task: str, n: int) -> list[str]:
    """Names of a task's ``n`` text segments (``sentence1``, ...); ``segment i`` when unknown."""
    from robustbench_nlp.tasks import TASKS

    t = TASKS.get(task)
    cols = list(t.text_columns) if t is not None else []
    return [cols[i] if i < len(cols) else f"segment {i + 1}" for i in range(n)]


def examples_frame(store, run_id: str) -> pd.DataFrame:
    """The attacked examples of one run, in attack order.

    Args:
        store: an open :class:`robustbench_nlp.db.Store`.
        run_id: the run.

    Returns:
        columns :data:`EXAMPLE_COLUMNS`; ``original`` and ``adversarial`` hold tuples of
        segments (one per text column). Empty (same columns) when the run has no examples.
    """
    from robustbench_nlp.db import Example

    t = Example.__table__
    q = select(*(t.c[c] for c in EXAMPLE_COLUMNS)).where(t.c.run_id == run_id).order_by(t.c.id)
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    df = pd.DataFrame(rows, columns=EXAMPLE_COLUMNS)
    for c in ("original", "adversarial"):
        df[c] = df[c].map(lambda v: tuple(v or ()))
    return df


def filter_examples(df: pd.DataFrame, results=None, query: str = "") -> pd.DataFrame:
    """Rows of :func:`examples_frame` whose result type is in ``results`` (``None`` = all) and
    whose original or adversarial text contains ``query`` (case-insensitive; blank = all)."""
    out = df if results is None else df[df["result"].isin(list(results))]
    q = (query or "").strip().casefold()
    if q and len(out):
        hay = out["original"].map(" ".join) + "\n" + out["adversarial"].map(" ".join)
        out = out[hay.str.casefold().str.contains(q, regex=False)]
    return out


def label_text(label: int | None, names: list[str] | None) -> str:
    """``"1 (positive)"`` for a label id with a known name, else the id as text."""
    if label is None or (isinstance(label, float) and math.isnan(label)):
        return "-"
    label = int(label)
    if names and 0 <= label < len(names):
        return f"{label} ({names[label]})"
    return str(label)


def example_table(df: pd.DataFrame, names: list[str] | None) -> pd.DataFrame:
    """The per-example summary shown above the diffs: one row per example, texts joined by
    `` ||| `` (rendered by the data grid as plain text)."""
    return pd.DataFrame({
        "idx": df["idx"], "result": df["result"],
        "gold": df["gold"].map(lambda v: label_text(v, names)),
        "before": df["pred_before"].map(lambda v: label_text(v, names)),
        "after": df["pred_after"].map(lambda v: label_text(v, names)),
        "queries": df["queries"],
        "perturbed": [f"{p}/{n}" for p, n in zip(df["perturbed_words"], df["num_words"])],
        "original": df["original"].map(" ||| ".join),
        "adversarial": df["adversarial"].map(" ||| ".join),
    }).reset_index(drop=True)


def epoch_frame(runs: pd.DataFrame, run_ids) -> pd.DataFrame:
    """Per-epoch curves recorded by runs, long format for charting.

    A run records curves as ``train_stats["epochs"]``: a list of ``{"epoch": int, "acc":
    float, "aua": float}`` (percentages; either metric may be missing). Runs without that list,
    and entries without a numeric ``epoch``, contribute nothing.

    Args:
        runs: a :meth:`Store.runs_frame` frame (columns ``id``, ``defense``, ``model``,
            ``train_stats``).
        run_ids: the runs to include.

    Returns:
        columns ``run``, ``run id``, ``epoch``, ``metric`` (``ACC`` or ``AUA``), ``value``;
        empty when no run recorded epochs.
    """
    cols = ["run", "run id", "epoch", "metric", "value"]
    if runs.empty or "train_stats" not in runs.columns:
        return pd.DataFrame(columns=cols)
    want = set(run_ids)
    recs = []
    for _, r in runs[runs["id"].isin(want)].iterrows():
        stats = r["train_stats"] if isinstance(r["train_stats"], dict) else {}
        epochs = stats.get("epochs")
        if not isinstance(epochs, list):
            continue
        label = f"{r['defense']} · {r['id']}"
        for e in epochs:
            if not isinstance(e, dict) or not _is_num(e.get("epoch")):
                continue
            for key, metric in (("acc", "ACC"), ("aua", "AUA")):
                if _is_num(e.get(key)):
                    recs.append((label, r["id"], e["epoch"], metric, float(e[key])))
    return pd.DataFrame(recs, columns=cols)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def tradeoff_frame(board: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Points of the ACC-vs-AUA chart: measured runs and (a separate series) paper rows.

    Returns:
        columns ``ACC``, ``AUA``, ``defense``, ``backbone``, ``source`` (``measured`` or
        ``reported in paper``), ``label``; rows without both numbers are dropped.
    """
    from robustbench_nlp.leaderboard import REPORTED

    parts = []
    if len(board):
        parts.append(pd.DataFrame({
            "ACC": board["ACC"], "AUA": board["AUA"], "defense": board["defense"],
            "backbone": board["backbone"], "source": "measured",
            "label": board["run id"].astype(str)}))
    if len(paper):
        parts.append(pd.DataFrame({
            "ACC": paper["ACC"], "AUA": paper["AUA"], "defense": paper["defense"],
            "backbone": paper["backbone"], "source": REPORTED, "label": REPORTED}))
    if not parts:
        return pd.DataFrame(columns=["ACC", "AUA", "defense", "backbone", "source", "label"])
    out = pd.concat(parts, ignore_index=True)
    return out.dropna(subset=["ACC", "AUA"]).reset_index(drop=True)
