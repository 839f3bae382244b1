"""The pages of the leaderboard app: leaderboards per task × attack (one ranked table per
attack protocol), per-example diffs and the paired comparison of two runs.

Everything here only defines functions; :func:`main` draws the app and is called by the
Streamlit script (:data:`robustbench_nlp.app.SCRIPT`).

Deep links: ``?task=T&attack=A`` chooses the leaderboard, ``view=`` a tab
(:data:`~robustbench_nlp.app.queries.VIEWS`), ``run=RUN_ID`` the run of the diffs and
``a=RUN_ID&b=RUN_ID`` the compared runs. The run pickers keep those parameters in the URL
themselves (:func:`query_pick`): a selectbox bound with ``bind="query-params"`` stores its
*formatted* label in the URL, and drops a raw run id as an unknown option.

Safety: texts from the database (example texts, names, resource tags) are either shown by
Streamlit's data grid (plain text), escaped with :func:`html.escape` before going into
``st.html`` (which renders no markdown and runs no scripts), or backslash-escaped before
going into markdown, so HTML, ``<script>`` or markdown links in a text render literally.
"""

from __future__ import annotations

import html
import math
import re
from itertools import zip_longest

import pandas as pd
import streamlit as st

from robustbench_nlp.db import default_url, open_store
from robustbench_nlp.errors import RBNLPError
from robustbench_nlp.leaderboard import (NO_PROTOCOL, attack_matrix, format_matrix,
                                         leaderboard, load_paper_table, paper_rows,
                                         protocol_tables, side_by_side)
from robustbench_nlp.textdiff import diff_html

from .charts import epoch_chart, tradeoff_chart, word_share_chart
from .queries import (PCT_COLUMNS, RESULT_TYPES, VIEWS, comparison_frame, contingency_frame,
                      epoch_frame, example_table, examples_frame, filter_examples,
                      label_names, label_text, protocol_views, reference_runs,
                      reversing_marks, run_labels, run_order, runs_display, segment_names,
                      tradeoff_frame, word_share_frame)

#: diffs drawn per page of the examples and comparison views
PAGE_SIZE = 20
#: seconds the run table is cached before the database is read again (or press "Reload")
RUNS_TTL = 30
RESULT_COLORS = {"successful": "#cf222e", "failed": "#1a7f37", "skipped": "#6e7781"}
#: the caption of the degenerate block
DEGENERATE_NOTE = ("**Degenerate configurations: potentially unreliable.** The most-predicted "
                   "class exceeds its gold share by more than 15 points: the AUA of such a "
                   "near-constant classifier says little, so these rows are not ranked.")

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:])")


def md_escape(text: object) -> str:
    """``text`` with every markdown/HTML-significant character backslash-escaped, for
    ``st.markdown``/``st.subheader``/``st.caption``."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


@st.cache_resource(show_spinner=False)
def _store(url: str):
    return open_store(url)


@st.cache_data(ttl=RUNS_TTL, show_spinner=False)
def _runs(url: str) -> pd.DataFrame:
    return _store(url).runs_frame()


@st.cache_data(show_spinner=False)
def _paper() -> pd.DataFrame:
    return load_paper_table()


@st.cache_data(ttl=RUNS_TTL, show_spinner=False)
def _examples(url: str, run_id: str) -> pd.DataFrame:
    return examples_frame(_store(url), run_id)


@st.cache_data(ttl=RUNS_TTL, show_spinner=False)
def _board(url: str, task: str, attack: str) -> pd.DataFrame:
    return leaderboard(task=task, attack=attack, runs=_runs(url))


@st.cache_data(ttl=RUNS_TTL, show_spinner=False)
def _views(url: str, task: str, attack: str, backbones: tuple, defenses: tuple) -> list:
    """The protocol tables of one task × attack (and filters) as the leaderboard shows them
    (:func:`protocol_views`), shared by all sessions until the run table is read again:
    pooling and intervals are the costly part of a page."""
    runs = _runs(url)
    board = _pick(_board(url, task, attack), list(backbones), list(defenses))
    return protocol_views(protocol_tables(board, runs), task, attack, runs)


@st.cache_data(ttl=RUNS_TTL, show_spinner=False)
def _matrix(url: str, task: str) -> tuple[pd.DataFrame, dict]:
    """The task's defense × attack AUA matrix (:func:`attack_matrix`)."""
    return attack_matrix(_runs(url), task)


