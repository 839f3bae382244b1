"""Metrics (TextAttack definitions) and the SQLAlchemy store."""

from __future__ import annotations

import pytest

from robustbench_nlp.db import open_store
from robustbench_nlp.errors import ConfigError
from robustbench_nlp.metrics import avg_score, degenerate, summarize


def ex(i, result, queries=10, words=10, perturbed=0):
    return {"index": i, "original": (f"text {i}",), "adversarial": (f"text {i}",),
            "attacked_segment": None, "gold": 1, "pred_before": 1,
            "pred_after": 0 if result == "successful" else 1, "result": result,
            "queries": queries, "num_words": words, "perturbed_words": perturbed}


def test_summarize_textattack_definitions():
    rows = ([ex(i, "successful", queries=20, words=10, perturbed=2) for i in range(3)]
            + [ex(3, "successful", queries=40, words=4, perturbed=1)]
            + [ex(i, "failed", queries=30) for i in range(4, 10)]
            + [ex(i, "skipped", queries=0) for i in range(10, 12)])
    s = summarize(rows)
    assert (s.attacked, s.successful, s.failed, s.skipped) == (12, 4, 6, 2)
    assert s.attacked_clean_acc == pytest.approx(100 * 10 / 12)
    assert s.aua == pytest.approx(50.0)
    assert s.asr == pytest.approx(40.0)
    assert s.avg_queries == pytest.approx((3 * 20 + 40 + 6 * 30) / 10)
    assert s.avg_perturbed_pct == pytest.approx((20 + 20 + 20 + 25) / 4)
    assert avg_score(80.0, 50.0) == 65.0


def test_degenerate_flag():
    gold = {"negative": 49.1, "positive": 50.9}
    assert degenerate({"negative": 2.0, "positive": 98.0}, gold)
    assert not degenerate({"negative": 40.0, "positive": 60.0}, gold)
    assert not degenerate({"negative": 35.0, "positive": 65.0}, gold)  # +14.1 points
    assert degenerate({"negative": 34.0, "positive": 66.0}, gold)  # +15.1 points


def test_store_roundtrip(tmp_path):
    store = open_store(f"sqlite:///{tmp_path/'r.db'}")
    rid = store.create_run(task="sst2", defense="peaft", attack="textfooler", model="minilm",
                           seed=0, config={"run": {}})
    for i, kind in enumerate(["successful", "failed", "skipped"]):
        store.add_example(rid, ex(i, kind))
    assert [e["result"] for e in store.examples(rid)] == ["successful", "failed", "skipped"]
    store.save_metrics(rid, acc=80.0, aua=33.3)
    store.update_run(rid, status="finished")
    df = store.runs_frame()
    assert len(df) == 1 and df.loc[0, "acc"] == 80.0 and df.loc[0, "status"] == "finished"
    with pytest.raises(Exception):  # one row per (run, example index)
        store.add_example(rid, ex(0, "failed"))
    assert len(store.examples(rid)) == 3


def test_store_bad_urls(tmp_path):
    with pytest.raises(ConfigError, match="cannot open database"):
        open_store(f"sqlite:///{tmp_path}/missing_dir/x.db")
    with pytest.raises(ConfigError, match="cannot use database URL 'nosuchdb://x'"):
        open_store("nosuchdb://x")
    with pytest.raises(ConfigError, match="no run with id 'nope'"):
        open_store(f"sqlite:///{tmp_path/'r.db'}").get_run("nope")


def test_schema_version_mismatch(tmp_path):
    url = f"sqlite:///{tmp_path/'old.db'}"
    store = open_store(url)
    with store.engine.begin() as c:  # a pre-Alembic version marker no release wrote
        c.exec_driver_sql("DROP TABLE alembic_version")
        c.exec_driver_sql("CREATE TABLE rbnlp_schema (id INTEGER PRIMARY KEY, version INTEGER)")
        c.exec_driver_sql("INSERT INTO rbnlp_schema VALUES (1, 0)")
    with pytest.raises(ConfigError, match="schema version 0"):
        open_store(url)
