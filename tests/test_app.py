"""The leaderboard tables, the paper rows, the word diff and the Streamlit app (AppTest)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st_

from robustbench_nlp.app.queries import CONFIG_TABLE, PCT_COLUMNS, RUN_TABLE
from robustbench_nlp.app.ui import DEGENERATE_NOTE
from robustbench_nlp.db import Store
from robustbench_nlp.errors import DataError
from robustbench_nlp.leaderboard import (COLUMNS, NO_PROTOCOL, PAPER_COLUMNS, REPORTED,
                                         find_paper_dir, leaderboard, load_paper_table,
                                         paper_rows, protocol_tables, resources_tag,
                                         side_by_side)
from robustbench_nlp.textdiff import changed_words, diff_html, word_diff

GLOVE = {"embedding": {"name": "glove-6b-50d", "fingerprint": "a1b2c3d4e5f6"},
         "sentence_encoder": {"name": "USE-numpy"}, "pos_tagger": {"name": "spacy"}}
PARAGRAM = {"embedding": {"name": "paragramcf"}, "sentence_encoder": {"name": "USE-tfhub"},
            "pos_tagger": {"name": "nltk"}}
#: the attack options of the fixture's protocols
OPTIONS = {"max_candidates": 50, "query_budget": None}
#: attacked examples per run (AUA = failed / ATTACKED)
ATTACKED = 20
DEV = 100  # eval_examples: ACC = correct / DEV

ORIGINAL = "a gripping , beautifully acted film"
ADVERSARIAL = "a riveting , beautifully acted movie"
XSS = ('<script>window.__pwned=1</script> a <img src=x onerror="window.__pwned=2"> film '
       '[click](javascript:window.__pwned=3)')
XSS_ADV = XSS.replace(" film ", " movie ")
FLIP = ("a good , moving story", "a bad , moving story")  # good -> bad reverses polarity


def protocol(resources=GLOVE, task="sst2", n=ATTACKED):
    from robustbench_nlp.attacks.protocol import example_set, protocol_hash, protocol_record

    rec = protocol_record("textfooler", OPTIONS, resources,
                          example_set(task, "validation", range(n)))
    return rec, protocol_hash(rec)


P1, H1 = protocol()
P2, H2 = protocol(PARAGRAM)


def example(idx, original=ORIGINAL, adversarial=ADVERSARIAL, result="successful", gold=1,
            before=1, after=0, queries=17, segment=None):
    orig = original if isinstance(original, tuple) else (original,)
    adv = adversarial if isinstance(adversarial, tuple) else (adversarial,)
    return {"index": idx, "original": orig, "adversarial": adv, "attacked_segment": segment,
            "gold": gold, "pred_before": before, "pred_after": after, "result": result,
            "queries": queries, "num_words": len(orig[-1].split()), "perturbed_words": 2,
            "extra": {}}


def attacked_rows(robust, special=()):
    """ATTACKED example rows: the indices in ``robust`` failed (the attack did not flip
    them), the others successful; ``special`` replaces the first rows."""
    rows = []
    for i in range(ATTACKED):
        if i < len(special):
            rows.append(special[i])
        elif i in robust:
            rows.append(example(i, "the cast is charming", "the cast is charming", "failed",
                                after=1, queries=40))
        else:
            rows.append(example(i, "a story about a cat", "a story about a kitten"))
    return rows


#: runC's first five examples: successful, failed, skipped, injected markup, polarity flip
SPECIAL = (example(0), example(1, result="failed", after=1, queries=40, adversarial=ORIGINAL),
           example(2, result="skipped", before=0, after=0, queries=0,
                   original="dull and lifeless", adversarial="dull and lifeless"),
           example(3, original=XSS, adversarial=XSS_ADV), example(4, *FLIP))
ROBUST_C = {1, *range(5, 15)}  # 11 of 20: AUA 55
ROBUST_B = set(range(5, 16))  # 11: AUA 55
ROBUST_A = set(range(5, 13))  # 8: AUA 40


def curve(aua, acc_attacked=90.0):
    """A word-share curve falling linearly from ``acc_attacked`` (share 0) to ``aua``."""
    return [[round(0.05 * k, 2), acc_attacked - (acc_attacked - aua) * k / 10]
            for k in range(11)]


def add_run(store, run_id, defense, model, acc, aua, resources=GLOVE, task="sst2",
            attack="textfooler", status="finished", examples=(), train_stats=None, seed=0,
            params=None, proto=(P1, H1), degenerate=False, invalid=None, day=1):
    store.create_run(id=run_id, task=task, defense=defense, attack=attack, model=model,
                     seed=seed, num_examples=len(examples),
                     config={"run": {"model": model, "seed": seed},
                             "defense": dict(params or {})},
                     trainable_params=1000 + len(run_id), train_seconds=12.5,
                     train_stats=train_stats or {}, resources=resources, status=status,
                     finished_at=datetime(2026, 11, day, 12, 0, tzinfo=timezone.utc))
    failed = round(aua * ATTACKED / 100)
    store.save_metrics(run_id, acc=acc, aua=aua, avg=(acc + aua) / 2, asr=100 - aua,
                       avg_queries=20.0, avg_perturbed_pct=10.0, degenerate=degenerate,
                       eval_examples=DEV, attacked=ATTACKED, failed=failed,
                       successful=ATTACKED - failed, skipped=0, attacked_clean_acc=90.0,
                       aua_at_10=aua + 20, aua_at_30=aua + 5, curve_area=aua + 10,
                       invalid_swap_rate=invalid,
                       robustness={"word_share_curve": curve(aua)})
    if proto is not None:
        store.update_run(run_id, protocol=proto[0], protocol_hash=proto[1])
    for e in examples:
        store.add_example(run_id, e)


def fill(url: str) -> Store:
    """sst2 × textfooler under two protocols (P1: 7 runs, 5 configurations, one degenerate,
    one repeated seed; P2: one run), a run without a recorded protocol, and distractors."""
    store = Store(url)
    add_run(store, "runA", "peaft", "minilm", 90.0, 40.0, params={"lr": 0.01},
            examples=attacked_rows(ROBUST_A), invalid=12.5)
    add_run(store, "runA2", "peaft", "minilm", 92.0, 50.0, params={"lr": 0.01}, seed=1,
            invalid=7.5)
    add_run(store, "runJ", "peaft", "minilm", 89.0, 30.0, params={"lr": 0.03})
    add_run(store, "runB", "finetune", "minilm", 80.0, 55.0, examples=attacked_rows(ROBUST_B))
    add_run(store, "runC", "freelb", "roberta-base", 85.0, 55.0,
            examples=attacked_rows(ROBUST_C, SPECIAL))
    # a later re-run of runC's cell (same configuration and seed): listed, not pooled
    add_run(store, "runC2", "freelb", "roberta-base", 86.0, 60.0, day=2)
    add_run(store, "runH", "rose", "minilm", 60.0, 75.0, degenerate=True)
    add_run(store, "runD", "peaft", "minilm", 88.0, 70.0, resources=PARAGRAM, proto=(P2, H2),
            params={"lr": 0.01})
    add_run(store, "runI", "finetune", "minilm", 70.0, 20.0, proto=None)
    add_run(store, "runE", "peaft", "minilm", 99.0, 99.0, status="attacking")
    add_run(store, "runF", "peaft", "minilm", 95.0, 90.0, task="rte", proto=protocol(task="rte"))
    add_run(store, "runG", "rose", "minilm", 91.0, 91.0, attack="advglue", proto=None)
    return store


@pytest.fixture
def filled(tmp_path):
    url = f"sqlite:///{tmp_path / 'lb.db'}"
    return url, fill(url)


@pytest.fixture
def paper_dir(tmp_path, monkeypatch):
    d = tmp_path / "paper"
    d.mkdir()
    (d / "table1_textfooler.csv").write_text(
        "method,backbone,task,attack,AUA,ACC,AVG\n"
        "PEAFT,roberta-base,sst2,textfooler,48.00,93.80,70.90\n"
        "FreeLB,roberta-base,sst2,textfooler,12.30,82.50,47.40\n"
        "FreeLB,llama,sst2,textfooler,OOM,OOM,OOM\n"
        "ROSE,roberta-base,rte,textfooler,18.87,66.81,42.84\n")
    monkeypatch.setenv("RBNLP_PAPER_DIR", str(d))
    return d


# -- leaderboard tables ---------------------------------------------------------------------

def test_leaderboard_tables_per_protocol(filled):
    url, store = filled
    runs = store.runs_frame()
    board = leaderboard(task="sst2", attack="textfooler", runs=runs)
    assert list(board.columns) == COLUMNS
    # unfinished runE, rte runF and advglue runG are not on this board
    assert sorted(board["run id"]) == ["runA", "runA2", "runB", "runC", "runC2", "runD", "runH",
                                       "runI", "runJ"]
    tables = protocol_tables(board, runs)
    assert [(t.protocol_hash, sorted(t.runs["run id"])) for t in tables] == [
        (H1, ["runA", "runA2", "runB", "runC", "runC2", "runH", "runJ"]), (H2, ["runD"]),
        (NO_PROTOCOL, ["runI"])]
    # AUA tie 55/55 broken by ACC 85 > 80; runA + runA2 are one configuration, two seeds;
    # runC2 repeats runC's seed: listed, not pooled (its AUA 60 does not count)
    assert tables[0].ranked["runs"].tolist() == ["runC", "runB", "runA, runA2", "runJ"]
    assert tables[0].ranked["repeats"].tolist() == ["runC2", "", "", ""]
    assert tables[0].degenerate["runs"].tolist() == ["runH"]
    assert set(board.loc[board["protocol"] == H1, "attack resources"]) == {resources_tag(GLOVE)}


def test_leaderboard_empty_for_unknown_pair(filled):
    url, _ = filled
    board = leaderboard(url, task="qnli", attack="textfooler")
    assert board.empty and list(board.columns) == COLUMNS


# -- paper rows -----------------------------------------------------------------------------

def test_paper_rows_are_a_separate_marked_table(paper_dir):
    assert find_paper_dir() == paper_dir.resolve()
    rows = paper_rows("sst2", "textfooler")
    assert list(rows.columns) == PAPER_COLUMNS
    assert rows[["defense", "backbone"]].values.tolist() == [
        ["peaft", "roberta-base"], ["freelb", "roberta-base"], ["freelb", "llama"]]
    assert rows["AUA"].tolist()[:2] == [48.0, 12.3]
    assert pd.isna(rows.loc[2, "AUA"]) and rows.loc[2, "note"] == "OOM"
    assert set(rows["source"]) == {REPORTED}
    assert "rank" not in rows.columns
    assert paper_rows("qnli", "textfooler").empty


def test_side_by_side_pairs_measured_with_paper(filled, paper_dir):
    url, _ = filled
    board = leaderboard(url, task="sst2", attack="textfooler")
    pairs = side_by_side(board, paper_rows("sst2", "textfooler"))
    assert pairs[["run id", "defense", "backbone", "ACC", "AUA", "paper ACC",
                  "paper AUA"]].values.tolist() == [
        ["runC2", "freelb", "roberta-base", 86.0, 60.0, 82.5, 12.3],
        ["runC", "freelb", "roberta-base", 85.0, 55.0, 82.5, 12.3]]
    assert side_by_side(board, paper_rows("qnli", "textfooler")).empty


def test_paper_dir_errors_and_absence(tmp_path, monkeypatch):
    monkeypatch.setenv("RBNLP_PAPER_DIR", str(tmp_path))
    with pytest.raises(DataError, match="holds none of table1_textfooler.csv"):
        find_paper_dir()
    (tmp_path / "table2_advglue.csv").write_text("method,backbone,task\nPEAFT,x,sst2\n")
    with pytest.raises(DataError, match="lacks column.*attack, AUA, ACC, AVG"):
        load_paper_table()


def test_real_paper_tables_parse():
    found = find_paper_dir()
    if found is None:
        pytest.skip("paper tables (shared/paper) not found")
    t = load_paper_table(found)
    # Table 1: 7 backbones x 3 methods x 4 tasks; Table 2: 6 backbones x 3 methods x 2 tasks
    assert (t["attack"] == "textfooler").sum() == 84
    assert (t["attack"] == "advglue").sum() == 36
    assert set(t["defense"]) == {"peaft", "freelb", "rose"}
    oom = t[t["note"] == "OOM"]
    assert len(oom) == 7 and oom["AUA"].isna().all()
    row = t[(t["defense"] == "peaft") & (t["backbone"] == "roberta-base") & (t["task"] == "rte")
            & (t["attack"] == "advglue")]
    assert row["ACC"].tolist() == [68.501]  # copied as printed


# -- word diff ------------------------------------------------------------------------------

def test_word_diff_known_pair():
    assert changed_words(ORIGINAL, ADVERSARIAL) == (["gripping", "film"], ["riveting", "movie"])
    assert [(t.op, t.word) for t in word_diff("a b c", "a x c d")] == [
        ("equal", "a"), ("delete", "b"), ("insert", "x"), ("equal", "c"), ("insert", "d")]
    with pytest.raises(TypeError, match="adversarial text must be str, got NoneType"):
        word_diff("a", None)


def test_diff_html_escapes_everything():
    out = diff_html(XSS, XSS_ADV)
    assert "<script" not in out and "<img" not in out
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in out
    assert "onerror=&quot;window.__pwned=2&quot;&gt;" in out
    assert re.findall(r"<del[^>]*>(.*?)</del>", out) == ["film"]
    assert re.findall(r"<ins[^>]*>(.*?)</ins>", out) == ["movie"]


def test_diff_html_marks_given_swaps_and_still_escapes():
    plain = diff_html("a good , fine film", "a bad , fine movie")
    out = diff_html("a good , fine film", "a bad , fine movie", [("good", "bad")])
    flips = re.findall(r'<(del|ins) class="rb-(?:del|ins) rb-flip" style="[^"]*" '
                       r'title="polarity-reversing swap">(.*?)</\1>', out)
    assert flips == [("del", "good"), ("ins", "bad")]
    assert out.count("rb-flip") == 2  # film -> movie is not a listed swap
    assert re.findall(r"<del[^>]*>(.*?)</del>", out) == ["good", "film"]
    assert re.findall(r"<ins[^>]*>(.*?)</ins>", out) == ["bad", "movie"]
    # pairs matching no changed span, or an empty list, change nothing
    assert diff_html("a good , fine film", "a bad , fine movie", [("nice", "awful")]) == plain
    assert diff_html("a good film", "a fine film", [("good", "bad")]) == diff_html(
        "a good film", "a fine film")
    assert diff_html(ORIGINAL, ADVERSARIAL, []) == diff_html(ORIGINAL, ADVERSARIAL)
    # a marked token holding markup stays escaped; words match case-insensitively inside it
    out = diff_html('<i>Good</i>, "day"', '<i>Bad</i>, "day"', [("good", "bad")])
    assert "<i>" not in out and "&lt;i&gt;Good&lt;/i&gt;," in out and "&quot;day&quot;" in out
    assert out.count("rb-flip") == 2


@settings(max_examples=60, deadline=None)
@given(st_.lists(st_.sampled_from(["good", "<b>", "&", "bad\"", "a"]), max_size=6),
       st_.lists(st_.sampled_from(["good", "<b>", "&", "bad\"", "e"]), max_size=6),
       st_.lists(st_.tuples(st_.sampled_from(["good", "b", "a"]),
                            st_.sampled_from(["bad", "b", "e"])), max_size=3))
def test_marked_diff_html_is_escaped_and_keeps_the_words(a, b, marks):
    out = diff_html(" ".join(a), " ".join(b), marks)
    text = re.sub(r'</?(?:del|ins)(?: class="[a-z -]+" style="[^"<>]*"(?: title="[a-z -]+")?)?>',
                  "", out)
    assert "<" not in text and ">" not in text and '"' not in text
    plain = re.sub(r"<[^>]+>", "", diff_html(" ".join(a), " ".join(b)))
    assert text == plain  # marking adds attributes only, never words


@settings(max_examples=60, deadline=None)
@given(st_.lists(st_.sampled_from(["a", "b", "<c>", "&", "d"]), max_size=8),
       st_.lists(st_.sampled_from(["a", "b", "<c>", "&", "e"]), max_size=8))
def test_word_diff_reconstructs_both_texts(a, b):
    toks = word_diff(" ".join(a), " ".join(b))
    assert [t.word for t in toks if t.op != "insert"] == a
    assert [t.word for t in toks if t.op != "delete"] == b


# -- the Streamlit app ----------------------------------------------------------------------

def _app(url, monkeypatch, query=None):
    from streamlit.testing.v1 import AppTest

    from robustbench_nlp.app import SCRIPT

    monkeypatch.setenv("RBNLP_DB", url)
    # AppTest installs the script as sys.modules["__main__"] and never puts it back
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    at = AppTest.from_file(str(SCRIPT), default_timeout=60)
    at.query_params.update(query or {})
    return at.run()


def _tables(at, columns):
    """The st.dataframe tables whose columns are ``columns`` (measured, paper, examples)."""
    return [d.value for d in at.dataframe if list(d.value.columns) == list(columns)]


def test_app_script_is_inert_when_imported(tmp_path, monkeypatch):
    """A spawned worker re-imports the parent's ``__main__`` as ``__mp_main__``: after AppTest
    that is the app script, which must then draw nothing (CI once crashed here)."""
    import runpy
    from unittest import mock

    from robustbench_nlp.app import SCRIPT

    monkeypatch.setenv("RBNLP_DB", f"sqlite:///{tmp_path}/missing/rbnlp.db")
    with mock.patch("robustbench_nlp.app.ui.main") as main:
        runpy.run_path(str(SCRIPT), run_name="__mp_main__")
        assert main.call_count == 0
        runpy.run_path(str(SCRIPT), run_name="__main__")
        assert main.call_count == 1


EXAMPLE_TABLE = ["idx", "result", "gold", "before", "after", "queries", "perturbed", "original",
                 "adversarial"]


def _formats(table) -> dict:
    """The number format the app gives each column of an st.dataframe (column_config)."""
    cols = json.loads(table.proto.columns or "{}")
    return {c: v.get("type_config", {}).get("format") for c, v in cols.items()}


def _shown(table, column) -> list[str]:
    """The cells of a numeric column as the grid prints them (its "%.2f"-style format)."""
    fmt = _formats(table)[column]
    return ["" if pd.isna(v) else fmt % v for v in table.value[column]]


def _link(view, **params):
    from urllib.parse import urlencode

    return "?" + urlencode({"task": "sst2", "attack": "textfooler", "view": view, **params})


def test_app_one_section_per_protocol(filled, paper_dir, monkeypatch):
    url, _ = filled
    at = _app(url, monkeypatch)
    assert not at.exception
    assert [h.value for h in at.subheader][:3] == [f"Protocol {H1}", f"Protocol {H2}",
                                                   "Protocol not recorded"]
    captions = [c.value for c in at.caption]
    assert any(c.startswith("textfooler · max\\_candidates=50, query\\_budget=None · "
                            "glove\\-6b\\-50d@a1b2c3d4") and c.endswith(
        "· 7 runs, 5 configurations") for c in captions)
    assert len(at.html) == 0  # the per-example tab is not drawn until chosen
    ranked, degenerate, p2, unrecorded = (d for d in at.dataframe
                                          if "AUA 95% CI" in d.value.columns)
    v = ranked.value
    assert list(v.columns) == CONFIG_TABLE
    assert v[["rank", "defense", "backbone", "settings", "seeds", "runs"]].values.tolist() == [
        [1, "freelb", "roberta-base", "model=roberta-base", 1, "runC"],
        [2, "finetune", "minilm", "model=minilm", 1, "runB"],
        [3, "peaft", "minilm", "lr=0.01, model=minilm", 2, "runA, runA2"],
        [4, "peaft", "minilm", "lr=0.03, model=minilm", 1, "runJ"]]
    # every percentage column is formatted "%.2f" (queries "%.1f")
    fmts = _formats(ranked)
    assert {c: fmts[c] for c in PCT_COLUMNS} == {c: "%.2f" for c in PCT_COLUMNS}
    assert fmts["avg queries"] == "%.1f" and fmts["rank"] == "%d"
    assert _shown(ranked, "AUA") == ["55.00", "55.00", "45.00", "30.00"]
    assert _shown(ranked, "AUA sd") == ["", "", "7.07", ""]  # seeds 40 and 50
    assert _shown(ranked, "ACC") == ["85.00", "80.00", "91.00", "89.00"]
    assert _shown(ranked, "ACC sd") == ["", "", "1.41", ""]
    # pooled Wilson intervals: 11/20, 11/20, 18/40, 6/20 attacked; 85/100 ... dev examples
    assert v["AUA 95% CI"].tolist() == ["[34.21, 74.18]", "[34.21, 74.18]", "[30.71, 60.17]",
                                        "[14.55, 51.90]"]
    assert v["ACC 95% CI"].tolist() == ["[76.72, 90.69]", "[71.12, 86.66]", "[86.22, 94.23]",
                                        "[81.37, 93.75]"]
    assert _shown(ranked, "PDR") == ["38.89", "38.89", "50.00", "66.67"]
    assert _shown(ranked, "invalid swaps %") == ["", "", "10.00", ""]  # mean of 12.5, 7.5
    assert _shown(ranked, "AUA@30") == ["60.00", "60.00", "50.00", "35.00"]
    assert v["diffs"].tolist() == [_link("Per-example diffs", run=r)
                                   for r in ("runC", "runB", "runA", "runJ")]
    assert v["compare"].tolist() == [_link("Compare", a="runC", b="runB")] + [
        _link("Compare", a=r, b="runC") for r in ("runB", "runA", "runJ")]
    cfg = json.loads(ranked.proto.columns)
    assert cfg["diffs"]["type_config"] == {"type": "link", "display_text": "run=([^&]+)"}
    assert cfg["compare"]["type_config"]["display_text"] == "compare"

    # the degenerate block: apart, marked, unranked
    assert "rank" not in degenerate.value.columns
    assert degenerate.value[["defense", "runs"]].values.tolist() == [["rose", "runH"]]
    assert _shown(degenerate, "AUA") == ["75.00"]
    assert [m.value for m in at.markdown] == [DEGENERATE_NOTE]
    assert "potentially unreliable" in DEGENERATE_NOTE and "15 points" in DEGENERATE_NOTE
    assert p2.value[["rank", "runs"]].values.tolist() == [[1, "runD"]]
    # runs without a recorded protocol are listed, not ranked
    assert unrecorded.value["runs"].tolist() == ["runI"] and unrecorded.value["rank"].isna().all()
    assert unrecorded.value["compare"].isna().all()

    (paper,) = _tables(at, PAPER_COLUMNS)
    assert paper["backbone"].tolist() == ["roberta-base", "roberta-base", "llama"]
    assert set(paper["source"]) == {REPORTED} and "run id" not in paper.columns
    pairs = next(d.value for d in at.dataframe if "paper AUA" in d.value.columns)
    assert pairs[["run id", "paper AUA"]].values.tolist() == [["runC2", 12.3], ["runC", 12.3]]

    # filters: backbone narrows the protocol tables and the paper table
    at.sidebar.multiselect[0].set_value(["roberta-base"]).run()
    assert [d.value["runs"].tolist() for d in at.dataframe
            if "AUA 95% CI" in d.value.columns] == [["runC"]]
    assert _tables(at, PAPER_COLUMNS)[0]["defense"].tolist() == ["peaft", "freelb"]

    # another task: only its run
    at.sidebar.multiselect[0].set_value([]).run()
    at.selectbox(key="task").set_value("rte").run()
    assert [d.value["runs"].tolist() for d in at.dataframe
            if "AUA 95% CI" in d.value.columns] == [["runF"]]


def test_app_runs_of_each_configuration_and_curves(filled, paper_dir, monkeypatch):
    url, _ = filled
    at = _app(url, monkeypatch)
    assert [e.label for e in at.expander][:2] == [
        "Runs of each configuration (7 runs)",
        "Robustness curves: AUA vs share of words changed (7 runs)"]
    assert _tables(at, RUN_TABLE) == [] and len(at.get("vega_lite_chart")) == 0
    at.session_state[f"runs_{H1}"] = True
    at.session_state[f"curves_{H1}"] = True
    at.run()
    assert not at.exception
    (runs,) = [d for d in at.dataframe if list(d.value.columns) == RUN_TABLE]
    assert runs.value[["configuration", "run id", "seed"]].values.tolist() == [
        ["#1 freelb", "runC", 0], ["#1 freelb, repeat (not pooled)", "runC2", 0],
        ["#2 finetune", "runB", 0], ["#3 peaft", "runA2", 1], ["#3 peaft", "runA", 0],
        ["#4 peaft", "runJ", 0], ["degenerate rose", "runH", 0]]
    assert _shown(runs, "AUA") == ["55.00", "60.00", "55.00", "50.00", "40.00", "30.00",
                                   "75.00"]
    assert runs.value["AUA 95% CI"].tolist()[3:5] == ["[29.93, 70.07]", "[21.88, 61.34]"]
    assert runs.value["diffs"].tolist()[4] == _link("Per-example diffs", run="runA")
    assert runs.value["compare"].tolist()[:2] == [_link("Compare", a="runC", b="runB"),
                                                  _link("Compare", a="runC2", b="runC")]
    (chart,) = at.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    assert spec["encoding"]["x"]["title"] == "largest share of words the attack may change (%)"
    assert spec["encoding"]["detail"]["field"] == "run id"
    assert spec["encoding"]["color"]["field"] == "defense"


def test_app_defense_by_attack_matrix(filled, paper_dir, monkeypatch):
    """The matrix expander: one row per non-degenerate configuration, its mean AUA under
    each attack protocol of the task (drawn only when opened)."""
    url, _ = filled
    at = _app(url, monkeypatch)
    assert "Defense × attack AUA on sst2" in [e.label for e in at.expander]
    assert [d for d in at.dataframe if "worst single-recipe AUA" in d.value.columns] == []
    at.session_state["matrix"] = True
    at.run()
    assert not at.exception
    (m,) = [d.value for d in at.dataframe if "worst single-recipe AUA" in d.value.columns]
    # the runs table of test_app_runs_of_each_configuration_and_curves: freelb runC 55 (its
    # repeat runC2 not pooled), finetune 55, peaft (50 + 40) / 2, peaft lr=0.03 30; rose
    # degenerate, left out; one peaft run (70) under the other protocol
    assert m["defense"].tolist() == ["freelb", "finetune", "peaft", "peaft"]
    cols = [c for c in m.columns if c.startswith("textfooler [")]
    assert len(cols) == 2
    assert m[cols[0]].tolist() == ["55.00", "55.00", "45.00", "30.00"]
    assert m[cols[1]].tolist() == ["–", "–", "70.00", "–"]
    assert m["worst single-recipe AUA"].tolist() == ["55.00", "55.00", "45.00", "30.00"]


def test_word_share_frame_reads_robustness(filled):
    from robustbench_nlp.app.queries import word_share_frame

    _, store = filled
    runs = store.runs_frame()
    (t1, *_rest) = protocol_tables(leaderboard(task="sst2", attack="textfooler", runs=runs), runs)
    f = word_share_frame(runs, t1)
    assert len(f) == 7 * 11 and f["run id"].nunique() == 7
    c = f[f["run id"] == "runC"]
    assert c["share"].tolist()[:3] == [0.0, 5.0, 10.0] and c["AUA"].tolist()[-1] == 55.0
    assert c["configuration"].iloc[0] == "freelb model=roberta-base"
    assert c["defense"].iloc[0] == "freelb"
    assert c["run"].iloc[0] == "runC · freelb model=roberta-base · seed 0"


def test_app_deep_link_selects_a_run_that_is_not_first(filled, paper_dir, monkeypatch):
    """``?view=Per-example+diffs&run=RUN_ID`` opens RUN_ID's diffs and keeps ``run=``."""
    url, _ = filled
    at = _app(url, monkeypatch, {"task": "sst2", "attack": "textfooler",
                                 "view": "Per-example diffs", "run": "runA"})
    assert not at.exception
    run = at.selectbox(key="pick_run")
    assert run.options[0].startswith("runC ·")  # the top-ranked run comes first ...
    assert run.value == "runA"  # ... but the link's run is the one shown
    assert at.query_params["run"] == "runA"
    assert any(c.value == "20 of 20 attacked examples of run runA" for c in at.caption)
    (table,) = _tables(at, EXAMPLE_TABLE)
    # runA: robust (failed) on 5-12 only
    assert table.loc[table["result"] == "failed", "idx"].tolist() == list(range(5, 13))
    # choosing another run moves the URL with it
    run.set_value("runB").run()
    assert at.query_params["run"] == "runB"
    assert any(c.value == "20 of 20 attacked examples of run runB" for c in at.caption)
    # an unknown run falls back to the first one and the URL says which
    at = _app(url, monkeypatch, {"view": "Per-example diffs", "run": "nope"})
    assert at.selectbox(key="pick_run").value == "runC"
    assert at.query_params["run"] == "runC"