@st.cache_data(ttl=RUNS_TTL, show_spinner=False)
def _comparison(url: str, run_a: str, run_b: str):
    from robustbench_nlp.compare import compare_runs

    return compare_runs(_store(url), run_a, run_b)


@st.cache_resource(show_spinner="Loading the opinion lexicon (Hu & Liu)…")
def _lexicon():
    """``(lexicon, "")``, or ``(None, why)`` when the opinion lexicon cannot be loaded.
    Also makes the first :func:`reversing_swaps` call (its word split imports textattack),
    so the diffs after it draw without that wait."""
    from robustbench_nlp.attacks import polarity

    try:
        lex = polarity.load_opinion_lexicon()
        polarity.reversing_swaps(("good",), ("bad",), lexicon=lex)
    except (RBNLPError, ImportError, OSError) as e:
        return None, str(e)
    return lex, ""


def _index(options: list, preferred) -> int:
    return options.index(preferred) if preferred in options else 0


def _pick(df: pd.DataFrame, backbones: list, defenses: list) -> pd.DataFrame:
    if backbones:
        df = df[df["backbone"].isin(backbones)]
    if defenses:
        df = df[df["defense"].isin(defenses)]
    return df.reset_index(drop=True)


def query_pick(label: str, options: list, param: str, format_func=str, fallback=None,
               **kwargs):
    """A selectbox whose choice lives in the URL as ``?param=OPTION`` (the raw option).

    On a fresh session (a deep link) or when the URL's value changed outside the app
    (browser history), a valid ``param`` chooses the option; otherwise the widget keeps its
    choice, or takes ``fallback`` (default: the first option) when its choice is no longer
    offered. The choice is written back to the URL.

    (``bind="query-params"`` cannot do this with a ``format_func``: the bound URL value is
    the formatted label, so ``?run=RUN_ID`` is dropped as an unknown option.)
    """
    key, seen = f"pick_{param}", f"_url_{param}"
    want = st.query_params.get(param)
    if want in options and want != st.session_state.get(seen):
        st.session_state[key] = want
    elif st.session_state.get(key) not in options:
        st.session_state[key] = fallback if fallback in options else options[0]
    value = st.selectbox(label, options, format_func=format_func, key=key, **kwargs)
    if st.query_params.get(param) != value:
        st.query_params[param] = value
    st.session_state[seen] = value
    return value


