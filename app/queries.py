"""Database reads and table shaping for the leaderboard app (no Streamlit here).

The leaderboard needs only the run and metrics rows (:meth:`Store.runs_frame`); example rows
are read one run at a time (:func:`examples_frame`, an indexed ``run_id`` lookup), so a
database with many runs opens as fast as its run table reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import urlencode

import pandas as pd
from sqlalchemy import select

#: TextAttack result types, as :data:`robustbench_nlp.attacks.base.RESULT_TYPES` (kept here so
#: the app does not import the attack plugins)
RESULT_TYPES = ("successful", "failed", "skipped")

EXAMPLE_COLUMNS = ["idx", "gold", "pred_before", "pred_after", "result", "queries",
                   "num_words", "perturbed_words", "attacked_segment", "original", "adversarial",
                   "extra"]

#: the app's views (tabs); their labels are the ``view`` query parameter's values
VIEWS = ("Leaderboard", "Per-example diffs", "Compare")
#: percentage columns of the configuration and run tables (all shown with two decimals)
PCT_COLUMNS = ("ACC", "ACC sd", "AUA", "AUA sd", "AUA@10", "AUA@30", "curve area", "PDR",
               "invalid swaps %", "ASR", "perturbed %")
#: the configuration table of one protocol (:func:`configuration_display`)
CONFIG_TABLE = ["rank", "defense", "carrier", "backbone", "model card", "settings", "seeds",
                "ACC", "ACC sd",
                "ACC 95% CI", "AUA", "AUA sd", "AUA 95% CI", "AUA@10", "AUA@30", "curve area",
                "PDR", "invalid swaps %", "ASR", "avg queries", "perturbed %", "runs", "repeats",
                "diffs", "compare"]
#: the per-run table of one protocol (:func:`runs_display`)
RUN_TABLE = ["configuration", "defense", "settings", "seed", "ACC", "ACC 95% CI", "AUA",
             "AUA 95% CI", "AUA@10", "AUA@30", "curve area", "PDR", "invalid swaps %", "ASR",
             "avg queries", "perturbed %", "attacked", "degenerate", "date", "run id", "diffs",
             "compare"]


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
    df["extra"] = df["extra"].map(lambda v: v if isinstance(v, dict) else {})
    return df


def reversing_marks(row, lexicon) -> list[tuple[str, str]]:
    """The polarity-reversing swaps of one example row (:func:`examples_frame`):
    :func:`robustbench_nlp.attacks.polarity.reversing_swaps` of its segments, with the
    attack's ``extra["modified_indices"]`` when stored; ``[]`` without a lexicon or when the
    texts are equal."""
    if lexicon is None or tuple(row["original"]) == tuple(row["adversarial"]):
        return []
    from robustbench_nlp.attacks.polarity import reversing_swaps

    extra = row["extra"] if isinstance(row.get("extra"), dict) else {}
    return reversing_swaps(tuple(row["original"]), tuple(row["adversarial"]),
                           extra.get("modified_indices"), lexicon=lexicon)


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


# -- protocol tables ------------------------------------------------------------------------

def app_link(**params) -> str:
    """A link to a view of the app, relative to its page: ``?task=sst2&attack=textfooler&
    view=Per-example+diffs&run=ID`` (the query parameters the app reads)."""
    return "?" + urlencode({k: v for k, v in params.items() if v is not None})


def diff_link(task: str, attack: str, run_id: str) -> str:
    """The per-example diffs of ``run_id``."""
    return app_link(task=task, attack=attack, view=VIEWS[1], run=run_id)


def compare_link(task: str, attack: str, run_a: str, run_b: str | None) -> str | None:
    """The comparison of ``run_a`` with ``run_b`` (``None`` when there is no ``run_b``)."""
    if run_b is None or run_b == run_a:
        return None
    return app_link(task=task, attack=attack, view=VIEWS[2], a=run_a, b=run_b)


def _interval(lo, hi) -> str:
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return "-"
    return f"[{float(lo):.2f}, {float(hi):.2f}]"


def _first_run(runs: str) -> str:
    return str(runs).split(", ")[0]


def reference_runs(table) -> list[str]:
    """The runs a comparison link compares against: the first run of the top-ranked
    configuration, then of the next ones (degenerate configurations last)."""
    return [_first_run(r) for r in table.configurations["runs"]]


def _other(refs: list[str], run_id: str) -> str | None:
    return next((r for r in refs if r != run_id), None)


def configuration_display(table, task: str, attack: str, degenerate: bool = False
                          ) -> pd.DataFrame:
    """The configuration table of one protocol as the app shows it.

    Args:
        table: a :class:`robustbench_nlp.leaderboard.ProtocolTable`.
        task, attack: the leaderboard's task and attack (for the links).
        degenerate: the degenerate block (unranked) instead of the ranked rows.

    Returns:
        columns :data:`CONFIG_TABLE`: numbers unrounded (the app formats :data:`PCT_COLUMNS`
        with two decimals), ``ACC``/``AUA`` the means over seeds with their ``sd``, the pooled
        Wilson intervals as ``"[low, high]"`` text (two decimals), ``runs`` the pooled runs
        (one per seed), ``repeats`` later runs of an already pooled seed (not pooled),
        ``diffs`` a link to the diffs of the configuration's first run, ``compare`` a link
        comparing that run with the first run of the top-ranked configuration (of the next
        one for the top row). ``rank`` is empty for the degenerate block and for runs without
        a recorded protocol.
    """
    from robustbench_nlp.leaderboard import NO_PROTOCOL

    c = table.degenerate if degenerate else table.ranked
    refs = reference_runs(table) if table.protocol_hash != NO_PROTOCOL else []
    first = [_first_run(r) for r in c["runs"]]
    rank = c["rank"].astype("Int64")
    if degenerate or table.protocol_hash == NO_PROTOCOL:
        rank = pd.array([pd.NA] * len(c), dtype="Int64")
    out = pd.DataFrame({
        "rank": rank, "defense": c["defense"], "carrier": c["carrier"],
        "backbone": c["backbone"],
        "model card": c["model card"] if "model card" in c.columns else "",
        "settings": c["settings"],
        "seeds": c["seeds"].astype("Int64"),
        "ACC": c["ACC"], "ACC sd": c["ACC sd"],
        "ACC 95% CI": [_interval(a, b) for a, b in zip(c["ACC low"], c["ACC high"])],
        "AUA": c["AUA"], "AUA sd": c["AUA sd"],
        "AUA 95% CI": [_interval(a, b) for a, b in zip(c["AUA low"], c["AUA high"])],
        **{k: pd.to_numeric(c[k], errors="coerce") for k in (
            "AUA@10", "AUA@30", "curve area", "PDR", "invalid swaps %", "ASR", "avg queries",
            "perturbed %")},
        "runs": c["runs"],
        "repeats": c["repeats"] if "repeats" in c.columns else "",
        "diffs": [diff_link(task, attack, r) for r in first],
        "compare": [compare_link(task, attack, r, _other(refs, r)) for r in first],
    })
    return out[CONFIG_TABLE].reset_index(drop=True)


def _ordered_runs(table) -> tuple[pd.DataFrame, dict]:
    """The runs of a protocol table in the order of its configuration rows (within each: the
    pooled runs, best first, then repeats), and the ``"#rank defense"`` label of each
    configuration key ``(config, degenerate)``."""
    from robustbench_nlp.leaderboard import NO_PROTOCOL

    runs = table.runs
    order, labels = {}, {}
    for i, (_, c) in enumerate(table.configurations.iterrows()):
        key = (c["config"], bool(c["degenerate"]))
        order[key] = i
        if table.protocol_hash == NO_PROTOCOL:
            tag = "-"
        elif c["degenerate"]:
            tag = "degenerate"
        else:
            tag = f"#{int(c['rank'])}"
        labels[key] = f"{tag} {c['defense']}"
    keys = list(zip(runs["config"], runs["degenerate"].astype(bool)))
    pos = pd.Series([order.get(k, len(order)) for k in keys], index=runs.index)
    rep = runs["run id"].isin(repeat_runs(table))
    r = runs.assign(_pos=pos, _rep=rep).sort_values(
        ["_pos", "_rep", "AUA", "ACC", "run id"], ascending=[True, True, False, False, True],
        kind="stable", na_position="last")
    return r.drop(columns=["_pos", "_rep"]), labels


def repeat_runs(table) -> set[str]:
    """The runs of a protocol table that repeat an already pooled seed of their
    configuration (the ``repeats`` column): listed, not pooled."""
    col = table.configurations.get("repeats", pd.Series(dtype=object))
    return {x for v in col for x in str(v or "").split(", ") if x}


def run_order(tables) -> list[str]:
    """Every run of ``tables`` (:func:`robustbench_nlp.leaderboard.protocol_tables`) in the
    order the leaderboard lists them: table by table, configuration by configuration."""
    return [x for t in tables for x in _ordered_runs(t)[0]["run id"]]


def runs_display(table, task: str, attack: str) -> pd.DataFrame:
    """Every run of one protocol, grouped by configuration in table order (best run first
    within each).

    Returns:
        columns :data:`RUN_TABLE`; ``configuration`` is ``"#rank defense"`` of the run's
        configuration row (``"degenerate"`` instead of the rank in the degenerate block,
        ``"-"`` without a recorded protocol; ``", repeat (not pooled)"`` appended for a later
        run of an already pooled seed); ``diffs``/``compare`` as in
        :func:`configuration_display`, compared with the first run of the top configuration.
    """
    from robustbench_nlp.leaderboard import NO_PROTOCOL

    if table.runs.empty:
        return pd.DataFrame(columns=RUN_TABLE)
    r, labels = _ordered_runs(table)
    keys = list(zip(r["config"], r["degenerate"].astype(bool)))
    refs = reference_runs(table) if table.protocol_hash != NO_PROTOCOL else []
    repeats = repeat_runs(table)
    out = pd.DataFrame({
        "configuration": [labels.get(k, "-") + (", repeat (not pooled)" if x in repeats else "")
                          for k, x in zip(keys, r["run id"])],
        "defense": r["defense"], "settings": r["settings"], "seed": r["seed"],
        "ACC": r["ACC"], "ACC 95% CI": [_interval(a, b) for a, b in zip(r["ACC low"],
                                                                         r["ACC high"])],
        "AUA": r["AUA"], "AUA 95% CI": [_interval(a, b) for a, b in zip(r["AUA low"],
                                                                         r["AUA high"])],
        **{k: r[k] for k in ("AUA@10", "AUA@30", "curve area", "PDR", "invalid swaps %", "ASR",
                             "avg queries", "perturbed %", "attacked", "degenerate", "date",
                             "run id")},
        "diffs": [diff_link(task, attack, x) for x in r["run id"]],
        "compare": [compare_link(task, attack, x, _other(refs, x)) for x in r["run id"]],
    })
    return out[RUN_TABLE].reset_index(drop=True)


def run_labels(table) -> dict[str, str]:
    """``run id -> "run id · defense settings · seed S"`` for the runs of one protocol."""
    out = {}
    for rid, d, st, seed in zip(table.runs["run id"], table.runs["defense"],
                                table.runs["settings"], table.runs["seed"]):
        parts = [str(rid), f"{d} {st}".strip()]
        if seed is not None and not pd.isna(seed):
            parts.append(f"seed {int(seed)}")
        out[rid] = " · ".join(parts)
    return out


def word_share_frame(runs: pd.DataFrame, table) -> pd.DataFrame:
    """The word-share robustness curves of one protocol's runs, long format for charting.

    A run stores ``metrics.robustness["word_share_curve"]``: ``[[share, AUA %], ...]``, the
    AUA when the attack may change at most that share (0-0.5) of the words.

    Args:
        runs: a :meth:`Store.runs_frame` frame (columns ``id``, ``robustness``).
        table: a :class:`robustbench_nlp.leaderboard.ProtocolTable`.

    Returns:
        columns ``run`` (label: :func:`run_labels`), ``run id``, ``defense``,
        ``configuration`` (``defense settings``), ``share`` (percent of the words), ``AUA``;
        runs without a curve contribute nothing.
    """
    cols = ["run", "run id", "defense", "configuration", "share", "AUA"]
    if runs.empty or "robustness" not in runs.columns or table.runs.empty:
        return pd.DataFrame(columns=cols)
    rob = dict(zip(runs["id"], runs["robustness"]))
    labels = run_labels(table)
    recs = []
    for rid, d, st in zip(table.runs["run id"], table.runs["defense"], table.runs["settings"]):
        curve = (rob.get(rid) or {}).get("word_share_curve") if isinstance(
            rob.get(rid), dict) else None
        if not isinstance(curve, list):
            continue
        conf = f"{d} {st}".strip()
        for p in curve:
            if isinstance(p, (list, tuple)) and len(p) == 2 and _is_num(p[0]) and _is_num(p[1]):
                recs.append((labels[rid], rid, d, conf, 100.0 * float(p[0]), float(p[1])))
    return pd.DataFrame(recs, columns=cols)


def curve_runs(runs: pd.DataFrame, table) -> int:
    """How many runs of ``table`` stored a word-share curve."""
    if runs.empty or "robustness" not in runs.columns:
        return 0
    rob = runs.loc[runs["id"].isin(set(table.runs["run id"])), "robustness"]
    return int(sum(isinstance(r, dict) and isinstance(r.get("word_share_curve"), list)
                   for r in rob))


@dataclass
class ProtocolView:
    """What the leaderboard tab shows of one protocol, computed once per task × attack ×
    filters (the app caches it).

    Attributes:
        table: the :class:`robustbench_nlp.leaderboard.ProtocolTable`.
        ranked: :func:`configuration_display` of its ranked configurations.
        degenerate: of its degenerate block (without ``rank``).
        curves: runs with a word-share curve (:func:`curve_runs`).
    """

    table: object
    ranked: pd.DataFrame
    degenerate: pd.DataFrame
    curves: int


def protocol_views(tables, task: str, attack: str, runs: pd.DataFrame) -> list[ProtocolView]:
    """A :class:`ProtocolView` of each :func:`robustbench_nlp.leaderboard.protocol_tables`
    table."""
    return [ProtocolView(t, configuration_display(t, task, attack),
                         configuration_display(t, task, attack, degenerate=True)
                         .drop(columns=["rank"]), curve_runs(runs, t)) for t in tables]


def contingency_frame(cmp) -> pd.DataFrame:
    """The 2x2 table of a :class:`robustbench_nlp.compare.Comparison` (robust = the attack
    failed), with totals; index ``A robust``, ``A not robust``, ``total``."""
    return pd.DataFrame(
        {"B robust": [cmp.both, cmp.only_b, cmp.both + cmp.only_b],
         "B not robust": [cmp.only_a, cmp.neither, cmp.only_a + cmp.neither],
         "total": [cmp.both + cmp.only_a, cmp.only_b + cmp.neither, cmp.n]},
        index=["A robust", "A not robust", "total"])


def comparison_frame(cmp) -> pd.DataFrame:
    """AUA of each run and the paired difference, with their 95% intervals (percent /
    percentage points; two decimals when shown): rows ``A``, ``B``, ``A − B``."""
    conf = f"{cmp.confidence:.0%}"
    return pd.DataFrame({
        "": ["A", "B", "A − B (points)"],
        "run": [cmp.a.id, cmp.b.id, ""],
        "robust / compared": [f"{cmp.a.robust}/{cmp.a.compared}",
                              f"{cmp.b.robust}/{cmp.b.compared}", ""],
        "AUA": [cmp.a.aua_pct, cmp.b.aua_pct, cmp.diff_points],
        f"{conf} low": [cmp.a.aua_low_pct, cmp.b.aua_low_pct, cmp.diff_low_points],
        f"{conf} high": [cmp.a.aua_high_pct, cmp.b.aua_high_pct, cmp.diff_high_points],
        "interval": ["Wilson", "Wilson", "Newcombe paired"],
    })
