"""The pages of the leaderboard app: leaderboards per task × attack and per-example diffs.

Everything here only defines functions; :func:`main` draws the app and is called by the
Streamlit script (:data:`robustbench_nlp.app.SCRIPT`).

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
from robustbench_nlp.leaderboard import (leaderboard, load_paper_table, paper_rows,
                                         resource_groups, side_by_side)
from robustbench_nlp.textdiff import diff_html

from .charts import epoch_chart, tradeoff_chart
from .queries import (RESULT_TYPES, epoch_frame, example_table, examples_frame,
                      filter_examples, label_names, label_text, segment_names, tradeoff_frame)

#: diffs drawn per page of the examples view
PAGE_SIZE = 20
#: seconds the run table is cached before the database is read again (or press "Reload")
RUNS_TTL = 30
#: the app's two tabs
VIEWS = ("Leaderboard", "Per-example diffs")
RESULT_COLORS = {"successful": "#cf222e", "failed": "#1a7f37", "skipped": "#6e7781"}

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


def _index(options: list, preferred) -> int:
    return options.index(preferred) if preferred in options else 0


def _pick(df: pd.DataFrame, backbones: list, defenses: list) -> pd.DataFrame:
    if backbones:
        df = df[df["backbone"].isin(backbones)]
    if defenses:
        df = df[df["defense"].isin(defenses)]
    return df.reset_index(drop=True)


def example_html(row, names: list[str] | None, task: str) -> str:
    """One attacked example as an HTML card: result, gold label, prediction before → after,
    queries, perturbed words, then each segment's word diff (:func:`diff_html`).

    Args:
        row: a row of :func:`robustbench_nlp.app.queries.examples_frame`.
        names: the task's label names (or ``None``).
        task: task name (for the segment names).

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
    parts = [f'<div class="rb-example" data-idx="{int(row["idx"])}" style="border:1px solid '
             f'#d0d7de;border-radius:6px;padding:8px 12px;margin:2px 0">',
             f'<div class="rb-meta" style="font-size:0.85em;color:#57606a">{meta}</div>']
    for i, (o, a) in enumerate(zip_longest(orig, adv, fillvalue="")):
        mark = " (attacked)" if len(segs) > 1 and attacked == i else ""
        parts.append(f'<div class="rb-seg" style="margin-top:4px"><span style="font-size:0.75em;'
                     f'color:#57606a">{esc(segs[i])}{mark}</span>'
                     f'<div class="rb-diff" style="line-height:1.7">{diff_html(str(o), str(a))}'
                     f'</div></div>')
    parts.append("</div>")
    return "".join(parts)


def _num(fmt: str, help: str | None = None):
    return st.column_config.NumberColumn(format=fmt, help=help)


def _board_config() -> dict:
    return {
        "rank": st.column_config.NumberColumn(help="rank by AUA, then ACC, among runs with the "
                                              "same attack resources", width="small"),
        "ACC": _num("%.2f", "clean accuracy on the full dev split (%)"),
        "AUA": _num("%.2f", "accuracy under attack on the attacked examples (%)"),
        "AVG": _num("%.2f", "(ACC + AUA) / 2"),
        "ASR": _num("%.2f", "attack success rate (%)"),
        "avg queries": _num("%.1f"), "perturbed %": _num("%.2f", "perturbed words (%)"),
        "trainable params": _num("%d"), "train s": _num("%.1f", "training time (s)"),
        "degenerate": st.column_config.CheckboxColumn(
            help="majority predicted class exceeds its gold share by > 15 points"),
    }