def test_app_diff_view_highlights_words_and_escapes(filled, paper_dir, monkeypatch):
    url, _ = filled
    at = _app(url, monkeypatch, {"run": "runC", "view": "Per-example diffs"})
    assert not at.exception
    assert at.selectbox(key="pick_run").value == "runC"
    cards = [h.value for h in at.html]
    assert len(cards) == ATTACKED
    first = cards[0]
    assert re.findall(r"<del[^>]*>(.*?)</del>", first) == ["gripping", "film"]
    assert re.findall(r"<ins[^>]*>(.*?)</ins>", first) == ["riveting", "movie"]
    assert "gold 1 (positive)" in first and "prediction 1 (positive) → 0 (negative)" in first
    assert "rb-flip" not in first  # gripping -> riveting keeps the polarity
    xss = cards[3]
    assert "<script" not in xss and "<img" not in xss
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in xss
    assert "[click](javascript:window.__pwned=3)" in xss  # markdown link kept as literal text
    # good -> bad: a polarity-reversing swap, marked on both words
    flip = cards[4]
    assert re.findall(r'<(del|ins) class="rb-(?:del|ins) rb-flip"[^>]*>(.*?)</\1>', flip) == [
        ("del", "good"), ("ins", "bad")]
    assert "1 polarity-reversing swap<" in flip
    assert sum("rb-flip" in c for c in cards) == 1
    assert any("Outlined in amber: polarity-reversing swaps" in c.value for c in at.caption)
    (table,) = _tables(at, EXAMPLE_TABLE)
    assert table["result"].tolist()[:5] == ["successful", "failed", "skipped", "successful",
                                            "successful"]

    at.multiselect(key="results").set_value(["failed"]).run()
    cards = [h.value for h in at.html]
    assert len(cards) == len(ROBUST_C) and all("<del" not in c for c in cards)  # unchanged
    at.multiselect(key="results").set_value(list(("successful", "failed", "skipped"))).run()
    at.text_input(key="search").set_value("LIFELESS").run()
    cards = [h.value for h in at.html]
    assert len(cards) == 1 and 'data-idx="2"' in cards[0]


