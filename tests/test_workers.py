"""``rbnlp run --workers N``: sharded parallel attack, merged into one run."""

from __future__ import annotations

import pandas as pd
import pytest


def test_shard_rows_disjoint_round_robin():
    from robustbench_nlp.runner import shard_rows

    df = pd.DataFrame({"index": range(7), "sentence": list("abcdefg"), "label": [0] * 7})
    shards = shard_rows(df, 3)
    assert [list(s["index"]) for s in shards] == [[0, 3, 6], [1, 4], [2, 5]]
    assert [list(s["index"]) for s in shard_rows(df.head(2), 4)] == [[0], [1]]


def _rows(store, run_id):
    rows = []
    for r in store.examples(run_id):
        r = dict(r)
        r["extra"] = {k: v for k, v in r["extra"].items() if k != "attack_seconds"}
        rows.append(r)
    return sorted(rows, key=lambda r: r["index"])


@pytest.mark.slow
def test_two_workers_equal_one(tmp_path, data_dir):
    from robustbench_nlp.db import open_store
    from robustbench_nlp.runner import RunConfig, execute

    store = open_store(f"sqlite:///{tmp_path / 'w.db'}")
    out = {}
    for workers in (1, 2):
        cfg = RunConfig(defense="finetune", attack="textfooler", num_examples=6, seed=0,
                        runs_dir=str(tmp_path / "runs"), progress=False, workers=workers,
                        reuse_trained=False,  # both train: equal rows also need equal training
                        defense_params={"train_examples": 32, "batch_size": 16},
                        attack_params={"resources": "offline"})
        out[workers] = execute(cfg, store=store, echo=lambda s: None)
    one, two = (_rows(store, out[w]["run_id"]) for w in (1, 2))
    assert [r["index"] for r in one] == list(range(6))
    assert one == two
    assert {r["result"] for r in one} - {"skipped"}  # some examples were really attacked
    for key in ("acc", "aua", "asr", "avg_queries", "successful", "failed", "skipped"):
        assert out[1][key] == out[2][key], key
    assert store.get_run(out[2]["run_id"]).config["run"]["workers"] == 2