def example_html(row, names: list[str] | None, task: str,
                 marks: list[tuple[str, str]] | None = None, title: str = "") -> str:
    """One attacked example as an HTML card: result, gold label, prediction before → after,
    queries, perturbed words, then each segment's word diff (:func:`diff_html`).

    Args:
        row: a row of :func:`robustbench_nlp.app.queries.examples_frame`.
        names: the task's label names (or ``None``).
        task: task name (for the segment names).
        marks: ``(original word, new word)`` swaps to mark in the diffs (the
            polarity-reversing swaps of :func:`robustbench_nlp.app.queries.reversing_marks`);
            the card then says how many.
        title: a heading above the card's summary line (e.g. the run it belongs to).

    Every database value is escaped (:func:`html.escape`) or converted to ``int``.
    """
    esc = html.escape
    result = str(row["result"])
    color = RESULT_COLORS.get(result, "#57606a")
    orig, adv = tuple(row["original"]), tuple(row["adversarial"])
    segs = segment_names(task, max(len(orig), len(adv)))
    attacked = row["attacked_segment"]
    attacked = None if attacked is None or (isinstance(attacked, float) and math.isnan(attacked)) \
        else int(attacked)
    meta = (f'<b>#{int(row["idx"])}</b> · <span class="rb-result" style="color:{color};'
            f'font-weight:600">{esc(result)}</span> · gold {esc(label_text(row["gold"], names))}'
            f' · prediction {esc(label_text(row["pred_before"], names))} → '
            f'{esc(label_text(row["pred_after"], names))} · {int(row["queries"])} queries · '
            f'{int(row["perturbed_words"])}/{int(row["num_words"])} words perturbed')
    if marks:
        n = len(marks)
        meta += (f' · <span class="rb-flips" style="color:#9a6700;font-weight:600">{n} '
                 f'polarity-reversing swap{"s" if n != 1 else ""}</span>')
    parts = [f'<div class="rb-example" data-idx="{int(row["idx"])}" style="border:1px solid '
             f'#d0d7de;border-radius:6px;padding:8px 12px;margin:2px 0">']
    if title:
        parts.append(f'<div class="rb-title" style="font-size:0.8em;font-weight:600">'
                     f'{esc(title)}</div>')
    parts.append(f'<div class="rb-meta" style="font-size:0.85em;color:#57606a">{meta}</div>')
    for i, (o, a) in enumerate(zip_longest(orig, adv, fillvalue="")):
        mark = " (attacked)" if len(segs) > 1 and attacked == i else ""
        parts.append(f'<div class="rb-seg" style="margin-top:4px"><span style="font-size:0.75em;'
                     f'color:#57606a">{esc(segs[i])}{mark}</span>'
                     f'<div class="rb-diff" style="line-height:1.7">'
                     f'{diff_html(str(o), str(a), marks)}</div></div>')
    parts.append("</div>")
    return "".join(parts)


def _num(fmt: str, help: str | None = None):
    return st.column_config.NumberColumn(format=fmt, help=help)


_PCT_HELP = {
    "ACC": "clean accuracy on the full dev split (%); mean over seeds",
    "ACC sd": "sample standard deviation of ACC over seeds (points)",
    "AUA": "accuracy under attack on the attacked examples (%); mean over seeds",
    "AUA sd": "sample standard deviation of AUA over seeds (points)",
    "AUA@10": "AUA when the attack may change at most 10% of the words",
    "AUA@30": "AUA when the attack may change at most 30% of the words",
    "curve area": "mean AUA over word-share caps 0-50%",
    "PDR": "performance drop rate: 100 × (1 − AUA / clean accuracy on the attacked set)",
    "invalid swaps %": "successful examples holding a polarity-reversing word swap (%)",
    "ASR": "attack success rate (%)",
    "perturbed %": "perturbed words (%)",
}


def _table_config() -> dict:
    """Column formats of the configuration and run tables: every percentage "%.2f"."""
    cfg = {c: _num("%.2f", _PCT_HELP.get(c)) for c in PCT_COLUMNS}
    cfg.update({
        "rank": st.column_config.NumberColumn(
            format="%d", help="rank by mean AUA, then mean ACC, among the configurations of "
            "this protocol", width="small"),
        "seeds": _num("%d", "runs (seeds) pooled in this configuration"),
        "seed": _num("%d"),
        "ACC 95% CI": st.column_config.TextColumn(
            help="Wilson 95% interval of all seeds' dev examples pooled (%)"),
        "AUA 95% CI": st.column_config.TextColumn(
            help="Wilson 95% interval of all seeds' attacked examples pooled (%)"),
        "avg queries": _num("%.1f"), "attacked": _num("%d", "attacked examples"),
        "settings": st.column_config.TextColumn(
            help="the hyperparameters that differ between this protocol's configurations"),
        "diffs": st.column_config.LinkColumn(
            help="per-example diffs of the run (a configuration: its best seed)",
            display_text=r"run=([^&]+)"),
        "compare": st.column_config.LinkColumn(
            help="paired comparison with the best run of the top-ranked configuration",
            display_text="compare"),
        "degenerate": st.column_config.CheckboxColumn(
            help="majority predicted class exceeds its gold share by > 15 points"),
    })
    return cfg


def _paper_config() -> dict:
    return {c: _num("%.2f") for c in ("ACC", "AUA", "AVG", "paper ACC", "paper AUA")}


