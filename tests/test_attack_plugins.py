"""Attacks through the CLI: an attack from another package (entry point
``robustbench_nlp.attacks``, ``examples/external_attack``) and the ensemble's worst case,
end to end on a tiny checkpoint (``rbnlp eval``: no training)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from robustbench_nlp.cli import main

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # attacks a (tiny) model end to end


def _rows(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random BERT classifier folder (tests/test_evaluate.py's)."""
    from test_evaluate import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("ckpt") / "tiny")


def test_external_attack_via_entry_point(tmp_path, data_dir, checkpoint):
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(ROOT / "examples/external_attack/rbnlp_typo_attack.py", site)
    dist = site / "rbnlp_typo_attack-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rbnlp-typo-attack\n"
                                   "Version: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[robustbench_nlp.attacks]\n"
                                           "typo = rbnlp_typo_attack:TypoAttack\n")
    env = {**os.environ, "PYTHONPATH": str(site), "RBNLP_DATA_DIR": str(data_dir)}

    def rbnlp(*args):
        return subprocess.run([sys.executable, "-m", "robustbench_nlp.cli", *args], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=600)

    listed = rbnlp("list", "attacks")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "typo: Pruthi et al. 2019: one character-level typo" in listed.stdout
    assert "    max_words = 1  (int [1, ]) most words with a typo (recipe: 1)" in listed.stdout
    db = tmp_path / "a.db"
    r = rbnlp("eval", "--model", str(checkpoint), "--attack", "typo", "--num-examples", "5",
              "--attack-set", "resources=offline", "--db", f"sqlite:///{db}", "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "AUA [95% CI]" in r.stdout
    ((attack, status, protocol),) = _rows(db, "select attack, status, protocol from runs")
    assert (attack, status) == ("typo", "finished")
    assert json.loads(protocol)["options"] == {"attacked_column": None, "max_words": 1,
                                               "min_word_length": 4, "preserve_polarity": False,
                                               "query_budget": None}
    assert _rows(db, "select count(*) from examples") == [(5,)]
    # a successful typo changes exactly one word
    for (extra,) in _rows(db, "select extra from examples where result = 'successful'"):
        assert len(json.loads(extra)["modified_indices"]) == 1


def test_ensemble_run_reports_the_breakdown(tmp_path, data_dir, checkpoint, capsys):
    db = tmp_path / "e.db"
    url = f"sqlite:///{db}"
    rc = main(["eval", "--model", str(checkpoint), "--attack", "ensemble", "--num-examples",
               "8", "--attack-set", "suite=deepwordbug,textbugger", "--attack-set",
               "resources=offline", "--db", url, "--data-dir", str(data_dir), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    rows = _rows(db, "select result, queries, extra from examples order by idx")
    assert len(rows) == 8
    broke = {"deepwordbug": 0, "textbugger": 0}
    reached = {"deepwordbug": 0, "textbugger": 0}
    for result, queries, extra in rows:
        extra = json.loads(extra)
        tried = extra["per_recipe"]
        if result == "skipped":
            assert [t["recipe"] for t in tried] == ["deepwordbug"] and queries == 0
            continue
        for t in tried:
            reached[t["recipe"]] += 1
            broke[t["recipe"]] += t["result"] == "successful"
        assert queries == sum(t["queries"] for t in tried)
        assert extra["broken_by"] == (tried[-1]["recipe"] if result == "successful" else None)
        # textbugger is tried only where deepwordbug failed
        assert [t["recipe"] for t in tried] == (["deepwordbug"] if tried[0]["result"] ==
                                                "successful" else ["deepwordbug", "textbugger"])
    assert "worst case over" in out and "deepwordbug → textbugger" in out
    assert (f"  deepwordbug: broke / reached (avg queries)  {broke['deepwordbug']} / "
            f"{reached['deepwordbug']}") in out
    robust = sum(r[0] == "failed" for r in rows)
    assert f"  robust to every recipe" in out and out.count(f"  {robust}\n") >= 1
    (run_id,) = _rows(db, "select id from runs")[0]
    assert main(["show", run_id, "--db", url]) == 0
    shown = capsys.readouterr().out
    assert (f"worst case over deepwordbug → textbugger: deepwordbug broke "
            f"{broke['deepwordbug']}/{reached['deepwordbug']}") in shown
    assert f"robust to all {robust}" in shown


def test_ensemble_breakdown_lists_the_configured_suite():
    """A recipe of the suite that no example reached is listed with 0 reached, in suite
    order (the main job's PWWS, never needed, was missing before)."""
    from robustbench_nlp.attacks.ensemble import Ensemble, breakdown_text

    rows = [
        {"result": "successful", "extra": {"per_recipe": [
            {"recipe": "deepwordbug", "result": "successful", "queries": 12}]}},
        {"result": "failed", "extra": {"per_recipe": [
            {"recipe": "deepwordbug", "result": "failed", "queries": 30},
            {"recipe": "textbugger", "result": "failed", "queries": 50}]}},
        {"result": "skipped", "extra": {"per_recipe": [
            {"recipe": "deepwordbug", "result": "skipped", "queries": 0}]}},
    ]
    got = Ensemble.rows_summary(rows, {"suite": "deepwordbug,textbugger,pwws"})
    assert got["suite"] == ["deepwordbug", "textbugger", "pwws"]
    assert got["recipes"] == {
        "deepwordbug": {"attacked": 2, "broken": 1, "avg_queries": 21.0},
        "textbugger": {"attacked": 1, "broken": 0, "avg_queries": 50.0},
        "pwws": {"attacked": 0, "broken": 0, "avg_queries": None}}
    assert (got["robust"], got["skipped"]) == (1, 1)
    assert breakdown_text(got) == ("deepwordbug broke 1/2 (21.0 q), textbugger broke 0/1 "
                                   "(50.0 q), pwws broke 0/0; robust to all 1")
    # without recorded options: the recipes the rows name
    assert Ensemble.rows_summary(rows)["suite"] == ["deepwordbug", "textbugger"]