@pytest.fixture
def no_lexicon(monkeypatch):
    """The opinion lexicon cannot be loaded (the app's cached copy is dropped around it)."""
    from robustbench_nlp.app import ui
    from robustbench_nlp.attacks import polarity

    def missing(*a, **k):
        raise DataError("opinion lexicon not found: NLTK corpus 'opinion_lexicon' is missing")

    ui._lexicon.clear()
    monkeypatch.setattr(polarity, "load_opinion_lexicon", missing)
    yield
    ui._lexicon.clear()


def test_app_diff_view_without_lexicon_marks_nothing_and_says_why(filled, paper_dir,
                                                                   monkeypatch, no_lexicon):
    url, _ = filled
    at = _app(url, monkeypatch, {"run": "runC", "view": "Per-example diffs"})
    assert not at.exception
    cards = [h.value for h in at.html]
    assert len(cards) == ATTACKED and not any("rb-flip" in c for c in cards)
    assert re.findall(r"<del[^>]*>(.*?)</del>", cards[4]) == ["good"]  # the diff is still drawn
    (note,) = [c.value for c in at.caption if "not marked" in c.value]
    assert note.endswith("Polarity-reversing swaps are not marked: opinion lexicon not found"
                         "\\: NLTK corpus 'opinion\\_lexicon' is missing")