def render_leaderboard(task: str, attack: str, board: pd.DataFrame, prows: pd.DataFrame,
                       runs: pd.DataFrame, paper_found: bool) -> None:
    """The leaderboard tab: measured tables (one per attack-resources tag), the paper's
    reported rows apart, the ACC-vs-AUA chart and, when recorded, per-epoch curves (both
    charts in expanders, drawn when opened)."""
    st.header(f"{md_escape(task)} × {md_escape(attack)}")
    st.caption("Measured runs ranked by AUA, then ACC. Runs whose attack used different "
               "resources (embedding space, sentence encoder, POS tagger) are different "
               "attacks and are ranked in separate tables. Click a column header to sort.")
    if board.empty:
        st.info("No finished runs for this task and attack (and filters).")
    for tag, rows in resource_groups(board):
        st.subheader("Measured runs", anchor=False)
        st.caption(f"attack resources: {md_escape(tag or 'not recorded')} · {len(rows)} runs")
        st.dataframe(rows, hide_index=True, column_config=_board_config())

    st.subheader("Reported in paper", anchor=False)
    if prows.empty:
        st.caption("The PEAFT paper reports no numbers for this task and attack."
                   if paper_found else "No paper tables found (shared/paper next to the data "
                   "mirror, or $RBNLP_PAPER_DIR).")
    else:
        st.caption("The PEAFT paper's Table 1 (TextFooler) / Table 2 (AdvGLUE), as printed, "
                   "with the original textattack resources: not measured here and not ranked "
                   "with measured runs. OOM = the paper ran out of memory.")
        st.dataframe(prows, hide_index=True, column_config=_board_config())
        pairs = side_by_side(board, prows)
        if len(pairs):
            st.subheader("Measured vs paper, same defense and backbone", anchor=False)
            st.dataframe(pairs, hide_index=True, column_config=_board_config())

    # the charts are drawn when their expander is opened: Chromium then shows the tables
    # ~0.14 s sooner on a return visit (the chart's Vega code no longer competes with them)
    points = tradeoff_frame(board, prows)
    if len(points):
        n = len(points)
        box = st.expander(f"Trade-off: ACC vs AUA ({n} point{'s' if n != 1 else ''})",
                          key="tradeoff", on_change="rerun")
        if box.open:
            with box:
                st.altair_chart(tradeoff_chart(points), width="stretch")
    curves = epoch_frame(runs, board["run id"]) if len(board) else pd.DataFrame()
    if len(curves):  # only runs that recorded train_stats["epochs"]; drawn when opened
        n = curves["run id"].nunique()
        box = st.expander(f"Per-epoch curves ({n} run{'s' if n != 1 else ''})", key="epochs",
                          on_change="rerun")
        if box.open:
            with box:
                metric = st.radio("Metric", ["AUA", "ACC"], horizontal=True,
                                  key="epoch_metric")
                st.altair_chart(epoch_chart(curves, metric), width="stretch")


def render_examples(url: str, task: str, board: pd.DataFrame) -> None:
    """The per-example tab: choose a run, filter by result type, search, read the diffs."""
    if board.empty:
        st.info("No finished runs for this task and attack (and filters).")
        return
    info = board.set_index("run id")
    ids = info.index.tolist()

    def fmt(r: str) -> str:
        return (f"{r} · {info.at[r, 'defense']} · {info.at[r, 'backbone']} · "
                f"AUA {info.at[r, 'AUA']}")

    run_id = st.selectbox("Run", ids, format_func=fmt, key="run", bind="query-params")
    df = _examples(url, run_id)
    names = label_names(task)
    c1, c2 = st.columns([2, 3])
    results = c1.multiselect("Result type", list(RESULT_TYPES), default=list(RESULT_TYPES),
                             key="results")
    query = c2.text_input("Search text", key="search",
                          placeholder="word or phrase in the original or adversarial text")
    shown = filter_examples(df, results, query)
    st.caption(f"{len(shown)} of {len(df)} attacked examples")
    if shown.empty:
        return
    st.dataframe(example_table(shown, names), hide_index=True)
    pages = max(1, math.ceil(len(shown) / PAGE_SIZE))
    page = int(st.number_input(f"Page (of {pages}, {PAGE_SIZE} diffs each)", 1, pages, 1)) \
        if pages > 1 else 1
    st.caption("Word diff: removed words struck through in red, inserted words in green.")
    for _, row in shown.iloc[(page - 1) * PAGE_SIZE: page * PAGE_SIZE].iterrows():
        st.html(example_html(row, names, task))


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
        board = leaderboard(task=task, attack=attack, runs=runs)
        prows = paper_rows(task, attack, table=paper)
        backbones = st.multiselect(
            "Backbone", sorted(set(board["backbone"]) | set(prows["backbone"])),
            placeholder="all backbones")
        defenses = st.multiselect(
            "Defense", sorted(set(board["defense"]) | set(prows["defense"])),
            placeholder="all defenses")
        if st.button("Reload database"):
            _runs.clear()
            _examples.clear()
            st.rerun()
        st.caption(f"database: {md_escape(_store(url).engine.url.render_as_string())}")
    board, prows = _pick(board, backbones, defenses), _pick(prows, backbones, defenses)
    # only the open tab is drawn (the other reruns the script when chosen), so opening the app
    # draws the leaderboard alone; ?view=Per-example+diffs opens the diffs directly
    tab_board, tab_examples = st.tabs(list(VIEWS), key="view", on_change="rerun",
                                      bind="query-params")
    if tab_board.open:
        with tab_board:
            render_leaderboard(task, attack, board, prows, runs, paper_found=len(paper) > 0)
    if tab_examples.open:
        with tab_examples:
            render_examples(url, task, board)

