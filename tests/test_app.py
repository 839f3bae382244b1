"""The leaderboard tables, the paper rows, the word diff and the Streamlit app (AppTest)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timezone

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st_

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
            params=None, proto=(P1, H1), degenerate=False, invalid=None):
    store.create_run(id=run_id, task=task, defense=defense, attack=attack, model=model,
                     seed=seed, num_examples=len(examples),
                     config={"run": {"model": model, "seed": seed},
                             "defense": dict(params or {})},
                     trainable_params=1000 + len(run_id), train_seconds=12.5,
                     train_stats=train_stats or {}, resources=resources, status=status,
                     finished_at=datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc))
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
    """sst2 × textfooler under two protocols (P1: 6 runs, 5 configurations, one degenerate;
    P2: one run), a run without a recorded protocol, and distractors."""
    store = Store(url)
    add_run(store, "runA", "peaft", "minilm", 90.0, 40.0, params={"lr": 0.01},
            examples=attacked_rows(ROBUST_A), invalid=12.5)
    add_run(store, "runA2", "peaft", "minilm", 92.0, 50.0, params={"lr": 0.01}, seed=1,
            invalid=7.5)
    add_run(store, "runJ", "peaft", "minilm", 89.0, 30.0, params={"lr": 0.03})
    add_run(store, "runB", "finetune", "minilm", 80.0, 55.0, examples=attacked_rows(ROBUST_B))
    add_run(store, "runC", "freelb", "roberta-base", 85.0, 55.0,
            examples=attacked_rows(ROBUST_C, SPECIAL))
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

def test_leaderboard_ranks_each_resource_variant_separately(filled):
    url, _ = filled
    board = leaderboard(url, task="sst2", attack="textfooler")
    assert list(board.columns) == COLUMNS
    # unfinished runE, rte runF and advglue runG are not on this board
    assert board["run id"].tolist() == ["runC", "runB", "runA", "runD"]
    assert board["rank"].tolist() == [1, 2, 3, 1]  # AUA tie 55/55 broken by ACC 85 > 80
    assert board["attack resources"].tolist() == [resources_tag(GLOVE)] * 3 + [
        resources_tag(PARAGRAM)]
    groups = resource_groups(board)
    assert [(tag, g["run id"].tolist()) for tag, g in groups] == [
        ("glove-6b-50d + USE-numpy + spacy", ["runC", "runB", "runA"]),
        ("paragramcf + USE-tfhub + nltk", ["runD"])]
    assert board.loc[0, ["ACC", "AUA", "AVG"]].tolist() == [85.0, 55.0, 70.0]


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


def test_app_leaderboard_rows_and_ranks(filled, paper_dir, monkeypatch):
    url, _ = filled
    at = _app(url, monkeypatch)
    assert not at.exception
    glove, paragram = _tables(at, COLUMNS)
    assert glove[["rank", "run id", "defense"]].values.tolist() == [
        [1, "runC", "freelb"], [2, "runB", "finetune"], [3, "runA", "peaft"]]
    assert set(glove["attack resources"]) == {resources_tag(GLOVE)}
    assert paragram[["rank", "run id"]].values.tolist() == [[1, "runD"]]
    captions = [c.value for c in at.caption]
    assert any("attack resources: paragramcf" in c for c in captions)
    assert len(at.html) == 0  # the per-example tab is not drawn until chosen
    (paper,) = _tables(at, PAPER_COLUMNS)
    assert paper["backbone"].tolist() == ["roberta-base", "roberta-base", "llama"]
    assert set(paper["source"]) == {REPORTED} and "run id" not in paper.columns
    pairs = next(d.value for d in at.dataframe if "paper AUA" in d.value.columns)
    assert pairs[["run id", "paper AUA"]].values.tolist() == [["runC", 12.3]]

    # filters: backbone narrows both the measured and the paper tables
    at.sidebar.multiselect[0].set_value(["roberta-base"]).run()
    assert [b["run id"].tolist() for b in _tables(at, COLUMNS)] == [["runC"]]
    assert _tables(at, PAPER_COLUMNS)[0]["defense"].tolist() == ["peaft", "freelb"]

    # another task: only its run
    at.sidebar.multiselect[0].set_value([]).run()
    at.selectbox(key="task").set_value("rte").run()
    assert [b["run id"].tolist() for b in _tables(at, COLUMNS)] == [["runF"]]


def test_app_on_empty_database_shows_paper_rows_only(tmp_path, paper_dir, monkeypatch):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    Store(url)
    at = _app(url, monkeypatch)
    assert not at.exception
    assert [i.value for i in at.info] == ["No finished runs for this task and attack (and "
                                          "filters)."]
    assert _tables(at, COLUMNS) == []
    assert _tables(at, PAPER_COLUMNS)[0]["backbone"].tolist() == ["roberta-base",
                                                                  "roberta-base", "llama"]
    assert at.selectbox(key="task").options == ["rte", "sst2"]


def test_app_diff_view_highlights_words_and_escapes(filled, paper_dir, monkeypatch):
    url, _ = filled
    at = _app(url, monkeypatch, {"run": "runC", "view": "Per-example diffs"})
    assert not at.exception
    assert at.selectbox(key="run").value == "runC"
    cards = [h.value for h in at.html]
    assert len(cards) == 4
    first = cards[0]
    assert re.findall(r"<del[^>]*>(.*?)</del>", first) == ["gripping", "film"]
    assert re.findall(r"<ins[^>]*>(.*?)</ins>", first) == ["riveting", "movie"]
    assert "gold 1 (positive)" in first and "prediction 1 (positive) → 0 (negative)" in first
    xss = cards[3]
    assert "<script" not in xss and "<img" not in xss
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in xss
    assert "[click](javascript:window.__pwned=3)" in xss  # markdown link kept as literal text
    (table,) = _tables(at, EXAMPLE_TABLE)
    assert table["result"].tolist() == ["successful", "failed", "skipped", "successful"]

    at.multiselect(key="results").set_value(["failed"]).run()
    cards = [h.value for h in at.html]
    assert len(cards) == 1 and "<del" not in cards[0]  # failed: adversarial == original
    at.multiselect(key="results").set_value(list(("successful", "failed", "skipped"))).run()
    at.text_input(key="search").set_value("LIFELESS").run()
    cards = [h.value for h in at.html]
    assert len(cards) == 1 and 'data-idx="2"' in cards[0]


def test_app_epoch_curves_only_when_recorded(tmp_path, paper_dir, monkeypatch):
    url = f"sqlite:///{tmp_path / 'ep.db'}"
    store = Store(url)
    add_run(store, "plain", "peaft", "minilm", 90.0, 40.0)
    at = _app(url, monkeypatch)
    assert not at.exception
    assert [e.label for e in at.expander] == ["Trade-off: ACC vs AUA (3 points)"]
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
    assert [e.label for e in at.expander] == ["Trade-off: ACC vs AUA (3 points)",
                                              "Per-epoch curves (1 run)"]
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
    assert out.index("attack resources: glove-6b-50d") < out.index("runC") < out.index("runB") \
        < out.index("runA") < out.index("attack resources: paragramcf") < out.index("runD") \
        < out.index("reported in paper")
    assert main(["leaderboard", "--db", url, "--format", "json"]) == 0
    rows = pd.read_json(__import__("io").StringIO(capsys.readouterr().out))
    assert rows[["rank", "run id"]].values.tolist() == [[1, "runC"], [2, "runB"], [3, "runA"],
                                                       [1, "runD"]]
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