def test_app_compare_view(filled, paper_dir, monkeypatch):
    url, _ = filled
    at = _app(url, monkeypatch, {"task": "sst2", "attack": "textfooler", "view": "Compare",
                                 "a": "runC", "b": "runA"})
    assert not at.exception
    assert at.selectbox(key="compare_protocol").value == H1
    assert (at.selectbox(key="pick_a").value, at.selectbox(key="pick_b").value) == (
        "runC", "runA")
    assert (at.query_params["a"], at.query_params["b"]) == ("runC", "runA")
    (table,) = [d.value for d in at.dataframe if "B robust" in d.value.columns]
    # runC robust on {1, 5..14}, runA on {5..12}: both 8, C only 3 (1, 13, 14), A only 0
    assert table.values.tolist() == [[8, 3, 11], [0, 9, 9], [8, 12, 20]]
    assert table.index.tolist() == ["A robust", "A not robust", "total"]
    (aua,) = [d for d in at.dataframe if "interval" in d.value.columns]
    assert aua.value[""].tolist() == ["A", "B", "A − B (points)"]
    assert _shown(aua, "AUA") == ["55.00", "40.00", "15.00"]
    assert _shown(aua, "95% low") == ["34.21", "21.88", "-2.98"]
    assert _shown(aua, "95% high") == ["74.18", "61.34", "30.94"]
    md = [m.value for m in at.markdown]
    assert md[0] == "**no significant difference at the 5% level \\(p = 0\\.25\\)**"
    assert md[1] == ("A − B = 15.00 points, 95% CI [-2.98, 30.94] (Newcombe, paired) · exact "
                     "McNemar p = 0\\.25 on 3 vs 0 discordant examples")
    assert [h.value for h in at.subheader] == ["Examples where the runs differ (3)"]
    cards = [h.value for h in at.html]
    assert len(cards) == 6  # A's and B's card of each differing example, side by side
    assert [re.search(r'data-idx="(\d+)"', c).group(1) for c in cards] == [
        "1", "1", "13", "13", "14", "14"]
    assert ">A · runC<" in cards[0] and ">B · runA<" in cards[1]
    assert ">failed<" in cards[0] and ">successful<" in cards[1]  # robust under A only

    # defaults without parameters: the protocol with most runs, its first two runs
    at = _app(url, monkeypatch, {"view": "Compare"})
    assert (at.selectbox(key="pick_a").value, at.selectbox(key="pick_b").value) == (
        "runC", "runB")
    assert [h.value for h in at.subheader] == ["Examples where the runs differ (2)"]
    at.selectbox(key="pick_b").set_value("runC").run()
    assert [i.value for i in at.info] == ["Choose two different runs."]