def _expander(label: str, key: str):
    """An expander whose body is drawn only when it is open (it reruns the script)."""
    box = st.expander(label, key=key, on_change="rerun")
    return box if box.open else None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def render_protocol(view, task: str, attack: str, runs: pd.DataFrame) -> None:
    """One protocol (a :class:`~robustbench_nlp.app.queries.ProtocolView`): heading (hash
    and description), the ranked configuration table, the degenerate block apart, and
    (drawn when opened) the runs of each configuration and the word-share robustness
    curves."""
    table = view.table
    h = table.protocol_hash
    n_runs, n_cfg = len(table.runs), len(table.configurations)
    if h == NO_PROTOCOL:
        st.subheader("Protocol not recorded", anchor=False)
    else:
        st.subheader(f"Protocol {md_escape(h)}", anchor=False)
    st.caption(f"{md_escape(table.description)} · {_plural(n_runs, 'run')}, "
               f"{_plural(n_cfg, 'configuration')}")
    cfg = _table_config()
    if len(view.ranked):
        st.dataframe(view.ranked, hide_index=True, column_config=cfg, key=f"ranked_{h}")
    else:
        st.caption("No configuration without a degenerate run: nothing to rank.")
    if len(view.degenerate):
        st.markdown(DEGENERATE_NOTE)
        st.dataframe(view.degenerate, hide_index=True, column_config=cfg,
                     key=f"degenerate_{h}")
    box = _expander(f"Runs of each configuration ({_plural(n_runs, 'run')})", f"runs_{h}")
    if box is not None:
        with box:
            st.dataframe(runs_display(table, task, attack), hide_index=True,
                         column_config=cfg)
    if view.curves:
        box = _expander(f"Robustness curves: AUA vs share of words changed "
                        f"({_plural(view.curves, 'run')})", f"curves_{h}")
        if box is not None:
            with box:
                st.caption("AUA when the attack may change at most that share of an "
                           "example's words (from the stored examples, no new queries).")
                st.altair_chart(word_share_chart(word_share_frame(runs, table)),
                                width="stretch")


def render_leaderboard(task: str, attack: str, board: pd.DataFrame, prows: pd.DataFrame,
                       runs: pd.DataFrame, paper_found: bool, views: list | None = None
                       ) -> None:
    """The leaderboard tab: one section per attack protocol (:func:`render_protocol`), the
    paper's reported rows apart, the ACC-vs-AUA chart and, when recorded, per-epoch curves
    (charts in expanders, drawn when opened). ``views``: :func:`protocol_views` of
    ``board`` (computed when not given)."""
    st.header(f"{md_escape(task)} × {md_escape(attack)}")
    st.caption("One table per attack protocol (recipe, options, resources, attacked "
               "examples): only runs of one protocol are comparable. Rows are defense "
               "configurations, their seeds pooled: ACC and AUA are means over seeds with "
               "their standard deviation, the 95% intervals pool all seeds' examples; ranked "
               "by mean AUA, then mean ACC. Click a column header to sort.")
    if board.empty:
        st.info("No finished runs for this task and attack (and filters).")
    if views is None:
        views = protocol_views(protocol_tables(board, runs), task, attack, runs)
    for view in views:
        render_protocol(view, task, attack, runs)

    st.subheader("Reported in paper", anchor=False)
    if prows.empty:
        st.caption("The PEAFT paper reports no numbers for this task and attack."
                   if paper_found else "No paper tables found (shared/paper next to the data "
                   "mirror, or $RBNLP_PAPER_DIR).")
    else:
        st.caption("The PEAFT paper's Table 1 (TextFooler) / Table 2 (AdvGLUE), as printed, "
                   "with the original textattack resources: not measured here and not ranked "
                   "with measured runs. OOM = the paper ran out of memory.")
        st.dataframe(prows, hide_index=True, column_config=_paper_config())
        pairs = side_by_side(board, prows)
        if len(pairs):
            st.subheader("Measured vs paper, same defense and backbone", anchor=False)
            st.dataframe(pairs, hide_index=True, column_config=_paper_config())

    # the charts are drawn when their expander is opened: Chromium then shows the tables
    # ~0.14 s sooner on a return visit (the chart's Vega code no longer competes with them)
    points = tradeoff_frame(board, prows)
    if len(points):
        box = _expander(f"Trade-off: ACC vs AUA ({_plural(len(points), 'point')})", "tradeoff")
        if box is not None:
            with box:
                st.altair_chart(tradeoff_chart(points), width="stretch")
    curves = epoch_frame(runs, board["run id"]) if len(board) else pd.DataFrame()
    if len(curves):  # only runs that recorded train_stats["epochs"]; drawn when opened
        box = _expander(f"Per-epoch curves ({_plural(curves['run id'].nunique(), 'run')})",
                        "epochs")
        if box is not None:
            with box:
                metric = st.radio("Metric", ["AUA", "ACC"], horizontal=True,
                                  key="epoch_metric")
                st.altair_chart(epoch_chart(curves, metric), width="stretch")


