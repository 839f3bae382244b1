"""AdvGLUE as an attack: data loading, GLUE source matching, result mapping, run wiring."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from robustbench_nlp.attacks.advglue import (DEFAULT_THRESHOLD, AdvGLUE, load_advglue,
                                             match_sources, normalize, word_diff)
from robustbench_nlp.errors import ConfigError, DataError
from robustbench_nlp.metrics import summarize
from robustbench_nlp.tasks import get_task, load_split

# task -> (examples, {label id: count}, examples with a GLUE source at the default threshold)
# counted from advglue/dev.json (sizes as in the mirror README and REFERENCE.md) and measured
# with scripts/advglue_matching.py
ADVGLUE = {"sst2": (148, {0: 72, 1: 76}, 119),
           "rte": (81, {0: 35, 1: 46}, 80),
           "qnli": (148, {0: 74, 1: 74}, 133)}


@pytest.mark.parametrize("name", sorted(ADVGLUE))
def test_load_counts(data_dir, name):
    task = get_task(name)
    df, src = load_advglue(task, data_dir)
    n, labels, _ = ADVGLUE[name]
    assert src == f"local:{data_dir / 'advglue' / 'dev.json'}"
    assert list(df.columns) == ["idx", *task.text_columns, "label"]
    assert len(df) == n and df["idx"].tolist() == list(range(n))
    assert df["label"].value_counts().to_dict() == labels


def test_load_text_unchanged(data_dir):
    df, _ = load_advglue(get_task("rte"), data_dir)
    assert df.iloc[0]["sentence2"] == "Doctors Without Borders is an international aid " \
                                      "organization ."
    assert df.iloc[0]["label"] == 0


def test_load_errors(tmp_path):
    (tmp_path / "glue" / "sst2").mkdir(parents=True)
    (tmp_path / "glue" / "sst2" / "dev.tsv").write_text("sentence\tlabel\n")
    (tmp_path / "advglue").mkdir()
    f = tmp_path / "advglue" / "dev.json"
    sst2 = get_task("sst2")
    with pytest.raises(ConfigError, match="'mrpc' has no AdvGLUE split"):
        load_advglue(get_task("mrpc"), tmp_path)
    f.write_text(json.dumps({"rte": []}))
    with pytest.raises(DataError, match="no 'sst2' key"):
        load_advglue(sst2, tmp_path)
    f.write_text(json.dumps({"sst2": [{"idx": 0, "text": "x", "label": 1}]}))
    with pytest.raises(DataError, match="lacks column.*'sentence'"):
        load_advglue(sst2, tmp_path)
    f.write_text(json.dumps({"sst2": [{"idx": 0, "sentence": "fine", "label": 2}]}))
    with pytest.raises(DataError, match="label 2 of AdvGLUE sst2 item 0 is not in 0..1"):
        load_advglue(sst2, tmp_path)
    f.write_text(json.dumps({"sst2": [{"idx": 0, "sentence": "  ", "label": 1}]}))
    with pytest.raises(DataError, match="empty 'sentence'"):
        load_advglue(sst2, tmp_path)
    f.write_text("{")
    with pytest.raises(DataError, match="not valid UTF-8 JSON"):
        load_advglue(sst2, tmp_path)


def test_normalize_and_word_diff():
    assert normalize("It 's a ( MSF ) film .") == normalize("It's a (MSF) film.") == \
        "it s a msf film"
    # one substitution-heavy single sentence
    assert word_diff(("a tender heartfelt family drama",),
                     ("a bid heartfelt family travesty",)) == ([0], 2, 5)
    # pair: tokenisation-only differences do not count; appended distraction = insertions
    assert word_diff(("The cat sat.", "It's fine."),
                     ("The cat sat and true is true .", "It 's fine .")) == ([0], 4, 7)
    assert word_diff(("same",), ("same",)) == ([], 0, 1)


@pytest.mark.parametrize("name", sorted(ADVGLUE))
def test_matching_counts(data_dir, name):
    task = get_task(name)
    dev, _ = load_split(task, "validation", data_dir)
    rows = AdvGLUE().examples(task, dev, num_examples=5, seed=0)  # num_examples is ignored
    n, _, matched = ADVGLUE[name]
    assert len(rows) == n and int(rows["source_matched"].sum()) == matched
    assert rows["source_matched"].tolist() == (rows["source_similarity"] >= 62.0).tolist()
    assert rows["source_similarity"].between(0, 100).all()
    assert rows["source_index"].isin(dev.index).all()
    for c in task.text_columns:  # the stored source text is the matched dev row's
        assert rows[f"source_{c}"].tolist() == dev.loc[rows["source_index"], c].tolist()


def test_matching_examples(data_dir):
    task = get_task("sst2")
    dev, _ = load_split(task, "validation", data_dir)
    adv, _ = load_advglue(task, data_dir)
    m = match_sources(adv, dev, task)
    # a word-level attack on a dev sentence
    i = adv.index[adv["sentence"] == "unflinchingly bleak and harrowing"][0]
    assert dev.loc[m.loc[i, "source_index"], "sentence"] == "unflinchingly bleak and desperate"
    assert 75 < m.loc[i, "source_similarity"] < 76
    # a human-written (CheckList-template) sentence has no source: chance-level similarity
    j = adv.index[adv["sentence"] == "I wouldn't say, given my history with movies, that this "
                                     "film is weird."][0]
    assert m.loc[j, "source_similarity"] < DEFAULT_THRESHOLD
    # pairs: the segment similarities are against the same dev row
    rte = get_task("rte")
    rdev, _ = load_split(rte, "validation", data_dir)
    radv, _ = load_advglue(rte, data_dir)
    rm = match_sources(radv.head(1), rdev, rte)
    assert rm.loc[0, "source_sentence2"] == "Doctors Without Borders is an international aid " \
                                            "organization."
    assert rm.loc[0, "source_segment_similarity"][1] == 100.0


class RuleVictim:
    """Predicts 1 when a text (all segments) has an even number of words, else 0."""

    def __init__(self):
        self.calls = []

    @staticmethod
    def label(segments) -> int:
        return int(sum(len(s.split()) for s in segments) % 2 == 0)

    def __call__(self, texts):
        self.calls.append(len(texts))
        return np.array([[1.0, 0.0] if self.label(t) == 0 else [0.0, 1.0] for t in texts])


@pytest.mark.parametrize("name", ["sst2", "rte"])
def test_run_maps_accuracy_to_aua(data_dir, name):
    task = get_task(name)
    dev, _ = load_split(task, "validation", data_dir)
    atk = AdvGLUE()
    rows = atk.examples(task, dev, None, 0)
    victim = RuleVictim()
    results = list(atk.run(victim, task, rows, chunk=50))
    n = len(rows)
    assert len(results) == n and sum(victim.calls) == n + int(rows["source_matched"].sum())
    adv = [tuple(r[c] for c in task.text_columns) for r in rows.to_dict("records")]
    accuracy = 100 * np.mean([RuleVictim.label(a) == g for a, g in zip(adv, rows["label"])])
    s = summarize([r.to_dict() for r in results], query_based=AdvGLUE.query_based)
    assert s.skipped == 0 and s.aua == pytest.approx(accuracy)
    assert s.asr == pytest.approx(100 - accuracy)
    # a fixed set: no search, so no queries and no clean accuracy on the attacked set
    assert AdvGLUE.query_based is False
    assert s.attacked_clean_acc is None and s.avg_queries is None
    assert 0 < s.aua < 100
    for r, row, a in zip(results, rows.to_dict("records"), adv):
        src = tuple(row[f"source_{c}"] for c in task.text_columns)
        matched = bool(row["source_matched"])
        assert r.index == row["index"] and r.gold == row["label"] and r.adversarial == a
        assert r.original == (src if matched else a)
        assert r.pred_after == RuleVictim.label(a)
        assert r.pred_before == RuleVictim.label(r.original)
        assert r.result == ("failed" if r.pred_after == r.gold else "successful")
        assert r.queries == (2 if matched else 1)
        assert 0 <= r.perturbed_words <= r.num_words
        assert set(r.extra) >= {"source_index", "source_similarity", "source_matched"}
        assert r.extra["source_matched"] == matched
        assert ("source_segment_similarity" in r.extra) == task.is_pair
        if not matched:
            assert r.perturbed_words == 0 and r.attacked_segment is None
        json.dumps(r.to_dict())
    if task.is_pair:  # matched pairs whose only changed segment is known
        assert {r.attacked_segment for r in results} >= {0, 1}


def test_config_and_task_check():
    from robustbench_nlp.registry import ATTACKS
    from robustbench_nlp.runner import RunConfig, plan

    assert ATTACKS.get("advglue") is AdvGLUE
    with pytest.raises(ConfigError):
        AdvGLUE(AdvGLUE.Config(threshold=101))
    with pytest.raises(ConfigError):
        AdvGLUE(AdvGLUE.Config(limit=0))
    for name in ("sst2", "rte", "qnli"):
        AdvGLUE().check_task(get_task(name))
    with pytest.raises(ConfigError) as e:
        plan(RunConfig(task="mrpc", attack="advglue"))
    assert str(e.value) == ("advglue: task 'mrpc' has no AdvGLUE split (AdvGLUE covers sst2, "
                            "qqp, mnli, mnli-mm, qnli, rte; use --attack textfooler)")
    res = AdvGLUE().resources()
    assert res["advglue"]["source"].startswith(("local:", "hub:"))
    assert res["matching"]["threshold"] == DEFAULT_THRESHOLD


def test_limit(data_dir):
    task = get_task("qnli")
    dev, _ = load_split(task, "validation", data_dir)
    rows = AdvGLUE(AdvGLUE.Config(limit=7)).examples(task, dev, None, 0)
    assert rows["index"].tolist() == list(range(7))


def _cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "robustbench_nlp.cli", *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=900)


def test_cli_mrpc_fails_before_training(tmp_path):
    db = tmp_path / "r.db"
    r = _cli("run", "--task", "mrpc", "--attack", "advglue", "--db", f"sqlite:///{db}")
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: advglue: task 'mrpc' has no AdvGLUE split (AdvGLUE "
                                "covers sst2, qqp, mnli, mnli-mm, qnli, rte; use --attack "
                                "textfooler)")
    if db.exists():
        with create_engine(f"sqlite:///{db}").connect() as c:
            assert c.execute(text("select count(*) from runs")).scalar() == 0


@pytest.mark.slow
def test_cli_run_rte(tmp_path, data_dir):
    """A tiny PEAFT run on RTE with --attack advglue: one row per AdvGLUE example, AUA =
    accuracy on them, ACC = clean accuracy on the full GLUE dev split."""
    db = tmp_path / "r.db"
    env = {**os.environ, "RBNLP_DATA_DIR": str(data_dir)}
    r = _cli("run", "--defense", "peaft", "--task", "rte", "--attack", "advglue",
             "--set", "train_examples=64", "--num-examples", "5", "--db", f"sqlite:///{db}",
             "--runs-dir", str(tmp_path / "runs"), "--no-progress", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    with create_engine(f"sqlite:///{db}").connect() as c:
        (status, attack, data), = c.execute(text("select status, attack, data from runs"))
        ex = c.execute(text("select gold, pred_after, result, extra from examples")).all()
        m = c.execute(text("select acc, aua, avg, skipped, eval_examples, avg_queries, "
                           "attacked_clean_acc from metrics")).one()
    assert (status, attack) == ("finished", "advglue")
    assert json.loads(data)["validation"].endswith("glue/rte/dev.tsv")
    assert len(ex) == 81 and m.skipped == 0 and m.eval_examples == 277
    accuracy = 100 * sum(g == p for g, p, _, _ in ex) / 81
    assert m.aua == pytest.approx(accuracy)
    assert all((res == "failed") == (g == p) for g, p, res, _ in ex)
    assert sum(json.loads(e)["source_matched"] for *_, e in ex) == 80
    assert m.avg == pytest.approx((m.acc + m.aua) / 2)
    assert m.avg_queries is None and m.attacked_clean_acc is None  # a fixed set: no search

    # the same defense attacked by TextFooler: trained once, its weights reused
    r2 = _cli("run", "--defense", "peaft", "--task", "rte", "--attack", "textfooler",
              "--set", "train_examples=64", "--num-examples", "2", "--db", f"sqlite:///{db}",
              "--runs-dir", str(tmp_path / "runs"), "--no-progress", env=env, cwd=tmp_path)
    assert r2.returncode == 0, r2.stderr[-2000:]
    with create_engine(f"sqlite:///{db}").connect() as c:
        rows = c.execute(text("select r.id, r.attack, r.train_seconds, r.train_stats, m.acc "
                              "from runs r join metrics m on m.run_id = r.id "
                              "order by r.created_at")).all()
    (first, *_, acc1), (second, attack2, secs2, stats2, acc2) = rows
    assert f"reusing the trained defense of run {first}" in r2.stdout
    assert attack2 == "textfooler" and json.loads(stats2)["reused_from"] == first
    assert acc2 == acc1 and secs2 == rows[0].train_seconds
    assert (tmp_path / "runs" / second / "defense.safetensors").is_file()