def test_app_compare_needs_a_protocol_with_two_runs(tmp_path, paper_dir, monkeypatch):
    url = f"sqlite:///{tmp_path / 'one.db'}"
    store = Store(url)
    add_run(store, "solo", "peaft", "minilm", 90.0, 40.0)
    add_run(store, "old", "peaft", "minilm", 90.0, 40.0, proto=None)
    at = _app(url, monkeypatch, {"view": "Compare"})
    assert not at.exception
    assert [i.value for i in at.info][0].startswith("No protocol with two finished runs here")


def test_app_on_empty_database_shows_paper_rows_only(tmp_path, paper_dir, monkeypatch):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    Store(url)
    at = _app(url, monkeypatch)
    assert not at.exception
    assert [i.value for i in at.info] == ["No finished runs for this task and attack (and "
                                          "filters)."]
    assert [d for d in at.dataframe if "AUA 95% CI" in d.value.columns] == []
    assert _tables(at, PAPER_COLUMNS)[0]["backbone"].tolist() == ["roberta-base",
                                                                  "roberta-base", "llama"]
    assert at.selectbox(key="task").options == ["rte", "sst2"]


def test_app_epoch_curves_only_when_recorded(tmp_path, paper_dir, monkeypatch):
    url = f"sqlite:///{tmp_path / 'ep.db'}"
    store = Store(url)
    add_run(store, "plain", "peaft", "minilm", 90.0, 40.0)
    at = _app(url, monkeypatch)
    assert not at.exception
    assert [e.label for e in at.expander][-2:] == ["Trade-off: ACC vs AUA (3 points)",
                                                   "Defense × attack AUA on sst2"]
    assert len(at.get("vega_lite_chart")) == 0  # charts are drawn when their expander opens
    at.session_state["tradeoff"] = True
    at.run()
    assert len(at.get("vega_lite_chart")) == 1  # the trade-off chart only
    assert [r.value for r in at.radio] == []

    url2 = f"sqlite:///{tmp_path / 'ep2.db'}"
    store2 = Store(url2)
    add_run(store2, "curves", "peaft", "minilm", 90.0, 40.0, train_stats={"epochs": [
        {"epoch": 1, "acc": 80.0, "aua": 20.0}, {"epoch": 2, "acc": 85.0, "aua": 30.0}]})
    at = _app(url2, monkeypatch)
    assert not at.exception
    assert [e.label for e in at.expander][-3:] == ["Trade-off: ACC vs AUA (3 points)",
                                                   "Per-epoch curves (1 run)",
                                                   "Defense × attack AUA on sst2"]
    assert len(at.get("vega_lite_chart")) == 0
    at.session_state["epochs"] = True
    at.run()
    assert len(at.get("vega_lite_chart")) == 1
    assert at.radio(key="epoch_metric").value == "AUA"