def render_matrix(url: str, task: str) -> None:
    """Defense × attack AUA of ``task`` (drawn when its expander is opened): every attack's
    protocol a column, the ensemble's worst case beside the single recipes."""
    box = _expander(f"Defense × attack AUA on {task}", "matrix")
    if box is None:
        return
    with box:
        matrix, protocols = _matrix(url, task)
        if matrix.empty:
            st.info("No finished runs on this task.")
            return
        st.caption("Mean AUA (%) over seeds per defense configuration (rows) and attack "
                   "protocol (columns), degenerate runs left out; – = not measured. The "
                   "ensemble attacks every example with each recipe of its suite (first "
                   "success wins), so its AUA is the worst case; the worst single-recipe AUA "
                   "is an upper bound of it. Protocols: "
                   + md_escape(", ".join(f"{c} = {h}" for c, h in protocols.items())))
        st.dataframe(format_matrix(matrix), hide_index=True)


def _marks_for(rows: pd.DataFrame) -> tuple[list[list[tuple[str, str]]], str]:
    """The polarity-reversing swaps of each row, and the caption explaining the marks."""
    lex, why = _lexicon()
    if lex is None:
        return [[] for _ in range(len(rows))], (
            f"Polarity-reversing swaps are not marked: {md_escape(why)}")
    marks = [reversing_marks(r, lex) for _, r in rows.iterrows()]
    return marks, ("Outlined in amber: polarity-reversing swaps (a word of one polarity "
                   "replaced by one of the opposite polarity, Hu & Liu opinion lexicon).")


def _page(n: int) -> int:
    """The page (1-based) of ``n`` items chosen, :data:`PAGE_SIZE` per page."""
    pages = max(1, math.ceil(n / PAGE_SIZE))
    if pages == 1:
        return 1
    return int(st.number_input(f"Page (of {pages}, {PAGE_SIZE} each)", 1, pages, 1))


def _run_format(board: pd.DataFrame):
    info = board.set_index("run id")

    def fmt(r: str) -> str:
        aua = info.at[r, "AUA"]
        aua = "-" if pd.isna(aua) else f"{float(aua):.2f}"
        proto = info.at[r, "protocol"] or "no protocol"
        return (f"{r} · {info.at[r, 'defense']} · {info.at[r, 'backbone']} · seed "
                f"{info.at[r, 'seed']} · AUA {aua} · {proto}")
    return fmt