def test_example_html_pair_task_marks_attacked_segment():
    from robustbench_nlp.app.ui import example_html

    d = example(7, original=("the cat sat .", "a cat is sitting ."),
                adversarial=("the cat sat .", "a kitten is sitting ."), segment=1, gold=0,
                before=0, after=1)
    row = pd.Series({**d, "idx": d.pop("index")})
    out = example_html(row, ["entailment", "not_entailment"], "rte")
    segs = re.findall(r'<div class="rb-seg".*?</div></div>', out)
    assert len(segs) == 2
    assert ">sentence1<" in segs[0] and "<del" not in segs[0] and "<ins" not in segs[0]
    assert ">sentence2 (attacked)<" in segs[1]
    assert re.findall(r"<del[^>]*>(.*?)</del>", segs[1]) == ["cat"]
    assert re.findall(r"<ins[^>]*>(.*?)</ins>", segs[1]) == ["kitten"]
    assert "gold 0 (entailment) · prediction 0 (entailment) → 1 (not_entailment)" in out


def test_epoch_frame_reads_train_stats():
    from robustbench_nlp.app.queries import epoch_frame

    runs = pd.DataFrame({"id": ["r1", "r2", "r3"], "defense": ["peaft"] * 3,
                         "model": ["minilm"] * 3,
                         "train_stats": [{"epochs": [{"epoch": 1, "acc": 80.0, "aua": 20.5},
                                                     {"epoch": 2, "aua": 31.0},
                                                     {"acc": 1.0}]},
                                         {"loss": 0.3}, None]})
    f = epoch_frame(runs, ["r1", "r2", "r3"])
    assert f[["run id", "epoch", "metric", "value"]].values.tolist() == [
        ["r1", 1, "ACC", 80.0], ["r1", 1, "AUA", 20.5], ["r1", 2, "AUA", 31.0]]
    assert epoch_frame(runs, ["r2", "r3"]).empty


def test_result_types_match_attack_base():
    from robustbench_nlp.app.queries import RESULT_TYPES
    from robustbench_nlp.attacks.base import RESULT_TYPES as BASE

    assert RESULT_TYPES == BASE


def test_app_modules_have_no_import_side_effects(tmp_path):
    db = tmp_path / "never.db"
    code = ("import robustbench_nlp.app, robustbench_nlp.app.ui, robustbench_nlp.app.queries, "
            "robustbench_nlp.app.charts")
    env = {**os.environ, "RBNLP_DB": f"sqlite:///{db}"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert not db.exists()


# -- CLI --------------------------------------------------------------------------------------

def test_cli_leaderboard_matches_app_tables(filled, paper_dir, capsys):
    from robustbench_nlp.cli import main

    url, _ = filled
    assert main(["leaderboard", "--db", url]) == 0
    out = capsys.readouterr().out
    # same sections and order as the app: protocol H1 (runC, runB, runA, runJ; runH apart),
    # then H2, then the unrecorded runs, then the paper's rows
    assert out.index(f"protocol {H1}") < out.index("| runC ") < out.index("| runB ") \
        < out.index("| runA, runA2 ") < out.index("| runJ ") < out.index("degenerate") \
        < out.index("| runH ") < out.index(f"protocol {H2}") < out.index("| runD ") \
        < out.index("protocol not recorded") < out.index("| runI ") \
        < out.index("reported in paper")
    assert main(["leaderboard", "--db", url, "--format", "json"]) == 0
    rows = pd.read_json(__import__("io").StringIO(capsys.readouterr().out))
    got = rows[["protocol", "rank", "runs"]].astype(object)
    # (runs without a recorded protocol are listed unranked, in the CLI as in the app)
    assert got.where(got.notna(), "").values.tolist() == [
        [H1, 1, "runC"], [H1, 2, "runB"], [H1, 3, "runA, runA2"], [H1, 4, "runJ"],
        [H1, "", "runH"], [H2, 1, "runD"], ["", "", "runI"]]
    assert main(["leaderboard", "--paper", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ",".join(PAPER_COLUMNS) and len(lines) == 4


def test_cli_app_checks_db_and_execs_streamlit(filled, tmp_path, monkeypatch, capsys):
    from robustbench_nlp.app import SCRIPT
    from robustbench_nlp.cli import main

    missing = tmp_path / "missing.db"
    assert main(["app", "--db", f"sqlite:///{missing}"]) == 2
    assert "database file" in capsys.readouterr().err and not missing.exists()
    assert main(["app", "--port", "0"]) == 2
    seen = {}
    monkeypatch.setattr(os, "execve", lambda exe, argv, env: seen.update(argv=argv, env=env))
    url, _ = filled
    main(["app", "--db", url, "--port", "8765"])
    argv = seen["argv"]
    assert argv[1:5] == ["-m", "streamlit", "run", str(SCRIPT)]
    assert argv[argv.index("--server.address") + 1] == "localhost"
    assert argv[argv.index("--server.port") + 1] == "8765"
    assert seen["env"]["RBNLP_DB"] == url