def render_examples(url: str, task: str, board: pd.DataFrame, tables: list | None = None
                    ) -> None:
    """The per-example tab: choose a run (``?run=RUN_ID``; listed in leaderboard order),
    filter by result type, search, read the diffs (polarity-reversing swaps marked).
    ``tables``: :func:`protocol_tables` of ``board``."""
    if board.empty:
        st.info("No finished runs for this task and attack (and filters).")
        return
    ids = run_order(protocol_tables(board) if tables is None else tables)
    run_id = query_pick("Run", ids, "run", _run_format(board))
    df = _examples(url, run_id)
    names = label_names(task)
    c1, c2 = st.columns([2, 3])
    results = c1.multiselect("Result type", list(RESULT_TYPES), default=list(RESULT_TYPES),
                             key="results")
    query = c2.text_input("Search text", key="search",
                          placeholder="word or phrase in the original or adversarial text")
    shown = filter_examples(df, results, query)
    st.caption(f"{len(shown)} of {len(df)} attacked examples of run {md_escape(run_id)}")
    if shown.empty:
        return
    st.dataframe(example_table(shown, names), hide_index=True)
    page = _page(len(shown))
    rows = shown.iloc[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    marks, note = _marks_for(rows)
    st.caption("Word diff: removed words struck through in red, inserted words in green. "
               + note)
    for (_, row), m in zip(rows.iterrows(), marks):
        st.html(example_html(row, names, task, m))


def render_compare(url: str, task: str, attack: str, board: pd.DataFrame,
                   runs: pd.DataFrame, tables: list | None = None) -> None:
    """The comparison tab: two runs of one protocol (``?a=RUN_ID&b=RUN_ID``), their 2×2
    table, AUAs with intervals, the paired difference with its interval, the exact McNemar
    p-value (:func:`robustbench_nlp.compare.compare_runs`) and the examples on which they
    differ, side by side. ``tables``: :func:`protocol_tables` of ``board``."""
    tables = [t for t in (protocol_tables(board, runs) if tables is None else tables)
              if t.protocol_hash != NO_PROTOCOL and len(t.runs) >= 2]
    if not tables:
        st.info("No protocol with two finished runs here (and filters): nothing to compare. "
                "Runs without a recorded protocol need `rbnlp rescore` first.")
        return
    by_hash = {t.protocol_hash: t for t in tables}
    hashes = list(by_hash)
    proto_of = {r: t.protocol_hash for t in tables for r in t.runs["run id"]}
    url_a = st.query_params.get("a")
    if url_a in proto_of and (url_a != st.session_state.get("_url_a")
                              or st.session_state.get("compare_protocol") not in by_hash):
        st.session_state["compare_protocol"] = proto_of[url_a]
    elif st.session_state.get("compare_protocol") not in by_hash:
        st.session_state["compare_protocol"] = hashes[0]
    h = st.selectbox("Protocol", hashes, key="compare_protocol", format_func=lambda x: (
        f"{x} · {len(by_hash[x].runs)} runs · {by_hash[x].description}"))
    table = by_hash[h]
    ids = run_order([table])
    labels = run_labels(table)
    aua = dict(zip(table.runs["run id"], table.runs["AUA"]))

    def fmt(r: str) -> str:
        return f"{labels[r]} · AUA " + ("-" if pd.isna(aua[r]) else f"{float(aua[r]):.2f}")

    # defaults: the first runs of the two top-ranked configurations
    refs = reference_runs(table)
    c1, c2 = st.columns(2)
    with c1:
        a = query_pick("Run A", ids, "a", fmt, fallback=refs[0])
    with c2:
        b = query_pick("Run B", ids, "b", fmt,
                       fallback=next((r for r in refs + ids if r != a), a))
    if a == b:
        st.info("Choose two different runs.")
        return
    try:
        cmp = _comparison(url, a, b)
    except RBNLPError as e:
        st.error(str(e))
        return
    from robustbench_nlp.compare import format_p

    st.markdown(f"**{md_escape(cmp.answer())}**")
    st.markdown(f"A − B = {cmp.diff_points:.2f} points, {cmp.confidence:.0%} CI "
                f"[{cmp.diff_low_points:.2f}, {cmp.diff_high_points:.2f}] (Newcombe, paired) · "
                f"exact McNemar {md_escape(format_p(cmp.p_value))} on {cmp.only_a} vs "
                f"{cmp.only_b} discordant examples")
    st.caption(f"Robust = the attack failed on the example (AUA = robust / attacked), "
               f"{cmp.n} examples compared · protocol {md_escape(cmp.protocol_hash)}"
               + (f" · {md_escape(cmp.note())}" if cmp.note() else ""))
    c1, c2 = st.columns([2, 3])
    c1.dataframe(contingency_frame(cmp), key="contingency")
    c2.dataframe(comparison_frame(cmp), hide_index=True, key="comparison",
                 column_config={c: _num("%.2f") for c in (
                     "AUA", f"{cmp.confidence:.0%} low", f"{cmp.confidence:.0%} high")})

    differ = sorted(cmp.only_a_indices + cmp.only_b_indices)
    st.subheader(f"Examples where the runs differ ({len(differ)})", anchor=False)
    if not differ:
        st.caption("The two runs are robust on exactly the same examples.")
        return
    ex_a = _examples(url, a).set_index("idx", drop=False)
    ex_b = _examples(url, b).set_index("idx", drop=False)
    page = _page(len(differ))
    idx = differ[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    rows_a, rows_b = ex_a.loc[idx].reset_index(drop=True), ex_b.loc[idx].reset_index(drop=True)
    marks_a, note = _marks_for(rows_a)
    marks_b, _ = _marks_for(rows_b)
    st.caption(f"Robust only under A: {len(cmp.only_a_indices)}; only under B: "
               f"{len(cmp.only_b_indices)}. Left: run A's adversarial diff; right: run B's. "
               + note)
    names = label_names(task)
    for i in range(len(idx)):
        left, right = st.columns(2)
        with left:
            st.html(example_html(rows_a.iloc[i], names, task, marks_a[i], title=f"A · {a}"))
        with right:
            st.html(example_html(rows_b.iloc[i], names, task, marks_b[i], title=f"B · {b}"))


def main() -> None:
    """Draw the app for the database at :func:`robustbench_nlp.db.default_url`."""
    st.set_page_config(page_title="robustbench_nlp leaderboard", layout="wide")
    url = default_url()
    try:
        runs = _runs(url)
        paper = _paper()
    except RBNLPError as e:
        st.error(str(e))
        st.stop()
        return
    finished = runs[runs["status"] == "finished"] if len(runs) else pd.DataFrame(
        columns=["task", "attack"])
    tasks = sorted(set(finished["task"]) | set(paper["task"])) or ["sst2"]
    with st.sidebar:
        st.title("robustbench_nlp")
        task = st.selectbox("Task", tasks, index=_index(tasks, "sst2"), key="task",
                            bind="query-params")
        attacks = sorted(set(finished.loc[finished["task"] == task, "attack"])
                         | set(paper.loc[paper["task"] == task, "attack"])) or ["textfooler"]
        attack = st.selectbox("Attack", attacks, index=_index(attacks, "textfooler"),
                              key="attack", bind="query-params")
        board = _board(url, task, attack)
        prows = paper_rows(task, attack, table=paper)
        backbones = st.multiselect(
            "Backbone", sorted(set(board["backbone"]) | set(prows["backbone"])),
            placeholder="all backbones")
        defenses = st.multiselect(
            "Defense", sorted(set(board["defense"]) | set(prows["defense"])),
            placeholder="all defenses")
        if st.button("Reload database"):
            _runs.clear()
            _board.clear()
            _views.clear()
            _examples.clear()
            _comparison.clear()
            _matrix.clear()
            _lexicon.clear()
            st.rerun()
        st.caption(f"database: {md_escape(_store(url).engine.url.render_as_string())}")
    views = _views(url, task, attack, tuple(backbones), tuple(defenses))
    board, prows = _pick(board, backbones, defenses), _pick(prows, backbones, defenses)
    # only the open tab is drawn (the others rerun the script when chosen), so opening the app
    # draws the leaderboard alone; ?view=Per-example+diffs opens the diffs directly
    tab_board, tab_examples, tab_compare = st.tabs(list(VIEWS), key="view", on_change="rerun",
                                                   bind="query-params")
    if tab_board.open:
        with tab_board:
            render_leaderboard(task, attack, board, prows, runs, paper_found=len(paper) > 0,
                               views=views)
            render_matrix(url, task)
    if tab_examples.open:
        with tab_examples:
            render_examples(url, task, board, [v.table for v in views])
    if tab_compare.open:
        with tab_compare:
            render_compare(url, task, attack, board, runs, [v.table for v in views])
